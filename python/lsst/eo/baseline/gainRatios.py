"""Amplifier gain ratios from flats: cp_pipe's adjustment of the PTC gains (numerics only).

cp_pipe's LSSTCam PTC ends with ``PhotonTransferCurveAdjustGainRatiosTask``
(``ptc/cpPtcAdjustGainRatios.py`` and, in ``utils.py``, ``bin_flat``, ``FlatGradientFitter`` and
``FlatGainRatioFitter``; cp_pipe f029a3f; ``cp_pipe_algorithms.md`` sections 2.7 and 2.9): each
amplifier's PTC gain is rescaled so that flats converted to electrons with those gains have no steps
at the amplifier boundaries.  The steps are measured on top of a smooth illumination model: a
radial Akima spline in focal-plane radius and a low-order Chebyshev field over the detector.
eo_pipe reports the adjusted gain (``ptc.gain``) as its PTC gain.

The procedure, per detector:

1. `select_flats`: the first exposure of each PTC pair whose detector-average final mean (over
   the non-bad amplifiers) is in ``(min_adu, max_adu)``; at most ``n_flat`` of them, drawn with
   ``numpy.random.RandomState(seed).choice`` without replacement, sorted.
2. `choose_reference_amp`: among the amplifiers with noise <= 12 e- and turnoff at or above the
   25th percentile of the detector's turnoffs, the one at position ``n // 2`` of the gain-sorted
   list (no adjustment at all with fewer than two candidates).
3. Per flat: `bin_flat` (electrons with the unadjusted gains, bad amplifiers NaN, a 20-pixel
   border of each amplifier dropped, 8 x 8 NaN-mean bins), `clip_bins` (bins outside
   [0.8 p5, 1.2 p95] dropped) and `flat_gain_ratios` (radial spline `fit_radial_gradient`, then the
   per-amplifier ratios of `fit_amp_ratios` on a Chebyshev field; an amplifier more than 5 % off is
   removed and the fit restarts, at most ``n_amp // 2`` times).
4. `gain_corrections`: per amplifier the median ratio over the flats, divided by the median of
   those; the adjusted gain is ``gainUnadjusted / correction``.

Coordinates: bins are placed on the assembled detector (pixel ``i`` centred on coordinate ``i``),
at cp_pipe's bin centres (first pixel + border + ``bin_factor / 2`` + ``k * bin_factor``); focal-plane
radii are in mm.
"""

from __future__ import annotations

__all__ = [
    "BinnedFlat",
    "bin_flat",
    "chebyshev_field_fit",
    "choose_reference_amp",
    "clip_bins",
    "fit_amp_ratios",
    "fit_radial_gradient",
    "flat_gain_ratios",
    "gain_corrections",
    "select_flats",
]

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from lsst.utils.logging import getLogger
from numpy.polynomial import chebyshev
from scipy.interpolate import Akima1DInterpolator
from scipy.optimize import minimize
from scipy.stats import median_abs_deviation

_LOG = getLogger(__name__)


def select_flats(
    first_ids: np.ndarray,
    amp_means: np.ndarray,
    *,
    min_adu: float = 1000.0,
    max_adu: float = 20000.0,
    n_flat: int = 50,
    seed: int = 12345,
) -> tuple[np.ndarray, np.ndarray]:
    """Flats used for the gain ratios (cp_pipe's selection).

    Parameters
    ----------
    first_ids : `numpy.ndarray`
        (N,) first exposure id of each PTC pair.
    amp_means : `numpy.ndarray`
        (n_amp, N) final (fit) means of the non-bad amplifiers, adu; NaN where masked.
    min_adu, max_adu : `float`
        Open interval of the detector-average mean.
    n_flat : `int`
        Largest number of flats kept.
    seed : `int`
        Seed of the ``RandomState`` that subsamples when more flats qualify.

    Returns
    -------
    exp_ids : `numpy.ndarray`
        Selected exposure ids, sorted.
    average : `numpy.ndarray`
        (N,) detector-average mean of every pair (NaN without a finite amplifier mean).
    """
    first_ids = np.asarray(first_ids)
    means = np.atleast_2d(np.asarray(amp_means, dtype=np.float64))
    finite = np.isfinite(means)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.where(finite, means, 0.0).sum(axis=0) / n
    average = np.where(n > 0, average, np.nan)
    with np.errstate(invalid="ignore"):
        chosen = first_ids[(average > min_adu) & (average < max_adu)]
    # cp_pipe creates the generator before the selection and draws from it only when needed.
    rng = np.random.RandomState(seed=seed)
    if len(chosen) > n_flat:
        chosen = rng.choice(chosen, size=n_flat, replace=False)
    return np.sort(chosen), average


def choose_reference_amp(
    gains: np.ndarray,
    noise: np.ndarray,
    turnoff: np.ndarray,
    *,
    max_noise: float = 12.0,
    turnoff_percentile: float = 25.0,
) -> int:
    """Index of the amplifier whose gain ratio is fixed to 1 (cp_pipe's choice), or -1.

    Candidates have a finite gain, ``noise <= max_noise`` (e-) and a turnoff at or above the
    ``turnoff_percentile`` percentile (NaN-ignoring) of all turnoffs; the reference is the
    candidate at position ``n // 2`` of the candidates sorted by gain.  Fewer than two candidates
    give -1 (no adjustment).
    """
    gain = np.array(gains, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    turnoff = np.asarray(turnoff, dtype=np.float64)
    gain[noise > max_noise] = np.nan
    if np.isfinite(turnoff).any():
        threshold = np.nanpercentile(turnoff, turnoff_percentile)
        with np.errstate(invalid="ignore"):
            gain[turnoff < threshold] = np.nan
    good = np.flatnonzero(np.isfinite(gain))
    if len(good) <= 1:
        return -1
    order = np.argsort(gain[good])
    return int(good[order[len(good) // 2]])


@dataclass
class BinnedFlat:
    """Binned flat: bin centres on the assembled detector, mean value, amplifier index.

    Attributes
    ----------
    x, y : `numpy.ndarray`
        Bin centres (assembled detector pixels).
    value : `numpy.ndarray`
        NaN-mean of the bin (e-; NaN for a bin without finite pixels).
    amp_index : `numpy.ndarray`
        Index of the bin's amplifier (in the order the boxes were given).
    """

    x: np.ndarray
    y: np.ndarray
    value: np.ndarray
    amp_index: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    def select(self, keep: np.ndarray) -> BinnedFlat:
        """The bins where ``keep`` is true (a copy)."""
        return BinnedFlat(self.x[keep], self.y[keep], self.value[keep].copy(), self.amp_index[keep])


def bin_flat(
    image: np.ndarray,
    amp_boxes: Sequence[tuple[slice, slice]],
    gains: Sequence[float],
    bad: Sequence[bool] | None = None,
    *,
    bin_factor: int = 8,
    border: int = 20,
) -> BinnedFlat:
    """Bin an assembled flat amplifier by amplifier (cp_pipe ``bin_flat`` with gains applied).

    Parameters
    ----------
    image : `numpy.ndarray`
        Assembled detector image ``[y, x]`` (adu).
    amp_boxes : sequence of (`slice`, `slice`)
        ``(y, x)`` slices of each amplifier in ``image``.
    gains : sequence of `float`
        Gain of each amplifier (e-/adu) the image is multiplied by.
    bad : sequence of `bool`, optional
        Amplifiers set to NaN.
    bin_factor : `int`
        Bin size (pixels, both axes).
    border : `int`
        Pixels dropped at every edge of an amplifier; the bins start there and the remainder of
        the amplifier that does not fill a whole bin (at the high-x/high-y side) is dropped too.

    Returns
    -------
    binned : `BinnedFlat`
    """
    xs, ys, values, amps = [], [], [], []
    for k, (sy, sx) in enumerate(amp_boxes):
        arr = np.asarray(image[sy, sx], dtype=np.float64)
        if bad is not None and bad[k]:
            arr = np.full(arr.shape, np.nan)
        else:
            arr = arr * float(gains[k])
        ny = (arr.shape[0] - 2 * border) // bin_factor
        nx = (arr.shape[1] - 2 * border) // bin_factor
        block = arr[border : border + ny * bin_factor, border : border + nx * bin_factor]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            # Mean over rows of each bin, then over its columns: cp_pipe's order of NaN-means.
            binned = np.nanmean(block.reshape(ny, bin_factor, nx, bin_factor), axis=1)
            binned = np.nanmean(binned, axis=2)
        xc = np.arange(nx) * bin_factor + bin_factor / 2.0 + border + sx.start
        yc = np.arange(ny) * bin_factor + bin_factor / 2.0 + border + sy.start
        gx, gy = np.meshgrid(xc, yc)
        xs.append(gx.ravel())
        ys.append(gy.ravel())
        values.append(binned.ravel())
        amps.append(np.full(gx.size, k, dtype=np.int32))
    return BinnedFlat(np.concatenate(xs), np.concatenate(ys), np.concatenate(values), np.concatenate(amps))


def clip_bins(binned: BinnedFlat) -> BinnedFlat:
    """Drop non-finite bins and those outside [0.8 p5, 1.2 p95] of all bin values (cp_pipe).

    The tight percentiles widened by 20 % remove bins hit by unmasked defects without cutting
    into a vignetted edge.
    """
    lo, hi = np.nanpercentile(binned.value, [5.0, 95.0])
    value = binned.value
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(value) & (value >= 0.8 * lo) & (value <= 1.2 * hi)
    return binned.select(keep)


def _node_medians(radius: np.ndarray, value: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Starting spline values: median of the values between the midpoints around each node."""
    mids = 0.5 * (nodes[1:] + nodes[:-1])
    low = np.concatenate([nodes[:1], mids])
    high = np.concatenate([mids, nodes[-1:]])
    p0 = np.zeros(len(nodes))
    for i in range(len(nodes)):
        # Strict bounds, as cp_pipe: the outermost nodes' ranges exclude the extreme radii.
        inside = (radius > low[i]) & (radius < high[i])
        if inside.any():
            p0[i] = np.median(value[inside])
    return p0


class _FixedPointsSpline:
    """Akima spline (scipy, ``method="akima"``) through given nodes, evaluated at fixed points.

    The minimiser evaluates the spline at the same ~2e5 radii thousands of times: the interval
    of every point and its offset from the interval start are found once, and each evaluation
    sums the piecewise cubic's terms in scipy's ``PPoly`` order (the same floating-point result).
    """

    def __init__(self, nodes: np.ndarray, points: np.ndarray):
        self.nodes = nodes
        self.index = np.clip(np.searchsorted(nodes, points, side="right") - 1, 0, len(nodes) - 2)
        self.offset = points - nodes[self.index]

    def __call__(self, params: np.ndarray) -> np.ndarray:
        coeffs = Akima1DInterpolator(self.nodes, params, method="akima").c[:, self.index]
        out = coeffs[3].copy()
        power = self.offset.copy()
        out += coeffs[2] * power
        power *= self.offset
        out += coeffs[1] * power
        power *= self.offset
        out += coeffs[0] * power
        return out


def fit_radial_gradient(
    radius: np.ndarray, value: np.ndarray, n_nodes: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radial Akima spline of a flat (cp_pipe ``FlatGradientFitter`` as the gain-ratio task uses it).

    The values are normalised by their 95th percentile; spline values at ``n_nodes`` nodes spread
    evenly over the radius range start at the medians around each node and minimise the sum of
    absolute deviations (L-BFGS-B with finite-difference gradients, cp_pipe's options).

    Parameters
    ----------
    radius : `numpy.ndarray`
        Focal-plane radius of each bin (mm).
    value : `numpy.ndarray`
        Bin values (finite).
    n_nodes : `int`
        Number of spline nodes.

    Returns
    -------
    model : `numpy.ndarray`
        Normalised model at each bin (the value divided by it is the flattened flat).
    nodes, params : `numpy.ndarray`
        Node radii and spline values.
    """
    radius = np.asarray(radius, dtype=np.float64)
    norm = np.nanpercentile(value, 95.0)
    target = np.asarray(value, dtype=np.float64) / norm
    nodes = np.linspace(np.min(radius), np.max(radius), n_nodes)
    spline = _FixedPointsSpline(nodes, np.clip(radius, nodes[0], nodes[-1]))

    def cost(params: np.ndarray) -> float:
        return float(np.sum(np.abs(target - spline(params))))

    p0 = _node_medians(radius, target, nodes)
    result = minimize(
        cost,
        p0,
        method="L-BFGS-B",
        jac=None,
        bounds=[(None, None)] * n_nodes,
        options={"maxfun": 10000, "maxiter": 10000, "maxcor": 20, "eps": 1e-8, "gtol": 1e-10},
    )
    return spline(result.x), nodes, result.x


def chebyshev_field_fit(
    x: np.ndarray, y: np.ndarray, value: np.ndarray, shape: tuple[int, int], order: int
) -> np.ndarray:
    """Coefficients of a full (non-triangular) Chebyshev field fitted by unweighted least squares.

    As afw's ``ChebyshevBoundedField.fit`` with ``triangular = False``: terms T_i(x') T_j(y') for
    i, j <= ``order``, x' and y' mapping the detector box (pixel edges -0.5 to n - 0.5) onto
    [-1, 1].  Returns the ``(order + 1, order + 1)`` coefficients indexed ``[j (y), i (x)]``.
    """
    xs, ys = _cheb_coords(x, y, shape)
    design = chebyshev.chebvander2d(ys, xs, [order, order])
    coeffs, *_ = np.linalg.lstsq(design, np.asarray(value, dtype=np.float64), rcond=None)
    return coeffs.reshape(order + 1, order + 1)


def _cheb_coords(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    xs = (2.0 * (np.asarray(x, dtype=np.float64) + 0.5) - nx) / nx
    ys = (2.0 * (np.asarray(y, dtype=np.float64) + 0.5) - ny) / ny
    return xs, ys


def _cheb_eval(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], coeffs: np.ndarray) -> np.ndarray:
    xs, ys = _cheb_coords(x, y, shape)
    return chebyshev.chebval2d(ys, xs, coeffs)


def fit_amp_ratios(
    binned: BinnedFlat,
    n_amp: int,
    reference: int,
    shape: tuple[int, int],
    *,
    order: int = 1,
    n_iter: int = 10,
    nsig_clip: float = 5.0,
) -> np.ndarray:
    """Per-amplifier ratios of a flat to a smooth Chebyshev field (cp_pipe ``FlatGainRatioFitter``).

    Each of ``n_iter`` passes fits the field to the bin values of the amplifiers not rejected in
    the previous pass (all in the first), takes every amplifier's median of value / field,
    normalised to the reference amplifier's median, and rejects for the next pass the amplifiers
    whose ratio is more than ``nsig_clip`` normal-scaled MADs (over all ``n_amp`` ratios) from their
    median.  The field is always fitted to the bin values themselves, not to ratio-corrected ones.

    Parameters
    ----------
    binned : `BinnedFlat`
        Bins (finite values).
    n_amp : `int`
        Number of amplifiers; one without bins gets ratio 1.
    reference : `int`
        Index of the amplifier fixed at ratio 1.
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of the detector (the field's box).
    order : `int`
        Chebyshev order in x and in y.
    n_iter : `int`
        Passes.
    nsig_clip : `float`
        Rejection threshold.

    Returns
    -------
    ratios : `numpy.ndarray`
        (n_amp,) ratios (value / field relative to the reference).
    """
    value = np.asarray(binned.value, dtype=np.float64)
    amp = np.asarray(binned.amp_index)
    members = [amp == k for k in range(n_amp)]
    ratios = np.ones(n_amp)
    use = np.ones(len(value), dtype=bool)
    for _ in range(n_iter):
        coeffs = chebyshev_field_fit(binned.x[use], binned.y[use], value[use], shape, order)
        ratio = value / _cheb_eval(binned.x, binned.y, shape, coeffs)
        ratio /= np.median(ratio[members[reference]])
        for k in range(n_amp):
            if members[k].any():
                ratios[k] = np.median(ratio[members[k]])
        ratios[reference] = 1.0
        centre = np.median(ratios)
        spread = median_abs_deviation(ratios, scale="normal")
        use[:] = True
        for k in np.flatnonzero(np.abs(ratios - centre) > nsig_clip * spread):
            use[members[k]] = False
    return ratios


def flat_gain_ratios(
    binned: BinnedFlat,
    radius: np.ndarray | None,
    n_amp: int,
    reference: int,
    shape: tuple[int, int],
    *,
    n_nodes: int = 20,
    order: int = 1,
    max_fractional_ratio: float = 0.05,
    nsig_clip: float = 5.0,
    amp_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Gain ratios of one flat (cp_pipe ``_compute_gain_ratios``).

    Up to ``n_amp // 2`` times: divide the bins by the radial spline (if ``radius`` is given), fit
    the amplifier ratios (`fit_amp_ratios`); if the ratio furthest from 1 is more than
    ``max_fractional_ratio`` off, remove that amplifier's bins and start again from the values
    before the radial division, else stop.

    Parameters
    ----------
    binned : `BinnedFlat`
        Clipped bins (`clip_bins`).
    radius : `numpy.ndarray` or `None`
        Focal-plane radius of each bin (mm); `None` skips the radial gradient.
    n_amp, reference, shape, order, nsig_clip
        As `fit_amp_ratios`.
    n_nodes : `int`
        Radial spline nodes.
    max_fractional_ratio : `float`
        Largest accepted ``|ratio - 1|``.
    amp_names : sequence of `str`, optional
        Names for the log.

    Returns
    -------
    ratios : `numpy.ndarray`
        (n_amp,) ratios of the last fit (1 for removed amplifiers).
    """
    work = binned.select(np.ones(len(binned), dtype=bool))
    radii = None if radius is None else np.asarray(radius, dtype=np.float64)
    ratios = np.ones(n_amp)
    for _ in range(n_amp // 2):
        fitted = work.select(np.ones(len(work), dtype=bool))
        if radii is not None:
            model, _, _ = fit_radial_gradient(radii, work.value, n_nodes)
            fitted.value = work.value / model
        ratios = fit_amp_ratios(fitted, n_amp, reference, shape, order=order, nsig_clip=nsig_clip)
        offset = np.abs(ratios - 1.0)
        worst = int(np.argmax(offset))
        if not offset[worst] > max_fractional_ratio:
            break
        name = amp_names[worst] if amp_names is not None else str(worst)
        _LOG.warning("Amplifier %s has gain ratio %.4f: left out of the fit", name, ratios[worst])
        keep = work.amp_index != worst
        work = work.select(keep)
        if radii is not None:
            radii = radii[keep]
    return ratios


def gain_corrections(ratios: np.ndarray) -> np.ndarray:
    """Per-amplifier gain corrections from the ratios of all flats (cp_pipe).

    Parameters
    ----------
    ratios : `numpy.ndarray`
        (n_flat, n_amp) ratios.

    Returns
    -------
    corrections : `numpy.ndarray`
        (n_amp,) median over the flats, divided by the median over the amplifiers of those (so the
        detector's median gain is kept); the adjusted gain is ``gainUnadjusted / correction``.
    """
    per_amp = np.median(np.asarray(ratios, dtype=np.float64), axis=0)
    return per_amp / np.median(per_amp)
