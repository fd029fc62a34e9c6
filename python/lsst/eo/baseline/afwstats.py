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

__all__ = [
    "IQR_TO_SIGMA",
    "ClippedStats",
    "clipped_stats",
    "clipped_stats_rows",
    "gaussian_clip_factor",
    "median_rows",
    "quantiles_along",
]

import functools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

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
        Median of the usable values (of a regular subsample of >= 2^13 values for larger arrays).
    """

    mean: float
    stdev: float
    variance: float
    n: int
    median: float


_NAN_STATS = ClippedStats(np.nan, np.nan, np.nan, 0, np.nan)
_QUARTILE_SAMPLE = 2**13
_PASS_CHUNK = 2**17


def _usable(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Flattened finite, unmasked values; float32 unless the input is float64."""
    x = np.asarray(values)
    if x.dtype != np.float64:
        # float32 is exact for raw counts (< 2^24) and halves the memory traffic.
        x = x.astype(np.float32, copy=False)
    x = x.ravel()
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
    # Pass 1 only needs the quartiles to set a clip window: for large arrays they come from a
    # regular subsample of >= 2^13 values.  The window is then uncertain by ~1.5%, which moves the
    # clipped statistics of Gaussian data by ~2e-5 rms (the later passes re-centre and re-scale it;
    # measured on 1e6 values with outliers, against exact quartiles), 35x below their statistical
    # error -- and saves most of the cost.
    stride = max(1, x.size // _QUARTILE_SAMPLE)
    q1, median, q3 = np.percentile(x[::stride] if stride > 1 else x, [25.0, 50.0, 75.0])
    centre = float(median)
    half_width = nsig * IQR_TO_SIGMA * float(q3 - q1)
    mean = var = np.nan
    n = 0
    # Each pass streams through cache-sized pieces of the values (a whole amplifier is 4 MB).
    width = min(x.size, _PASS_CHUNK)
    dev = np.empty(width, dtype=x.dtype)
    absdev = np.empty(width, dtype=x.dtype)
    keep = np.empty(width, dtype=bool)
    for _ in range(niter):
        # Sums of deviations from the current centre (accumulated in float64) avoid both the
        # cancellation of sum(x^2) - n mean^2 and a copy of the kept values.
        centre_x = x.dtype.type(centre)
        n = 0
        s1 = s2 = 0.0
        for start in range(0, x.size, width):
            part = x[start : start + width]
            d, a, k = dev[: part.size], absdev[: part.size], keep[: part.size]
            np.subtract(part, centre_x, out=d)
            np.abs(d, out=a)
            np.less_equal(a, half_width, out=k)
            n += int(np.count_nonzero(k))
            np.multiply(d, k, out=d)  # zero the clipped deviations (values are finite)
            s1 += float(np.sum(d, dtype=np.float64))
            np.multiply(d, d, out=d)
            s2 += float(np.sum(d, dtype=np.float64))
        if n == 0:
            return ClippedStats(np.nan, np.nan, np.nan, 0, float(median))
        mean = float(centre_x) + s1 / n
        var = (s2 - s1 * s1 / n) / (n - 1) if n > 1 else np.nan
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
        q1, med, q3 = quantiles_along(
            a if finite.all() else np.where(finite, a, np.nan), (0.25, 0.5, 0.75), 1
        )
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


@functools.cache
def gaussian_clip_factor(nsig: float = 3.0, niter: int = 3) -> float:
    """Expected STDEVCLIP / sigma for Gaussian data under the afw clipping rule.

    Pass 1 clips at ``nsig`` sigma (``0.7413 IQR`` is sigma for a Gaussian); each later pass clips at
    ``nsig`` times the previous pass's clipped standard deviation.  For the default 3 sigma and 3
    passes the clipped standard deviation is 1.4% low; dividing by this factor gives an unbiased
    estimate of a Gaussian sigma.
    """

    def clipped_sigma(k: float) -> float:
        phi = np.exp(-0.5 * k * k) / np.sqrt(2.0 * np.pi)
        inside = erf(k / np.sqrt(2.0))
        return float(np.sqrt(1.0 - 2.0 * k * phi / inside))

    k = nsig
    s = 1.0
    for _ in range(niter):
        s = clipped_sigma(k)
        k = nsig * s
    return s


def quantiles_along(values: np.ndarray, qs: tuple[float, ...], axis: int) -> list[np.ndarray]:
    """Quantiles (``numpy`` linear interpolation) along one axis, NaN-aware, by a single sort.

    Faster than `numpy.percentile` with an axis when the axis is short (a stack of a few images, a
    row of overscan pixels): one sort instead of a partition per quantile.  NaN values are ignored;
    all-NaN lanes give NaN.

    Parameters
    ----------
    values : `numpy.ndarray`
        Input array.
    qs : `tuple` [`float`]
        Quantiles in [0, 1].
    axis : `int`
        Axis along which to compute them.

    Returns
    -------
    quantiles : `list` [`numpy.ndarray`]
        One array per quantile, with ``axis`` removed.
    """
    ordered = np.sort(values, axis=axis)  # NaN sorts last
    n = values.shape[axis] - np.isnan(values).sum(axis=axis) if np.isnan(values).any() else None
    out = []
    for q in qs:
        if n is None:
            pos = q * (values.shape[axis] - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, values.shape[axis] - 1)
            frac = pos - lo
            a = np.take(ordered, lo, axis=axis)
            b = np.take(ordered, hi, axis=axis)
            out.append(a + (b - a) * frac if frac else a)
        else:
            pos = q * np.maximum(n - 1, 0)
            lo = np.floor(pos).astype(np.intp)
            hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
            frac = pos - lo
            a = np.squeeze(np.take_along_axis(ordered, np.expand_dims(lo, axis), axis=axis), axis=axis)
            b = np.squeeze(np.take_along_axis(ordered, np.expand_dims(hi, axis), axis=axis), axis=axis)
            with np.errstate(invalid="ignore"):
                res = a + (b - a) * frac
            res = np.where(n > 0, res, np.nan)
            out.append(res)
    return out
