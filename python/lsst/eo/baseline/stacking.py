"""Pixel-by-pixel combination of image stacks (afw ``statisticsStack`` MEANCLIP semantics)."""

from __future__ import annotations

__all__ = ["clipped_mean_stack"]

import numpy as np

from .afwstats import IQR_TO_SIGMA


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
    accumulating deviations from the current centre in float64, so that no operation touches more
    than one image at a time beyond the sort.

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
    if bad.any():
        data = np.where(bad, np.float32(np.nan), data)
    n_valid = (data.shape[0] - bad.sum(axis=0)).astype(np.intp) if bad.any() else data.shape[0]
    ordered = np.sort(data, axis=0)  # NaN (ignored values) sort last
    with np.errstate(invalid="ignore", divide="ignore"):
        q1 = _lane_quantile(ordered, n_valid, 0.25)
        centre = _lane_quantile(ordered, n_valid, 0.5)
        q3 = _lane_quantile(ordered, n_valid, 0.75)
        del ordered
        half = np.float32(nsig * IQR_TO_SIGMA) * (q3 - q1)
        shape = data.shape[1:]
        mean = np.full(shape, np.nan)
        var = np.full(shape, np.nan)
        n = np.zeros(shape, dtype=np.int32)
        dev = np.empty(shape, dtype=np.float32)
        absdev = np.empty(shape, dtype=np.float32)
        keep = np.empty(shape, dtype=bool)
        for _ in range(niter):
            # float32 accumulation is ample: deviations from the centre are small and few.
            s1 = np.zeros(shape, dtype=np.float32)
            s2 = np.zeros(shape, dtype=np.float32)
            n = np.zeros(shape, dtype=np.int32)
            for image in data:
                np.subtract(image, centre, out=dev)
                np.abs(dev, out=absdev)
                np.less_equal(absdev, half, out=keep)  # False for NaN
                np.multiply(dev, keep, out=dev)
                np.nan_to_num(dev, copy=False)
                n += keep
                s1 += dev
                np.multiply(dev, dev, out=dev)
                s2 += dev
            mean = centre + s1 / n
            var = (s2 - s1 * s1 / n) / (n - 1)
            var = np.where(var < 0, np.float32(0.0), var)  # rounding of nearly equal values
            centre = mean.astype(np.float32)
            # With fewer than two values the variance is undefined: keep what equals the mean.
            half = np.where(np.isfinite(var), np.float32(nsig) * np.sqrt(var), np.float32(0.0)).astype(
                np.float32
            )
    return mean.astype(np.float32), var.astype(np.float32), n
