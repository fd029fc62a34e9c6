"""Bias stability: bias level and structure per exposure and amplifier, and their drift over a run.

Per exposure and amplifier (adu):

* ``level_adu``: 3-sigma clipped mean of the raw serial overscan (data rows, 3 leading and trailing
  columns skipped) -- the bias level itself, whose changes are the instability;
* ``level_median_adu``: median of the same pixels;
* ``residual_mean_adu``/``residual_stdev_adu``: clipped mean and stdev of the imaging area after
  serial overscan correction (what an overscan-corrected bias frame leaves);
* ``row_structure_adu``/``column_structure_adu``: clipped stdev of the row means / column means of
  the corrected imaging area (1-d bias structure);
* ``corner_mean_adu``: mean of the corrected ``cornerSize`` x ``cornerSize`` pixels next to the output
  node, where start-of-readout transients show up.

eo_pipe's per exposure x amplifier columns (``eo_pipe.md`` 9.2, ``biasStabilityTask.py``), on the
same ISR as eo_pipe (serial overscan MEDIAN_PER_ROW skipping 4 columns at each end, no parallel
overscan, no bias frame; adu):

* ``mean_adu``, ``stdev_adu``: afw MEANCLIP / STDEVCLIP with a 10-sigma clip (3 passes) of the
  whole trimmed amplifier;
* ``rc_mean_adu``, ``rc_stdev_adu``: the same on the ``cornerSize`` (200) pixel square at the
  readout corner (`readout_corner_slices`).  Deliberate difference: eo_pipe starts the box of a
  flipped amplifier at maxX - 200 (inclusive maxX), one pixel short of the corner; ours starts at
  maxX - 199 so that it contains the first pixel read;
* ``dayobs``, ``run``, ``mjd_header`` (header DAYOBS, RUNNUM, MJD as eo_pipe writes them) and
  ``eo_pipe_selected``: True for the exposures eo_pipe's bias-stability query selects
  (``observation_reason`` in ``eoPipeReasons``, i.e. TESTTYPE ``bias_stability``).  Every bias
  is measured; select on that column to reproduce eo_pipe's table.

Per amplifier over the run (ours, not eo_pipe's: eo_pipe stores no scalar): mean level, drift
(slope of a straight-line fit of ``level_adu`` versus time, times the time span), peak-to-peak,
and scatter about the fit.  Clipped means are used rather than medians because raw counts are
integers: a median of integers moves in 0.5 adu steps.
Amplifiers all zero, saturated or dead in any bias have NaN summary values and a non-zero
``flags`` column (`lsst.eo.baseline.ampFlags`).
"""

from __future__ import annotations

__all__ = [
    "EoBiasStabilityConfig",
    "EoBiasStabilityConnections",
    "EoBiasStabilityTask",
    "eo_pipe_bias_stats",
    "readout_corner_slices",
    "summarize_levels",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field, ListField
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, nan_median, raw_amp_flags
from .ampStream import amp_groups, exposure_id_of, read_amp_group
from .camera import DetectorInfo, get_camera
from .headerValues import exposure_mjd
from .isrTask import EoIsrTask
from .overscan import serial_overscan_fit_region


def readout_corner_slices(
    shape: tuple[int, int], flip_x: bool, flip_y: bool, size: int = 200
) -> tuple[slice, slice]:
    """Box of ``size`` x ``size`` pixels at the readout corner of an amplifier in the assembled CCD.

    The raw amplifier is read from its lower-left pixel; assembly flips it in x and/or y
    (``flip_x``/``flip_y`` from the camera layout), which moves the first pixel read to the
    maximum edge in that direction.  The box always contains that pixel.

    Parameters
    ----------
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of the trimmed amplifier.
    flip_x, flip_y : `bool`
        Assembly flips of the amplifier.
    size : `int`, optional
        Side of the box.

    Returns
    -------
    y, x : `slice`
        Slices of the amplifier's trimmed data in assembled (detector) orientation.
    """
    ny, nx = shape
    if size > min(ny, nx):
        raise ValueError(f"Readout-corner box of {size} pixels does not fit an amplifier of {shape}")
    xs = slice(nx - size, nx) if flip_x else slice(0, size)
    ys = slice(ny - size, ny) if flip_y else slice(0, size)
    return ys, xs


def eo_pipe_bias_stats(
    assembled: np.ndarray, flip_x: bool, flip_y: bool, corner_size: int = 200, nsig: float = 10.0
) -> tuple[float, float, float, float]:
    """eo_pipe's bias-stability statistics of one trimmed amplifier (``image_stats``).

    Parameters
    ----------
    assembled : `numpy.ndarray`
        Overscan-corrected trimmed amplifier in assembled (detector) orientation.
    flip_x, flip_y : `bool`
        Assembly flips (locate the readout corner, `readout_corner_slices`).
    corner_size : `int`, optional
        Side of the readout-corner box.
    nsig : `float`, optional
        Clip of afw MEANCLIP / STDEVCLIP (3 passes).

    Returns
    -------
    mean, stdev, rc_mean, rc_stdev : `float`
        Clipped mean and standard deviation of the whole amplifier and of the corner box.
    """
    whole = clipped_stats(assembled, nsig)
    rc = clipped_stats(assembled[readout_corner_slices(assembled.shape, flip_x, flip_y, corner_size)], nsig)
    return whole.mean, whole.stdev, rc.mean, rc.stdev


def summarize_levels(mjd: np.ndarray, level: np.ndarray) -> dict[str, float]:
    """Drift and scatter of a bias-level time series.

    Parameters
    ----------
    mjd : `numpy.ndarray`
        Exposure times (days).
    level : `numpy.ndarray`
        Bias level per exposure (adu).

    Returns
    -------
    summary : `dict`
        ``mean``, ``drift`` (slope of a linear fit times the time span, adu), ``slope_per_hour``,
        ``peak_to_peak``, ``scatter`` (rms about the linear fit, n - 2 degrees of freedom).
    """
    good = np.isfinite(mjd) & np.isfinite(level)
    t, y = mjd[good], level[good]
    out = {"mean": float(np.mean(y)) if y.size else np.nan,
           "peak_to_peak": float(np.ptp(y)) if y.size else np.nan,
           "drift": np.nan, "slope_per_hour": np.nan, "scatter": np.nan}  # fmt: skip
    if y.size >= 3 and np.ptp(t) > 0:
        hours = (t - t.min()) * 24.0
        slope, intercept = np.polyfit(hours, y, 1)
        resid = y - (slope * hours + intercept)
        out.update(
            drift=float(slope * np.ptp(hours)),
            slope_per_hour=float(slope),
            scatter=float(np.sqrt(np.sum(resid**2) / (y.size - 2))),
        )
    return out


class EoBiasStabilityConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoBiasStabilityTask`."""

    raws = cT.Input(
        name="raw",
        doc="Raw bias exposures of one detector.",
        storageClass="EoRawCcd",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
        deferLoad=True,
    )
    stability = cT.Output(
        name="eoBiasStability",
        doc="Bias level drift and scatter over the run, per amplifier (adu).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    exposures = cT.Output(
        name="eoBiasStabilityExposures",
        doc="Bias level and structure per exposure and amplifier (adu), for time plots.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoBiasStabilityConfig(PipelineTaskConfig, pipelineConnections=EoBiasStabilityConnections):
    """Configuration of `EoBiasStabilityTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan only, adu).")
    cornerSize = Field[int](doc="Side (pixels) of the readout-corner box.", default=200)
    nSigmaClip = Field[float](doc="Clipping threshold of our clipped statistics.", default=3.0)
    eoPipeNSigmaClip = Field[float](
        doc="Clipping threshold of eo_pipe's mean/stdev/rc_mean/rc_stdev (eo_pipe nsigma).", default=10.0
    )
    eoPipeReasons = ListField[str](
        doc="Observation reasons (TESTTYPE, lower case) of the biases eo_pipe's bias stability selects.",
        default=["bias_stability"],
    )
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)

    def setDefaults(self):
        super().setDefaults()
        # eo_pipe's bias-stability ISR: no parallel overscan for biases, serial overscan skipping
        # 4 columns at each end (bps_eoBiasStability.yaml, eoBiasStability.yaml).
        self.isr.doParallelOverscan = False
        self.isr.serialLeadingToSkip = 4
        self.isr.serialTrailingToSkip = 4


class EoBiasStabilityTask(PipelineTask):
    """Measure bias level and structure of every bias of a detector, and their stability."""

    ConfigClass = EoBiasStabilityConfig
    _DefaultName = "eoBiasStability"
    config: EoBiasStabilityConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        detector = get_camera()[outputRefs.stability.dataId["detector"]]
        butlerQC.put(self.run(handles, detector), outputRefs)

    def _exposure_info(self, handle: Any, raw: Any) -> dict[str, Any]:
        header = raw.header
        reason = str(header.get("TESTTYPE", "")).lower()
        mjd = header.get("MJD")
        return {
            "exposure": exposure_id_of(handle, raw),
            "mjd": exposure_mjd(header),
            "mjd_header": float(mjd) if isinstance(mjd, (int, float)) else np.nan,
            "dayobs": str(header.get("DAYOBS", "")),
            "run": str(header.get("RUNNUM", "")),
            "reason": reason,
            "selected": reason in {r.lower() for r in self.config.eoPipeReasons},
        }

    def _measure(self, raw_amp, exposure: dict[str, Any]) -> tuple:
        cfg = self.config
        nsig = cfg.nSigmaClip
        overscan = serial_overscan_fit_region(
            raw_amp, cfg.isr.serialLeadingToSkip, cfg.isr.serialTrailingToSkip
        )
        level = clipped_stats(overscan, nsig)
        img = self.isr.transient_image(raw_amp)
        resid = clipped_stats(img, nsig)
        rows = clipped_stats(img.mean(axis=1, dtype=np.float64), nsig).stdev
        cols = clipped_stats(img.mean(axis=0, dtype=np.float64), nsig).stdev
        c = cfg.cornerSize
        corner = float(np.mean(img[:c, :c], dtype=np.float64))
        # eo_pipe's statistics, in the assembled orientation (the corner box follows the flips).
        layout = raw_amp.layout
        assembled = img[:: -1 if layout.flip_y else 1, :: -1 if layout.flip_x else 1]
        eo = eo_pipe_bias_stats(assembled, layout.flip_x, layout.flip_y, c, cfg.eoPipeNSigmaClip)
        return (exposure["exposure"], exposure["mjd"], exposure["mjd_header"], exposure["dayobs"],
                exposure["run"], exposure["reason"], exposure["selected"], raw_amp.name, level.mean,
                level.median, resid.mean, resid.stdev, rows, cols, corner, *eo)  # fmt: skip

    def run(self, raws: Sequence[Any], detector: DetectorInfo) -> Struct:
        """Measure bias stability.

        Parameters
        ----------
        raws : sequence
            Handles of raw biases.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``stability`` (one row per amplifier) and ``exposures`` (one row per exposure and
            amplifier) `astropy.table.Table` objects.
        """
        if not raws:
            raise NoWorkFound(f"No bias for {detector.name}")
        rows = []
        flags: dict[str, int] = {}
        exposure_info: list[dict[str, Any]] = []
        for group in amp_groups(detector.amp_names, self.config.ampsPerRead):
            exposures = read_amp_group(raws, group)
            if not exposure_info:
                exposure_info = [self._exposure_info(h, r) for h, r in zip(raws, exposures, strict=True)]
            for amp in group:
                for r in exposures:
                    flags[amp] = flags.get(amp, 0) | raw_amp_flags(r[amp])
                rows.extend(
                    self._measure(r[amp], info) for r, info in zip(exposures, exposure_info, strict=True)
                )
        per_exposure = Table(
            rows=rows,
            names=(
                "exposure",
                "mjd",
                "mjd_header",
                "dayobs",
                "run",
                "observation_reason",
                "eo_pipe_selected",
                "amp",
                "level_adu",
                "level_median_adu",
                "residual_mean_adu",
                "residual_stdev_adu",
                "row_structure_adu",
                "column_structure_adu",
                "corner_mean_adu",
                "mean_adu",
                "stdev_adu",
                "rc_mean_adu",
                "rc_stdev_adu",
            ),  # fmt: skip
        )
        for name in per_exposure.colnames:
            if name.endswith("_adu"):
                per_exposure[name].unit = "adu"
        per_exposure["mjd"].unit = "d"
        per_exposure["mjd_header"].unit = "d"
        summary_rows = []
        for amp in detector.amp_names:
            sel = per_exposure[per_exposure["amp"] == amp]
            s = summarize_levels(np.asarray(sel["mjd"]), np.asarray(sel["level_adu"]))
            r = summarize_levels(np.asarray(sel["mjd"]), np.asarray(sel["residual_mean_adu"]))
            summary_rows.append(
                (amp, s["mean"], s["drift"], s["slope_per_hour"], s["peak_to_peak"], s["scatter"],
                 r["mean"], r["peak_to_peak"], float(np.median(sel["row_structure_adu"])),
                 float(np.median(sel["column_structure_adu"])), len(sel))
            )  # fmt: skip
        summary = Table(
            rows=summary_rows,
            names=("amp", "level_mean_adu", "level_drift_adu", "level_slope_adu_per_hour",
                   "level_peak_to_peak_adu", "level_scatter_adu", "residual_mean_adu",
                   "residual_peak_to_peak_adu", "row_structure_adu", "column_structure_adu", "n_exposures"),
        )  # fmt: skip
        for name in summary.colnames:
            if name.endswith("_adu"):
                summary[name].unit = "adu"
        summary["level_slope_adu_per_hour"].unit = "adu/h"
        apply_amp_flags(summary, flags)
        meta = {"DETECTOR": detector.id, "DET_NAME": detector.name}
        summary.meta.update(meta)
        per_exposure.meta.update(meta)
        self.log.info("%s: %d biases, median level drift %.3f adu", detector.name, len(raws),
                      nan_median(summary["level_drift_adu"]))  # fmt: skip
        return Struct(stability=summary, exposures=per_exposure)
