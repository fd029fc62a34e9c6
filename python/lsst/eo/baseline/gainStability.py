r"""Gain stability from a sequence of stability flats (``FLAT/GAIN_STABILITY``).

Per exposure *k* and amplifier:

* ``signal_adu`` :math:`S_k`: 3-sigma clipped mean of the imaging area after ISR (per-row serial
  overscan by default; optionally the combined bias and dark x DARKTIME, ``isr.doBias`` /
  ``isr.doDark``; adu, no gain applied: the gain is what is being monitored);
* flux normalisation :math:`F_k` (``fluxNormalization``): ``CCOBFLUX`` x EXPTIME for ``CCOBFLUX``
  (the monitoring photodiode measures the source flux, so this removes the source's exposure to
  exposure jitter and drifts), EXPTIME for ``EXPTIME`` and ``DETECTOR_MEDIAN``, 1 for ``NONE``;
  ``DETECTOR_MEDIAN`` further divides each exposure by the median over the detector's amplifiers
  of the normalised signal (eo_pipe's "median amp" scaling for data without a photodiode: it
  removes any common-mode change, source *and* gain);
* ``signal_norm`` :math:`s_k = (S_k / F_k) / \mathrm{median}_j(S_j / F_j)`, the flux-normalised
  signal relative to the run median of the amplifier; ``signal_raw_norm`` is the same without the
  flux normalisation.

Per amplifier over the sequence (times from MJD-BEG; a straight line
:math:`\hat s(t) = a + b\,t` is fitted to :math:`s_k`):

* ``drift_ppt`` = :math:`10^3\,(\hat s(t_{last}) - \hat s(t_{first})) / \hat s(t_{first})`,
  the fractional change of the signal over the sequence;
* ``gain_drift_ppt`` = :math:`10^3\,(\hat s(t_{first}) / \hat s(t_{last}) - 1)`: the signal in
  adu of a fixed charge is inversely proportional to the gain (e-/adu), so this is the fractional
  change of the gain over the sequence;
* ``slope_ppt_per_hour``; ``scatter_ppt`` = rms of :math:`s_k - \hat s(t_k)` (n - 2 degrees of
  freedom); ``rms_ppt``; ``peak_to_peak_ppt``.

What else changes the flat signal, and how it is handled: bias drifts (removed by the per-row
serial overscan correction of each exposure); source flux jitter and drifts (0.3 % exposure to
exposure in the B protocol; removed with CCOBFLUX); a varying EXPTIME (divided out); dark current
and a residual bias offset after overscan correction: a constant offset :math:`\delta` moves
:math:`s_k` by :math:`(\delta / S)(1 - F_k / F)`, ~1e-7 for 1 adu on 3.5e4 adu and a 0.3 % flux
jitter, so by default neither eoBias nor eoDark is subtracted (``isr.doBias``/``isr.doDark`` make
them prerequisites); persistence from saturated flats taken just before (the B protocol leaves a
600 s gap: < 1e-5; not corrected); output non-linearity (~5e-5 at 5e4 e-, changing by ~1e-6 with
the flux jitter).

Deviations from eo_pipe's ``FlatGainStabilityTask``: the statistic is a clipped mean of the imaging
area (eo_pipe: median of the whole raw segment, overscans included), since a mean of 1e6 pixels is
~25 % more precise than a median and excludes the overscan; no bias or dark is subtracted by
default (eo_pipe subtracts both: see above why it makes no difference); the flux normalisation
uses the CCOBFLUX header (eo_pipe: a photodiode dataset, disabled in its B-protocol
configuration); and scalar drift/scatter metrics are stored (eo_pipe only plots the time series).

Temperatures: each exposure's CCD temperature ``ccd_temp_c`` (``CCDTEMP``) and mean REB board
temperature ``reb_temp_c`` (``TEMP1``...) come from the raw file's ``REB_COND`` housekeeping HDU,
read in the same open of the file as the pixels (`lsst.eo.baseline.rawio.housekeeping_temperatures`;
NaN for files without them); ``signal_temp_slope_ppt_per_c`` is the least-squares slope of
``signal_norm`` against ``ccd_temp_c`` (`temperature_slope`; NaN below 0.05 C of range).  These are
extra columns of ours (eo_pipe records no temperature); no metric is corrected for temperature.

Bad amplifiers (`lsst.eo.baseline.ampFlags`): an amplifier all zero, saturated or dead in any of
the stability flats, or flagged in the metadata (``AMP_FLAGS``) of the bias or dark used, is not
measured: its rows of both tables have NaN values and a non-zero ``flags`` column, and a warning
names it.  An amplifier whose median signal is not finite is flagged ``NONFINITE``.  With
``DETECTOR_MEDIAN`` the per-exposure median is taken over the other amplifiers.

Raws are read one exposure at a time: every HDU is decompressed once and memory holds one CCD.
"""

from __future__ import annotations

__all__ = [
    "EoGainStabilityConfig",
    "EoGainStabilityConnections",
    "EoGainStabilityTask",
    "flux_normalization",
    "normalize_series",
    "stability_summary",
    "temperature_slope",
]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.images import MaskedImage
from lsst.pex.config import ChoiceField, ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, calib_amp_flags, describe_flagged, nan_median, raw_amp_flags
from .ampStream import exposure_id_of
from .calibCombine import amp_views
from .calibInputs import SwitchedCalibConnections, bias_prerequisite, dark_prerequisite, raw_exposures
from .camera import DetectorInfo, get_camera
from .headerValues import exposure_mjd, header_float
from .isrTask import EoIsrTask
from .rawio import housekeeping_temperatures

_FLUX_MODES = {
    "CCOBFLUX": "divide by CCOBFLUX x EXPTIME (monitoring photodiode)",
    "EXPTIME": "divide by EXPTIME only",
    "DETECTOR_MEDIAN": "divide by EXPTIME, then by the per-exposure median over the detector's amps",
    "NONE": "no normalisation",
}


def flux_normalization(header: Mapping[str, Any], mode: str) -> float:
    """Relative illumination of an exposure, by which its signal is divided.

    Parameters
    ----------
    header : `dict`
        Primary header (EXPTIME, CCOBFLUX).
    mode : `str`
        ``CCOBFLUX`` (CCOBFLUX x EXPTIME), ``EXPTIME`` or ``DETECTOR_MEDIAN`` (EXPTIME), ``NONE``
        (1).

    Returns
    -------
    norm : `float`
        NaN if a needed keyword is missing or not positive.
    """
    if mode == "NONE":
        return 1.0
    exptime = header_float(header, "EXPTIME")
    if mode in ("EXPTIME", "DETECTOR_MEDIAN"):
        return exptime if exptime > 0 else np.nan
    if mode == "CCOBFLUX":
        flux = header_float(header, "CCOBFLUX")
        return flux * exptime if (flux > 0 and exptime > 0) else np.nan
    raise ValueError(f"Unknown flux normalisation {mode!r}; expected one of {sorted(_FLUX_MODES)}")


def normalize_series(signal: np.ndarray, norm: np.ndarray | float = 1.0) -> np.ndarray:
    """Signal divided by its normalisation, relative to the median over the series.

    Parameters
    ----------
    signal : `numpy.ndarray`
        Signal of each exposure.
    norm : `numpy.ndarray` or `float`
        Normalisation of each exposure (e.g. `flux_normalization`).

    Returns
    -------
    normalised : `numpy.ndarray`
        ``(signal / norm) / nanmedian(signal / norm)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.asarray(signal, dtype=np.float64) / np.asarray(norm, dtype=np.float64)
        finite = rate[np.isfinite(rate)]
        if finite.size == 0:
            return np.full(rate.shape, np.nan)
        return rate / np.median(finite)


def stability_summary(mjd: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Drift and scatter of a normalised signal time series, in parts per thousand.

    Parameters
    ----------
    mjd : `numpy.ndarray`
        Exposure times (days).
    values : `numpy.ndarray`
        Normalised signal (close to 1).

    Returns
    -------
    summary : `dict`
        ``drift_ppt``, ``gain_drift_ppt``, ``slope_ppt_per_hour``, ``scatter_ppt``, ``rms_ppt``,
        ``peak_to_peak_ppt``, ``time_span_hours`` and ``n`` (see the module docstring); the fitted
        quantities are NaN for fewer than 3 finite points or a zero time span.
    """
    good = np.isfinite(mjd) & np.isfinite(values)
    t = np.asarray(mjd, dtype=np.float64)[good]
    y = np.asarray(values, dtype=np.float64)[good]
    out = {
        "drift_ppt": np.nan,
        "gain_drift_ppt": np.nan,
        "slope_ppt_per_hour": np.nan,
        "scatter_ppt": np.nan,
        "rms_ppt": float(1e3 * np.std(y, ddof=1)) if y.size > 1 else np.nan,
        "peak_to_peak_ppt": float(1e3 * np.ptp(y)) if y.size else np.nan,
        "time_span_hours": float(24.0 * np.ptp(t)) if t.size else np.nan,
        "n": int(y.size),
    }
    if y.size < 3 or np.ptp(t) <= 0:
        return out
    hours = (t - t.min()) * 24.0
    slope, intercept = np.polyfit(hours, y, 1)
    first = intercept
    last = intercept + slope * np.ptp(hours)
    resid = y - (slope * hours + intercept)
    out.update(
        drift_ppt=float(1e3 * (last - first) / first),
        gain_drift_ppt=float(1e3 * (first / last - 1.0)),
        slope_ppt_per_hour=float(1e3 * slope / first),
        scatter_ppt=float(1e3 * np.sqrt(np.sum(resid**2) / (y.size - 2))),
    )
    return out


def temperature_slope(temperature: np.ndarray, values: np.ndarray, min_range_c: float = 0.05) -> float:
    r"""Slope of a normalised signal against temperature, in parts per thousand per degree C.

    A straight line :math:`s = a + b\,T` is fitted (least squares) to the finite points;
    the result is :math:`10^3\,b / \hat s(\bar T)`.  It describes the data, it is no gain
    temperature coefficient: the CCD temperature is controlled, so over a sequence it changes by
    a few 0.1 C at most, together with everything else that drifts in time.

    Parameters
    ----------
    temperature : `numpy.ndarray`
        Temperature of each exposure (C).
    values : `numpy.ndarray`
        Normalised signal of each exposure.
    min_range_c : `float`, optional
        Smallest temperature range (C) over which a slope is fitted.

    Returns
    -------
    slope : `float`
        NaN for fewer than 3 finite points or a range below ``min_range_c``.
    """
    t = np.asarray(temperature, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    good = np.isfinite(t) & np.isfinite(y)
    t, y = t[good], y[good]
    if t.size < 3 or np.ptp(t) < min_range_c:
        return np.nan
    slope, intercept = np.polyfit(t - t.mean(), y, 1)
    return float(1e3 * slope / intercept)


class EoGainStabilityConnections(SwitchedCalibConnections):
    """Connections of `EoGainStabilityTask`."""

    switches = {"bias": "isr.doBias", "dark": "isr.doDark"}

    raws = raw_exposures("Raw stability flats of one detector.")
    bias = bias_prerequisite()
    dark = dark_prerequisite()
    stability = cT.Output(
        name="eoGainStability",
        doc="Flat signal drift and scatter over the sequence per amplifier (ppt).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    exposures = cT.Output(
        name="eoGainStabilityExposures",
        doc="Flat signal per exposure and amplifier, raw and normalised, for time plots.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoGainStabilityConfig(PipelineTaskConfig, pipelineConnections=EoGainStabilityConnections):
    """Configuration of `EoGainStabilityTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan, bias, dark; adu).")
    fluxNormalization = ChoiceField[str](
        doc="How the source flux is divided out of each exposure.", allowed=_FLUX_MODES, default="CCOBFLUX"
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the clipped mean.", default=3.0)
    ccobLed = Field[str](
        doc="Use only exposures whose CCOBLED is this LED (empty: all exposures).", default=""
    )
    minExposures = Field[int](doc="Fewest exposures accepted.", default=3)

    def setDefaults(self):
        super().setDefaults()
        # Overscan only (see the module docstring: a constant bias residual or dark charge does not
        # change the normalised signal).  With isr.doBias, keep the parallel overscan off: eoBias is
        # built without it (see calibCombine) and holds the fixed column structure.
        self.isr.doBias = False
        self.isr.doDark = False
        self.isr.doParallelOverscan = False

    def validate(self):
        super().validate()
        if self.isr.doApplyGains:
            raise ValueError("Gain stability measures signals in adu: isr.doApplyGains must be False")


class EoGainStabilityTask(PipelineTask):
    """Measure the stability of the flat signal (gain) of every amplifier over stability flats."""

    ConfigClass = EoGainStabilityConfig
    _DefaultName = "eoGainStability"
    config: EoGainStabilityConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        dark = butlerQC.get(inputRefs.dark) if self.config.isr.doDark else None
        detector = get_camera()[outputRefs.stability.dataId["detector"]]
        butlerQC.put(self.run(handles, detector, bias=bias, dark=dark), outputRefs)

    def run(
        self,
        raws: Sequence[Any],
        detector: DetectorInfo,
        bias: MaskedImage | None = None,
        dark: MaskedImage | None = None,
    ) -> Struct:
        """Measure the flat signal of every exposure and its stability per amplifier.

        Parameters
        ----------
        raws : sequence
            Handles of raw stability flats.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias, adu (required if ``isr.doBias``).
        dark : `lsst.images.MaskedImage`, optional
            Combined dark, adu/s (required if ``isr.doDark``; subtracted x DARKTIME, no gains).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``stability`` (one row per amplifier) and ``exposures`` (one row per exposure and
            amplifier) `astropy.table.Table` objects.
        """
        cfg = self.config
        if not raws:
            raise NoWorkFound(f"No stability flat for {detector.name}")
        bias_amps = amp_views(bias, detector)
        dark_amps = amp_views(dark, detector)
        # Flags of the calibrations used, then ORed with those of every raw input.
        flags = calib_amp_flags(detector.amp_names, bias, dark)
        rows = []
        info = []
        for handle in raws:
            raw = handle.get()  # one exposure at a time: one CCD in memory
            header = raw.header
            if cfg.ccobLed and str(header.get("CCOBLED")) != cfg.ccobLed:
                continue
            exp_id = exposure_id_of(handle, raw)
            mjd = exposure_mjd(header)
            norm = flux_normalization(header, cfg.fluxNormalization)
            # Temperatures from the housekeeping HDUs read in the same open of the file.
            temps = housekeeping_temperatures(getattr(raw, "housekeeping", None) or {})
            info.append(
                (exp_id, mjd, header_float(header, "EXPTIME"), header_float(header, "CCOBFLUX"), norm,
                 temps["ccd_temp_c"], temps["reb_temp_c"])
            )  # fmt: skip
            for amp in detector.amp_names:
                flags[amp] |= raw_amp_flags(raw[amp])
                if flags[amp]:
                    # Not measured; an amplifier found bad in a later exposure is blanked below.
                    rows.append((exp_id, amp, np.nan, np.nan))
                    continue
                image = self.isr.transient_image(
                    raw[amp],
                    dark_time=raw.dark_time,
                    bias=None if bias_amps is None else bias_amps[amp],
                    dark=None if dark_amps is None else dark_amps[amp],
                )
                stats = clipped_stats(image, cfg.nSigmaClip)  # non-finite pixels are ignored
                rows.append((exp_id, amp, stats.mean, stats.stdev))
            del raw
        if len(info) < max(cfg.minExposures, 1):
            raise NoWorkFound(f"{len(info)} stability flat(s) for {detector.name}; need {cfg.minExposures}")
        mode = cfg.fluxNormalization
        norms = np.array([i[4] for i in info])
        if not np.all(np.isfinite(norms)):
            self.log.warning(
                "%s: %s normalisation unavailable for %d exposure(s); falling back to EXPTIME",
                detector.name, mode, int(np.sum(~np.isfinite(norms))),
            )  # fmt: skip
            mode = "EXPTIME"
            norms = np.array([flux_normalization({"EXPTIME": i[2]}, mode) for i in info])
        n_exp = len(info)
        amps = detector.amp_names
        # rows are exposure-major: reshape into [exposure, amp]
        signal = np.array([r[2] for r in rows], dtype=np.float64).reshape(n_exp, len(amps))
        stdev = np.array([r[3] for r in rows], dtype=np.float64).reshape(n_exp, len(amps))
        # An amplifier found bad in any exposure is left out of all of them.
        bad_columns = np.array([bool(flags[a]) for a in amps])
        signal[:, bad_columns] = np.nan
        stdev[:, bad_columns] = np.nan
        normed = np.column_stack([normalize_series(signal[:, j], norms) for j in range(len(amps))])
        raw_normed = np.column_stack([normalize_series(signal[:, j]) for j in range(len(amps))])
        if mode == "DETECTOR_MEDIAN":
            normed = normed / np.array([nan_median(row) for row in normed])[:, None]
        exp_ids = np.array([i[0] for i in info])
        mjds = np.array([i[1] for i in info])
        order = np.argsort(mjds, kind="stable")
        ccd_temp = np.array([i[5] for i in info], dtype=np.float64)
        reb_temp = np.array([i[6] for i in info], dtype=np.float64)
        per_exposure = Table(
            {
                "exposure": np.repeat(exp_ids[order], len(amps)),
                "mjd": np.repeat(mjds[order], len(amps)),
                "amp": np.tile(np.array(amps), n_exp),
                "exptime_s": np.repeat(np.array([i[2] for i in info])[order], len(amps)),
                "ccobflux": np.repeat(np.array([i[3] for i in info])[order], len(amps)),
                "ccd_temp_c": np.repeat(ccd_temp[order], len(amps)),
                "reb_temp_c": np.repeat(reb_temp[order], len(amps)),
                "signal_adu": signal[order].ravel(),
                "signal_stdev_adu": stdev[order].ravel(),
                "signal_raw_norm": raw_normed[order].ravel(),
                "signal_norm": normed[order].ravel(),
            }
        )
        per_exposure["mjd"].unit = "d"
        per_exposure["exptime_s"].unit = "s"
        per_exposure["signal_adu"].unit = "adu"
        per_exposure["signal_stdev_adu"].unit = "adu"
        per_exposure["ccd_temp_c"].unit = "deg_C"
        per_exposure["reb_temp_c"].unit = "deg_C"
        summary_rows = []
        for j, amp in enumerate(amps):
            s = stability_summary(mjds, normed[:, j])
            slope_t = temperature_slope(ccd_temp, normed[:, j])
            r = stability_summary(mjds, raw_normed[:, j])
            summary_rows.append(
                (amp, nan_median(signal[:, j]), s["drift_ppt"], s["gain_drift_ppt"],
                 s["slope_ppt_per_hour"], s["scatter_ppt"], s["rms_ppt"], s["peak_to_peak_ppt"],
                 r["rms_ppt"], s["time_span_hours"], s["n"], slope_t)
            )  # fmt: skip
        summary = Table(
            rows=summary_rows,
            names=("amp", "signal_median_adu", "drift_ppt", "gain_drift_ppt", "slope_ppt_per_hour",
                   "scatter_ppt", "rms_ppt", "peak_to_peak_ppt", "raw_rms_ppt", "time_span_hours",
                   "n_exposures", "signal_temp_slope_ppt_per_c"),
        )  # fmt: skip
        summary["signal_median_adu"].unit = "adu"
        summary["time_span_hours"].unit = "h"
        flux_rms = 1e3 * float(np.std(norms / np.median(norms), ddof=1)) if n_exp > 1 else np.nan
        finite_t = ccd_temp[np.isfinite(ccd_temp)]
        meta = {"DETECTOR": detector.id, "DET_NAME": detector.name, "FLUX_NORMALIZATION": mode,
                "FLUX_RMS_PPT": flux_rms, "CCOBLED": cfg.ccobLed or "ANY",
                "CCD_TEMP_PTP_C": float(np.ptp(finite_t)) if finite_t.size else np.nan}  # fmt: skip
        summary.meta.update(meta)
        per_exposure.meta.update(meta)
        # The drift and scatter need a straight-line fit: required only when the sequence allows one.
        required = ["signal_median_adu"]
        finite_mjds = mjds[np.isfinite(mjds)]
        if finite_mjds.size >= 3 and np.ptp(finite_mjds) > 0:
            required += ["gain_drift_ppt", "scatter_ppt"]
        apply_amp_flags(summary, flags, required=required)
        final = dict(zip(summary["amp"], summary["flags"], strict=True))
        apply_amp_flags(
            per_exposure, final, skip=["mjd", "exptime_s", "ccobflux", "ccd_temp_c", "reb_temp_c"]
        )
        if any(final.values()):
            self.log.warning("%s: gain stability not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(final))  # fmt: skip
        span = np.asarray(summary["time_span_hours"], dtype=np.float64)
        self.log.info(
            "%s: %d stability flats over %.2f h, median |gain drift| %.3f ppt, median scatter %.3f ppt",
            detector.name, n_exp, float(span[np.isfinite(span)].max()) if np.isfinite(span).any() else np.nan,
            nan_median(np.abs(np.asarray(summary["gain_drift_ppt"], dtype=np.float64))),
            nan_median(summary["scatter_ppt"]),
        )  # fmt: skip
        return Struct(stability=summary, exposures=per_exposure)
