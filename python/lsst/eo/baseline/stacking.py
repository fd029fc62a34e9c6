"""Pixel-by-pixel combination of image stacks (afw ``statisticsStack`` MEANCLIP semantics)."""

from __future__ import annotations

__all__ = ["clipped_mean_stack", "sort_stack"]

import functools

import numpy as np

from .afwstats import IQR_TO_SIGMA

_NETWORK_MAX = 32
"""Stacks of up to this many images are sorted with a comparator network (elementwise min/max of
image rows), which is several times faster than numpy's strided sort along a short axis."""

_CHUNK_VALUES = 1 << 18
"""Values (images x pixels) combined at once: 1 MiB of float32, so that the many passes over a
chunk run from the core's cache instead of main memory."""


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


def _network_sort(rows: np.ndarray, n: int) -> list[int]:
    """Sort rows ``0..n-1`` of ``rows`` (``n + 1`` rows; the last is scratch) along axis 0.

    Each comparator writes the minimum into the free row and the maximum over the larger input,
    so no data is copied; the returned permutation lists the physical row of each rank.
    """
    perm = list(range(n))
    spare = n
    for a, b in _batcher_network(n):
        pa, pb = perm[a], perm[b]
        np.minimum(rows[pa], rows[pb], out=rows[spare])
        np.maximum(rows[pa], rows[pb], out=rows[pb])
        perm[a] = spare
        spare = pa
    return perm


def sort_stack(stack: np.ndarray) -> np.ndarray:
    """Sort a stack of images along its first axis (NaN last), returning a new array."""
    data = np.asarray(stack)
    n = data.shape[0]
    if n > _NETWORK_MAX or n == 0:
        return np.sort(data, axis=0)
    nan = np.isnan(data)
    rows = np.empty((n + 1,) + data.shape[1:], dtype=data.dtype)
    rows[:n] = data
    has_nan = bool(nan.any())
    if has_nan:
        rows[:n][nan] = np.inf
    perm = _network_sort(rows, n)
    out = rows[perm]
    if has_nan:
        out[np.isposinf(out) & nan.any(axis=0)[None]] = np.nan
    return out


def _nudge_float32(values: np.ndarray, where: np.ndarray, up: bool) -> None:
    """Move float32 ``values`` one representable step up or down where ``where`` is set, in place.

    Integer arithmetic on the bit patterns (numpy's ``nextafter`` is a slow scalar loop): adding 1
    to the pattern of a non-zero float grows its magnitude by one step, subtracting 1 shrinks it.
    """
    zero = where & (values == 0)
    grow = values > 0 if up else values < 0
    delta = grow.view(np.int8).astype(np.int32)
    delta *= 2
    delta -= 1
    delta *= where
    values.view(np.int32)[...] += delta
    if zero.any():
        values[zero] = np.nextafter(np.float32(0.0), np.float32(1.0 if up else -1.0))


def _float32_at_most(edge: np.ndarray) -> np.ndarray:
    """Largest float32 <= each (float64) edge: ``v <= edge`` iff ``v <= result`` for float32 ``v``."""
    out = edge.astype(np.float32)
    _nudge_float32(out, out > edge, up=False)
    return out


def _float32_at_least(edge: np.ndarray) -> np.ndarray:
    """Smallest float32 >= each (float64) edge: ``v < edge`` iff ``v < result`` for float32 ``v``."""
    out = edge.astype(np.float32)
    _nudge_float32(out, out < edge, up=True)
    return out


def _count_below(
    values: np.ndarray, edge: np.ndarray, inclusive: bool, scratch: np.ndarray | None = None
) -> np.ndarray:
    """Number of values in each column of ``values`` below (or at, if ``inclusive``) ``edge``."""
    below = (np.less_equal if inclusive else np.less)(values, edge, out=scratch)
    # Summing the booleans as int8 is an order of magnitude faster than numpy's default intp.
    return np.add.reduce(below.view(np.int8), axis=0, dtype=np.int8).astype(np.int32)


class _ChunkCombiner:
    """Work space of `clipped_mean_stack` for chunks of ``n`` images x up to ``width`` pixels.

    Clipping keeps, in each pass, the values of a pixel inside a window; once the values are
    sorted these form a contiguous run of ranks ``[lo, hi)``, so every pass only has to count the
    values below each edge of the window and read the sums of the kept values off prefix sums
    (float64, of deviations from the median) built once per chunk.
    """

    def __init__(self, n: int, width: int):
        self.n = n
        self.width = width
        self.rows = np.empty((n + 1, width), dtype=np.float32)  # + a scratch row for the network
        self.ranked = np.empty((n, width), dtype=np.float32)
        self.p1 = np.zeros((n + 1, width), dtype=np.float64)
        self.p2 = np.zeros((n + 1, width), dtype=np.float64)
        self.below = np.empty((n, width), dtype=bool)
        self.dev = np.empty(width, dtype=np.float64)
        self.cols = np.arange(width, dtype=np.int32)

    def _sort(self, w: int) -> None:
        """Sort the chunk's values into ``ranked`` (non-finite values, set to +inf, last)."""
        n = self.n
        rows = self.rows[:, :w]
        if n <= _NETWORK_MAX:
            perm = _network_sort(rows, n)
            for rank, row in enumerate(perm):
                self.ranked[rank, :w] = rows[row]
        else:
            self.ranked[:, :w] = np.sort(rows[:n], axis=0)

    def _quantile(self, q: float, w: int, n_valid: np.ndarray | None) -> np.ndarray:
        """Linear-interpolation quantile of each pixel's ranked values (float64)."""
        ranked = self.ranked[:, :w]
        if n_valid is None:
            pos = q * (self.n - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, self.n - 1)
            a = ranked[lo].astype(np.float64)
            return a + (ranked[hi] - a) * (pos - lo)
        pos = q * np.maximum(n_valid - 1, 0)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, np.maximum(n_valid - 1, 0))
        flat = self.ranked.ravel()
        a = flat[lo * self.width + self.cols[:w]].astype(np.float64)
        b = flat[hi * self.width + self.cols[:w]].astype(np.float64)
        return a + (b - a) * (pos - lo)

    def combine(
        self,
        values: np.ndarray,
        bad: np.ndarray | None,
        nsig: float,
        niter: int,
        out: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Clipped mean, variance and count of the ``(n, w)`` chunk ``values`` into ``out``."""
        n = self.n
        w = values.shape[1]
        self.rows[:n, :w] = values
        n_valid = None
        if bad is not None:
            self.rows[:n, :w][bad] = np.inf
            n_valid = n - np.add.reduce(bad.view(np.int8), axis=0, dtype=np.int8).astype(np.intp)
        self._sort(w)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            q1 = self._quantile(0.25, w, n_valid)
            median = self._quantile(0.5, w, n_valid)
            q3 = self._quantile(0.75, w, n_valid)
            centre32 = median.astype(np.float32)
            p1, p2, dev = self.p1, self.p2, self.dev[:w]
            for k in range(n):
                # The difference of two float32 values and its square are exact in float64.
                np.subtract(self.ranked[k, :w], centre32, out=dev, dtype=np.float64)
                np.add(p1[k, :w], dev, out=p1[k + 1, :w])
                np.multiply(dev, dev, out=dev)
                np.add(p2[k, :w], dev, out=p2[k + 1, :w])
            flat1, flat2 = p1.ravel(), p2.ravel()
            cols = self.cols[:w]
            ranked = self.ranked[:, :w]
            centre = median
            half = (nsig * IQR_TO_SIGMA) * (q3 - q1)
            lo = hi = count = var = None
            # Pixels whose kept values did not change in a pass are converged (the next window is
            # the same): after the second pass only the few pixels that still change are redone.
            active = None
            for _ in range(niter):
                if active is None:
                    lanes, values, c, h, c32 = cols, ranked, centre, half, centre32
                    scratch = self.below[:, :w]
                else:
                    if active.size == 0:
                        break
                    lanes, values, c, h = cols[active], ranked[:, active], centre[active], half[active]
                    c32, scratch = centre32[active], None
                new_lo = _count_below(values, _float32_at_least(c - h), False, scratch)
                new_hi = _count_below(values, _float32_at_most(c + h), True, scratch)
                new_count = new_hi - new_lo
                top, bottom = new_hi * self.width + lanes, new_lo * self.width + lanes
                s1 = flat1[top] - flat1[bottom]
                s2 = flat2[top] - flat2[bottom]
                shift = s1 / new_count
                new_var = (s2 - s1 * shift) / (new_count - 1)
                np.maximum(new_var, 0.0, out=new_var)  # rounding of nearly equal values (NaN stays NaN)
                new_centre = c32 + shift
                new_half = np.sqrt(new_var)
                new_half *= nsig
                # With fewer than two values the variance is NaN: fmax makes the window 0 (keep what
                # equals the mean).
                np.fmax(new_half, 0.0, out=new_half)
                if active is None:
                    if lo is not None:
                        active = np.flatnonzero((new_lo != lo) | (new_hi != hi))
                    lo, hi, count = new_lo, new_hi, new_count
                    var, centre, half = new_var, new_centre, new_half
                else:
                    changed = (new_lo != lo[active]) | (new_hi != hi[active])
                    lo[active], hi[active], count[active] = new_lo, new_hi, new_count
                    var[active], centre[active], half[active] = new_var, new_centre, new_half
                    active = active[changed]
        mean_out, var_out, n_out = out
        mean_out[...] = centre
        var_out[...] = var
        n_out[...] = count


def clipped_mean_stack(
    stack: np.ndarray, nsig: float = 3.0, niter: int = 3, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped mean of a stack of images along its first axis, vectorised over pixels.

    Each pixel's values go through the afw MEANCLIP rule (pass 1 centred on the median with
    half-width ``nsig * 0.7413 * IQR``, later passes on the clipped mean with ``nsig`` clipped
    standard deviations), as cp_pipe's calibration combination does.  Centres, widths and sums are
    computed in double precision from the float32 values, so the kept values are those of afw's
    double-precision ``|value - centre| <= half`` test.

    The pixels are combined in chunks small enough to stay in the processor cache; within a chunk
    the values are sorted once (for the quartiles) and each pass costs two comparisons per value.

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
    n_images = data.shape[0]
    if n_images == 0:
        raise ValueError("clipped_mean_stack needs at least one image")
    if n_images > 127:
        raise ValueError(f"clipped_mean_stack combines at most 127 images, not {n_images}")
    shape = data.shape[1:]
    flat = data.reshape(n_images, -1)
    bad = None
    if mask is not None or not np.isfinite(flat).all():
        bad = ~np.isfinite(flat)
        if mask is not None:
            bad |= np.asarray(mask, dtype=bool).reshape(n_images, -1)
    n_pixels = flat.shape[1]
    mean = np.empty(n_pixels, dtype=np.float32)
    var = np.empty(n_pixels, dtype=np.float32)
    n_used = np.empty(n_pixels, dtype=np.int32)
    width = min(max(1024, _CHUNK_VALUES // n_images), max(n_pixels, 1))
    combiner = _ChunkCombiner(n_images, width)
    for start in range(0, n_pixels, width):
        cut = slice(start, min(start + width, n_pixels))
        chunk_bad = None if bad is None else bad[:, cut]
        if chunk_bad is not None and not chunk_bad.any():
            chunk_bad = None
        combiner.combine(flat[:, cut], chunk_bad, nsig, niter, (mean[cut], var[cut], n_used[cut]))
    return mean.reshape(shape), var.reshape(shape), n_used.reshape(shape)
