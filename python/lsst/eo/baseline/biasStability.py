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

Per amplifier over the run: mean level, drift (slope of a straight-line fit of ``level_adu`` versus
time, times the time span), peak-to-peak, and scatter about the fit.  Clipped means are used
rather than medians because raw counts are integers: a median of integers moves in 0.5 adu steps.
Amplifiers all zero, saturated or dead in any bias have NaN summary values and a non-zero
``flags`` column (`lsst.eo.baseline.ampFlags`).
"""

from __future__ import annotations

__all__ = [
    "EoBiasStabilityConfig",
    "EoBiasStabilityConnections",
    "EoBiasStabilityTask",
    "exposure_mjd",
    "summarize_levels",
]

from collections.abc import Mapping, Sequence
from typing import Any

import astropy.time
import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, nan_median, raw_amp_flags
from .ampStream import amp_groups, exposure_id_of, read_amp_group
from .camera import DetectorInfo, get_camera
from .isrTask import EoIsrTask
from .overscan import serial_overscan_fit_region


def exposure_mjd(header: Mapping[str, Any]) -> float:
    """Start of an exposure (MJD, TAI) from MJD-BEG, or DATE-BEG/DATE-OBS."""
    for key in ("MJD-BEG", "MJD-OBS"):
        value = header.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            return float(value)
    for key in ("DATE-BEG", "DATE-OBS"):
        if header.get(key):
            return float(astropy.time.Time(str(header[key]), format="isot", scale="tai").mjd)
    return np.nan


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
    nSigmaClip = Field[float](doc="Clipping threshold of the clipped statistics.", default=3.0)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)

    def setDefaults(self):
        super().setDefaults()
        # As eo_pipe for biases: the parallel overscan only adds noise to a bias frame.
        self.isr.doParallelOverscan = False


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
        return (exposure["exposure"], exposure["mjd"], raw_amp.name, level.mean, level.median,
                resid.mean, resid.stdev, rows, cols, corner)  # fmt: skip

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
                exposure_info = [
                    {"exposure": exposure_id_of(h, r), "mjd": exposure_mjd(r.header)}
                    for h, r in zip(raws, exposures, strict=True)
                ]
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
                "amp",
                "level_adu",
                "level_median_adu",
                "residual_mean_adu",
                "residual_stdev_adu",
                "row_structure_adu",
                "column_structure_adu",
                "corner_mean_adu",
            ),  # fmt: skip
        )
        for name in per_exposure.colnames:
            if name.endswith("_adu"):
                per_exposure[name].unit = "adu"
        per_exposure["mjd"].unit = "d"
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
