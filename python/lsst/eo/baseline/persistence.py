r"""Persistence: residual signal in the darks that follow a saturating flat, and its decay.

Inputs are the exposures of a persistence sequence (``observation_reason = 'persistence'``): a
saturating flat followed by darks (and possibly biases).  Every exposure whose IMGTYPE is not FLAT
is referred to the latest flat that ended before it began.  Times are from the headers, relative to
the end of that flat (MJD-END, else DATE-END, else MJD-BEG + DARKTIME): the exposure integrates
from :math:`t_0` (MJD-BEG) to :math:`t_1` (MJD-END).

Per exposure *k* and amplifier, ``residual_e`` :math:`y_k` (e-/pixel) is the 3-sigma clipped mean
of the imaging area after ISR (per-row serial overscan, combined bias, the combined dark in adu/s
x DARKTIME pixel by pixel when ``isr.doDark``, then gains) less, without ``isr.doDark``,
``darkCurrent`` x DARKTIME.  The gains are the run's PTC gains (camera-model gains for an amplifier
without a usable PTC gain, `lsst.eo.baseline.runGains`; ``gain_e_per_adu`` and ``gain_source``
columns).  Its statistical error is the clipped stdev / sqrt(n).

Per amplifier, traps filled to :math:`Q_0` e-/pixel at the end of the flat and emptying with time
constant :math:`\tau` release, during each exposure,

.. math::

   y_k = Q_0 \left(e^{-t_{0,k}/\tau} - e^{-t_{1,k}/\tau}\right) \; [+\, c]

(the simulator's truth model; the optional constant :math:`c`, ``fitOffset``, absorbs a residual
bias or dark level).  :math:`Q_0` (and :math:`c`) are linear: for each :math:`\tau` they are the
weighted least-squares solution, and :math:`\tau` minimises the resulting chi-square (a log grid
refined by a bounded scalar search).  Errors are from the Jacobian at the minimum, scaled by the
reduced chi-square (so that unmodelled scatter widens them).  ``fit_ok`` is False when there are
too few exposures, when :math:`\tau` is at a bound of ``tauRange``, or when :math:`Q_0 \le 0`.

Bad amplifiers (`lsst.eo.baseline.ampFlags`): an amplifier all zero, saturated or dead in any
exposure after the flat, all zero or dead in the saturating flat (which is legitimately at the ADC
maximum, so SATURATED is not looked for there), or flagged in the metadata (``AMP_FLAGS``) of the
bias or dark used, is not measured: its rows of both tables have NaN values and a non-zero
``flags`` column, and a warning names it.  When the decay cannot be fitted at all (fewer exposures
after the flat than parameters + 1, or a non-finite amplitude) the amplifier is flagged
``FIT_FAILED``; a fit that converges to a bound of ``tauRange`` or to :math:`Q_0 \le 0` keeps its
values with ``fit_ok`` False.

eo_pipe's quantities (``eo_pipe.md`` section 9.16, ``persistenceTask.py::PersistenceTask.run``)
are in the per-exposure table under eo_pipe's names: ``mean_signal_adu`` and ``stdev_adu`` are
afw MEANCLIP and STDEVCLIP (5 sigma, 3 passes, ``eoNSigmaClip``) of the image in adu after the
serial overscan and the bias (subtracted in adu), without gains or dark subtraction;
``time_min`` = (MJD-TRG - the smallest MJD-TRG of the sequence) x 1440 (minutes; origin the
flat); ``mjd_trg``, ``tseqnum`` and ``darktime_s`` from the headers.  The saturating flat's own
``mean_signal_adu`` is ``flat_mean_signal_adu`` of the per-amplifier table (eo_pipe has it as a
row of its per-exposure table, which here holds the exposures after the flat only).
Differences from eo_pipe in those columns: the bias is subtracted in adu (eo_pipe subtracts its
electron-unit bias from the adu image) and no parallel-overscan correction is applied (eo_pipe's
``isr`` has it on; our combined bias is built without it).

Our quantities, beside them: times referred to the end of the flat's integration (eo_pipe: its
MJD-TRG, 7 ms earlier in the B protocol); residuals in electrons with the dark current
subtracted; the fitted decay (eo_pipe only plots the residuals).
"""

from __future__ import annotations

__all__ = [
    "EoPersistenceConfig",
    "EoPersistenceConnections",
    "EoPersistenceTask",
    "fit_persistence",
    "persistence_model",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.images import MaskedImage
from lsst.pex.config import ConfigurableField, Field, ListField
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from scipy.optimize import minimize_scalar

from .afwstats import clipped_stats
from .ampFlags import (
    AmpFlag,
    apply_amp_flags,
    calib_amp_flags,
    describe_flagged,
    nan_median,
    raw_amp_flags,
)
from .ampStream import exposure_id_of
from .calibCombine import amp_views
from .calibInputs import (
    SwitchedCalibConnections,
    bias_prerequisite,
    dark_prerequisite,
    ptc_prerequisite,
    raw_exposures,
)
from .camera import DetectorInfo, get_camera
from .headerValues import exposure_end_mjd, exposure_mjd, header_float
from .isrTask import EoIsrTask
from .runGains import RunGains, quantum_gains, run_gains

_SECONDS_PER_DAY = 86400.0


def persistence_model(t0: np.ndarray, t1: np.ndarray, q0: float, tau: float) -> np.ndarray:
    """Charge (e-/pixel) released between ``t0`` and ``t1`` by traps holding ``q0`` at time 0.

    Parameters
    ----------
    t0, t1 : `numpy.ndarray`
        Start and end of each integration (s after the end of the saturating exposure).
    q0 : `float`
        Trapped charge at time 0 (e-/pixel).
    tau : `float`
        Release time constant (s).

    Returns
    -------
    charge : `numpy.ndarray`
        ``q0 * (exp(-t0 / tau) - exp(-t1 / tau))``.
    """
    t0 = np.asarray(t0, dtype=np.float64)
    t1 = np.asarray(t1, dtype=np.float64)
    return q0 * (np.exp(-t0 / tau) - np.exp(-t1 / tau))


def _linear_solution(basis: np.ndarray, y: np.ndarray, w: np.ndarray, fit_offset: bool):
    """Weighted least-squares amplitude (and offset) for each row of ``basis`` and its chi-square.

    ``basis`` has shape ``(n_tau, n_points)``; returns arrays of shape ``(n_tau,)``.
    """
    sff = np.sum(w * basis * basis, axis=1)
    sfy = np.sum(w * basis * y, axis=1)
    if not fit_offset:
        with np.errstate(divide="ignore", invalid="ignore"):
            q0 = sfy / sff
        offset = np.zeros_like(q0)
    else:
        sw = np.sum(w)
        sf = np.sum(w * basis, axis=1)
        sy = np.sum(w * y)
        det = sff * sw - sf * sf
        with np.errstate(divide="ignore", invalid="ignore"):
            q0 = (sfy * sw - sf * sy) / det
            offset = (sff * sy - sf * sfy) / det
    resid = y - q0[:, None] * basis - offset[:, None]
    chi2 = np.sum(w * resid * resid, axis=1)
    return q0, offset, chi2


def fit_persistence(
    t0: np.ndarray,
    t1: np.ndarray,
    y: np.ndarray,
    sigma: np.ndarray | None = None,
    *,
    fit_offset: bool = False,
    tau_range: tuple[float, float] = (1.0, 3600.0),
    n_grid: int = 200,
) -> dict[str, float]:
    """Fit the integrated exponential release model to residual signals.

    Parameters
    ----------
    t0, t1 : `numpy.ndarray`
        Start and end of each integration (s after the end of the saturating exposure).
    y : `numpy.ndarray`
        Residual signal (e-/pixel).
    sigma : `numpy.ndarray`, optional
        Errors of ``y`` (relative weights; the errors of the result are rescaled by the reduced
        chi-square).  Equal weights if not given.
    fit_offset : `bool`, optional
        Fit a constant offset as well.
    tau_range : `tuple` [`float`, `float`], optional
        Search range of the time constant (s).
    n_grid : `int`, optional
        Points of the logarithmic starting grid of ``tau``.

    Returns
    -------
    fit : `dict`
        ``q0``, ``q0_err``, ``tau``, ``tau_err``, ``offset``, ``offset_err`` (0 and NaN without
        ``fit_offset``), ``chi2``, ``dof``, ``n`` and ``ok`` (see the module docstring).
    """
    t0 = np.asarray(t0, dtype=np.float64)
    t1 = np.asarray(t1, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sig = np.ones_like(y) if sigma is None else np.asarray(sigma, dtype=np.float64)
    good = np.isfinite(t0) & np.isfinite(t1) & np.isfinite(y) & np.isfinite(sig) & (sig > 0)
    t0, t1, y, sig = t0[good], t1[good], y[good], sig[good]
    n_par = 3 if fit_offset else 2
    nan = float("nan")
    out = {"q0": nan, "q0_err": nan, "tau": nan, "tau_err": nan,
           "offset": 0.0 if not fit_offset else nan, "offset_err": nan, "chi2": nan,
           "dof": int(y.size - n_par), "n": int(y.size), "ok": False}  # fmt: skip
    if y.size < n_par + 1:
        return out
    w = 1.0 / sig**2
    log_lo, log_hi = np.log(tau_range[0]), np.log(tau_range[1])

    def basis(log_tau: np.ndarray) -> np.ndarray:
        tau = np.exp(np.atleast_1d(log_tau))[:, None]
        return np.exp(-t0[None, :] / tau) - np.exp(-t1[None, :] / tau)

    grid = np.linspace(log_lo, log_hi, n_grid)
    chi2_grid = _linear_solution(basis(grid), y, w, fit_offset)[2]
    best = int(np.nanargmin(chi2_grid))
    lo = grid[max(best - 1, 0)]
    hi = grid[min(best + 1, n_grid - 1)]
    res = minimize_scalar(
        lambda lt: float(_linear_solution(basis(lt), y, w, fit_offset)[2][0]),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6},
    )
    log_tau = float(res.x)
    tau = float(np.exp(log_tau))
    q0, offset, chi2 = (float(v[0]) for v in _linear_solution(basis(log_tau), y, w, fit_offset))
    # Jacobian of the model in (q0, tau[, offset]).
    f = basis(log_tau)[0]
    dfdtau = (t0 * np.exp(-t0 / tau) - t1 * np.exp(-t1 / tau)) / tau**2
    columns = [f, q0 * dfdtau] + ([np.ones_like(f)] if fit_offset else [])
    jac = np.column_stack(columns)
    dof = y.size - n_par
    scale = chi2 / dof if dof > 0 else nan
    try:
        cov = np.linalg.inv(jac.T @ (w[:, None] * jac)) * scale
        errs = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        errs = np.full(n_par, nan)
    edge = 1e-3
    at_bound = log_tau <= log_lo + edge or log_tau >= log_hi - edge
    out.update(
        q0=q0,
        q0_err=float(errs[0]),
        tau=tau,
        tau_err=float(errs[1]),
        offset=offset if fit_offset else 0.0,
        offset_err=float(errs[2]) if fit_offset else nan,
        chi2=chi2,
        ok=bool(np.isfinite(q0) and q0 > 0 and not at_bound),
    )
    return out


class EoPersistenceConnections(SwitchedCalibConnections):
    """Connections of `EoPersistenceTask`."""

    switches = {"bias": "isr.doBias", "dark": "isr.doDark"}

    raws = raw_exposures(
        "Raw exposures of a persistence sequence (saturating flat, then darks) of one detector."
    )
    bias = bias_prerequisite()
    dark = dark_prerequisite()
    ptc = ptc_prerequisite()
    persistence = cT.Output(
        name="eoPersistence",
        doc="Fitted persistence amplitude and decay time per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    exposures = cT.Output(
        name="eoPersistenceExposures",
        doc="Residual signal (e-/pixel) per exposure and amplifier versus time since the flat.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoPersistenceConfig(PipelineTaskConfig, pipelineConnections=EoPersistenceConnections):
    """Configuration of `EoPersistenceTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan, bias, dark in adu, gains; electrons).")
    darkCurrent = Field[float](
        doc="Dark current (e-/s) subtracted x DARKTIME when isr.doDark is False.", default=0.0
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the clipped mean.", default=3.0)
    eoNSigmaClip = Field[float](
        doc="Clipping threshold of eo_pipe's mean_signal / stdev (MEANCLIP, STDEVCLIP).", default=5.0
    )
    eoNIter = Field[int](doc="Clipping passes of eo_pipe's mean_signal / stdev.", default=3)
    fitOffset = Field[bool](doc="Fit a constant offset besides the decay.", default=False)
    tauRange = ListField[float](doc="Search range of the decay time (s).", default=[1.0, 3600.0])
    flatImageTypes = ListField[str](doc="IMGTYPE values of saturating exposures.", default=["FLAT"])

    def setDefaults(self):
        super().setDefaults()
        self.isr.doBias = True
        self.isr.doApplyGains = True
        self.isr.doDark = True
        # As eoBias/eoDark are built (see calibCombine): no parallel-overscan correction.
        self.isr.doParallelOverscan = False

    def validate(self):
        super().validate()
        if not self.isr.doApplyGains:
            raise ValueError("Persistence is measured in electrons: isr.doApplyGains must be True")
        if len(self.tauRange) != 2 or not 0 < self.tauRange[0] < self.tauRange[1]:
            raise ValueError(f"tauRange must be [min, max] with 0 < min < max, not {self.tauRange}")


class EoPersistenceTask(PipelineTask):
    """Measure the persistence after a saturating flat and fit its decay, per amplifier."""

    ConfigClass = EoPersistenceConfig
    _DefaultName = "eoPersistence"
    config: EoPersistenceConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        dark = butlerQC.get(inputRefs.dark) if self.config.isr.doDark else None
        detector = get_camera()[outputRefs.persistence.dataId["detector"]]
        gains = quantum_gains(butlerQC, inputRefs, detector)
        butlerQC.put(self.run(handles, detector, bias=bias, dark=dark, gains=gains), outputRefs)

    def run(
        self,
        raws: Sequence[Any],
        detector: DetectorInfo,
        bias: MaskedImage | None = None,
        dark: MaskedImage | None = None,
        gains: RunGains | None = None,
    ) -> Struct:
        """Measure residual signals and fit the persistence decay.

        Parameters
        ----------
        raws : sequence
            Handles of the raws of a persistence sequence (any order).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias, adu (required if ``isr.doBias``).
        dark : `lsst.images.MaskedImage`, optional
            Combined dark, adu/s (required if ``isr.doDark``).
        gains : `~lsst.eo.baseline.runGains.RunGains`, optional
            Gains (e-/adu) and their sources; default: camera-model gains (as without a PTC).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``persistence`` (one row per amplifier) and ``exposures`` (one row per non-flat
            exposure and amplifier) `astropy.table.Table` objects.
        """
        cfg = self.config
        if not raws:
            raise NoWorkFound(f"No persistence exposure for {detector.name}")
        bias_amps = amp_views(bias, detector)
        dark_amps = amp_views(dark, detector)
        amps = detector.amp_names
        # Flags of the calibrations used, ORed below with those of every raw input.
        flags = calib_amp_flags(amps, bias, dark)
        run_gain = gains if gains is not None else run_gains(detector)
        gain = run_gain.gains
        # Dark-current rate of each amplifier (e-/s): the clipped mean of the combined dark (adu/s;
        # hot pixels excluded, as from the residuals) x the gain, for the record when the ISR
        # subtracts the dark pixel by pixel; else the configured value, subtracted here.
        if cfg.isr.doDark and dark_amps is not None:
            dark_rate = {
                a: np.nan if flags[a] else clipped_stats(dark_amps[a], cfg.nSigmaClip).mean * gain[a]
                for a in amps
            }
        else:
            dark_rate = {a: cfg.darkCurrent for a in amps}
        flat_types = {t.upper() for t in cfg.flatImageTypes}
        # A saturating flat is at the ADC maximum by design: only ZERO and DEAD mark a bad amplifier.
        flat_bits = ~int(AmpFlag.SATURATED)
        exposures: list[dict[str, Any]] = []
        for handle in raws:
            raw = handle.get()  # one exposure at a time: one CCD in memory
            header = raw.header
            dark_time = raw.dark_time
            entry: dict[str, Any] = {
                "exposure": exposure_id_of(handle, raw),
                "imgtype": str(header.get("IMGTYPE", "UNKNOWN")).upper(),
                "begin": exposure_mjd(header),
                "end": exposure_end_mjd(header),
                "dark_time": dark_time,
                "mean": {},
                "stdev": {},
                "n": {},
                "eo_mean": {},
                "eo_stdev": {},
                "mjd_trg": header_float(header, "MJD-TRG"),
                "tseqnum": int(header.get("TSEQNUM", -1)),
                "dark_e": {a: dark_rate[a] * dark_time for a in amps},
            }
            is_flat = entry["imgtype"] in flat_types
            for amp in amps:
                raw_flags = raw_amp_flags(raw[amp])
                flags[amp] |= raw_flags & flat_bits if is_flat else raw_flags
                if flags[amp]:
                    # Not measured; an amplifier found bad in a later exposure is blanked below.
                    entry["mean"][amp], entry["stdev"][amp], entry["n"][amp] = np.nan, np.nan, 0
                    entry["eo_mean"][amp] = entry["eo_stdev"][amp] = np.nan
                    continue
                image = self.isr.transient_image(
                    raw[amp],
                    gain=gain[amp],
                    dark_time=dark_time,
                    bias=None if bias_amps is None else bias_amps[amp],
                    dark=None if dark_amps is None else dark_amps[amp],
                )
                stats = clipped_stats(image, cfg.nSigmaClip)
                subtract = 0.0 if cfg.isr.doDark else entry["dark_e"][amp]
                entry["mean"][amp] = stats.mean - subtract
                entry["stdev"][amp] = stats.stdev
                entry["n"][amp] = stats.n
                # eo_pipe's statistics are of the adu image: undo the gains and the dark (adu/s).
                adu = image / gain[amp]
                if dark_amps is not None and cfg.isr.doDark:
                    adu = adu + dark_amps[amp] * np.float32(dark_time)
                eo = clipped_stats(adu, cfg.eoNSigmaClip, cfg.eoNIter)
                entry["eo_mean"][amp], entry["eo_stdev"][amp] = eo.mean, eo.stdev
            exposures.append(entry)
            del raw
        for e in exposures:
            for amp in amps:
                if flags[amp]:
                    e["mean"][amp], e["stdev"][amp], e["n"][amp] = np.nan, np.nan, 0
                    e["eo_mean"][amp] = e["eo_stdev"][amp] = np.nan
        exposures.sort(key=lambda e: e["begin"])
        # eo_pipe's time origin: the earliest MJD-TRG of the sequence (the flat).
        trg = [e["mjd_trg"] for e in exposures if np.isfinite(e["mjd_trg"])]
        mjd0 = min(trg) if trg else np.nan
        flats = [e for e in exposures if e["imgtype"] in flat_types]
        if not flats:
            raise NoWorkFound(f"No saturating exposure (IMGTYPE in {sorted(flat_types)}) for {detector.name}")
        after = []
        for e in exposures:
            if e["imgtype"] in flat_types:
                continue
            previous = [f for f in flats if f["end"] <= e["begin"]]
            e["flat"] = previous[-1] if previous else None
            after.append(e)
        rows = []
        summary_rows = []
        for amp in amps:
            t0, t1, y, sig, used = [], [], [], [], []
            for e in after:
                f = e["flat"]
                if f is None:
                    t0.append(np.nan)
                    t1.append(np.nan)
                else:
                    t0.append((e["begin"] - f["end"]) * _SECONDS_PER_DAY)
                    t1.append((e["end"] - f["end"]) * _SECONDS_PER_DAY)
                y.append(e["mean"][amp])
                sig.append(e["stdev"][amp] / np.sqrt(max(e["n"][amp], 1)))
                used.append(f is not None)
            t0a, t1a, ya, siga = (np.array(v, dtype=np.float64) for v in (t0, t1, y, sig))
            mask = np.array(used, dtype=bool)
            if flags[amp]:
                # Nothing to fit: the same (NaN) result as a fit without points, no optimisation.
                fit = fit_persistence(t0a[:0], t1a[:0], ya[:0], fit_offset=cfg.fitOffset)
            else:
                fit = fit_persistence(
                    t0a[mask], t1a[mask], ya[mask], siga[mask], fit_offset=cfg.fitOffset,
                    tau_range=(cfg.tauRange[0], cfg.tauRange[1]),
                )  # fmt: skip
                if not np.isfinite(fit["q0"]):
                    flags[amp] |= int(AmpFlag.FIT_FAILED)
            with np.errstate(invalid="ignore"):
                model = persistence_model(t0a, t1a, fit["q0"], fit["tau"]) + fit["offset"]
            for k, e in enumerate(after):
                f = e["flat"]
                rows.append(
                    (e["exposure"], amp, e["imgtype"], e["begin"], e["dark_time"],
                     -1 if f is None else f["exposure"], t0a[k], t1a[k], ya[k], siga[k], e["stdev"][amp],
                     e["dark_e"][amp], model[k] if mask[k] else np.nan, bool(mask[k]),
                     e["mjd_trg"], e["tseqnum"], (e["mjd_trg"] - mjd0) * 1440.0, e["eo_mean"][amp],
                     e["eo_stdev"][amp])
                )  # fmt: skip
            first = int(np.argmax(mask)) if mask.any() else -1
            reference = after[first]["flat"] if first >= 0 else flats[-1]
            summary_rows.append(
                (amp, fit["q0"], fit["q0_err"], fit["tau"], fit["tau_err"], fit["offset"], fit["offset_err"],
                 fit["chi2"] / fit["dof"] if fit["dof"] > 0 else np.nan, fit["n"],
                 ya[first] if first >= 0 else np.nan, t0a[first] if first >= 0 else np.nan,
                 reference["mean"][amp], reference["exposure"], fit["ok"], reference["eo_mean"][amp])
            )  # fmt: skip
        names = ("exposure", "amp", "imgtype", "mjd", "darktime_s", "flat_exposure", "t_start_s", "t_end_s",
                 "residual_e", "residual_err_e", "residual_stdev_e", "dark_subtracted_e", "model_e",
                 "used_in_fit", "mjd_trg", "tseqnum", "time_min", "mean_signal_adu", "stdev_adu")  # fmt: skip
        per_exposure = Table(rows=rows, names=names) if rows else Table(
            names=names,
            dtype=(np.int64, str, str, float, float, np.int64, float, float, float, float, float, float,
                   float, bool, float, np.int64, float, float, float),
        )  # fmt: skip
        per_exposure["mjd"].unit = "d"
        per_exposure["mjd_trg"].unit = "d"
        per_exposure["time_min"].unit = "min"
        for name in ("mean_signal_adu", "stdev_adu"):
            per_exposure[name].unit = "adu"
        for name in ("darktime_s", "t_start_s", "t_end_s"):
            per_exposure[name].unit = "s"
        for name in ("residual_e", "residual_err_e", "residual_stdev_e", "dark_subtracted_e", "model_e"):
            per_exposure[name].unit = "electron"
        summary = Table(
            rows=summary_rows,
            names=("amp", "persistence_q0_e", "persistence_q0_err_e", "persistence_tau_s",
                   "persistence_tau_err_s", "offset_e", "offset_err_e", "chi2_dof", "n_exposures",
                   "first_residual_e", "first_t_start_s", "flat_signal_e", "flat_exposure", "fit_ok",
                   "flat_mean_signal_adu"),
        )  # fmt: skip
        summary["flat_mean_signal_adu"].unit = "adu"
        for name in ("persistence_q0_e", "persistence_q0_err_e", "offset_e", "offset_err_e",
                     "first_residual_e", "flat_signal_e"):  # fmt: skip
            summary[name].unit = "electron"
        for name in ("persistence_tau_s", "persistence_tau_err_s", "first_t_start_s"):
            summary[name].unit = "s"
        run_gain.add_columns(summary)
        run_gain.add_columns(per_exposure)
        meta = {"DETECTOR": detector.id, "DET_NAME": detector.name, **run_gain.metadata,
                "DARK": "eoDark" if cfg.isr.doDark else f"{cfg.darkCurrent} e-/s",
                "FIT_OFFSET": cfg.fitOffset, "TIME_REFERENCE": "flat MJD-END"}  # fmt: skip
        summary.meta.update(meta)
        per_exposure.meta.update(meta)
        apply_amp_flags(
            summary, flags, required=["persistence_q0_e", "persistence_tau_s"], skip=["gain_e_per_adu"]
        )
        final = dict(zip(summary["amp"], summary["flags"], strict=True))
        apply_amp_flags(
            per_exposure, final,
            skip=["mjd", "darktime_s", "t_start_s", "t_end_s", "mjd_trg", "time_min", "gain_e_per_adu"],
        )  # fmt: skip
        if any(final.values()):
            self.log.warning("%s: persistence not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(final))  # fmt: skip
        self.log.info(
            "%s: %d exposure(s) after %d saturating flat(s); median Q0 %.2f e-, tau %.1f s (%d/%d fits ok)",
            detector.name, int(len(after)), len(flats), nan_median(summary["persistence_q0_e"]),
            nan_median(summary["persistence_tau_s"]), int(np.sum(summary["fit_ok"])), len(amps),
        )  # fmt: skip
        return Struct(persistence=summary, exposures=per_exposure)
