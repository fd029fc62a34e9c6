"""Metrics derived from a detector's PTC (``eoPtc``): linearity, brighter-fatter, row-means variance.

Each is a small per-detector task reading ``eoPtc`` and writing one table with a row per
amplifier; the numerics live in `lsst.eo.baseline.linearity` and `lsst.eo.baseline.covariance`.

* ``eoLinearity`` (eo_pipe ``linearity_results``), on the measured, non-linearised pair means
  versus photodiode charge, or exposure time without one (B protocol; ``linearity_abscissa``
  says which): eo_pipe's ``linearity_turnoff_adu`` (largest signal within 5% of the
  proportional fit), ``max_frac_dev`` and ``max_observed_signal_adu`` (largest measured mean of
  all pairs); cp_pipe's sampled turnoff and maximum signal (``cp_linearity_turnoff_adu``,
  ``cp_linearity_max_signal_adu``, over the PTC fit points, 1% tolerance); ours,
  ``linearity_turnoff_interpolated_adu``, cp_pipe's turnoff interpolated to where the residual
  crosses 1% (the sampled value lies up to one flux step below it); residuals for plots.
* ``eoBrighterFatter`` (eo_pipe ``bf_stats`` and the a00 / noise of ``ptc_summary``): the
  slopes of the nearest-neighbour covariances C10 (serial) and C01 (parallel) versus the mean
  (adu) over the PTC fit points; ``ptc_minus_a00_per_e`` = -a00 (eo_pipe's sign) beside
  ``a00_per_e`` (cp_pipe's sign) and ``a00_source``; ``ptc_noise_e`` = the PTC fit's noise
  (eo_pipe) beside ``ptc_noise_overscan_corrected_e`` (ours).
* ``eoRowMeansVariance`` (eo_pipe ``row_means_variance_stats``): ``row_means_variance_slope``,
  eo_pipe's ratio of sums of the row-means variance to the shot-noise expectation (no read-noise
  term, all pairs, 3000 < signal < 1e5 e-) from eo_pipe's per-pair quantities, which the pair
  extraction stores in ``eoPtcPair`` (this task also reads those tables); beside it
  ``row_means_variance_slope_all_rows`` (the same with the amplifier's last row included) and
  ours, ``row_means_variance_ratio`` (cp_pipe's pair difference, with the read-noise term).

Each table has the ``flags`` column of `lsst.eo.baseline.ampFlags`: the amplifier flags stored in
``eoPtc`` (bad in the flats or the bias) and, except for ``eoLinearity`` (which does not use the
PTC fit), ``FIT_FAILED`` for the PTC's other bad amplifiers; flagged rows have NaN values.
"""

from __future__ import annotations

__all__ = [
    "EoBrighterFatterConfig",
    "EoBrighterFatterTask",
    "EoLinearityConfig",
    "EoLinearityTask",
    "EoPtcMetricConnections",
    "EoRowMeansVarianceConfig",
    "EoRowMeansVarianceConnections",
    "EoRowMeansVarianceTask",
    "eo_row_means_pairs",
]

from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .ampFlags import AmpFlag, apply_amp_flags, metadata_amp_flags
from .camera import DetectorInfo, get_camera, nominal_amps
from .covariance import row_means_variance_slope
from .flatPairStats import (
    eo_a00,
    eo_bf_stats,
    eo_row_means_variance_slope,
    overscan_corrected_noise,
    ptc_noise,
    serial_overscan_columns,
)
from .linearity import eo_linearity, interpolated_turnoff, linearity_turnoff
from .ptcDataset import EoPtcDataset


class EoPtcMetricConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections shared by the PTC-derived metric tasks (output name set per task)."""

    ptc = cT.Input(
        name="eoPtc",
        doc="Photon transfer curves of the detector.",
        storageClass="EoPtcDataset",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    metric = cT.Output(
        name="eoPtcMetric",
        doc="Metric table, one row per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


def _ptc_flags(ptc: EoPtcDataset, fit_failures: bool = True) -> dict[str, int]:
    """Amplifier flags of a PTC (`lsst.eo.baseline.ampFlags`): its ``AMP_FLAGS`` and ``badAmps``.

    With ``fit_failures`` False, ``FIT_FAILED`` is left out (for metrics that do not use the fit).
    """
    flags = metadata_amp_flags(ptc.metadata)
    if fit_failures:
        for amp in ptc.badAmps:
            flags[amp] = flags.get(amp, 0) or int(AmpFlag.FIT_FAILED)
    else:
        flags = {amp: value & ~int(AmpFlag.FIT_FAILED) for amp, value in flags.items()}
    return flags


def _amp_array(ptc: EoPtcDataset, name: str, amp: str, size: int, fill=np.nan, dtype=np.float64):
    """Per-pair array ``name`` of ``amp`` (``fill`` if absent)."""
    value = getattr(ptc, name).get(amp)
    if value is None:
        return np.full(size, fill, dtype=dtype)
    return np.asarray(value, dtype=dtype)


def _measured_means(ptc: EoPtcDataset, amp: str) -> np.ndarray:
    """Measured (not linearised) pair means (adu): ``measuredMeans``, else ``rawMeans``."""
    values = ptc.measuredMeans.get(amp)
    if values is None:
        values = ptc.rawMeans.get(amp, [])
    return np.asarray(values, dtype=np.float64)


def _meta(table: Table, detector: DetectorInfo, **extra) -> Table:
    table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name, **extra})
    return table


class _PtcMetricTask(PipelineTask):
    """Shared plumbing: read ``eoPtc``, call `run`, write the table."""

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        ptc = butlerQC.get(inputRefs.ptc)
        detector = get_camera()[outputRefs.metric.dataId["detector"]]
        butlerQC.put(self.run(ptc, detector), outputRefs)


class EoLinearityConfig(PipelineTaskConfig, pipelineConnections=EoPtcMetricConnections):
    """Configuration of `EoLinearityTask`."""

    abscissa = ChoiceField[str](
        doc="Abscissa of the linearity curve.",
        allowed={
            "AUTO": "photodiode charge when every pair has one, else exposure time",
            "PHOTODIODE": "photodiode charge (CCOBFLUX x EXPTIME)",
            "EXPTIME": "exposure time",
        },
        default="AUTO",
    )
    minSignal = Field[float](doc="Smallest signal (adu) of cp_pipe's proportional fit.", default=1000.0)
    maxFracDeviation = Field[float](doc="Linearity tolerance of cp_pipe's turnoff (1%).", default=0.01)
    eoFracDevSpec = Field[float](doc="eo_pipe's tolerance of its linearity_turnoff (5%).", default=0.05)

    def setDefaults(self):
        super().setDefaults()
        self.connections.metric = "eoLinearity"


class EoLinearityTask(_PtcMetricTask):
    """Linearity turnoff, maximum signal and deviation of every amplifier (eo_pipe and cp_pipe)."""

    ConfigClass = EoLinearityConfig
    _DefaultName = "eoLinearity"
    config: EoLinearityConfig

    def run(self, ptc: EoPtcDataset, detector: DetectorInfo) -> Struct:
        """Measure linearity from the PTC's measured pair means.

        Parameters
        ----------
        ptc : `~lsst.eo.baseline.ptcDataset.EoPtcDataset`
            The detector's PTCs.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``metric``: one row per amplifier.

        Notes
        -----
        eo_pipe's gain is the PTC gain, the camera-model gain when it is NaN (``GAIN_SOURCE`` in
        the row's ``eo_gain_source``).
        """
        cfg = self.config
        nominal = nominal_amps(detector.name)
        rows = []
        abscissas = set()
        for amp in ptc.ampNames:
            y = _measured_means(ptc, amp)
            charge = _amp_array(ptc, "photoCharges", amp, y.size)
            use_pd = cfg.abscissa == "PHOTODIODE" or (
                cfg.abscissa == "AUTO" and y.size > 0 and bool(np.isfinite(charge).all())
            )
            x = charge if use_pd else _amp_array(ptc, "rawExpTimes", amp, y.size)
            label = "photodiode" if use_pd else "exptime"
            abscissas.add(label)
            gain = float(ptc.gain.get(amp, np.nan))
            gain_source = "PTC"
            if not np.isfinite(gain):
                gain = nominal[amp].gain if amp in nominal else np.nan
                gain_source = "CAMERA"
            eo = eo_linearity(x, y, gain, max_frac_dev_spec=cfg.eoFracDevSpec)
            if y.size < 5:
                cp_values = (np.nan,) * 4
                residuals = np.full(y.size, np.nan)
            else:
                # cp_pipe fits the points of the PTC fit (expIdMask): saturated points would bias k.
                mask = _amp_array(ptc, "expIdMask", amp, y.size, fill=True, dtype=bool) & np.isfinite(y)
                cp = linearity_turnoff(
                    x, y, mask, min_signal=cfg.minSignal, max_frac_deviation=cfg.maxFracDeviation
                )
                refined = interpolated_turnoff(y, cp.residuals, cp.turnoff, cfg.maxFracDeviation)
                cp_values = (cp.turnoff, cp.max_signal, refined, cp.slope)
                residuals = np.asarray(cp.residuals, dtype=np.float64)
            rows.append(
                (
                    amp,
                    eo.linearity_turnoff,
                    eo.max_frac_dev,
                    eo.max_observed_signal,
                    *cp_values,
                    label,
                    gain_source,
                    residuals,
                )
            )
        width = max((r[-1].size for r in rows), default=0)
        residuals = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows):
            residuals[i, : r[-1].size] = r[-1]
        table = Table(
            rows=[r[:-1] for r in rows],
            names=(
                "amp",
                "linearity_turnoff_adu",
                "max_frac_dev",
                "max_observed_signal_adu",
                "cp_linearity_turnoff_adu",
                "cp_linearity_max_signal_adu",
                "linearity_turnoff_interpolated_adu",
                "slope_adu_per_x",
                "linearity_abscissa",
                "eo_gain_source",
            ),
        )
        table["residuals"] = residuals
        apply_amp_flags(table, _ptc_flags(ptc, fit_failures=False))
        for name in (
            "linearity_turnoff_adu",
            "max_observed_signal_adu",
            "cp_linearity_turnoff_adu",
            "cp_linearity_max_signal_adu",
            "linearity_turnoff_interpolated_adu",
        ):
            table[name].unit = "adu"
        _meta(table, detector, ABSCISSA=",".join(sorted(abscissas)))
        return Struct(metric=table)


class EoBrighterFatterConfig(PipelineTaskConfig, pipelineConnections=EoPtcMetricConnections):
    """Configuration of `EoBrighterFatterTask`."""

    serialOverscanLeadingSkip = Field[int](
        doc="Serial-overscan columns the pair extraction's ISR skips next to the data "
        "(EoIsrTask serialLeadingToSkip), for ptc_noise_overscan_corrected_e.",
        default=3,
    )
    serialOverscanTrailingSkip = Field[int](
        doc="Serial-overscan columns the pair extraction's ISR skips at the far end "
        "(EoIsrTask serialTrailingToSkip), for ptc_noise_overscan_corrected_e.",
        default=3,
    )

    def setDefaults(self):
        super().setDefaults()
        self.connections.metric = "eoBrighterFatter"


class EoBrighterFatterTask(_PtcMetricTask):
    """Brighter-fatter slopes, a00 and PTC noise of every amplifier (eo_pipe and ours)."""

    ConfigClass = EoBrighterFatterConfig
    _DefaultName = "eoBrighterFatter"
    config: EoBrighterFatterConfig

    def run(self, ptc: EoPtcDataset, detector: DetectorInfo) -> Struct:
        """Tabulate brighter-fatter quantities, a00 and noise.

        Parameters
        ----------
        ptc : `~lsst.eo.baseline.ptcDataset.EoPtcDataset`
            The detector's PTCs.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``metric``: one row per amplifier.
        """
        cfg = self.config
        layouts = {a.name: a for a in detector.ccd_type.amps}
        rows = []
        for amp in ptc.ampNames:
            gain = float(ptc.gain.get(amp, np.nan))
            a_matrix = ptc.aMatrix.get(amp)
            a = np.asarray(a_matrix if a_matrix is not None else np.zeros((0, 0)), dtype=np.float64)
            minus_a00, source = eo_a00(ptc.ptcFitType, a_matrix, ptc.ptcFitPars.get(amp))
            has_matrix = a.ndim == 2 and min(a.shape) > 1 and np.isfinite(a[0, 0])
            a10, a01 = (a[1, 0], a[0, 1]) if has_matrix else (np.nan, np.nan)
            means = np.asarray(ptc.rawMeans.get(amp, []), dtype=np.float64)
            cov = np.asarray(ptc.covariances.get(amp, np.zeros((0, 2, 2))), dtype=np.float64)
            mask = _amp_array(ptc, "expIdMask", amp, means.size, fill=False, dtype=bool)
            s = eo_bf_stats(means, cov, mask)
            noise = ptc_noise(float(ptc.noise.get(amp, np.nan)), ptc.noiseMatrix.get(amp))
            n_cols = serial_overscan_columns(
                layouts[amp], cfg.serialOverscanLeadingSkip, cfg.serialOverscanTrailingSkip
            )
            noise_list = _amp_array(ptc, "noiseList", amp, means.size)[mask]
            overscan_noise = float(np.nanmedian(noise_list)) if np.isfinite(noise_list).any() else np.nan
            corrected = overscan_corrected_noise(noise, overscan_noise, gain, n_cols)
            rows.append(
                (
                    amp,
                    s.slope_x,
                    s.slope_x_err,
                    s.slope_y,
                    s.slope_y_err,
                    s.xcorr,
                    s.ycorr,
                    s.mean,
                    s.n_points,
                    minus_a00,
                    -minus_a00,
                    a10,
                    a01,
                    source,
                    noise,
                    corrected,
                    n_cols,
                    gain,
                )
            )
        table = Table(
            rows=rows,
            names=(
                "amp",
                "bf_slope_x_adu",
                "bf_slope_x_err_adu",
                "bf_slope_y_adu",
                "bf_slope_y_err_adu",
                "bf_xcorr_adu2",
                "bf_ycorr_adu2",
                "bf_mean_adu",
                "bf_n_pairs",
                "ptc_minus_a00_per_e",
                "a00_per_e",
                "a10_per_e",
                "a01_per_e",
                "a00_source",
                "ptc_noise_e",
                "ptc_noise_overscan_corrected_e",
                "overscan_columns",
                "gain_e_per_adu",
            ),
        )
        for name in ("ptc_minus_a00_per_e", "a00_per_e", "a10_per_e", "a01_per_e"):
            table[name].unit = "1/electron"
        for name in ("bf_slope_x_adu", "bf_slope_x_err_adu", "bf_slope_y_adu", "bf_slope_y_err_adu"):
            table[name].unit = "adu"
        for name in ("bf_xcorr_adu2", "bf_ycorr_adu2"):
            table[name].unit = "adu2"
        table["bf_mean_adu"].unit = "adu"
        for name in ("ptc_noise_e", "ptc_noise_overscan_corrected_e"):
            table[name].unit = "electron"
        table["gain_e_per_adu"].unit = "electron/adu"
        apply_amp_flags(table, _ptc_flags(ptc), skip=["gain_e_per_adu"])
        return Struct(metric=_meta(table, detector, PTC_FIT_TYPE=ptc.ptcFitType))


class EoRowMeansVarianceConnections(EoPtcMetricConnections):
    """Connections of `EoRowMeansVarianceTask`: ``eoPtc`` and the detector's pair tables."""

    pairs = cT.Input(
        name="eoPtcPair",
        doc="Per-pair PTC measurements of the detector, with eo_pipe's row-means quantities.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
    )


class EoRowMeansVarianceConfig(PipelineTaskConfig, pipelineConnections=EoRowMeansVarianceConnections):
    """Configuration of `EoRowMeansVarianceTask`."""

    minSignal = Field[float](doc="Smallest pair signal (e-) used (eo_pipe 3000).", default=3000.0)
    maxSignal = Field[float](doc="Largest pair signal (e-) used (eo_pipe 1e5).", default=1.0e5)

    def setDefaults(self):
        super().setDefaults()
        self.connections.metric = "eoRowMeansVariance"


def eo_row_means_pairs(
    pairs: Sequence[Table], exposure_pairs: np.ndarray, amp_names: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    """eo_pipe's per-pair row-means quantities of every amplifier, in the order of a pair list.

    Parameters
    ----------
    pairs : sequence of `astropy.table.Table`
        ``eoPtcPair`` tables (any order; tables of other pairs are ignored).
    exposure_pairs : `numpy.ndarray`
        ``(N, 2)`` exposure ids of the pairs to use (eo_pipe: ``inputExpIdPairs`` of the first
        amplifier, for every amplifier).
    amp_names : sequence of `str`
        Amplifiers.

    Returns
    -------
    values : `dict` [`str`, `dict` [`str`, `numpy.ndarray`]]
        Per amplifier, ``mean_adu`` (the two flats' masked means averaged), ``variance_adu2``,
        ``variance_all_rows_adu2`` and ``n_cols``, one entry per pair (NaN where a pair has no row
        for the amplifier).
    """
    index = {(int(e1), int(e2)): k for k, (e1, e2) in enumerate(np.asarray(exposure_pairs).reshape(-1, 2))}
    n = len(index)
    names = ("mean_adu", "variance_adu2", "variance_all_rows_adu2", "n_cols")
    out = {amp: {name: np.full(n, np.nan) for name in names} for amp in amp_names}
    for table in pairs:
        for row in table:
            k = index.get((int(row["exposure_1"]), int(row["exposure_2"])))
            if k is None or row["amp"] not in out:
                continue
            values = out[row["amp"]]
            values["mean_adu"][k] = 0.5 * (row["eo_mean_1_adu"] + row["eo_mean_2_adu"])
            values["variance_adu2"][k] = row["eo_row_means_variance_adu2"]
            values["variance_all_rows_adu2"][k] = row["eo_row_means_variance_all_rows_adu2"]
            values["n_cols"][k] = row["eo_row_means_n_cols"]
    return out


class EoRowMeansVarianceTask(_PtcMetricTask):
    """Row-means variance relative to the shot-noise expectation, per amplifier."""

    ConfigClass = EoRowMeansVarianceConfig
    _DefaultName = "eoRowMeansVariance"
    config: EoRowMeansVarianceConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        ptc = butlerQC.get(inputRefs.ptc)
        pairs = butlerQC.get(inputRefs.pairs)
        detector = get_camera()[outputRefs.metric.dataId["detector"]]
        butlerQC.put(self.run(ptc, detector, pairs), outputRefs)

    def run(self, ptc: EoPtcDataset, detector: DetectorInfo, pairs: Sequence[Table]) -> Struct:
        """Compute eo_pipe's row-means variance slope and ours.

        Parameters
        ----------
        ptc : `~lsst.eo.baseline.ptcDataset.EoPtcDataset`
            The detector's PTCs (pair list, gains, our row-means variances).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        pairs : sequence of `astropy.table.Table`
            The detector's ``eoPtcPair`` tables (eo_pipe's per-pair quantities).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``metric``: one row per amplifier.

        Notes
        -----
        ``row_means_variance_slope`` is eo_pipe's: for every pair of the first amplifier's
        ``inputExpIdPairs`` (all pairs, whatever ``expIdMask``), S = PTC gain x the mean of the two
        flats' masked unclipped means and V = PTC gain^2 x the 10-sigma VARIANCECLIP of the row
        means of f1 - f2 without the last row, on the whole amplifier with the defects masked
        (``eoPtcPair`` ``eo_*`` columns), then `eo_row_means_variance_slope` with N_cols = the
        amplifier width.  ``row_means_variance_slope_all_rows`` is the same with every row.
        ``row_means_variance_ratio`` is ours: the row-means variances of ``eoPtc``
        (``rowMeanVariance``: cp_pipe's D = (mu2 I1 - mu1 I2)/mu inside the 20-pixel border and
        the vignetting selection, 5.5-sigma clip, ``rowMeanNCols`` pixels per row) over the PTC's
        own pairs, with the read noise (PTC noise) added to the expectation, ``2 (S + rn^2) / N``.
        """
        cfg = self.config
        first = ptc.ampNames[0] if ptc.ampNames else None
        exposure_pairs = np.asarray(
            ptc.inputExpIdPairs.get(first, np.zeros((0, 2))) if first is not None else np.zeros((0, 2))
        )
        eo_values = eo_row_means_pairs(pairs, exposure_pairs, ptc.ampNames)
        rows = []
        for amp in ptc.ampNames:
            gain = float(ptc.gain.get(amp, np.nan))
            eo = eo_values[amp]
            if not np.isfinite(gain):
                rows.append((amp, np.nan, np.nan, np.nan, 0))
                continue
            eo_signal = eo["mean_adu"] * gain
            eo_slope, eo_all_rows = (
                eo_row_means_variance_slope(
                    eo_signal, eo[key] * gain**2, eo["n_cols"], cfg.minSignal, cfg.maxSignal
                )
                for key in ("variance_adu2", "variance_all_rows_adu2")
            )
            with np.errstate(invalid="ignore"):
                inside = (eo_signal > cfg.minSignal) & (eo_signal < cfg.maxSignal)
            n_pairs = int(np.count_nonzero(inside & np.isfinite(eo["variance_adu2"])))
            means = _measured_means(ptc, amp)
            rmv = _amp_array(ptc, "rowMeanVariance", amp, means.size)
            ncols = _amp_array(ptc, "rowMeanNCols", amp, means.size)
            noise = float(ptc.noise.get(amp, 0.0))
            ours = row_means_variance_slope(
                means * gain,
                rmv * gain**2,
                ncols,
                cfg.minSignal,
                cfg.maxSignal,
                read_noise_e=noise if np.isfinite(noise) else 0.0,
            )
            rows.append((amp, eo_slope, eo_all_rows, ours, n_pairs))
        table = Table(
            rows=rows,
            names=(
                "amp",
                "row_means_variance_slope",
                "row_means_variance_slope_all_rows",
                "row_means_variance_ratio",
                "n_pairs",
            ),
            dtype=(str, np.float64, np.float64, np.float64, np.int64),
        )
        apply_amp_flags(table, _ptc_flags(ptc))
        return Struct(
            metric=_meta(
                table,
                detector,
                ROW_MEANS_INPUT="eoPtcPair eo_* columns (eo_pipe: whole amplifier, defects masked, f1 - f2)",
            )
        )
