"""Statistics with the semantics of ``lsst.afw.math.makeStatistics``, on numpy arrays.

cp_pipe computes almost every number through afw statistics; matching its conventions is what makes
our metrics comparable with the field's (``cp_pipe_algorithms.md`` section 0):

* medians and quartiles interpolate linearly at index ``f*(n-1)`` (``numpy`` default);
* variances are unbiased (n - 1);
* clipped statistics iterate ``niter`` passes; pass 1 is centred on the median with half-width
  ``nsig * 0.741301109252802 * IQR``, later passes on the previous clipped mean with half-width
  ``nsig * sqrt(previous clipped variance)``; every pass re-selects from *all* pixels and keeps
  ``|x - centre| <= half-width``;
* non-finite values are ignored, as are masked values where a mask is given.
"""

from __future__ import annotations

__all__ = ["IQR_TO_SIGMA", "ClippedStats", "clipped_stats", "clipped_stats_rows", "median_rows"]

import warnings
from dataclasses import dataclass

import numpy as np

IQR_TO_SIGMA = 0.741301109252802
"""Ratio of the standard deviation to the interquartile range of a normal distribution."""


@dataclass(frozen=True)
class ClippedStats:
    """Clipped statistics of a set of values.

    Attributes
    ----------
    mean : `float`
        MEANCLIP.
    stdev : `float`
        STDEVCLIP (n - 1).
    variance : `float`
        VARIANCECLIP (n - 1).
    n : `int`
        Number of values kept by the last pass.
    median : `float`
        Plain median of the usable values.
    """

    mean: float
    stdev: float
    variance: float
    n: int
    median: float


_NAN_STATS = ClippedStats(np.nan, np.nan, np.nan, 0, np.nan)


def _usable(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    good = np.isfinite(x)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool).ravel()
    return x if good.all() else x[good]


def clipped_stats(
    values: np.ndarray, nsig: float = 3.0, niter: int = 3, mask: np.ndarray | None = None
) -> ClippedStats:
    """Afw MEANCLIP / STDEVCLIP / VARIANCECLIP of an array.

    Parameters
    ----------
    values : `numpy.ndarray`
        Values (any shape; flattened).
    nsig : `float`, optional
        Clipping half-width in sigma.
    niter : `int`, optional
        Number of clipping passes.
    mask : `numpy.ndarray` of `bool`, optional
        True where a value must be ignored.

    Returns
    -------
    stats : `ClippedStats`
        NaN statistics (n = 0) if no usable value remains.
    """
    x = _usable(values, mask)
    if x.size == 0:
        return _NAN_STATS
    q1, median, q3 = np.percentile(x, [25.0, 50.0, 75.0])
    centre = median
    half_width = nsig * IQR_TO_SIGMA * (q3 - q1)
    mean = var = np.nan
    n = 0
    for _ in range(niter):
        kept = x[np.abs(x - centre) <= half_width]
        n = kept.size
        if n == 0:
            return ClippedStats(np.nan, np.nan, np.nan, 0, float(median))
        mean = float(kept.mean())
        var = float(kept.var(ddof=1)) if n > 1 else np.nan
        centre = mean
        half_width = nsig * np.sqrt(var) if np.isfinite(var) else 0.0
    return ClippedStats(mean, float(np.sqrt(var)), var, n, float(median))


def median_rows(array: np.ndarray) -> np.ndarray:
    """Median of each row of a 2-d array, ignoring NaN (NaN for an all-NaN row)."""
    a = np.asarray(array, dtype=np.float64)
    if np.isnan(a).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(a, axis=1)
    return np.median(a, axis=1)


def clipped_stats_rows(array: np.ndarray, nsig: float = 3.0, niter: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised afw MEANCLIP and STDEVCLIP of every row of a 2-d array.

    Same rules as `clipped_stats`, applied to each row independently without a Python loop over
    rows.  Non-finite values are ignored.

    Parameters
    ----------
    array : `numpy.ndarray`
        2-d array; statistics are computed along axis 1.
    nsig, niter
        As for `clipped_stats`.

    Returns
    -------
    mean, stdev : `numpy.ndarray`
        One value per row (NaN where a row has fewer than 2 usable values).
    """
    a = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(a)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if finite.all():
            q1, med, q3 = np.percentile(a, [25.0, 50.0, 75.0], axis=1)
        else:
            q1, med, q3 = np.nanpercentile(np.where(finite, a, np.nan), [25.0, 50.0, 75.0], axis=1)
        centre = med[:, None]
        half = (nsig * IQR_TO_SIGMA * (q3 - q1))[:, None]
        mean = np.full(a.shape[0], np.nan)
        std = np.full(a.shape[0], np.nan)
        for _ in range(niter):
            keep = finite & (np.abs(a - centre) <= half)
            n = keep.sum(axis=1)
            s1 = np.where(keep, a, 0.0).sum(axis=1)
            mean = s1 / n
            dev = np.where(keep, a - mean[:, None], 0.0)
            var = (dev * dev).sum(axis=1) / (n - 1)
            std = np.sqrt(var)
            centre = mean[:, None]
            half = (nsig * std)[:, None]
    return mean, std
