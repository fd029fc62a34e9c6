"""Combined calibrations: ``eoBias`` (adu), ``eoDark`` (adu/s) and ``eoFlat`` (normalised) per detector.

Each raw is run through `~lsst.eo.baseline.isrTask.EoIsrTask` and the stack is combined pixel by
pixel with the afw MEANCLIP rule (3 sigma, 3 passes), as cp_pipe's ``CalibCombineTask`` does.
Amplifiers are processed in small groups so that memory stays bounded for any number of inputs.

Amplifiers that are all zero, saturated or dead in any input (`lsst.eo.baseline.ampFlags`), or
flagged in the combined bias used, are left out: their pixels are masked ``BAD`` and their flags
are recorded in the metadata (``AMP_FLAGS``) for the tasks that use the calibration.

``eoDark`` is a bootstrap dark in the sense of cp_pipe's LSSTCam chain (``cp_pipe_algorithms.md``
section 1.10): bias subtracted, no gains, so that it can be built before the run's PTC has measured
them, and feed the bright defects the PTC masks.  Every consumer subtracts it in adu (dark x
DARKTIME) and converts to electrons, if at all, with the run's gains (`lsst.eo.baseline.runGains`).

The outputs are calibration dataset types: certify them with ``butler certify-calibrations`` to
make them available to later pipelines as prerequisite inputs.

Darks: cosmic rays are masked in each processed dark before the combination
(`lsst.eo.baseline.cosmicRays`, as cp_pipe's ``CpDarkTask``) and the clipped mean excludes them,
so a hit in one of three darks does not survive as a hot pixel (a 3-value clipped mean keeps it).
The number of masked values is in the metadata (``N_CR_PIXELS``).  Every consumer of ``eoBias``
must use its parallel-overscan setting (metadata ``PARALLEL_OSCAN``,
`check_bias_parallel_overscan`).

Deliberate deviation from cp_pipe: biases and darks are not parallel-overscan corrected.  The
per-column parallel-overscan level is a median over ~42 rows that each carry the noise of their own
serial-overscan row median; its amplifier-wide mean is uncertain by ~0.13 adu for 5 adu of read
noise, an offset that every pixel of every dark inherits (0.004 adu/s for a 30 s dark).  Without it
the offset is set by the ~2000 data rows (0.02 adu), and the fixed column structure the parallel
correction would remove is subtracted with the combined bias instead.
"""

from __future__ import annotations

__all__ = [
    "EoFlatConfig",
    "EoFlatConnections",
    "EoFlatTask",
    "EoBiasConfig",
    "EoBiasConnections",
    "EoBiasTask",
    "EoDarkConfig",
    "EoDarkConnections",
    "EoDarkTask",
    "PARALLEL_OSCAN_METADATA_KEY",
    "amp_views",
    "check_bias_parallel_overscan",
    "make_calib_image",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from lsst.images import Image, Mask, MaskedImage, MaskPlane, MaskSchema
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import (
    NoWorkFound,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import (
    FLAGS_METADATA_KEY,
    describe_flagged,
    encode_amp_flags,
    metadata_amp_flags,
    raw_amp_flags,
)
from .ampStream import amp_groups, read_amp_group
from .calibInputs import SwitchedCalibConnections, bias_prerequisite, raw_exposures
from .camera import DetectorInfo
from .cosmicRays import find_cosmic_rays, persistent_hits_unmasked
from .isr import split_ccd
from .isrTask import EoIsrTask
from .stacking import clipped_mean_stack

CALIB_MASK_SCHEMA = MaskSchema([MaskPlane("BAD", "No valid input value for this pixel.")])


def make_calib_image(
    detector: DetectorInfo,
    amps_mean: dict[str, np.ndarray],
    amps_var: dict[str, np.ndarray],
    amps_n: dict[str, np.ndarray],
    metadata: dict[str, Any],
) -> MaskedImage:
    """Assemble per-amplifier stack results into a detector `lsst.images.MaskedImage`.

    The variance plane is the variance of the clipped mean (value variance / n); pixels without a
    valid input value are masked ``BAD`` and filled with the image median, as cp_pipe does.
    Each plane is written amplifier by amplifier into its detector array (no whole-detector
    temporaries, which cost as much in page faults as in arithmetic).
    """
    ccd = detector.ccd_type
    image = np.empty(ccd.shape, dtype=np.float32)
    variance = np.empty(ccd.shape, dtype=np.float32)
    bad = np.empty(ccd.shape, dtype=bool)
    image_views, variance_views, bad_views = (split_ccd(a, ccd) for a in (image, variance, bad))
    for layout in ccd.amps:
        name = layout.name
        if name not in amps_mean:
            image_views[name][...] = np.nan
            variance_views[name][...] = 0.0
            bad_views[name][...] = True
            continue
        n_used = amps_n[name]
        image_views[name][...] = amps_mean[name]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(amps_var[name], np.maximum(n_used, 1), out=variance_views[name], casting="unsafe")
        # Pixels with fewer than two values have no variance estimate: 0, as in the stored plane.
        np.copyto(variance_views[name], 0.0, where=np.isnan(variance_views[name]))
        np.isfinite(image_views[name], out=bad_views[name])
        np.logical_not(bad_views[name], out=bad_views[name])
        bad_views[name] |= n_used == 0
    mask = Mask(0, schema=CALIB_MASK_SCHEMA, shape=image.shape)
    mask.set("BAD", bad)
    if bad.any():
        # cp_pipe fills pixels without valid input with the image median (and flags them BAD).
        good = image[~bad]
        image[bad] = np.float32(np.median(good)) if good.size else np.float32(0.0)
    return MaskedImage(Image(image), mask=mask, variance=Image(variance), metadata=metadata)


def _flagged_stack(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack result of a flagged amplifier: NaN values (masked BAD by `make_calib_image`), no inputs."""
    nan = np.full(shape, np.nan, dtype=np.float32)
    return nan, nan.copy(), np.zeros(shape, dtype=np.int32)


def _stack_buffer(buffer: np.ndarray | None, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 ``(n, *shape)`` array for one amplifier's stack, reusing ``buffer`` if it fits.

    Reusing one buffer for all amplifiers of a detector saves the page faults of a fresh
    allocation per amplifier (about as costly as filling the buffer).
    """
    if buffer is not None and buffer.shape == (n, *shape):
        return buffer
    return np.empty((n, *shape), dtype=np.float32)


def _input_flags(exposures: Sequence[Any], amp: str, inherited: dict[str, int]) -> int:
    """Flags of one amplifier over a stack's raw inputs, ORed with those of the calibration used."""
    flags = inherited.get(amp, 0)
    for raw in exposures:
        flags |= raw_amp_flags(raw[amp])
    return flags


PARALLEL_OSCAN_METADATA_KEY = "PARALLEL_OSCAN"
"""eoBias metadata key: whether its inputs were parallel-overscan corrected."""


def check_bias_parallel_overscan(bias: MaskedImage | None, do_parallel: bool, consumer: str) -> None:
    """Raise if a combined bias was built with a parallel-overscan setting other than its user's.

    The per-column level a parallel-overscan correction removes from a frame is the same column
    structure a bias built without that correction still holds; subtracting such a bias from a
    parallel-corrected frame removes it twice (and a parallel-corrected bias from an uncorrected
    frame removes it not at all).  Biases without the metadata key (older products) are accepted.

    Parameters
    ----------
    bias : `lsst.images.MaskedImage` or `None`
        Combined bias (``eoBias``), or None when no bias is subtracted.
    do_parallel : `bool`
        The consumer's parallel-overscan setting.
    consumer : `str`
        Name of the consuming task, for the message.
    """
    if bias is None or PARALLEL_OSCAN_METADATA_KEY not in bias.metadata:
        return
    built = bool(bias.metadata[PARALLEL_OSCAN_METADATA_KEY])
    if built != bool(do_parallel):
        raise ValueError(
            f"{consumer}: eoBias of detector {bias.metadata.get('DET_NAME', '?')} was built with "
            f"parallel overscan {'on' if built else 'off'} but {consumer} has it "
            f"{'on' if do_parallel else 'off'}; set the same doParallelOverscan on both"
        )


def amp_views(calib: MaskedImage | None, detector: DetectorInfo) -> dict[str, np.ndarray] | None:
    """Per-amplifier views (readout orientation) of a detector calibration image."""
    if calib is None:
        return None
    return split_ccd(calib.image.array, detector.ccd_type)


def _require_min_inputs(config: Any, inputs: dict[str, tuple[Any, Any]], label: str, data_id: Any) -> None:
    """Prune, when the quantum graph is built, a stack quantum with fewer raws than it accepts.

    Raises
    ------
    lsst.pipe.base.NoWorkFound
        If ``raws`` holds fewer than ``config.minInputs`` datasets: the quantum is left out of the
        graph instead of starting a process step only to find nothing to do.
    """
    _, refs = inputs["raws"]
    if len(refs) < config.minInputs:
        raise NoWorkFound(f"{label} {data_id}: {len(refs)} raw input(s); need {config.minInputs}")


class EoBiasConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoBiasTask`."""

    raws = raw_exposures("Raw bias exposures of one detector.")
    bias = cT.Output(
        name="eoBias",
        doc="Combined bias (adu, overscan-corrected, clipped mean).",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )

    def adjustQuantum(self, inputs, outputs, label, data_id):
        # Docstring inherited.
        _require_min_inputs(self.config, inputs, label, data_id)
        return super().adjustQuantum(inputs, outputs, label, data_id)


class EoBiasConfig(PipelineTaskConfig, pipelineConnections=EoBiasConnections):
    """Configuration of `EoBiasTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR of each input (overscan only, adu).")
    nSigmaClip = Field[float](doc="Clipping threshold of the per-pixel mean.", default=3.0)
    nIter = Field[int](doc="Clipping passes of the per-pixel mean.", default=3)
    ampsPerRead = Field[int](
        doc="Amplifiers read from every input at once (memory ~ inputs x this x 8 MB).", default=4
    )
    minInputs = Field[int](doc="Fewest inputs accepted.", default=3)

    def setDefaults(self):
        super().setDefaults()
        # See the module docstring: the fixed column structure stays in the combined bias.
        self.isr.doParallelOverscan = False

    def validate(self):
        super().validate()
        if self.isr.doBias or self.isr.doDark or self.isr.doApplyGains:
            raise ValueError(
                "eoBias is built from overscan-corrected biases in adu: disable isr bias/dark/gains"
            )


class EoBiasTask(PipelineTask):
    """Combine raw biases of a detector into ``eoBias``."""

    ConfigClass = EoBiasConfig
    _DefaultName = "eoBias"
    config: EoBiasConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = butlerQC.get(inputRefs.raws)
        detector = _detector(outputRefs.bias.dataId["detector"])
        butlerQC.put(self.run(handles, detector), outputRefs)

    def run(self, raws: Sequence[Any], detector: DetectorInfo) -> Struct:
        """Combine biases.

        Parameters
        ----------
        raws : sequence
            Handles of the raw biases (``get(parameters={"amps": [...]})``).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``bias``: `lsst.images.MaskedImage` (adu).
        """
        if len(raws) < self.config.minInputs:
            raise NoWorkFound(
                f"{len(raws)} bias exposure(s) for {detector.name}; need {self.config.minInputs}"
            )
        means, variances, counts = {}, {}, {}
        flags: dict[str, int] = {}
        stack = None
        for group in amp_groups(detector.amp_names, self.config.ampsPerRead):
            exposures = read_amp_group(raws, group)
            for amp in group:
                flags[amp] = _input_flags(exposures, amp, {})
                if flags[amp]:
                    means[amp], variances[amp], counts[amp] = _flagged_stack(exposures[0][amp].data.shape)
                    continue
                stack = _stack_buffer(stack, len(exposures), exposures[0][amp].data.shape)
                for image, raw in zip(stack, exposures, strict=True):
                    self.isr.image_into(raw[amp], image)
                means[amp], variances[amp], counts[amp] = clipped_mean_stack(
                    stack, self.config.nSigmaClip, self.config.nIter
                )
        metadata = {"OBSTYPE": "BIAS", "UNITS": "adu", "NINPUTS": len(raws), "DETECTOR": detector.id,
                    "DET_NAME": detector.name, FLAGS_METADATA_KEY: encode_amp_flags(flags),
                    PARALLEL_OSCAN_METADATA_KEY: bool(self.config.isr.doParallelOverscan)}  # fmt: skip
        self.log.info("Combined %d biases for %s", len(raws), detector.name)
        if any(flags.values()):
            self.log.warning(
                "%s: amplifier(s) %s masked BAD in eoBias", detector.name, describe_flagged(flags)
            )
        return Struct(bias=make_calib_image(detector, means, variances, counts, metadata))


class EoDarkConnections(SwitchedCalibConnections):
    """Connections of `EoDarkTask`."""

    raws = raw_exposures("Raw dark exposures of one detector.")
    bias = bias_prerequisite()
    dark = cT.Output(
        name="eoDark",
        doc="Combined dark current image (adu/s), clipped mean of bias-subtracted darks / DARKTIME.",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )

    def adjustQuantum(self, inputs, outputs, label, data_id):
        # Docstring inherited.
        _require_min_inputs(self.config, inputs, label, data_id)
        return super().adjustQuantum(inputs, outputs, label, data_id)


class EoDarkConfig(PipelineTaskConfig, pipelineConnections=EoDarkConnections):
    """Configuration of `EoDarkTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR of each input (overscan, bias; adu).")
    nSigmaClip = Field[float](doc="Clipping threshold of the per-pixel mean.", default=3.0)
    nIter = Field[int](doc="Clipping passes of the per-pixel mean.", default=3)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)
    minInputs = Field[int](
        doc="Fewest inputs accepted (a B protocol may have one dark per exposure time).", default=2
    )
    doCrRejection = Field[bool](
        doc="Mask cosmic rays in each dark before combining (cp_pipe CpDarkTask).", default=True
    )
    crPsfFwhm = Field[float](doc="FWHM (pixels) of the PSF a real source would have.", default=3.0)
    crMinSigma = Field[float](doc="Cosmic-ray significance threshold (noise sigmas).", default=6.0)
    crMinFlux = Field[float](
        doc="Least summed signal of a cosmic ray (adu, before the dark-time scaling; 100 adu is "
        "150 e- at a gain of 1.5 e-/adu).",
        default=100.0,
    )
    crGrow = Field[int](doc="Radius (pixels) by which the cosmic-ray mask is grown.", default=2)

    def setDefaults(self):
        super().setDefaults()
        self.isr.doBias = True
        self.isr.doParallelOverscan = False

    def validate(self):
        super().validate()
        if self.isr.doApplyGains or self.isr.doDark:
            raise ValueError(
                "eoDark is a bootstrap dark in adu/s: isr.doApplyGains and isr.doDark must be False"
            )


class EoDarkTask(PipelineTask):
    """Combine raw darks of a detector into ``eoDark`` (adu/s per pixel, no gains)."""

    ConfigClass = EoDarkConfig
    _DefaultName = "eoDark"
    config: EoDarkConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def _cosmic_rays(self, image: np.ndarray) -> np.ndarray:
        """Cosmic-ray mask of one processed dark (before scaling by its dark time)."""
        cfg = self.config
        # The noise from a regular subsample: 1/16 of the pixels gives it to 0.3%.
        sigma = clipped_stats(image[::4, ::4]).stdev
        return find_cosmic_rays(image, sigma, psf_fwhm=cfg.crPsfFwhm, min_sigma=cfg.crMinSigma,
                                min_flux=cfg.crMinFlux, grow=cfg.crGrow)  # fmt: skip

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = butlerQC.get(inputRefs.raws)
        bias = butlerQC.get(inputRefs.bias)
        detector = _detector(outputRefs.dark.dataId["detector"])
        butlerQC.put(self.run(handles, detector, bias=bias), outputRefs)

    def run(self, raws: Sequence[Any], detector: DetectorInfo, bias: MaskedImage | None = None) -> Struct:
        """Combine darks.

        Parameters
        ----------
        raws : sequence
            Handles of the raw darks.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias (required if ``isr.doBias``).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``dark``: `lsst.images.MaskedImage` (adu/s, metadata ``UNITS``).
        """
        if len(raws) < self.config.minInputs:
            raise NoWorkFound(
                f"{len(raws)} dark exposure(s) for {detector.name}; need {self.config.minInputs}"
            )
        check_bias_parallel_overscan(bias, self.config.isr.doParallelOverscan, "eoDark")
        bias_amps = amp_views(bias, detector)
        inherited = metadata_amp_flags(bias.metadata) if bias is not None else {}
        means, variances, counts = {}, {}, {}
        flags: dict[str, int] = {}
        dark_times = []
        stack = None
        n_cr = 0
        for group in amp_groups(detector.amp_names, self.config.ampsPerRead):
            exposures = read_amp_group(raws, group)
            dark_times = [r.dark_time for r in exposures]
            if min(dark_times) <= 0:
                raise ValueError(f"A dark of {detector.name} has DARKTIME <= 0: {dark_times}")
            for amp in group:
                flags[amp] = _input_flags(exposures, amp, inherited)
                if flags[amp]:
                    means[amp], variances[amp], counts[amp] = _flagged_stack(exposures[0][amp].data.shape)
                    continue
                stack = _stack_buffer(stack, len(exposures), exposures[0][amp].data.shape)
                # A contiguous copy: subtracting the flipped view of the detector image is 4x slower.
                bias_amp = None if bias_amps is None else np.ascontiguousarray(bias_amps[amp])
                cr_masks = np.zeros(stack.shape, dtype=bool) if self.config.doCrRejection else None
                for k, (image, raw) in enumerate(zip(stack, exposures, strict=True)):
                    self.isr.image_into(raw[amp], image, bias=bias_amp)
                    if cr_masks is not None:
                        cr_masks[k] = self._cosmic_rays(image)
                    np.divide(image, raw.dark_time, out=image)
                if cr_masks is not None:
                    persistent_hits_unmasked(cr_masks)
                    n_cr += int(cr_masks.sum())
                means[amp], variances[amp], counts[amp] = clipped_mean_stack(
                    stack, self.config.nSigmaClip, self.config.nIter, mask=cr_masks
                )
        units = "adu/s"
        metadata = {"OBSTYPE": "DARK", "UNITS": units, "NINPUTS": len(raws), "DETECTOR": detector.id,
                    "DET_NAME": detector.name, "DARKTIME_MEAN": float(np.mean(dark_times)),
                    FLAGS_METADATA_KEY: encode_amp_flags(flags), "N_CR_PIXELS": n_cr}  # fmt: skip
        self.log.info("Combined %d darks for %s (%s)", len(raws), detector.name, units)
        if any(flags.values()):
            self.log.warning(
                "%s: amplifier(s) %s masked BAD in eoDark", detector.name, describe_flagged(flags)
            )
        return Struct(dark=make_calib_image(detector, means, variances, counts, metadata))


class EoFlatConnections(SwitchedCalibConnections):
    """Connections of `EoFlatTask`."""

    switches = {"bias": "isr.doBias"}

    raws = raw_exposures("Raw flats of one detector at one illumination (e.g. the gain-stability flats).")
    bias = bias_prerequisite()
    flat = cT.Output(
        name="eoFlat",
        doc="Combined flat, each input normalised by its detector median (mean level ~1).",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )

    def adjustQuantum(self, inputs, outputs, label, data_id):
        # Docstring inherited.
        _require_min_inputs(self.config, inputs, label, data_id)
        return super().adjustQuantum(inputs, outputs, label, data_id)


class EoFlatConfig(PipelineTaskConfig, pipelineConnections=EoFlatConnections):
    """Configuration of `EoFlatTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR of each flat (overscan, bias; adu).")
    nSigmaClip = Field[float](doc="Clipping threshold of the per-pixel mean.", default=3.0)
    nIter = Field[int](doc="Clipping passes of the per-pixel mean.", default=3)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)
    minInputs = Field[int](doc="Fewest inputs accepted.", default=1)

    def setDefaults(self):
        super().setDefaults()
        self.isr.doBias = True
        # As eoBias is built (no parallel overscan): see check_bias_parallel_overscan.
        self.isr.doParallelOverscan = False


class EoFlatTask(PipelineTask):
    """Combine raw flats into ``eoFlat``: each normalised by its detector median, clipped mean.

    The normalisation removes the source's exposure-to-exposure flux changes; amplifier gain
    differences are kept (as in cp_pipe's flats, which are not gain-flattened per amplifier), so
    defect and tearing analyses work per amplifier relative to its own level.
    """

    ConfigClass = EoFlatConfig
    _DefaultName = "eoFlat"
    config: EoFlatConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def _cosmic_rays(self, image: np.ndarray) -> np.ndarray:
        """Cosmic-ray mask of one processed dark (before scaling by its dark time)."""
        cfg = self.config
        # The noise from a regular subsample: 1/16 of the pixels gives it to 0.3%.
        sigma = clipped_stats(image[::4, ::4]).stdev
        return find_cosmic_rays(image, sigma, psf_fwhm=cfg.crPsfFwhm, min_sigma=cfg.crMinSigma,
                                min_flux=cfg.crMinFlux, grow=cfg.crGrow)  # fmt: skip

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = butlerQC.get(inputRefs.raws)
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        detector = _detector(outputRefs.flat.dataId["detector"])
        butlerQC.put(self.run(handles, detector, bias=bias), outputRefs)

    def run(self, raws: Sequence[Any], detector: DetectorInfo, bias: MaskedImage | None = None) -> Struct:
        """Combine flats.

        Parameters
        ----------
        raws : sequence
            Handles of the raw flats.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias (if ``isr.doBias``).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``flat``: `lsst.images.MaskedImage`, normalised.
        """
        if len(raws) < self.config.minInputs:
            raise NoWorkFound(f"{len(raws)} flat(s) for {detector.name}; need {self.config.minInputs}")
        check_bias_parallel_overscan(bias, self.config.isr.doParallelOverscan, "eoFlat")
        bias_amps = amp_views(bias, detector)
        inherited = metadata_amp_flags(bias.metadata) if bias is not None else {}
        means, variances, counts = {}, {}, {}
        flags: dict[str, int] = {}
        levels: np.ndarray | None = None
        buffers: dict[int, np.ndarray] = {}
        for group in amp_groups(detector.amp_names, self.config.ampsPerRead):
            exposures = read_amp_group(raws, group)
            for amp in group:
                flags[amp] = _input_flags(exposures, amp, inherited)
                if flags[amp]:
                    means[amp], variances[amp], counts[amp] = _flagged_stack(exposures[0][amp].data.shape)
            good = [amp for amp in group if not flags[amp]]
            if not good:
                continue
            images = {}
            for slot, amp in enumerate(good):
                images[amp] = buffers[slot] = _stack_buffer(
                    buffers.get(slot), len(exposures), exposures[0][amp].data.shape
                )
                for image, raw in zip(images[amp], exposures, strict=True):
                    self.isr.image_into(raw[amp], image, bias=None if bias_amps is None else bias_amps[amp])
            if levels is None:
                # Each flat's level (source flux), from a subsample of the first good amplifiers read;
                # it is common to all amplifiers, so memory never holds more than one group.
                levels = np.median(
                    [[float(np.median(img[::8, ::8])) for img in images[amp]] for amp in good], axis=0
                )
                if np.any(~np.isfinite(levels)) or np.any(levels <= 0):
                    raise ValueError(f"A flat of {detector.name} has a non-positive level: {levels}")
            for amp in good:
                stack = images.pop(amp)
                for image, level in zip(stack, levels, strict=True):
                    np.divide(image, np.float32(level), out=image)
                means[amp], variances[amp], counts[amp] = clipped_mean_stack(
                    stack, self.config.nSigmaClip, self.config.nIter
                )
        if levels is None:
            raise ValueError(f"Every amplifier of {detector.name} is flagged: {describe_flagged(flags)}")
        metadata = {
            "OBSTYPE": "FLAT",
            "UNITS": "",
            "NINPUTS": len(raws),
            "DETECTOR": detector.id,
            "DET_NAME": detector.name,
            "LEVEL_MEDIAN_ADU": float(np.median(levels)),
            FLAGS_METADATA_KEY: encode_amp_flags(flags),
        }
        if any(flags.values()):
            self.log.warning(
                "%s: amplifier(s) %s masked BAD in eoFlat", detector.name, describe_flagged(flags)
            )
        self.log.info(
            "Combined %d flats for %s (median level %.0f adu)", len(raws), detector.name, np.median(levels)
        )
        return Struct(flat=make_calib_image(detector, means, variances, counts, metadata))


def _detector(detector_id: int) -> DetectorInfo:
    from .camera import get_camera

    return get_camera()[detector_id]
