"""PTC solve: gather a detector's flat pairs and fit the photon transfer curve of every amplifier.

Inputs are the ``eoPtcPair`` tables of `lsst.eo.baseline.ptcExtract`; the fit is
`lsst.eo.baseline.ptc.fit_ptc_amp` (cp_pipe's EXPAPPROXIMATION / FULLCOVARIANCE solver with its
outlier rejection, turnoff and optional roll-off).  Outputs:

* ``eoPtc`` (`~lsst.eo.baseline.ptcDataset.EoPtcDataset`, a calibration): every pair's means,
  variances, covariances, masks and the fit, in cp_pipe's ``PhotonTransferCurveDataset`` layout;
* ``eoPtcSummary``: one row per amplifier with gain, noise, a00, turnoff, maximum signal.

In the pipelines these are renamed ``eoPtcUnadjusted`` and ``eoPtcSummaryUnadjusted`` (as cp_pipe's
``ptcUnadjusted``): `lsst.eo.baseline.ptcAdjustGainRatios` reads them and writes ``eoPtc`` and
``eoPtcSummary`` with the gain-ratio adjusted gains.  Here ``gain`` = ``gainUnadjusted``.

Linearity: cp_pipe's PTC ISR applies a linearizer measured beforehand (its "linearizer PTC"
chain).  Here a linearizer is fitted to the same pairs' mean signal versus photodiode charge
(`lsst.eo.baseline.linearity.fit_linearizer`) and applied to the pair statistics: means through
the linearizer, variances and covariances times the square of its derivative (first order in the
pixel spread of a flat, which is < 1%).  This needs the photodiode charge (CCOBFLUX x EXPTIME):
against exposure time the source's flux jitter hides the non-linearity and no linearization is
done.  Without it the PTC turns off where the non-linearity, not saturation, bends the variance.

Read noise: ``ptc_noise_e`` of the summary is the fit's noise, cp_pipe's ``noise`` (eo_pipe
``ptc_noise``).  The fitted intercept contains the variance that the per-row serial-overscan
subtraction adds to every pixel (the variance of a median of n overscan pixels, pi/2 sigma^2 / n,
~3% for n = 48); ``ptc_noise_overscan_corrected_e`` (ours) has it removed, using the pairs'
measured overscan noise and the amplifier's overscan column count (ITL 58, e2v 48).
``max_observed_signal_adu`` is the largest measured (not linearised) mean of all pairs.

Deliberate deviation from cp_pipe: cp_pipe corrects deferred charge pixel by pixel in its PTC ISR
with a separately calibrated CTI model.  Here the first-order effect of CTI on the pair statistics
is removed analytically with the EPER measured on the same pairs: a charge transfer inefficiency
eps over N transfers moves a fraction N eps of each pixel's charge into the next pixel, which lowers
the pixel variance by ``2 <N> eps`` and adds ``<N> eps`` of it to the nearest-neighbour covariance
along the transfer direction (``<N>`` averaged over the imaging area).  Without it an amplifier with
serial CTI of 2e-5 would have its gain biased by ~1%.

Incomplete data: an amplifier with fewer usable pairs than the fit needs (``MIN_PTC_POINTS`` for
EXPAPPROXIMATION; a run with a single flux level, or pairs lost to a bad amplifier) gets NaN gain,
noise and turnoff, its reason in ``failure`` and ``FIT_FAILED`` in ``flags``; amplifiers flagged in
their pairs (``eoPtcPair`` ``flags``) keep those flags (`lsst.eo.baseline.ampFlags`).  The flags are
also stored in ``eoPtc``'s metadata (``AMP_FLAGS``) for the PTC-derived metrics; a warning names
the detector and its number of pairs when there are too few for any fit.
"""

from __future__ import annotations

__all__ = [
    "MIN_PTC_POINTS",
    "EoPtcSolveConfig",
    "EoPtcSolveConnections",
    "EoPtcSolveTask",
    "correct_cti",
    "gather_pairs",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from lsst.pex.config import ChoiceField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .ampFlags import (
    FLAGS_COLUMN,
    FLAGS_METADATA_KEY,
    AmpFlag,
    apply_amp_flags,
    encode_amp_flags,
    flag_names,
    nan_median,
)
from .camera import DetectorInfo, get_camera
from .flatPairStats import max_observed_signal, overscan_corrected_noise, serial_overscan_columns
from .linearity import fit_linearizer
from .ptc import fit_ptc_amp
from .ptcDataset import EoPtcDataset

MIN_PTC_POINTS = 3
"""Fewest usable flat pairs of an amplifier for the EXPAPPROXIMATION fit (`lsst.eo.baseline.ptc`)."""


def gather_pairs(tables: Sequence[Table]) -> Table:
    """Stack ``eoPtcPair`` tables, sorted by amplifier then pair mean."""
    good = [t for t in tables if len(t)]
    if not good:
        return Table()
    table = vstack(good, metadata_conflicts="silent")
    table.sort(["amp", "raw_mean_adu"])
    return table


def _detector_means(table: Table) -> dict[tuple[int, int], float]:
    """Mean over amplifiers of the finite ``raw_mean_adu`` of each pair (NaN if none), by exposures.

    cp_pipe sorts a detector's PTC dataset by this value (``PhotonTransferCurveSolveTask.run``).
    """
    if len(table) == 0:
        return {}
    keys = [(int(a), int(b)) for a, b in zip(table["exposure_1"], table["exposure_2"], strict=True)]
    means = np.asarray(table["raw_mean_adu"], dtype=np.float64)
    sums: dict[tuple[int, int], list[float]] = {}
    for key, value in zip(keys, means, strict=True):
        sums.setdefault(key, [])
        if np.isfinite(value):
            sums[key].append(float(value))
    return {key: (float(np.mean(v)) if v else np.nan) for key, v in sums.items()}


def correct_cti(
    var: np.ndarray,
    cov: np.ndarray,
    serial_cti: float,
    parallel_cti: float,
    mean_serial_transfers: float,
    mean_parallel_transfers: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the first-order effect of CTI from pair variances and covariances.

    Parameters
    ----------
    var : `numpy.ndarray`
        (N,) variances (adu^2).
    cov : `numpy.ndarray`
        (N, R, R) covariances [pair, dx (serial), dy (parallel)] (adu^2); ``cov[:, 0, 0]`` is the
        variance.
    serial_cti, parallel_cti : `float`
        Charge transfer inefficiency per transfer (NaN or negative: no correction).
    mean_serial_transfers, mean_parallel_transfers : `float`
        Average number of transfers of the measured pixels.

    Returns
    -------
    var, cov : `numpy.ndarray`
        Corrected copies.
    """
    a_s = mean_serial_transfers * serial_cti if np.isfinite(serial_cti) and serial_cti > 0 else 0.0
    a_p = mean_parallel_transfers * parallel_cti if np.isfinite(parallel_cti) and parallel_cti > 0 else 0.0
    scale = 1.0 / (1.0 - 2.0 * (a_s + a_p))
    var_c = np.asarray(var, dtype=np.float64) * scale
    cov_c = np.array(cov, dtype=np.float64)
    if cov_c.ndim == 3 and cov_c.shape[1] > 1:
        cov_c[:, 0, 0] *= scale
        cov_c[:, 1, 0] -= a_s * cov_c[:, 0, 0]
        cov_c[:, 0, 1] -= a_p * cov_c[:, 0, 0]
    return var_c, cov_c


class EoPtcSolveConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoPtcSolveTask`."""

    pairs = cT.Input(
        name="eoPtcPair",
        doc="Per-pair PTC measurements of the detector.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
    )
    ptc = cT.Output(
        name="eoPtc",
        doc="Photon transfer curves and fits (cp_pipe PhotonTransferCurveDataset layout).",
        storageClass="EoPtcDataset",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    summary = cT.Output(
        name="eoPtcSummary",
        doc="PTC gain, noise, a00, turnoff and maximum signal per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoPtcSolveConfig(PipelineTaskConfig, pipelineConnections=EoPtcSolveConnections):
    """Configuration of `EoPtcSolveTask` (defaults: cp_pipe's LSSTCam values unless noted)."""

    ptcFitType = ChoiceField[str](
        doc="PTC model (cp_pipe LSSTCam: FULLCOVARIANCE, which gives gain, noise and a00).",
        allowed={
            "EXPAPPROXIMATION": "Astier+19 Eq. 16 on the variances",
            "FULLCOVARIANCE": "Astier+19 Eq. 20 on all covariances",
            "FULLCOVARIANCE_NO_B": "Eq. 20 with b = 0",
        },
        default="FULLCOVARIANCE",
    )
    doModelPtcRolloff = Field[bool](
        doc="Fit the roll-off and drop points at and above it (cp_pipe LSSTCam: True).", default=True
    )
    sigmaCutPtcOutliers = Field[float](doc="Outlier cut (sigma) of the initial fit.", default=5.0)
    maxSignalInitialPtcOutlierFit = Field[float](
        doc="Mean and variance limit of the first outlier fit (adu unless scaled; LSSTCam 20000 adu).",
        default=20000.0,
    )
    scaleMaxSignalInitialPtcOutlierFit = Field[bool](
        doc="Read the two initial-fit limits as e- and divide them by nanmedian(mean/var) (LSSTCam: False).",
        default=False,
    )
    maxDeltaInitialPtcOutlierFit = Field[float](
        doc="Jump-check threshold (adu unless scaled); LSSTCam 1000, eo_pipe's B protocol 10000.",
        default=1000.0,
    )
    maxIterationsPtcOutliers = Field[int](doc="Outlier-rejection iterations.", default=2)
    maxPtcRolloffDeviation = Field[float](doc="Roll-off tolerance (LSSTCam 0.005).", default=0.005)
    extendRollofSearchMaskSizeAdu = Field[float](
        doc="Roll-off search range above the turnoff (adu; cp_pipe's field name).", default=5000.0
    )
    ksTestMinPvalue = Field[float](
        doc="Pairs with a KS p-value below this are masked (no KS test is run: p-values are 1).",
        default=0.01,
    )
    minMeanSignal = Field[float](doc="Pairs with a mean (adu) at or below this are masked.", default=0.0)
    maxMeanSignal = Field[float](doc="Pairs with a mean (adu) at or above this are masked.", default=1.0e6)
    maximumRangeCovariancesFullCovFit = Field[int](
        doc="Lags fitted by FULLCOVARIANCE (LSSTCam 10).", default=10
    )
    doCtiCorrection = Field[bool](
        doc="Remove first-order CTI from variances and covariances (see module).", default=True
    )
    ctiSignalMin = Field[float](doc="Pairs with a mean (adu) above this give the EPER used.", default=2000.0)
    ctiSignalMax = Field[float](doc="Pairs with a mean (adu) below this give the EPER used.", default=40000.0)
    doLinearize = Field[bool](
        doc="Fit a linearizer to mean vs photodiode charge and linearise the pair statistics (see module).",
        default=True,
    )


class EoPtcSolveTask(PipelineTask):
    """Fit the photon transfer curve of every amplifier of a detector."""

    ConfigClass = EoPtcSolveConfig
    _DefaultName = "eoPtcSolve"
    config: EoPtcSolveConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        tables = butlerQC.get(inputRefs.pairs)
        detector = get_camera()[outputRefs.ptc.dataId["detector"]]
        butlerQC.put(self.run(tables, detector), outputRefs)

    def run(self, pairs: Sequence[Table], detector: DetectorInfo) -> Struct:
        """Solve the PTCs.

        Parameters
        ----------
        pairs : sequence of `astropy.table.Table`
            ``eoPtcPair`` tables.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``ptc`` (`~lsst.eo.baseline.ptcDataset.EoPtcDataset`) and ``summary`` (table).
        """
        cfg = self.config
        table = gather_pairs(pairs)
        if len(table) == 0:
            raise NoWorkFound(f"No flat pair for {detector.name}")
        side = int(np.asarray(table["covariances_adu2"]).shape[-1])
        ptc = EoPtcDataset(
            ampNames=list(detector.amp_names),
            ptcFitType=cfg.ptcFitType,
            covMatrixSide=side,
            covMatrixSideFullCovFit=min(side, cfg.maximumRangeCovariancesFullCovFit),
            metadata={
                "DETECTOR": detector.id,
                "DET_NAME": detector.name,
                "INSTRUME": "LSSTCam",
                "DET_SER": detector.ccd_type.model,
                "CCD_MANU": detector.vendor,
            },
        )
        detector_means = _detector_means(table)
        rows = []
        for layout in detector.ccd_type.amps:
            amp = layout.name
            sel = table[table["amp"] == amp]
            rows.append(self._solve_amp(ptc, amp, sel, layout, detector_means))
        summary = Table(
            rows=rows,
            names=(
                "amp",
                "ptc_gain_e_per_adu",
                "ptc_gain_unadjusted_e_per_adu",
                "ptc_gain_err_e_per_adu",
                "ptc_noise_e",
                "ptc_noise_err_e",
                "ptc_noise_overscan_corrected_e",
                "ptc_a00_per_e",
                "ptc_turnoff_adu",
                "ptc_turnoff_e",
                "ptc_turnoff_sampling_error_adu",
                "max_observed_signal_adu",
                "n_pairs",
                "n_pairs_used",
                "chi2_dof",
                "serial_cti_used",
                "parallel_cti_used",
                "failure",
            ),
        )
        units = {
            "ptc_gain_e_per_adu": "electron/adu",
            "ptc_gain_unadjusted_e_per_adu": "electron/adu",
            "ptc_gain_err_e_per_adu": "electron/adu",
            "ptc_noise_e": "electron",
            "ptc_noise_err_e": "electron",
            "ptc_noise_overscan_corrected_e": "electron",
            "ptc_a00_per_e": "1/electron",
            "ptc_turnoff_adu": "adu",
            "ptc_turnoff_e": "electron",
            "ptc_turnoff_sampling_error_adu": "adu",
            "max_observed_signal_adu": "adu",
        }
        for name, unit in units.items():
            summary[name].unit = unit
        summary.meta.update(
            {"DETECTOR": detector.id, "DET_NAME": detector.name, "PTC_FIT_TYPE": cfg.ptcFitType}
        )
        flags = self._amp_flags(table, summary)
        apply_amp_flags(summary, flags, required=["ptc_gain_e_per_adu", "ptc_noise_e"])
        flags = dict(zip(summary["amp"], summary[FLAGS_COLUMN], strict=True))
        ptc.badAmps = [r[0] for r in rows if r[-1]]
        ptc.metadata[FLAGS_METADATA_KEY] = encode_amp_flags(flags)
        self._log_failures(detector, table, summary)
        self.log.info(
            "%s: median PTC gain %.4f e-/adu, %d bad amp(s)",
            detector.name,
            nan_median(summary["ptc_gain_e_per_adu"]),
            len(ptc.badAmps),
        )
        return Struct(ptc=ptc, summary=summary)

    @staticmethod
    def _amp_flags(pairs: Table, summary: Table) -> dict[str, int]:
        """Flags of each amplifier: its pairs' flags (ORed), FIT_FAILED for a failed fit otherwise."""
        flags = {}
        has_flags = FLAGS_COLUMN in pairs.colnames
        for row in summary:
            amp = str(row["amp"])
            value = 0
            if has_flags:
                for v in np.asarray(pairs[FLAGS_COLUMN])[np.asarray(pairs["amp"]).astype(str) == amp]:
                    value |= int(v)
            if not value and row["failure"]:
                value = int(AmpFlag.FIT_FAILED)
            flags[amp] = value
        return flags

    def _log_failures(self, detector: DetectorInfo, pairs: Table, summary: Table) -> None:
        """Warn about too few pairs, flagged amplifiers and failed fits (one line per reason)."""
        n_pairs = len(
            {(int(a), int(b)) for a, b in zip(pairs["exposure_1"], pairs["exposure_2"], strict=True)}
        )
        if n_pairs < MIN_PTC_POINTS:
            self.log.warning(
                "%s: %d flat pair(s), the PTC fit needs at least %d points: gain and noise are NaN "
                "(flag FIT_FAILED)",
                detector.name,
                n_pairs,
                MIN_PTC_POINTS,
            )
        reasons: dict[str, list[str]] = {}
        for row in summary:
            value = int(row[FLAGS_COLUMN])
            if value:
                fit_only = value == AmpFlag.FIT_FAILED and row["failure"]
                text = str(row["failure"]) if fit_only else "flagged " + "|".join(flag_names(value))
                reasons.setdefault(text, []).append(str(row["amp"]))
        for text, amps in reasons.items():
            self.log.warning("%s: no PTC for amplifier(s) %s: %s", detector.name, ", ".join(amps), text)

    def _solve_amp(
        self, ptc: EoPtcDataset, amp: str, sel: Table, layout, detector_means: dict[tuple[int, int], float]
    ) -> tuple:
        cfg = self.config
        n = len(sel)
        # cp_pipe orders the dataset by each pair's detector mean; the roll-off step depends on it.
        pair_means = np.array(
            [
                detector_means[(int(a), int(b))]
                for a, b in zip(sel["exposure_1"], sel["exposure_2"], strict=True)
            ],
            dtype=np.float64,
        )
        point_order = np.argsort(pair_means, kind="stable")
        means = np.asarray(sel["raw_mean_adu"], dtype=np.float64)
        var = np.asarray(sel["raw_var_adu2"], dtype=np.float64)
        cov = np.asarray(sel["covariances_adu2"], dtype=np.float64).reshape(
            n, ptc.covMatrixSide, ptc.covMatrixSide
        )
        weights = np.asarray(sel["covariance_sqrt_weights"], dtype=np.float64).reshape(cov.shape)
        valid = np.asarray(sel["valid"], dtype=bool) & np.isfinite(means) & np.isfinite(var)
        ksp_values = np.ones(n)  # no KS test of the pair difference is run (cp_pipe's default)
        valid &= ksp_values >= cfg.ksTestMinPvalue
        measured_var = var.copy()
        s_cti = p_cti = np.nan
        if cfg.doCtiCorrection and n:
            window = valid & (means > cfg.ctiSignalMin) & (means < cfg.ctiSignalMax)
            if window.any():
                s_cti = float(np.nanmedian(np.asarray(sel["serial_eper"])[window]))
                p_cti = float(np.nanmedian(np.asarray(sel["parallel_eper"])[window]))
                d = layout.raw.data_bbox
                # Transfers of data pixel (column j, row i): prescan + j + 1 serial, i + 1 parallel.
                n_serial = d.x.start + (d.x.stop - d.x.start + 1) / 2.0
                n_parallel = (d.y.stop + 1) / 2.0
                var, cov = correct_cti(var, cov, s_cti, p_cti, n_serial, n_parallel)
        linearizer = None
        fit_means = means
        photo = np.asarray(sel["photo_charge"], dtype=np.float64)
        if cfg.doLinearize and n and np.isfinite(photo[valid]).all():
            linearizer = fit_linearizer(photo, means, valid)
            if linearizer.spline is not None:
                slope = linearizer.derivative(means) ** 2
                fit_means = linearizer(means)
                var = var * slope
                cov = cov * slope[:, None, None]
                valid = valid & np.isfinite(fit_means)
        fit = fit_ptc_amp(
            fit_means,
            var,
            cfg.ptcFitType,
            cfg.doModelPtcRolloff,
            covariances=cov if n else None,
            covariance_weights=weights if n else None,
            exp_id_mask=valid,
            sigma_cut=cfg.sigmaCutPtcOutliers,
            max_signal_initial=cfg.maxSignalInitialPtcOutlierFit,
            max_delta_initial=cfg.maxDeltaInitialPtcOutlierFit,
            max_iterations=cfg.maxIterationsPtcOutliers,
            max_rolloff_deviation=cfg.maxPtcRolloffDeviation,
            max_lag_fit=min(ptc.covMatrixSide, cfg.maximumRangeCovariancesFullCovFit),
            rolloff_extension=cfg.extendRollofSearchMaskSizeAdu,
            min_mean=cfg.minMeanSignal,
            max_mean=cfg.maxMeanSignal,
            point_order=point_order,
            scale_max_signal_initial=cfg.scaleMaxSignalInitialPtcOutlierFit,
        )
        pairs = np.stack([np.asarray(sel["exposure_1"]), np.asarray(sel["exposure_2"])], axis=1)
        values: dict[str, Any] = {
            "inputExpIdPairs": pairs,
            "inputExpPairMjdStartList": np.asarray(sel["mjd_start"]),
            "expIdMask": fit.mask if fit.mask.size == n else np.zeros(n, bool),
            "expIdRolloffMask": fit.rolloff_mask if fit.rolloff_mask.size == n else np.zeros(n, bool),
            "rawExpTimes": np.asarray(sel["exptime_s"]),
            "rawMeans": fit_means,
            "rawVars": var,
            "rawDeltas": np.asarray(sel["raw_delta_adu"]),
            "rowMeanVariance": np.asarray(sel["row_mean_variance_adu2"]),
            "rowMeanNCols": np.asarray(sel["row_mean_n_cols"]),
            "photoCharges": np.asarray(sel["photo_charge"]),
            "photoChargeDeltas": np.asarray(sel["photo_charge_delta"]),
            "gainList": np.asarray(sel["gain_e_per_adu"]),
            "noiseList": np.asarray(sel["noise_adu"]),
            "overscanMedianLevelList": np.asarray(sel["overscan_median_adu"]),
            "kspValues": ksp_values,
            "nPixelCovariances": np.asarray(sel["n_pixels"]),
            "finalVars": fit.final_vars,
            "finalModelVars": fit.final_model_vars,
            "finalMeans": fit.final_means,
            "covariances": cov,
            "covariancesModel": fit.covariances_model,
            "covariancesSqrtWeights": weights,
            "gain": fit.gain,
            "gainErr": fit.gain_err,
            "gainUnadjusted": fit.gain,
            "noise": fit.noise,
            "noiseErr": fit.noise_err,
            # cp_pipe stores the Eq. 16 parameters [a00, g, n] here, and NaN for FULLCOVARIANCE.
            "ptcFitPars": fit.fit_params if cfg.ptcFitType == "EXPAPPROXIMATION" else np.full(3, np.nan),
            "ptcFitParsError": fit.fit_params_err
            if cfg.ptcFitType == "EXPAPPROXIMATION"
            else np.full(3, np.nan),
            "ptcFitChiSq": fit.chi2_dof,
            "ptcTurnoff": fit.ptc_turnoff,
            "measuredMeans": means,
            "measuredVars": measured_var,
            "ptcTurnoffSamplingError": fit.ptc_turnoff_sampling_error,
            "ptcRolloff": fit.ptc_rolloff,
            "aMatrix": fit.a_matrix,
            "bMatrix": fit.b_matrix,
            "noiseMatrix": fit.noise_matrix,
        }
        good_levels = np.asarray(sel["overscan_median_adu"])[fit.mask] if fit.mask.size == n else np.array([])
        if good_levels.size:
            med = float(np.nanmedian(good_levels))
            values["overscanMedian"] = med
            values["overscanMedianSigma"] = float(1.4826 * np.nanmedian(np.abs(good_levels - med)))
        for name, value in values.items():
            ptc.set(name, amp, value)
        # Ours beside eo_pipe's fitted noise: the per-row overscan median's variance removed, with
        # the amplifier's own overscan column count (ITL 58, e2v 48).
        used = fit.mask if fit.mask.size == n else valid
        noise_list = np.asarray(sel["noise_adu"], dtype=np.float64)[used]
        overscan_noise = float(np.nanmedian(noise_list)) if np.isfinite(noise_list).any() else np.nan
        noise_corrected = (
            overscan_corrected_noise(fit.noise, overscan_noise, fit.gain, serial_overscan_columns(layout))
            if np.isfinite(fit.noise)
            else np.nan
        )
        # The gain-ratio adjustment (cp_pipe cpPtcAdjustGainRatios) is the next task
        # (ptcAdjustGainRatios); until then the gain is the fit value, like gainUnadjusted.
        return (
            amp,
            fit.gain,
            fit.gain,
            fit.gain_err,
            fit.noise,
            fit.noise_err,
            noise_corrected,
            fit.a00,
            fit.ptc_turnoff,
            fit.ptc_turnoff * fit.gain,
            fit.ptc_turnoff_sampling_error,
            max_observed_signal(means),
            n,
            int(fit.mask.sum()) if fit.mask.size == n else 0,
            fit.chi2_dof,
            s_cti,
            p_cti,
            fit.failure,
        )
