"""ISR as a reusable subtask: raw amplifier -> calibrated data section, per amplifier.

EO tasks run `EoIsrTask` inside their own quantum (as eo_pipe does for bias stability) instead of
writing post-ISR images: each raw HDU is decompressed once, processed, measured and dropped, which
keeps memory per quantum small and I/O minimal.  Configure it per pipeline as cp_pipe configures its
calibration ISR (overscan only for biases; bias, dark, gains for flats; ...).
"""

from __future__ import annotations

__all__ = ["AmpIsrResult", "EoIsrConfig", "EoIsrTask"]

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from lsst.pex.config import Config, Field
from lsst.pipe.base import Task

from .camera import AmpLayout, DetectorInfo, nominal_amps
from .crosstalk import crosstalk_subtrahend, load_crosstalk
from .isr import (
    OverscanResult,
    apply_parallel_overscan,
    apply_serial_overscan,
    serial_overscan_noise,
    serial_overscan_rows,
)
from .rawdata import RawAmp, RawCcd


@dataclass
class AmpIsrResult:
    """ISR output of one amplifier.

    Attributes
    ----------
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Amplifier geometry.
    corrected : `numpy.ndarray`
        The whole raw amplifier after overscan correction (float32, adu, readout orientation);
        prescan, overscans included, for EPER and overscan statistics.
    image : `numpy.ndarray`
        Data section after all enabled steps (float32, readout orientation), in `units`.
    variance : `numpy.ndarray` or `None`
        Variance of `image` (units squared), if computed.
    mask : `numpy.ndarray`
        True for pixels flagged bad (defects, non-finite values).
    units : `str`
        ``adu`` or ``electron``.
    gain : `float`
        Gain used (e-/adu) for variance/units.
    serial : `~lsst.eo.baseline.isr.OverscanResult` or `None`
        Serial overscan fit.
    parallel : `~lsst.eo.baseline.isr.OverscanResult` or `None`
        Parallel overscan fit.
    """

    layout: AmpLayout
    corrected: np.ndarray
    image: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    units: str
    gain: float
    serial: OverscanResult | None
    parallel: OverscanResult | None

    @property
    def name(self) -> str:
        """Amplifier name."""
        return self.layout.name

    @property
    def read_noise_adu(self) -> float:
        """cp_pipe's read-noise estimate: clipped stdev of the corrected serial overscan (adu)."""
        return self.serial.residual_stdev if self.serial is not None else np.nan


class EoIsrConfig(Config):
    """Configuration of `EoIsrTask` (defaults: overscan-only calibration ISR, in adu)."""

    doSerialOverscan = Field[bool](doc="Subtract the serial overscan level row by row.", default=True)
    serialLeadingToSkip = Field[int](doc="Serial-overscan columns skipped next to the data.", default=3)
    serialTrailingToSkip = Field[int](doc="Serial-overscan columns skipped at the far end.", default=3)
    serialMaxDeviation = Field[float](
        doc="Serial-overscan pixels this far (adu) from the overscan median are masked.", default=1000.0
    )
    serialNSigmaClip = Field[float](doc="Per-row outlier rejection threshold (robust sigma).", default=3.0)
    doParallelOverscan = Field[bool](
        doc="Subtract the parallel overscan level column by column.", default=True
    )
    parallelLeadingToSkip = Field[int](doc="Parallel-overscan rows skipped next to the data.", default=3)
    parallelTrailingToSkip = Field[int](doc="Parallel-overscan rows skipped at the top.", default=3)
    parallelMaxDeviation = Field[float](
        doc="Parallel-overscan pixels this far (adu) above the median are masked.", default=100.0
    )
    parallelSaturationLevel = Field[float](
        doc="Parallel-overscan pixels at or above this (adu) are masked, grown by 7 pixels.", default=20000.0
    )
    doBias = Field[bool](doc="Subtract a combined bias (adu, before gains).", default=False)
    doApplyGains = Field[bool](doc="Convert the image to electrons with the amplifier gains.", default=False)
    doDark = Field[bool](
        doc="Subtract a combined dark (adu/s) scaled by DARKTIME, in adu (before gains).", default=False
    )
    doDefects = Field[bool](doc="Mask defects passed to run().", default=False)
    doVariance = Field[bool](doc="Compute the variance plane.", default=False)
    doCrosstalk = Field[bool](
        doc="Subtract intra-CCD crosstalk with the detector's LSSTCam matrix (all amplifiers of the CCD "
        "at once: callers use run_ccd or correct_crosstalk).  Off here as in cp_pipe's calibration "
        "baseline; turned on per pipeline where cp_pipe's LSSTCam ISR has it on.",
        default=False,
    )
    doCrosstalkSquared = Field[bool](
        doc="Also subtract the quadratic crosstalk term (cp_pipe: final bias/dark/flat only, not the PTC).",
        default=False,
    )


class EoIsrTask(Task):
    """Instrument signature removal of raw amplifiers (see `lsst.eo.baseline.isr`)."""

    ConfigClass = EoIsrConfig
    _DefaultName = "isr"
    config: EoIsrConfig

    def run_amp(
        self,
        amp: RawAmp,
        *,
        gain: float = 1.0,
        dark_time: float = 0.0,
        bias: np.ndarray | None = None,
        dark: np.ndarray | None = None,
        defects: np.ndarray | None = None,
    ) -> AmpIsrResult:
        """Process one raw amplifier.

        Parameters
        ----------
        amp : `~lsst.eo.baseline.rawdata.RawAmp`
            Raw amplifier.
        gain : `float`
            Gain (e-/adu), used for ``doApplyGains`` and the variance.
        dark_time : `float`
            DARKTIME of the exposure (s).
        bias : `numpy.ndarray`, optional
            Combined bias of this amplifier's data section (adu, readout orientation).
        dark : `numpy.ndarray`, optional
            Combined dark of this amplifier's data section (adu/s, readout orientation).
        defects : `numpy.ndarray` of `bool`, optional
            Defect mask of the data section (readout orientation).

        Returns
        -------
        result : `AmpIsrResult`
        """
        cfg = self.config
        layout = amp.layout
        work = amp.array.astype(np.float32)
        serial = parallel = None
        if cfg.doSerialOverscan:
            serial = apply_serial_overscan(
                work,
                layout,
                leading=cfg.serialLeadingToSkip,
                trailing=cfg.serialTrailingToSkip,
                max_deviation=cfg.serialMaxDeviation,
                nsig=cfg.serialNSigmaClip,
            )
        if cfg.doParallelOverscan:
            parallel = apply_parallel_overscan(
                work,
                layout,
                leading=cfg.parallelLeadingToSkip,
                trailing=cfg.parallelTrailingToSkip,
                max_deviation=cfg.parallelMaxDeviation,
                saturation=cfg.parallelSaturationLevel,
            )
        d = layout.raw.data_bbox
        image = work[d.y.start : d.y.stop, d.x.start : d.x.stop].copy()
        if cfg.doBias:
            if bias is None:
                raise ValueError(f"doBias is set but no bias was given for amplifier {layout.name}")
            image -= bias
        if cfg.doDark:
            if dark is None:
                raise ValueError(f"doDark is set but no dark was given for amplifier {layout.name}")
            # The dark is in adu/s (a bootstrap dark): subtracted before any gain is applied.
            image -= dark * np.float32(dark_time)
        units = "adu"
        scale = 1.0
        if cfg.doApplyGains:
            image *= gain
            units = "electron"
        else:
            scale = 1.0 / gain  # electrons -> image units
        mask = ~np.isfinite(image)
        if cfg.doDefects and defects is not None:
            mask |= defects
        variance = None
        if cfg.doVariance:
            read_noise_e = (serial.residual_stdev if serial is not None else 0.0) * gain
            signal_e = np.clip(image / scale, 0.0, None)
            variance = (signal_e + read_noise_e**2) * scale**2
        return AmpIsrResult(
            layout=layout,
            corrected=work,
            image=image,
            variance=variance,
            mask=mask,
            units=units,
            gain=gain,
            serial=serial,
            parallel=parallel,
        )

    @staticmethod
    def crosstalk_gains(raw: RawCcd) -> dict[str, float]:
        """Gains (e-/adu) that convert adu images for the crosstalk matrix (its ratios are in e-).

        The camera-model gains: cp_pipe's bootstrap ISR uses the gains stored with its matrices,
        which are camera-level values too, not the run's PTC.
        """
        return {a: v.gain for a, v in nominal_amps(raw.detector.name).items()}

    def correct_crosstalk(
        self,
        images: Mapping[str, np.ndarray],
        detector: DetectorInfo,
        gains: Mapping[str, float] | None = None,
        sources: Mapping[str, np.ndarray] | None = None,
    ) -> bool:
        """Subtract intra-CCD crosstalk from the data sections of all amplifiers of a CCD (in place).

        cp_pipe's LSSTCam ISR subtracts ``coeffs[s, t] x source`` (electron ratios; gains convert
        adu) from every target, the source flipped to the target's readout orientation: here every
        image is already in readout orientation, so the same pixel ``[y, x]`` is used.  ip_isr
        does it on the whole raw amplifiers between the serial and the parallel overscan
        corrections; here on the data sections after the per-amplifier steps (the overscans and the
        bias/dark levels carry no signal: their crosstalk is ~1e-4 of a few adu).

        Parameters
        ----------
        images : mapping [`str`, `numpy.ndarray`]
            Data sections of every amplifier of the CCD by name (readout orientation), as
            `run_amp` returns them; modified in place.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            The detector (its matrix, `lsst.eo.baseline.crosstalk.load_crosstalk`).
        gains : mapping [`str`, `float`], optional
            Gains (e-/adu) if the images are in adu; `None` for images in electrons.
        sources : mapping [`str`, `numpy.ndarray`], optional
            Source images if not ``images`` themselves (e.g. zeros for amplifiers flagged bad, which
            ip_isr leaves out as sources).

        Returns
        -------
        corrected : `bool`
            False if ``doCrosstalk`` is off or the detector has no matrix.
        """
        if not self.config.doCrosstalk:
            return False
        matrix = load_crosstalk(detector)
        if matrix is None:
            self.log.warning("No crosstalk matrix for detector %s: not corrected", detector.name)
            return False
        missing = [a for a in matrix.amp_names if a not in images]
        if missing:
            raise ValueError(
                f"Crosstalk correction of {detector.name} needs every amplifier; missing {missing}"
            )
        stack = np.stack([(images if sources is None else sources)[a] for a in matrix.amp_names])
        bad = ~np.isfinite(stack)
        if bad.any():
            stack[bad] = 0.0  # a non-finite source pixel must not poison its targets
        ghost = crosstalk_subtrahend(stack, matrix, gains, quadratic=self.config.doCrosstalkSquared)
        for k, a in enumerate(matrix.amp_names):
            images[a] -= ghost[k]
        return True

    def run_ccd(
        self,
        raw: RawCcd,
        *,
        gains: Mapping[str, float] | None = None,
        bias: Mapping[str, np.ndarray] | None = None,
        dark: Mapping[str, np.ndarray] | None = None,
        defects: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, AmpIsrResult]:
        """`run_amp` on every amplifier of ``raw``, then the CCD-level crosstalk correction.

        Parameters
        ----------
        raw : `~lsst.eo.baseline.rawdata.RawCcd`
            Raw exposure (all amplifiers if ``doCrosstalk``).
        gains : mapping [`str`, `float`], optional
            Gains by amplifier for ``doApplyGains`` (default 1: adu); in adu, the crosstalk
            correction converts with `crosstalk_gains`.
        bias, dark, defects : mapping [`str`, `numpy.ndarray`], optional
            Per-amplifier calibrations, as for `run_amp`.

        Returns
        -------
        results : `dict` [`str`, `AmpIsrResult`]
            By amplifier name, in ``raw`` order.
        """
        results = {
            a: self.run_amp(
                raw[a],
                gain=1.0 if gains is None else gains[a],
                dark_time=raw.dark_time,
                bias=None if bias is None else bias[a],
                dark=None if dark is None else dark[a],
                defects=None if defects is None else defects[a],
            )
            for a in raw
        }
        # The variance planes are left as they are: crosstalk moves ~1e-7 of the sources' variance.
        in_adu = not self.config.doApplyGains
        xt_gains = (dict(gains) if gains is not None else self.crosstalk_gains(raw)) if in_adu else None
        self.correct_crosstalk({a: r.image for a, r in results.items()}, raw.detector, xt_gains)
        return results

    def transient_image(self, amp: RawAmp, **kwargs: Any) -> np.ndarray:
        """`image_into` a buffer owned by the task, for callers that measure an image and drop it.

        The returned array is overwritten by the next call: reusing one buffer saves the page
        faults of a fresh 4 MB array per amplifier.

        Parameters
        ----------
        amp : `~lsst.eo.baseline.rawdata.RawAmp`
            Raw amplifier.
        **kwargs
            As for `image_into`.
        """
        shape = tuple(amp.layout.raw.data_bbox.shape)
        buffer = getattr(self, "_transient", None)
        if buffer is None or buffer.shape != shape:
            buffer = self._transient = np.empty(shape, dtype=np.float32)
        return self.image_into(amp, buffer, **kwargs)

    def serial_rows(self, amp: RawAmp) -> np.ndarray:
        """Per-row serial overscan level of a raw amplifier (adu, all rows), as `run_amp` fits it."""
        cfg = self.config
        so = amp.layout.raw.serial_overscan_bbox
        return serial_overscan_rows(
            amp.array[:, so.x.start : so.x.stop],
            cfg.serialLeadingToSkip,
            cfg.serialTrailingToSkip,
            cfg.serialMaxDeviation,
            cfg.serialNSigmaClip,
        )

    def read_noise_adu(self, amp: RawAmp, rows: np.ndarray | None = None) -> float:
        """cp_pipe's read-noise estimate of a raw amplifier (``run_amp(amp).read_noise_adu``).

        Parameters
        ----------
        amp : `~lsst.eo.baseline.rawdata.RawAmp`
            Raw amplifier.
        rows : `numpy.ndarray`, optional
            Per-row serial overscan levels from `serial_rows` (fitted here if not given).
        """
        cfg = self.config
        if not cfg.doSerialOverscan:
            return np.nan
        return serial_overscan_noise(
            amp.array,
            amp.layout,
            cfg.serialLeadingToSkip,
            cfg.serialTrailingToSkip,
            cfg.serialMaxDeviation,
            cfg.serialNSigmaClip,
            rows=rows,
        )

    def image_into(
        self,
        amp: RawAmp,
        out: np.ndarray,
        *,
        gain: float = 1.0,
        dark_time: float = 0.0,
        bias: np.ndarray | None = None,
        dark: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        data_rows: slice = slice(None),
    ) -> np.ndarray:
        """Write the ISR-corrected data section of one amplifier into ``out``.

        Same image as ``run_amp(...).image`` for the same arguments (to float32 rounding), for
        callers that only need the image, such as calibration stacks: the raw integers are
        converted and overscan corrected in one step straight into the caller's buffer, without
        the whole-amplifier copy, overscan statistics, mask and variance of `run_amp`.

        Parameters
        ----------
        amp : `~lsst.eo.baseline.rawdata.RawAmp`
            Raw amplifier.
        out : `numpy.ndarray`
            Float32 array of the shape of the data section (or of its ``data_rows``), overwritten.
        gain, dark_time, bias, dark
            As for `run_amp` (the whole data section's calibrations).
        rows : `numpy.ndarray`, optional
            Per-row serial overscan levels from `serial_rows` (fitted here if not given).
        data_rows : `slice`, optional
            Only these rows of the data section (e.g. every 4th row, for statistics of a subsample).

        Returns
        -------
        out : `numpy.ndarray`
            The filled ``out``.
        """
        cfg = self.config
        if cfg.doParallelOverscan:
            # The parallel level is measured on the serial-corrected overscan rows: take the full path.
            image = self.run_amp(amp, gain=gain, dark_time=dark_time, bias=bias, dark=dark).image
            np.copyto(out, image[data_rows])
            return out
        d = amp.layout.raw.data_bbox
        data = amp.array[d.y.start : d.y.stop, d.x.start : d.x.stop][data_rows]
        if cfg.doSerialOverscan:
            if rows is None:
                rows = self.serial_rows(amp)
            level = rows[d.y.start : d.y.stop][data_rows, None].astype(np.float32)
            # float32 arithmetic, as run_amp's in-place subtraction (raw counts are exact in float32).
            np.subtract(data, level, out=out, dtype=np.float32)
        else:
            np.copyto(out, data, casting="unsafe")
        if cfg.doBias:
            if bias is None:
                raise ValueError(f"doBias is set but no bias was given for amplifier {amp.layout.name}")
            out -= bias[data_rows]
        if cfg.doDark:
            if dark is None:
                raise ValueError(f"doDark is set but no dark was given for amplifier {amp.layout.name}")
            scratch = getattr(self, "_dark_scratch", None)
            if scratch is None or scratch.shape != out.shape:
                scratch = self._dark_scratch = np.empty(out.shape, dtype=np.float32)
            # adu/s x DARKTIME, in adu, as run_amp (before the gains).
            np.multiply(dark[data_rows], np.float32(dark_time), out=scratch)
            out -= scratch
        if cfg.doApplyGains:
            out *= gain
        return out
