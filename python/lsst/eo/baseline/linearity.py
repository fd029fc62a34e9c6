"""Linearity turnoff, maximum signal and linearity residuals on plain arrays.

Two definitions are implemented, under distinct names:

* `linearity_turnoff` -- cp_pipe's ``_computeTurnoffAndMax`` (``cp_pipe_algorithms.md`` section
  3.1), the **primary** definition that the EO report should quote as "linearity turnoff" and
  "maximum signal" (it is what cp_pipe stores as ``linearityTurnoff`` / ``linearityMaxSignal``):
  per illumination group, a zero-intercept fit ``y = k x`` with variance proportional to y
  (``k = sum(x) / sum(x^2/y)``) over the points with ``y >= min_signal`` (1000 adu); fractional
  residuals ``(y - k x)/y`` minus their median; the turnoff is the largest y with
  ``|residual| < max_frac_deviation`` (1%) once more than 4 points qualify (else the worst point is
  dropped from the fit and the fit repeated); the maximum signal is the median of the points
  above 99% of the largest y (the saturation plateau), or the turnoff if the turnoff is the last
  point.
* `eo_linearity` -- eo_pipe's ``LinearityPlotsTask`` (``eo_pipe.md`` section 3.10), for
  comparison with eo_pipe's published numbers: ``N_e = gain * mean`` against the photodiode
  charge, ``N_e = a x`` through the origin with Poisson weights over 1e3 < N_e < 9e4 e-;
  ``max_frac_dev`` = the largest ``|N_e - a x| / N_e`` over the fitted points (the linearity
  metric the EO report quotes, cp_pipe having no equivalent), ``linearity_turnoff`` = the largest
  signal with deviation < 5%, and ``max_observed_signal`` = the largest mean.

`fit_linearizer` builds a linearizer from the same curve (a cubic least-squares spline of the
fractional deviation versus signal, cp_pipe's ``Spline`` linearizer in spirit) so that pair
statistics can be linearised before the PTC fit, as cp_pipe's PTC ISR linearises its images.

`linear_fit_residuals` gives cp_pipe's linearity residuals (section 3.2 step 5) for an
uncorrected curve: an iteratively reweighted (Cauchy) straight-line fit, residual ``y - slope x``
(cp_pipe drops the intercept) and its normalised MAD.

Units: the ordinate is the mean signal in adu (eo_linearity converts to electrons with the given
gain and reports the turnoff back in adu); the abscissa is exposure time or photodiode charge.
"""

from __future__ import annotations

__all__ = [
    "EoLinearity",
    "interpolated_turnoff",
    "Linearizer",
    "fit_linearizer",
    "LinearFitResiduals",
    "LinearityTurnoff",
    "eo_linearity",
    "linear_fit_residuals",
    "linearity_turnoff",
]

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline, make_lsq_spline


@dataclass(frozen=True)
class LinearityTurnoff:
    """Result of `linearity_turnoff` (cp_pipe definition).

    Attributes
    ----------
    turnoff : `float`
        Linearity turnoff (adu): the largest ordinate within ``max_frac_deviation`` of the
        proportional fit (cp_pipe ``linearityTurnoff``).
    max_signal : `float`
        Maximum signal (adu), cp_pipe ``linearityMaxSignal``.
    slope : `float`
        Fitted ``k`` (adu per abscissa unit) of the group holding the turnoff point (the only
        group without ``groups``).
    group_slopes : `dict`
        ``k`` of every group.
    residuals : `numpy.ndarray`
        Fractional residuals ``(y - k_g x)/y`` minus one median over all groups, every point (NaN
        where not computable), input order.
    good : `numpy.ndarray` of `bool`
        Points within ``max_frac_deviation`` (and below ``max_turnoff``).
    fit_mask : `numpy.ndarray` of `bool`
        Points of the final proportional fit.
    found : `bool`
        False if fewer than 5 points ever qualified (then ``turnoff`` = the largest fitted y).
    """

    turnoff: float
    max_signal: float
    slope: float
    group_slopes: dict
    residuals: np.ndarray
    good: np.ndarray
    fit_mask: np.ndarray
    found: bool


def _key(label):
    """Plain Python value of a group label (dictionary key)."""
    return label.item() if isinstance(label, np.generic) else label


def linearity_turnoff(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None = None,
    min_signal: float = 1000.0,
    max_frac_deviation: float = 0.01,
    max_turnoff: float = np.inf,
    groups: np.ndarray | None = None,
    use_all_for_normalization: bool = True,
) -> LinearityTurnoff:
    """cp_pipe's linearity turnoff and maximum signal (``_computeTurnoffAndMax``).

    Parameters
    ----------
    x : `numpy.ndarray`
        Abscissa (exposure time or photodiode charge), positive.
    y : `numpy.ndarray`
        Mean signal (adu, PTC ``rawMeans`` without linearity correction).
    mask : `numpy.ndarray` of `bool`, optional
        Initial mask (cp_pipe: the PTC ``expIdMask``); True = usable.
    min_signal : `float`, optional
        Lowest y used by the fit (cp_pipe ``minSignalFitLinearityTurnoff``, 1000 adu).
    max_frac_deviation : `float`, optional
        Tolerance on the fractional residual (cp_pipe ``maxFracLinearityDeviation``, 0.01).
    max_turnoff : `float`, optional
        Upper limit on y (cp_pipe DoubleSpline: 1.3 x PTC turnoff; default none).
    groups : `numpy.ndarray`, optional
        Illumination group of each point (each gets its own slope); default one group.
    use_all_for_normalization : `bool`, optional
        Median residual over all points (True, cp_pipe's classic solver) or only over the fitted
        points (DoubleSpline); one median for all groups together, as cp_pipe.

    Returns
    -------
    result : `LinearityTurnoff`
        NaN turnoff/max signal if no point is usable.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    finite = np.isfinite(x) & np.isfinite(y)
    base = finite if mask is None else finite & np.asarray(mask, dtype=bool)
    grp = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    labels = np.unique(grp)
    fit_mask = base & (y >= min_signal) & (y <= max_turnoff)
    resid = np.full(n, np.nan)
    good = np.zeros(n, dtype=bool)
    slopes: dict = {}
    found = False
    turnoff = np.nan
    first_pass = True
    while np.count_nonzero(fit_mask) >= 4 and not found:
        resid[:] = np.nan
        slopes = {}
        for lab in labels:
            sel = (grp == lab) & finite
            fm = fit_mask & sel
            if not fm.any():
                if not first_pass:
                    continue  # cp_pipe: k = NaN, residuals NaN
                # cp_pipe, first pass only: the group's first min(10, n) points, mask ignored.
                fm = np.zeros(n, dtype=bool)
                fm[np.flatnonzero(sel)[:10]] = True
                if not fm.any():
                    continue
            with np.errstate(divide="ignore", invalid="ignore"):
                k = np.sum(x[fm]) / np.sum(x[fm] ** 2 / y[fm])
                resid[sel] = (y[sel] - k * x[sel]) / y[sel]
            slopes[_key(lab)] = float(k)
        # One median over all groups together (cp_pipe), over every point or the fitted ones.
        norm = finite if use_all_for_normalization else fit_mask
        fin = np.isfinite(resid) & norm
        if fin.any():
            resid -= np.median(resid[fin])
        first_pass = False
        with np.errstate(invalid="ignore"):
            good = (np.abs(resid) < max_frac_deviation) & (y < max_turnoff)
        if np.count_nonzero(good) > 4:
            turnoff = float(np.max(y[good]))
            found = True
        else:
            cand = np.where(fit_mask & np.isfinite(resid), np.abs(resid), -np.inf)
            if not np.isfinite(cand).any():
                break
            fit_mask[int(np.argmax(cand))] = False
    if not found:
        turnoff = float(np.max(y[fit_mask])) if fit_mask.any() else np.nan

    # cp_pipe: the turnoff's own value if it is the last array entry, else the median of the
    # points above (1 - max_frac_deviation) x the largest signal (the saturation plateau).
    max_signal = np.nan
    if finite.any() and np.isfinite(turnoff):
        index = int(np.flatnonzero(np.isclose(np.nan_to_num(y), turnoff))[0])
        if index == n - 1:
            max_signal = float(y[index])
        else:
            ymax = float(np.nanmax(y))
            max_signal = float(np.median(y[np.nan_to_num(y) > (1.0 - max_frac_deviation) * ymax]))
    slope = np.nan
    if np.isfinite(turnoff) and slopes:
        idx = np.flatnonzero(finite & (y == turnoff))
        slope = slopes.get(_key(grp[idx[0]] if idx.size else labels[0]), np.nan)
    return LinearityTurnoff(turnoff, max_signal, float(slope), slopes, resid, good, fit_mask, found)


@dataclass(frozen=True)
class EoLinearity:
    """Result of `eo_linearity` (eo_pipe definition).

    Attributes
    ----------
    slope : `float`
        ``a`` of ``N_e = a x`` (e- per abscissa unit).
    max_frac_dev : `float`
        Largest ``|N_e - a x| / N_e`` over the fitted points (eo_pipe ``max_frac_dev``).
    linearity_turnoff : `float`
        Largest signal (adu) among all points with fractional deviation below
        ``max_frac_dev_spec`` (eo_pipe ``linearity_turnoff``).
    max_observed_signal : `float`
        Largest finite mean signal (adu) of all points, eo_pipe ``max_observed_signal``; pass
        measured (not linearised) means.
    residuals : `numpy.ndarray`
        ``(N_e - a x)/N_e`` for every point (input order).
    fit_mask : `numpy.ndarray` of `bool`
        Points used by the fit.
    """

    slope: float
    max_frac_dev: float
    linearity_turnoff: float
    max_observed_signal: float
    residuals: np.ndarray
    fit_mask: np.ndarray


def eo_linearity(
    x: np.ndarray,
    means_adu: np.ndarray,
    gain: float,
    fit_range: tuple[float, float] = (1.0e3, 9.0e4),
    max_frac_dev_spec: float = 0.05,
) -> EoLinearity:
    """eo_pipe's linearity fit, max fractional deviation and turnoff.

    Parameters
    ----------
    x : `numpy.ndarray`
        Photodiode charge (or exposure time) of each pair.
    means_adu : `numpy.ndarray`
        Measured pair means (adu; cp_pipe's linearizer PTC ``rawMeans``, which are not
        linearised), **all** pairs, not only the PTC fit mask.
    gain : `float`
        e-/adu (eo_pipe: PTC gain, camera gain if NaN).
    fit_range : `tuple` [`float`, `float`], optional
        Exclusive N_e range (e-) of the fit (eo_pipe 1e3, 9e4).
    max_frac_dev_spec : `float`, optional
        Deviation defining the turnoff (eo_pipe 0.05).

    Returns
    -------
    result : `EoLinearity`
        NaN fields if no point can be fitted.

    Notes
    -----
    Fit selection (eo_pipe): ``fit_range[0] < N_e < fit_range[1]``, ``0 < x <= x_peak`` with
    x_peak the abscissa of the largest N_e, excluding "collapsed" points (``x > 0.9 x_peak`` and
    ``N_e < 0.1 max(N_e)``).  ``a = sum(x) / sum(x^2 / N_e)`` minimises
    ``sum((N_e - a x)^2 / N_e)``.
    """
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(means_adu, dtype=np.float64)
    ne = gain * mu
    finite = np.isfinite(x) & np.isfinite(ne)
    nan = np.full(len(mu), np.nan)
    # Every measured mean counts, whatever its abscissa (eo_pipe max(rawMeans), NaN-safe).
    finite_mu = mu[np.isfinite(mu)]
    max_obs = float(np.max(finite_mu)) if finite_mu.size else np.nan
    if not finite.any() or not np.isfinite(gain) or gain <= 0:
        return EoLinearity(np.nan, np.nan, np.nan, max_obs, nan, np.zeros(len(mu), dtype=bool))
    i_peak = int(np.flatnonzero(finite)[np.argmax(ne[finite])])
    x_peak, ne_max = x[i_peak], ne[i_peak]
    collapsed = (x > 0.9 * x_peak) & (ne < 0.1 * ne_max)
    fit = finite & (ne > fit_range[0]) & (ne < fit_range[1]) & (x > 0) & (x <= x_peak) & ~collapsed
    if not fit.any():
        return EoLinearity(np.nan, np.nan, np.nan, max_obs, nan, fit)
    a = float(np.sum(x[fit]) / np.sum(x[fit] ** 2 / ne[fit]))
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.where(finite, (ne - a * x) / ne, np.nan)
    max_frac_dev = float(np.max(np.abs(resid[fit])))
    within = finite & (np.abs(np.nan_to_num(resid, nan=np.inf)) < max_frac_dev_spec)
    turnoff = float(np.max(ne[within]) / gain) if within.any() else np.nan
    return EoLinearity(a, max_frac_dev, turnoff, max_obs, resid, fit)


@dataclass(frozen=True)
class LinearFitResiduals:
    """Result of `linear_fit_residuals`.

    Attributes
    ----------
    intercept, slope : `float`
        IRLS straight-line fit ``y = intercept + slope x``.
    residuals : `numpy.ndarray`
        ``y - slope x`` (intercept dropped, as cp_pipe), NaN outside the mask (``fitResiduals``).
    residuals_unmasked : `numpy.ndarray`
        Same for every finite point (``fitResidualsUnmasked``).
    sigma_mad : `float`
        1.4826 MAD of ``residual / y`` over the finite masked points (``fitResidualsSigmaMad``).
    weights : `numpy.ndarray`
        Final Cauchy weights of the fitted points.
    """

    intercept: float
    slope: float
    residuals: np.ndarray
    residuals_unmasked: np.ndarray
    sigma_mad: float
    weights: np.ndarray


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Least-squares line minimising sum((w (y - k0 - k1 x))^2)."""
    design = np.column_stack([np.ones_like(x), x]) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return float(coef[0]), float(coef[1])


def linear_fit_residuals(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None, n_reweight: int = 10
) -> LinearFitResiduals:
    """cp_pipe's linearity residuals of an uncorrected curve (section 3.2 step 5).

    An unweighted straight-line fit, then ``n_reweight`` refits with Cauchy weights
    ``w = 1 / (1 + (|y - model| / sqrt(y) / 2.385)^2)`` applied to the residuals (cp_pipe
    ``irlsFit``: it minimises ``sum((w r)^2)``).

    Parameters
    ----------
    x, y : `numpy.ndarray`
        Abscissa and mean signal (adu, positive).
    mask : `numpy.ndarray` of `bool`, optional
        Points to fit (e.g. up to the linearity turnoff); True = use.
    n_reweight : `int`, optional
        Reweighting passes (10).

    Returns
    -------
    result : `LinearFitResiduals`
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    use = finite if mask is None else finite & np.asarray(mask, dtype=bool)
    nan = np.full(len(y), np.nan)
    if np.count_nonzero(use) < 2:
        return LinearFitResiduals(np.nan, np.nan, nan, nan, np.nan, np.zeros(0))
    xs, ys = x[use], y[use]
    w = np.ones_like(xs)
    k0, k1 = _weighted_line(xs, ys, w)
    for _ in range(n_reweight):
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(ys - k0 - k1 * xs) / np.sqrt(ys) / 2.385
        w = 1.0 / (1.0 + np.nan_to_num(z, nan=np.inf) ** 2)
        k0, k1 = _weighted_line(xs, ys, w)
    unmasked = np.where(finite, y - k1 * x, np.nan)
    resid = np.where(use, unmasked, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = resid[use] / y[use]
    frac = frac[np.isfinite(frac)]
    sigma_mad = float(1.4826 * np.median(np.abs(frac - np.median(frac)))) if frac.size else np.nan
    return LinearFitResiduals(k0, k1, resid, unmasked, sigma_mad, w)


_KNOT_FRACTIONS = (0.3, 0.5, 0.65, 0.75, 0.82, 0.88, 0.92, 0.95, 0.975)
"""Interior knots of the linearizer spline, as fractions of the largest unsaturated signal:
denser where non-linearity rises toward full well."""


@dataclass(frozen=True)
class Linearizer:
    """Correction from measured to linear signal, ``y_lin = y / (1 + s(y))``.

    Attributes
    ----------
    slope : `float`
        Slope k of the linear response (adu per abscissa unit).
    spline : `scipy.interpolate.BSpline` or `None`
        Fractional deviation ``s(y) = y / (k x) - 1`` (None: identity).
    max_signal : `float`
        Largest signal (adu) the spline was fitted to; above it the correction is undefined (NaN).
    """

    slope: float
    spline: BSpline | None
    max_signal: float

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Linearised signal (adu); NaN above `max_signal`."""
        y = np.asarray(y, dtype=np.float64)
        if self.spline is None:
            return y.copy()
        out = y / (1.0 + self.spline(y))
        return np.where(y <= self.max_signal, out, np.nan)

    def derivative(self, y: np.ndarray) -> np.ndarray:
        """``d y_lin / d y``: multiplies standard deviations (its square, variances)."""
        y = np.asarray(y, dtype=np.float64)
        if self.spline is None:
            return np.ones_like(y)
        s = self.spline(y)
        ds = self.spline.derivative()(y)
        out = 1.0 / (1.0 + s) - y * ds / (1.0 + s) ** 2
        return np.where(y <= self.max_signal, out, np.nan)


def fit_linearizer(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    min_signal: float = 1000.0,
    max_linear_signal: float = 20000.0,
    max_deviation: float = 0.05,
    plateau_fraction: float = 0.998,
) -> Linearizer:
    """Fit a linearizer to a signal-versus-exposure curve.

    The linear slope comes from cp_pipe's zero-intercept fit with variance proportional to y over
    ``min_signal < y < max_linear_signal`` (``k = sum(x) / sum(x^2 / y)``).  The fractional
    deviation ``y / (k x) - 1`` of every unsaturated point is then fitted with a cubic
    least-squares spline in y, anchored at 0 for y = 0.  Saturated points are excluded: the
    plateau (within ``1 - plateau_fraction`` of the largest signal) and points deviating by more
    than ``max_deviation``.

    Parameters
    ----------
    x : `numpy.ndarray`
        Abscissa: photodiode charge (preferred: it follows the source's flux jitter) or exposure
        time.
    y : `numpy.ndarray`
        Mean signal (adu).
    mask : `numpy.ndarray` of `bool`, optional
        Points allowed.
    min_signal, max_linear_signal : `float`
        Signal range (adu) of the linear-slope fit.
    max_deviation : `float`
        Points deviating more than this (saturated) are not fitted.
    plateau_fraction : `float`
        Points above this fraction of the largest signal are taken as saturated.

    Returns
    -------
    linearizer : `Linearizer`
        Identity (``spline=None``) if there are too few points.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if mask is not None:
        good &= np.asarray(mask, dtype=bool)
    lin = good & (y > min_signal) & (y < max_linear_signal)
    if lin.sum() < 3:
        return Linearizer(np.nan, None, np.inf)
    k = float(np.sum(x[lin]) / np.sum(x[lin] ** 2 / y[lin]))
    dev = y / (k * x) - 1.0
    use = good & (y > min_signal) & (np.abs(dev) < max_deviation) & (y < plateau_fraction * np.max(y[good]))
    if use.sum() < 2 * len(_KNOT_FRACTIONS):
        return Linearizer(k, None, np.inf)
    order = np.argsort(y[use])
    yy = np.concatenate([[0.0], y[use][order]])
    rr = np.concatenate([[0.0], dev[use][order]])
    weights = np.concatenate([[100.0], np.ones(order.size)])  # pins s(0) = 0
    top = float(yy[-1])
    # Interior knots must have data between consecutive knots (Schoenberg-Whitney): a knot that
    # would leave an empty interval is dropped.
    interior: list[float] = []
    previous = 0.0
    for t in top * np.asarray(_KNOT_FRACTIONS):
        if np.count_nonzero((yy > previous) & (yy < t)) >= 2:
            interior.append(float(t))
            previous = float(t)
    knots = np.concatenate([[0.0] * 4, interior, [top * (1 + 1e-6)] * 4])
    try:
        spline = make_lsq_spline(yy, rr, knots, k=3, w=weights)
    except (ValueError, np.linalg.LinAlgError):
        return Linearizer(k, None, np.inf)
    return Linearizer(k, spline, top)


def interpolated_turnoff(
    y: np.ndarray, residuals: np.ndarray, turnoff: float, tolerance: float = 0.01
) -> float:
    """Refine a sampled linearity turnoff to where the residual crosses the tolerance.

    cp_pipe's turnoff is a sampled mean (the largest within tolerance), so it lies up to one flux
    step below the true crossing.  Between that point and the next larger point (which exceeds the
    tolerance), ``|residual|`` is interpolated linearly to find where it reaches ``tolerance``.

    Parameters
    ----------
    y : `numpy.ndarray`
        Signals (adu).
    residuals : `numpy.ndarray`
        Fractional residuals of every point (`LinearityTurnoff.residuals`).
    turnoff : `float`
        Sampled turnoff (adu).
    tolerance : `float`
        Residual tolerance (cp_pipe 1%).

    Returns
    -------
    turnoff : `float`
        Interpolated turnoff (adu); the sampled one if there is no larger point to interpolate to.
    """
    y = np.asarray(y, dtype=np.float64)
    r = np.abs(np.asarray(residuals, dtype=np.float64))
    ok = np.isfinite(y) & np.isfinite(r)
    at = ok & np.isclose(y, turnoff, rtol=0, atol=1e-9 * max(abs(turnoff), 1.0))
    above = ok & (y > turnoff)
    if not at.any() or not above.any() or not np.isfinite(turnoff):
        return float(turnoff)
    r0 = float(np.max(r[at]))
    nxt = int(np.flatnonzero(above)[np.argmin(y[above])])
    y1, r1 = float(y[nxt]), float(r[nxt])
    if r1 <= tolerance or r1 <= r0:
        return float(turnoff)
    return float(turnoff + (tolerance - r0) * (y1 - turnoff) / (r1 - r0))
