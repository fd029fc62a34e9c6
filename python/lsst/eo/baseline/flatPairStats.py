"""eo_pipe's flat-pair metrics on plain arrays (``eo_pipe.md`` sections 9.8-9.12, 9.14).

Pure functions used by `lsst.eo.baseline.ptcMetrics`; each follows eo_pipe's definition exactly
(input quantity, points, estimator, units), and where this package has a better estimator it is
a separate function with a different name:

* `max_observed_signal`: NaN-safe maximum of the measured (not linearised, not masked) pair means;
* `eo_bf_stats`: eo_pipe ``bf_stats`` (slopes of C10, C01 versus the mean, adu);
* `eo_a00`: eo_pipe ``ptc_a00`` = -a00 (positive for normal devices) and which fit it came from;
* `ptc_noise` / `overscan_corrected_noise`: eo_pipe ``ptc_noise`` (the PTC fit's noise) and ours,
  with the variance that the per-row serial-overscan median adds removed;
* `serial_overscan_columns`: columns entering that median (layout's overscan width - skips);
* `eo_row_means_pair` / `eo_row_means_variance_slope`: eo_pipe ``row_means_variance_stats``.
"""

from __future__ import annotations

__all__ = [
    "EoBfStats",
    "EoRowMeansPair",
    "eo_a00",
    "eo_bf_stats",
    "eo_row_means_pair",
    "eo_row_means_variance_slope",
    "max_observed_signal",
    "overscan_corrected_noise",
    "ptc_noise",
    "serial_overscan_columns",
]

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .afwstats import clipped_stats
from .covariance import row_means_variance_slope


def max_observed_signal(measured_means: np.ndarray) -> float:
    """eo_pipe ``max_observed_signal``: the largest measured pair mean (adu).

    Parameters
    ----------
    measured_means : `numpy.ndarray`
        Pair means as measured (PTC ``measuredMeans``, before any linearisation), every pair
        whatever the PTC fit mask.

    Returns
    -------
    value : `float`
        NaN-safe maximum (NaN if no finite mean).  eo_pipe uses Python's ``max``, whose result
        with NaN present depends on the order; the NaN-safe maximum is what it means.
    """
    m = np.asarray(measured_means, dtype=np.float64)
    m = m[np.isfinite(m)]
    return float(np.max(m)) if m.size else np.nan


@dataclass(frozen=True)
class EoBfStats:
    """eo_pipe ``bf_stats`` of one amplifier.

    Attributes
    ----------
    slope_x, slope_x_err : `float`
        ``linregress`` slope and standard error of ``cov[:, 1, 0]`` (serial neighbour, adu^2)
        versus the mean (adu): units adu.
    slope_y, slope_y_err : `float`
        Same for ``cov[:, 0, 1]`` (parallel neighbour).
    xcorr, ycorr : `float`
        ``cov[1, 0]``, ``cov[0, 1]`` (adu^2) of the first used pair in dataset order.
    mean : `float`
        Mean (adu) of that pair.
    n_points : `int`
        Pairs used.
    """

    slope_x: float
    slope_x_err: float
    slope_y: float
    slope_y_err: float
    xcorr: float
    ycorr: float
    mean: float
    n_points: int


def eo_bf_stats(raw_means: np.ndarray, covariances: np.ndarray, exp_id_mask: np.ndarray) -> EoBfStats:
    """eo_pipe's brighter-fatter correlation slopes (``BFAnalysisTask.run``).

    Parameters
    ----------
    raw_means : `numpy.ndarray`
        ``(N,)`` PTC ``rawMeans`` (adu), dataset order.
    covariances : `numpy.ndarray`
        ``(N, L, L)`` PTC covariances (adu^2), index ``[pair, dx (serial), dy (parallel)]``.
    exp_id_mask : `numpy.ndarray` of `bool`
        PTC ``expIdMask``: the pairs used.

    Returns
    -------
    result : `EoBfStats`
        NaN values when no pair is used or the regression is undefined (eo_pipe writes 0, which
        would read as a measurement).

    Notes
    -----
    Pairs whose mean or nearest-neighbour covariances are not finite are left out as well (cp_pipe
    leaves them NaN only for failed pairs, which are outside ``expIdMask``; eo_pipe would return
    NaN slopes).
    """
    mu = np.asarray(raw_means, dtype=np.float64)
    cov = np.asarray(covariances, dtype=np.float64)
    use = np.asarray(exp_id_mask, dtype=bool).copy()
    if cov.ndim != 3 or cov.shape[0] != mu.size or min(cov.shape[1:]) < 2:
        return EoBfStats(*(np.nan,) * 7, 0)
    use &= np.isfinite(mu) & np.isfinite(cov[:, 1, 0]) & np.isfinite(cov[:, 0, 1])
    idx = np.flatnonzero(use)
    if idx.size == 0:
        return EoBfStats(*(np.nan,) * 7, 0)
    x, cx, cy = mu[idx], cov[idx, 1, 0], cov[idx, 0, 1]
    slopes = [np.nan] * 4
    if idx.size >= 2 and np.ptp(x) > 0:
        rx = stats.linregress(x, cx)
        ry = stats.linregress(x, cy)
        slopes = [rx.slope, rx.stderr, ry.slope, ry.stderr]
        if idx.size == 2:  # the standard errors need a residual degree of freedom
            slopes[1] = slopes[3] = np.nan
    first = idx[0]
    return EoBfStats(
        *(float(v) for v in slopes),
        float(cov[first, 1, 0]),
        float(cov[first, 0, 1]),
        float(mu[first]),
        idx.size,
    )


def eo_a00(fit_type: str, a_matrix: np.ndarray | None, ptc_fit_pars: np.ndarray | None) -> tuple[float, str]:
    """eo_pipe ``ptc_a00`` (``PtcFpPlotsTask.run``): minus the fitted a00, 1/e-.

    Parameters
    ----------
    fit_type : `str`
        The PTC's ``ptcFitType``.
    a_matrix : `numpy.ndarray` or `None`
        FULLCOVARIANCE ``aMatrix`` (1/e-, ``[dx, dy]``).
    ptc_fit_pars : `numpy.ndarray` or `None`
        EXPAPPROXIMATION ``ptcFitPars`` ``[a00, gain, noise^2]``.

    Returns
    -------
    value, source : `float`, `str`
        ``-aMatrix[0][0]`` with source ``"aMatrix"`` when the FULLCOVARIANCE matrix is there,
        else ``-ptcFitPars[0]`` with source ``"ptcFitPars"`` (EXPAPPROXIMATION, 3 parameters),
        else NaN and ``"none"`` (eo_pipe skips the amp).  Positive for a normal device.
    """
    a = np.asarray(a_matrix if a_matrix is not None else [], dtype=np.float64)
    if fit_type != "EXPAPPROXIMATION" and a.ndim == 2 and a.size and np.isfinite(a[0, 0]):
        return float(-a[0, 0]), "aMatrix"
    p = np.asarray(ptc_fit_pars if ptc_fit_pars is not None else [], dtype=np.float64)
    if p.size == 3 and np.isfinite(p[0]):
        return float(-p[0]), "ptcFitPars"
    if a.ndim == 2 and a.size and np.isfinite(a[0, 0]):
        return float(-a[0, 0]), "aMatrix"
    return np.nan, "none"


def ptc_noise(noise_e: float, noise_matrix: np.ndarray | None = None) -> float:
    """eo_pipe ``ptc_noise``: the PTC fit's noise (e-), ``ptc.noise``.

    cp_pipe's ``noise`` is ``sqrt(|noiseMatrix[0][0]|)`` for FULLCOVARIANCE and
    ``sqrt(|ptcFitPars[2]|)`` for EXPAPPROXIMATION; when ``noise_e`` is NaN and a noise matrix is
    given the FULLCOVARIANCE value is recomputed from it.
    """
    value = float(noise_e) if noise_e is not None else np.nan
    if not np.isfinite(value) and noise_matrix is not None:
        nm = np.asarray(noise_matrix, dtype=np.float64)
        if nm.ndim == 2 and nm.size and np.isfinite(nm[0, 0]):
            value = float(np.sqrt(abs(nm[0, 0])))
    return value


def serial_overscan_columns(layout, leading_skip: int = 3, trailing_skip: int = 3) -> int:
    """Serial-overscan columns per row entering the ISR's per-row median.

    Parameters
    ----------
    layout : `lsst.eo.baseline.camera.AmpLayout`
        Amplifier layout (its raw serial-overscan box).
    leading_skip, trailing_skip : `int`
        Columns the ISR skips next to the data and at the far end (`EoIsrTask` defaults 3, 3).

    Returns
    -------
    n : `int`
        Overscan width minus the skips: 64 - 6 = 58 for ITL, 54 - 6 = 48 for e2v.
    """
    box = layout.raw.serial_overscan_bbox
    return int(box.x.stop - box.x.start - leading_skip - trailing_skip)


def overscan_corrected_noise(noise_e: float, overscan_noise_adu: float, gain: float, n_columns: int) -> float:
    """PTC noise with the variance the per-row overscan median adds to every pixel removed (ours).

    The per-row median of ``n_columns`` overscan pixels of noise sigma (adu) has variance
    ``(pi/2) sigma^2 / n`` (large-n efficiency of the median); subtracting it from every pixel adds
    that to the pixel variance, hence to the PTC intercept.  Result ``sqrt(max(noise^2 -
    (pi/2) sigma^2 g^2 / n, 0))`` (e-); the input noise if the overscan noise is not finite.
    """
    if not np.isfinite(overscan_noise_adu) or not np.isfinite(gain) or n_columns <= 0:
        return float(noise_e)
    added = np.pi / 2.0 * overscan_noise_adu**2 / n_columns * gain**2
    return float(np.sqrt(max(noise_e**2 - added, 0.0)))


@dataclass(frozen=True)
class EoRowMeansPair:
    """eo_pipe's per-pair, per-amplifier row-means quantities (``RowMeansVarianceTask.run``), adu.

    Attributes
    ----------
    mean_1_adu, mean_2_adu : `float`
        Masked, unclipped MEAN of each flat over the whole amplifier (each with its own mask).
    row_means_variance_adu2 : `float`
        VARIANCECLIP of the masked row means of ``f1 - f2`` over rows minY .. maxY - 1 (eo_pipe's
        loop bound leaves out the amplifier's top row in detector orientation).
    row_means_variance_all_rows_adu2 : `float`
        The same over every row (ours: the loop bound corrected).
    n_cols : `int`
        Amplifier width, eo_pipe's pixels per row mean.
    """

    mean_1_adu: float
    mean_2_adu: float
    row_means_variance_adu2: float
    row_means_variance_all_rows_adu2: float
    n_cols: int

    @property
    def mean_adu(self) -> float:
        """``(mean_1_adu + mean_2_adu) / 2``: eo_pipe's pair signal before the gain."""
        return 0.5 * (self.mean_1_adu + self.mean_2_adu)


def _masked_mean(image: np.ndarray, good: np.ndarray) -> float:
    """MEAN (afw) of the good pixels (NaN if there is none)."""
    n = np.count_nonzero(good)
    return float(np.sum(image, where=good, dtype=np.float64) / n) if n else np.nan


def eo_row_means_pair(
    image1: np.ndarray,
    image2: np.ndarray,
    bad1: np.ndarray | None = None,
    bad2: np.ndarray | None = None,
    nsig: float = 10.0,
    n_iter: int = 3,
) -> EoRowMeansPair:
    """eo_pipe's per-pair row-means statistics of one amplifier (``RowMeansVarianceTask.run``).

    Parameters
    ----------
    image1, image2 : `numpy.ndarray`
        Trimmed amplifier images of the two flats (adu) in **detector orientation**: index
        ``[y, x]`` with y increasing with the assembled row number, so that the last row is the
        amplifier box's maxY (the one eo_pipe's loop leaves out).
    bad1, bad2 : `numpy.ndarray` of `bool`, optional
        Masked pixels of each flat (eo_pipe's SUSPECT, BAD, NO_DATA, SAT planes).  Each image's
        mean uses its own mask; the difference uses both (afw ORs the masks of ``f1 - f2``).
        Non-finite pixels are masked as well.
    nsig, n_iter : `float`, `int`
        VARIANCECLIP of the row means (eo_pipe 10 sigma, 3 passes).

    Returns
    -------
    result : `EoRowMeansPair`
        Multiply the means by the gain (the variances by its square) for e- (e-^2).  A row with no
        unmasked pixel has a NaN mean, which the clipped variance ignores.
    """
    a = np.asarray(image1, dtype=np.float64)
    b = np.asarray(image2, dtype=np.float64)
    good1 = np.isfinite(a)
    good2 = np.isfinite(b)
    if bad1 is not None:
        good1 &= ~np.asarray(bad1, dtype=bool)
    if bad2 is not None:
        good2 &= ~np.asarray(bad2, dtype=bool)
    good = good1 & good2
    counts = good.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        row_means = np.sum(np.where(good, a - b, 0.0), axis=1) / counts
    return EoRowMeansPair(
        mean_1_adu=_masked_mean(a, good1),
        mean_2_adu=_masked_mean(b, good2),
        row_means_variance_adu2=clipped_stats(row_means[:-1], nsig, n_iter).variance,
        row_means_variance_all_rows_adu2=clipped_stats(row_means, nsig, n_iter).variance,
        n_cols=int(a.shape[1]),
    )


def eo_row_means_variance_slope(
    signal_e: np.ndarray,
    variance_e2: np.ndarray,
    n_cols: float | np.ndarray,
    min_e: float = 3000.0,
    max_e: float = 1.0e5,
) -> float:
    """eo_pipe ``row_means_variance_stats.slope``: ``sum V / sum (2 S / N_cols)``.

    Over the pairs with ``min_e < S < max_e`` (exclusive) and finite V; no read-noise term.

    Parameters
    ----------
    signal_e : `numpy.ndarray`
        Pair signal S (e-), ``gain x mean``.
    variance_e2 : `numpy.ndarray`
        Row-means variance V (e-^2), ``gain^2 x variance``.
    n_cols : `float` or `numpy.ndarray`
        Pixels per row mean (the amplifier width for eo_pipe).
    min_e, max_e : `float`
        Signal window (eo_pipe 3000, 1e5 e-).

    Returns
    -------
    slope : `float`
        1 for uncorrelated shot noise.  NaN when no pair qualifies (eo_pipe writes 0 on
        ZeroDivisionError, which would read as a measurement).
    """
    # The general ratio of sums lives with the pair measurement; eo_pipe's has no read-noise term.
    return row_means_variance_slope(signal_e, variance_e2, n_cols, min_e=min_e, max_e=max_e, read_noise_e=0.0)
