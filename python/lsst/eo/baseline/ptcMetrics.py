"""Metrics derived from a detector's PTC (``eoPtc``): linearity, brighter-fatter, row-means variance.

Each is a small per-detector task reading ``eoPtc`` and writing one table with a row per
amplifier; the numerics live in `lsst.eo.baseline.linearity` and `lsst.eo.baseline.covariance`.

* ``eoLinearity``: cp_pipe's linearity turnoff and maximum signal (the primary definitions, on the
  measured, non-linearised means versus photodiode charge -- or exposure time without a
  photodiode, over the points of the PTC fit as cp_pipe does), eo_pipe's maximum fractional
  deviation and turnoff, and the fractional residuals of every pair for plots.  cp_pipe's turnoff
  is a sampled mean, up to one flux step below where the residual crosses 1%;
  ``linearity_turnoff_adu`` interpolates to the crossing (deliberate refinement) and
  ``linearity_turnoff_sampled_adu`` keeps cp_pipe's value.
* ``eoBrighterFatter``: a00 from the PTC fit, a01/a10 from FULLCOVARIANCE fits, and eo_pipe's BF
  correlations -- the slopes of the nearest-neighbour covariances C10 (serial) and C01
  (parallel) versus mean signal, from the pairs used by the PTC fit.
* ``eoRowMeansVariance``: eo_pipe's ratio of the measured variance of the row means of the pair
  difference images to the shot-noise expectation (1 for uncorrelated noise), over pairs with
  3000 e- < signal < 1e5 e-.

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
    "EoRowMeansVarianceTask",
]

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .ampFlags import AmpFlag, apply_amp_flags, metadata_amp_flags
from .camera import DetectorInfo, get_camera
from .covariance import bf_slopes, row_means_variance_slope
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
    minSignal = Field[float](doc="Smallest signal (adu) of the proportional fit (cp_pipe).", default=1000.0)
    maxFracDeviation = Field[float](doc="Linearity tolerance of the turnoff (cp_pipe 1%).", default=0.01)
    eoFracDevSpec = Field[float](doc="eo_pipe's tolerance of its turnoff (5%).", default=0.05)

    def setDefaults(self):
        super().setDefaults()
        self.connections.metric = "eoLinearity"


class EoLinearityTask(_PtcMetricTask):
    """Linearity turnoff, maximum signal and deviation of every amplifier."""

    ConfigClass = EoLinearityConfig
    _DefaultName = "eoLinearity"
    config: EoLinearityConfig

    def run(self, ptc: EoPtcDataset, detector: DetectorInfo) -> Struct:
        """Measure linearity from the PTC's pair means.

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
        rows = []
        abscissas = set()
        for amp in ptc.ampNames:
            y = np.asarray(ptc.measuredMeans.get(amp, ptc.rawMeans.get(amp, [])), dtype=np.float64)
            charge = np.asarray(ptc.photoCharges.get(amp, np.full(y.size, np.nan)), dtype=np.float64)
            use_pd = cfg.abscissa == "PHOTODIODE" or (
                cfg.abscissa == "AUTO" and y.size and np.isfinite(charge).all()
            )
            x = charge if use_pd else np.asarray(ptc.rawExpTimes.get(amp, []), dtype=np.float64)
            abscissas.add("photodiode" if use_pd else "exptime")
            gain = float(ptc.gain.get(amp, np.nan))
            if y.size < 5:
                rows.append(
                    (amp, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.full(y.size, np.nan))
                )
                continue
            # cp_pipe fits the points of the PTC fit (expIdMask): saturated points would bias k.
            mask = np.asarray(ptc.expIdMask.get(amp, np.isfinite(y)), dtype=bool) & np.isfinite(y)
            cp = linearity_turnoff(
                x, y, mask, min_signal=cfg.minSignal, max_frac_deviation=cfg.maxFracDeviation
            )
            eo = eo_linearity(x, y, gain if np.isfinite(gain) else 1.0)
            refined = interpolated_turnoff(y, cp.residuals, cp.turnoff, cfg.maxFracDeviation)
            rows.append(
                (
                    amp,
                    refined,
                    cp.turnoff,
                    cp.max_signal,
                    cp.slope,
                    eo.max_frac_dev,
                    eo.linearity_turnoff,
                    eo.max_observed_signal,
                    np.asarray(cp.residuals, dtype=np.float64),
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
                "linearity_turnoff_sampled_adu",
                "max_signal_adu",
                "slope_adu_per_x",
                "max_frac_dev",
                "eo_linearity_turnoff_adu",
                "max_observed_signal_adu",
            ),
        )
        table["residuals"] = residuals
        apply_amp_flags(table, _ptc_flags(ptc, fit_failures=False))
        for name in (
            "linearity_turnoff_adu",
            "linearity_turnoff_sampled_adu",
            "max_signal_adu",
            "eo_linearity_turnoff_adu",
            "max_observed_signal_adu",
        ):
            table[name].unit = "adu"
        _meta(table, detector, ABSCISSA=",".join(sorted(abscissas)))
        return Struct(metric=table)


class EoBrighterFatterConfig(PipelineTaskConfig, pipelineConnections=EoPtcMetricConnections):
    """Configuration of `EoBrighterFatterTask`."""

    def setDefaults(self):
        super().setDefaults()
        self.connections.metric = "eoBrighterFatter"


class EoBrighterFatterTask(_PtcMetricTask):
    """Brighter-fatter a00 and nearest-neighbour correlation slopes of every amplifier."""

    ConfigClass = EoBrighterFatterConfig
    _DefaultName = "eoBrighterFatter"
    config: EoBrighterFatterConfig

    def run(self, ptc: EoPtcDataset, detector: DetectorInfo) -> Struct:
        """Tabulate brighter-fatter quantities.

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
        rows = []
        for amp in ptc.ampNames:
            gain = float(ptc.gain.get(amp, np.nan))
            a_matrix = np.asarray(ptc.aMatrix.get(amp, np.full((0, 0), np.nan)))
            pars = np.asarray(ptc.ptcFitPars.get(amp, np.full(3, np.nan)))
            if a_matrix.size and np.isfinite(a_matrix).any():
                a00, a10, a01 = a_matrix[0, 0], a_matrix[1, 0], a_matrix[0, 1]
            else:
                a00, a10, a01 = (pars[0] if pars.size else np.nan), np.nan, np.nan
            means = np.asarray(ptc.rawMeans.get(amp, []), dtype=np.float64)
            cov = np.asarray(ptc.covariances.get(amp, np.zeros((0, 2, 2))), dtype=np.float64)
            mask = np.asarray(ptc.expIdMask.get(amp, np.zeros(means.size, bool)), dtype=bool)
            if means.size >= 3 and cov.ndim == 3 and cov.shape[1] > 1:
                s = bf_slopes(means, cov, mask)
                values = (s.slope_x, s.slope_x_err, s.slope_y, s.slope_y_err, s.xcorr, s.ycorr, s.mean)
            else:
                values = (np.nan,) * 7
            rows.append((amp, a00, a10, a01, *values, gain))
        table = Table(
            rows=rows,
            names=(
                "amp",
                "a00_per_e",
                "a10_per_e",
                "a01_per_e",
                "bf_slope_x",
                "bf_slope_x_err",
                "bf_slope_y",
                "bf_slope_y_err",
                "bf_xcorr_adu2",
                "bf_ycorr_adu2",
                "bf_mean_adu",
                "gain_e_per_adu",
            ),
        )
        for name in ("a00_per_e", "a10_per_e", "a01_per_e"):
            table[name].unit = "1/electron"
        for name in ("bf_xcorr_adu2", "bf_ycorr_adu2"):
            table[name].unit = "adu2"
        table["bf_mean_adu"].unit = "adu"
        apply_amp_flags(table, _ptc_flags(ptc), skip=["gain_e_per_adu"])
        return Struct(metric=_meta(table, detector, PTC_FIT_TYPE=ptc.ptcFitType))


class EoRowMeansVarianceConfig(PipelineTaskConfig, pipelineConnections=EoPtcMetricConnections):
    """Configuration of `EoRowMeansVarianceTask`."""

    minSignal = Field[float](doc="Smallest pair signal (e-) used (eo_pipe 3000).", default=3000.0)
    maxSignal = Field[float](doc="Largest pair signal (e-) used (eo_pipe 1e5).", default=1.0e5)

    def setDefaults(self):
        super().setDefaults()
        self.connections.metric = "eoRowMeansVariance"


class EoRowMeansVarianceTask(_PtcMetricTask):
    """Row-means variance relative to the shot-noise expectation, per amplifier."""

    ConfigClass = EoRowMeansVarianceConfig
    _DefaultName = "eoRowMeansVariance"
    config: EoRowMeansVarianceConfig

    def run(self, ptc: EoPtcDataset, detector: DetectorInfo) -> Struct:
        """Compute the row-means variance slope.

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
        rows = []
        for amp in ptc.ampNames:
            gain = float(ptc.gain.get(amp, np.nan))
            means = np.asarray(ptc.measuredMeans.get(amp, ptc.rawMeans.get(amp, [])), dtype=np.float64)
            rmv = np.asarray(ptc.rowMeanVariance.get(amp, []), dtype=np.float64)
            ncols = np.asarray(ptc.rowMeanNCols.get(amp, np.full(means.size, np.nan)), dtype=np.float64)
            noise = float(ptc.noise.get(amp, 0.0))
            if not np.isfinite(gain) or means.size == 0:
                rows.append((amp, np.nan, 0))
                continue
            signal_e = means * gain
            inside = (signal_e > self.config.minSignal) & (signal_e < self.config.maxSignal)
            slope = row_means_variance_slope(
                signal_e,
                rmv * gain**2,
                ncols,
                self.config.minSignal,
                self.config.maxSignal,
                read_noise_e=noise if np.isfinite(noise) else 0.0,
            )
            rows.append((amp, slope, int(inside.sum())))
        table = Table(rows=rows, names=("amp", "row_means_variance_ratio", "n_pairs"))
        apply_amp_flags(table, _ptc_flags(ptc))
        return Struct(metric=_meta(table, detector))
