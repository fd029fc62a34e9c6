"""Read noise per amplifier from bias exposures: serial overscan and imaging area.

* Headline ``read_noise_adu`` / ``read_noise_e``: eo_pipe's estimator (``eo_pipe.md`` 9.1,
  ``readNoiseTask.py::ReadNoiseTask.run``).  Per bias and amplifier: the raw serial overscan over the
  data rows, shrunk by ``edgeBuffer`` (2) pixels on every side; ``nBoxes`` (100) boxes of
  ``boxSize`` (20) pixels square at uniformly drawn positions; the unclipped standard deviation
  (n - 1) of each box; the median over boxes.  The per-amplifier value is the median over all the
  biases (eo_pipe's focal-plane reduction); the per-exposure values are in ``eoReadNoiseExposures``.
  Deliberate difference: the box positions come from a seeded generator (``samplerSeed``, recorded
  in the table metadata) instead of eo_pipe's unseeded ``np.random``, so results are reproducible;
  the expectation is unchanged.  eo_pipe's optional rebinning (``bin_size`` > 1) is not provided.
* cp_pipe's estimator (``read_noise_overscan_adu`` / ``_e``), the 3-sigma clipped standard
  deviation of the whole serial overscan after per-row overscan subtraction
  (``LSST ISR OVERSCAN RESIDUAL SERIAL STDEV``), median over the exposures.
* Imaging-area read noise: clipped standard deviation of the difference of two consecutive raw
  biases, each row's mean removed, divided by sqrt(2).  The difference removes the fixed bias
  structure of the imaging area and the row means remove per-exposure row offsets and drifts,
  leaving the temporal pixel noise.

Amplifiers that are all zero, saturated or dead in any bias get NaN values and a non-zero
``flags`` column (`lsst.eo.baseline.ampFlags`).

Deliberate deviation from cp_pipe: a 3-sigma, 3-pass clipped standard deviation of Gaussian noise
is 1.5% below its sigma; both of our clipped estimators are divided by that expected factor
(`~lsst.eo.baseline.afwstats.gaussian_clip_factor`), as cp_pipe itself corrects its PTC variances
for clipping.

Values are in adu and in electrons, converted with the run's PTC gains (``eoPtc``, a prerequisite:
the read noise is measured after the PTC step), or the camera-model gains for an amplifier without
a usable PTC gain (`lsst.eo.baseline.runGains`); ``gain_e_per_adu`` and ``gain_source`` (``PTC`` or
``CAMERA``) say which, per amplifier.
"""

from __future__ import annotations

__all__ = [
    "EoReadNoiseConfig",
    "EoReadNoiseConnections",
    "EoReadNoiseTask",
    "box_stdevs",
    "eo_pipe_read_noise",
    "overscan_sampling_region",
    "pair_difference_noise",
    "sampler_rng",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats, gaussian_clip_factor
from .ampFlags import apply_amp_flags, describe_flagged, nan_median, raw_amp_flags
from .ampStream import amp_groups, exposure_id_of, read_amp_group
from .calibInputs import SwitchedCalibConnections, ptc_prerequisite, raw_exposures
from .camera import AmpLayout, DetectorInfo, get_camera
from .isr import serial_overscan_noise
from .isrTask import EoIsrTask
from .runGains import RunGains, quantum_gains, run_gains


def overscan_sampling_region(amp: np.ndarray, layout: AmpLayout, edge_buffer: int = 2) -> np.ndarray:
    """eo_pipe's read-noise region: the raw serial overscan over the data rows, shrunk on all sides.

    Parameters
    ----------
    amp : `numpy.ndarray`
        Whole raw amplifier (readout orientation).
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Geometry; ``layout.raw.serial_overscan_bbox`` spans the data rows only (ITL 64 x 2000, e2v
        54 x 2002), as afw's ``getRawSerialOverscanBBox``.
    edge_buffer : `int`, optional
        Pixels removed at each of the four edges (afw ``Box2I.grow(-edge_buffer)``).

    Returns
    -------
    region : `numpy.ndarray`
        View of the raw pixels (ITL 60 x 1996, e2v 50 x 1998 for ``edge_buffer`` = 2).
    """
    so = layout.raw.serial_overscan_bbox
    b = edge_buffer
    region = amp[so.y.start + b : so.y.stop - b, so.x.start + b : so.x.stop - b]
    if region.size == 0:
        raise ValueError(
            f"Amplifier {layout.name}: serial overscan {so} is empty after an edge buffer of {b}"
        )
    return region


def sampler_rng(seed: int, exposure: int, amp_index: int) -> np.random.Generator:
    """Generator of the box positions of one exposure and amplifier (independent of processing order)."""
    return np.random.default_rng(np.random.SeedSequence([seed, exposure, amp_index]))


def box_stdevs(
    region: np.ndarray, rng: np.random.Generator, n_boxes: int = 100, box_size: int = 20
) -> np.ndarray:
    """Unclipped standard deviations (n - 1) of randomly placed square boxes of a region.

    The lower-left corner of each box is drawn as eo_pipe's ``SubRegionSampler`` draws it,
    ``np.random.randint(minX, maxX - box_size)`` (upper end exclusive), i.e. uniformly among the
    ``width - box_size - 1`` offsets 0 ... width - box_size - 2 (likewise in y): a box never reaches
    the region's last column or row.

    Parameters
    ----------
    region : `numpy.ndarray`
        Pixels ``[y, x]``.
    rng : `numpy.random.Generator`
        Source of the box positions.
    n_boxes, box_size : `int`, optional
        Number and side of the boxes.

    Returns
    -------
    stdevs : `numpy.ndarray`
        One value per box (float64).
    """
    ny, nx = region.shape
    if nx - box_size - 1 < 1 or ny - box_size - 1 < 1:
        raise ValueError(f"Region {region.shape} too small for {box_size} x {box_size} boxes")
    x0 = rng.integers(0, nx - box_size - 1, size=n_boxes)
    y0 = rng.integers(0, ny - box_size - 1, size=n_boxes)
    offsets = np.arange(box_size)
    # (n_boxes, box_size, box_size) gather: 40k pixels, no Python loop over boxes.
    boxes = region[(y0[:, None] + offsets)[:, :, None], (x0[:, None] + offsets)[:, None, :]]
    return np.std(boxes.reshape(n_boxes, -1).astype(np.float64), axis=1, ddof=1)


def eo_pipe_read_noise(
    region: np.ndarray, rng: np.random.Generator, n_boxes: int = 100, box_size: int = 20
) -> tuple[float, float]:
    """eo_pipe's read noise and bias level of one overscan region (same units as ``region``).

    Returns
    -------
    read_noise, bias_level : `float`
        Median over boxes of the box standard deviations (`box_stdevs`), and the median of all
        pixels of the region.
    """
    return float(np.median(box_stdevs(region, rng, n_boxes, box_size))), float(np.median(region))


def pair_difference_noise(image1: np.ndarray, image2: np.ndarray, nsig: float = 3.0) -> float:
    """Temporal pixel noise of one image from the difference of two exposures.

    ``clipped stdev(D - row means of D) / sqrt(2) / clip factor`` with ``D = image1 - image2``.
    """
    diff = np.asarray(image1, dtype=np.float32) - np.asarray(image2, dtype=np.float32)
    # Row means (cheaper than medians; bias frames have no outliers that matter here) remove
    # per-exposure row offsets and any level difference.
    diff -= diff.mean(axis=1, dtype=np.float64)[:, None].astype(np.float32)
    return clipped_stats(diff, nsig=nsig).stdev / np.sqrt(2.0) / gaussian_clip_factor(nsig, 3)


class EoReadNoiseConnections(SwitchedCalibConnections):
    """Connections of `EoReadNoiseTask`."""

    raws = raw_exposures("Raw bias exposures of one detector.")
    ptc = ptc_prerequisite()
    readNoise = cT.Output(
        name="eoReadNoise",
        doc="Read noise per amplifier (adu and e-), from the serial overscan and the imaging area.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    readNoiseExposures = cT.Output(
        name="eoReadNoiseExposures",
        doc="eo_pipe's read noise and bias level per bias exposure and amplifier (adu and e-).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoReadNoiseConfig(PipelineTaskConfig, pipelineConnections=EoReadNoiseConnections):
    """Configuration of `EoReadNoiseTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan only, adu).")
    nSigmaClip = Field[float](doc="Clipping threshold of the imaging-area noise.", default=3.0)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)
    maxExposures = Field[int](doc="Use at most this many biases (0: all).", default=0)
    edgeBuffer = Field[int](
        doc="Pixels removed at each edge of the serial overscan (eo_pipe edge_buffer).", default=2
    )
    nBoxes = Field[int](doc="Boxes sampled per overscan (eo_pipe nsamp).", default=100)
    boxSize = Field[int](doc="Side (pixels) of the sampled boxes (eo_pipe dxy).", default=20)
    samplerSeed = Field[int](
        doc="Seed of the box positions (mixed with the exposure id and amplifier index).", default=20261202
    )


class EoReadNoiseTask(PipelineTask):
    """Measure the read noise of every amplifier of a detector from its biases."""

    ConfigClass = EoReadNoiseConfig
    _DefaultName = "eoReadNoise"
    config: EoReadNoiseConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        detector = get_camera()[outputRefs.readNoise.dataId["detector"]]
        gains = quantum_gains(butlerQC, inputRefs, detector)
        butlerQC.put(self.run(handles, detector, gains), outputRefs)

    def run(self, raws: Sequence[Any], detector: DetectorInfo, gains: RunGains | None = None) -> Struct:
        """Measure read noise.

        Parameters
        ----------
        raws : sequence
            Handles of raw biases, in acquisition order.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        gains : `~lsst.eo.baseline.runGains.RunGains`, optional
            Gains (e-/adu) and their sources; default: `~lsst.eo.baseline.runGains.run_gains`
            without a PTC (camera-model gains).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``readNoise``: `astropy.table.Table`, one row per amplifier (``read_noise_adu`` /
            ``read_noise_e``: eo_pipe's estimator, median over the biases; ``read_noise_overscan_*``:
            cp_pipe's residual-overscan estimator; ``read_noise_image_*``: pair differences;
            ``gain_source``: where ``gain_e_per_adu`` comes from, ``PTC`` or ``CAMERA``).
            ``readNoiseExposures``: eo_pipe's per exposure x amplifier values.
        """
        if self.config.maxExposures > 0:
            raws = raws[: self.config.maxExposures]
        if not raws:
            raise NoWorkFound(f"No bias for {detector.name}")
        cfg = self.config
        if gains is None:
            gains = run_gains(detector)
        amp_index = {a: i for i, a in enumerate(detector.amp_names)}
        rows = []
        exposure_rows = []
        flags: dict[str, int] = {}
        for group in amp_groups(detector.amp_names, cfg.ampsPerRead):
            exposures = read_amp_group(raws, group)
            ids = [exposure_id_of(h, r) for h, r in zip(raws, exposures, strict=True)]
            for amp in group:
                g = gains.gains[amp]
                gain_source = gains.sources[amp]
                bad = 0
                for r in exposures:
                    bad |= raw_amp_flags(r[amp])
                if bad:
                    flags[amp] = bad
                    rows.append((amp, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, g,
                                 gain_source, len(exposures), 0))  # fmt: skip
                    exposure_rows.extend((e, amp, np.nan, np.nan, np.nan, g, gain_source) for e in ids)
                    continue
                # eo_pipe's estimator on the raw (uncorrected) overscan of every bias.
                eo = np.array(
                    [
                        eo_pipe_read_noise(
                            overscan_sampling_region(r[amp].array, r[amp].layout, cfg.edgeBuffer),
                            sampler_rng(cfg.samplerSeed, e, amp_index[amp]), cfg.nBoxes, cfg.boxSize,
                        )
                        for e, r in zip(ids, exposures, strict=True)
                    ]
                )  # fmt: skip
                exposure_rows.extend(
                    (e, amp, float(v), float(v) * g, float(b), g, gain_source)
                    for e, (v, b) in zip(ids, eo, strict=True)
                )
                isr_cfg = cfg.isr
                # cp_pipe's estimator (clipped at 3 sigma, 3 passes), corrected for the clipping.
                overscan = np.array(
                    [
                        serial_overscan_noise(r[amp].array, r[amp].layout, isr_cfg.serialLeadingToSkip,
                                              isr_cfg.serialTrailingToSkip, isr_cfg.serialMaxDeviation,
                                              isr_cfg.serialNSigmaClip)
                        for r in exposures
                    ]
                ) / gaussian_clip_factor(3.0, 3)  # fmt: skip
                image = np.array(
                    [
                        pair_difference_noise(exposures[i][amp].data, exposures[i + 1][amp].data,
                                              cfg.nSigmaClip)
                        for i in range(0, len(exposures) - 1, 2)
                    ]
                )  # fmt: skip
                eo_med = float(np.median(eo[:, 0]))
                os_med = float(np.median(overscan))
                im_med = float(np.median(image)) if image.size else np.nan
                os_scatter = float(np.std(overscan, ddof=1)) if overscan.size > 1 else np.nan
                rows.append(
                    (amp, eo_med, eo_med * g, os_med, os_med * g, os_scatter, im_med, im_med * g, g,
                     gain_source, len(exposures), image.size)
                )  # fmt: skip
        rows.sort(key=lambda r: amp_index[r[0]])
        table = Table(
            rows=rows,
            names=(
                "amp", "read_noise_adu", "read_noise_e", "read_noise_overscan_adu",
                "read_noise_overscan_e", "read_noise_overscan_scatter_adu", "read_noise_image_adu",
                "read_noise_image_e", "gain_e_per_adu", "gain_source", "n_exposures", "n_pairs",
            ),
        )  # fmt: skip
        per_exposure = Table(
            rows=exposure_rows,
            names=("exposure", "amp", "read_noise_adu", "read_noise_e", "bias_level_adu", "gain_e_per_adu",
                   "gain_source"),
            dtype=(np.int64, str, np.float64, np.float64, np.float64, np.float64, str),
        )  # fmt: skip
        for t in (table, per_exposure):
            for name in t.colnames:
                if name.endswith("_adu"):
                    t[name].unit = "adu"
                elif name.endswith("_e"):
                    t[name].unit = "electron"
            t["gain_e_per_adu"].unit = "electron/adu"
            t.meta.update(
                {"DETECTOR": detector.id, "DET_NAME": detector.name, **gains.metadata,
                 "SAMPLER_SEED": cfg.samplerSeed, "EDGE_BUFFER": cfg.edgeBuffer, "N_BOXES": cfg.nBoxes,
                 "BOX_SIZE": cfg.boxSize}
            )  # fmt: skip
        apply_amp_flags(table, flags, required=["read_noise_adu"], skip=["gain_e_per_adu"])
        flagged = dict(zip(table["amp"], table["flags"], strict=True))
        if any(flagged.values()):
            self.log.warning("%s: read noise not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flagged))  # fmt: skip
        if gains.camera_amps:
            self.log.warning("%s: no usable PTC gain for amplifier(s) %s: camera-model gains used",
                             detector.name, ", ".join(gains.camera_amps))  # fmt: skip
        self.log.info(
            "%s: median read noise %.2f e- (eo_pipe estimator, %s gains) over %d biases",
            detector.name,
            nan_median(table["read_noise_e"]),
            gains.summary,
            len(raws),
        )
        return Struct(readNoise=table, readNoiseExposures=per_exposure)
