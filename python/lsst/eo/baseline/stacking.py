"""Pixel-by-pixel combination of image stacks (afw ``statisticsStack`` MEANCLIP semantics)."""

from __future__ import annotations

__all__ = ["clipped_mean_stack", "sort_stack"]

import functools

import numpy as np

from .afwstats import IQR_TO_SIGMA

_NETWORK_MAX = 16
"""Stacks of up to this many images are sorted with a comparator network (elementwise min/max of
whole images), which is several times faster than numpy's strided sort along a short axis."""


@functools.cache
def _batcher_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparator pairs of Batcher's odd-even merge sort for ``n`` inputs (padded to a power of 2)."""
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


def sort_stack(stack: np.ndarray) -> np.ndarray:
    """Sort a stack of images along its first axis (NaN last), returning a new array."""
    n = stack.shape[0]
    if n > _NETWORK_MAX:
        return np.sort(stack, axis=0)
    out = np.where(np.isnan(stack), np.inf, stack) if np.isnan(stack).any() else stack.copy()
    for a, b in _batcher_network(n):
        lo = np.minimum(out[a], out[b])
        np.maximum(out[a], out[b], out=out[b])
        out[a] = lo
    if np.isinf(out).any():
        out[np.isposinf(out) & np.isnan(stack).any(axis=0)[None]] = np.nan
    return out


def _lane_quantile(ordered: np.ndarray, n: np.ndarray | int, q: float) -> np.ndarray:
    """Linear-interpolation quantile of each lane of a stack sorted along axis 0 (n valid values)."""
    if np.isscalar(n):
        # Every lane complete: the quantile sits at the same index everywhere.
        pos = q * (int(n) - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, int(n) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * np.float32(pos - lo)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(ordered, lo[None], axis=0)[0]
    b = np.take_along_axis(ordered, hi[None], axis=0)[0]
    return a + (b - a) * (pos - lo)


def clipped_mean_stack(
    stack: np.ndarray, nsig: float = 3.0, niter: int = 3, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped mean of a stack of images along its first axis, vectorised over pixels.

    Each pixel's values go through the afw MEANCLIP rule (pass 1 centred on the median with
    half-width ``nsig * 0.7413 * IQR``, later passes on the clipped mean with ``nsig`` clipped
    standard deviations), as cp_pipe's calibration combination does.

    Quartiles come from one sort along the stack axis; each pass then loops over the (few) images,
    accumulating deviations from the current centre, so that no operation touches more than one
    image at a time beyond the sort.

    Parameters
    ----------
    stack : `numpy.ndarray`
        Shape ``(n_images, ny, nx)``.
    nsig : `float`, optional
        Clipping threshold.
    niter : `int`, optional
        Number of passes.
    mask : `numpy.ndarray` of `bool`, optional
        True for values to ignore (same shape as ``stack``).

    Returns
    -------
    mean : `numpy.ndarray`
        Clipped mean per pixel (float32; NaN where no value survives).
    variance : `numpy.ndarray`
        Clipped variance of the values per pixel (float32; n - 1; NaN with fewer than 2 values).
    n_used : `numpy.ndarray`
        Number of values kept per pixel.
    """
    data = np.asarray(stack, dtype=np.float32)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= mask
    any_bad = bool(bad.any())
    if any_bad:
        data = np.where(bad, np.float32(np.nan), data)
    n_valid = (data.shape[0] - bad.sum(axis=0)).astype(np.intp) if any_bad else data.shape[0]
    ordered = sort_stack(data)
    shape = data.shape[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        q1 = _lane_quantile(ordered, n_valid, 0.25)
        centre = _lane_quantile(ordered, n_valid, 0.5)
        q3 = _lane_quantile(ordered, n_valid, 0.75)
        del ordered
        half = np.float32(nsig * IQR_TO_SIGMA) * (q3 - q1)
        dev = np.empty(shape, dtype=np.float32)
        absdev = np.empty(shape, dtype=np.float32)
        keep = np.empty(shape, dtype=bool)
        drop = np.empty(shape, dtype=bool)
        for _ in range(niter):
            # float32 accumulation is ample: deviations from the centre are small and few.
            s1 = np.zeros(shape, dtype=np.float32)
            s2 = np.zeros(shape, dtype=np.float32)
            n = np.zeros(shape, dtype=np.int32)
            for image in data:
                np.subtract(image, centre, out=dev)
                np.abs(dev, out=absdev)
                np.less_equal(absdev, half, out=keep)  # False for NaN
                np.logical_not(keep, out=drop)
                np.copyto(dev, 0.0, where=drop)
                n += keep
                s1 += dev
                np.multiply(dev, dev, out=dev)
                s2 += dev
            mean = centre + s1 / n
            var = (s2 - s1 * s1 / n) / (n - 1)
            np.maximum(var, 0.0, out=var)  # rounding of nearly equal values (NaN stays NaN)
            centre = mean.astype(np.float32)
            # With fewer than two values the variance is undefined: keep what equals the mean.
            half = np.where(np.isfinite(var), np.float32(nsig) * np.sqrt(var), np.float32(0.0)).astype(
                np.float32
            )
    return mean.astype(np.float32), var.astype(np.float32), n
