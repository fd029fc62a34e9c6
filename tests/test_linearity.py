"""Linearity turnoff / maximum signal (cp_pipe), eo_pipe's max_frac_dev, linearity residuals."""

import numpy as np
import pytest

from lsst.eo.baseline.linearity import eo_linearity, linear_fit_residuals, linearity_turnoff

K = 1000.0  # adu per second


def _curve(t, onset=60000.0, scale=15000.0, full_well=None):
    """Proportional response with a fractional deficit d(y) = 0.01 ((y - onset)/scale)^2 above onset.

    The deficit reaches exactly 1% at y_lin = onset + scale.
    """
    y_lin = K * t
    d = np.where(y_lin > onset, 0.01 * ((y_lin - onset) / scale) ** 2, 0.0)
    y = y_lin * (1.0 - d)
    if full_well is not None:
        y = np.minimum(y, full_well)
    return y, d


def test_turnoff_within_one_step_of_the_one_percent_point():
    t = np.arange(1.0, 101.0)  # 1000 adu steps
    y, d = _curve(t)
    r = linearity_turnoff(t, y)
    assert r.found
    # Most points are linear, so the median residual is the linear points' offset and the
    # normalised residual of point i is -d_i/(1 - d_i) x k/k_true ~ -d_i to 1e-4: the turnoff is
    # the last point with d < 1%, to within one sampling step (d changes by ~0.13% per step here).
    truth = y[d < 0.01].max()
    step = np.max(np.diff(y[(y > truth - 3000) & (y < truth + 3000)]))
    assert abs(r.turnoff - truth) <= step
    # No plateau: the largest y belongs to the last point, which is past the turnoff, so
    # max_signal is the median of the points above 99% of the largest y.
    assert r.max_signal == pytest.approx(np.median(y[y > 0.99 * y.max()]))
    # The fitted proportional slope is within the deviation range of the truth.
    assert K * 0.97 < r.slope < K * 1.0001


def test_saturation_plateau_gives_max_signal():
    t = np.arange(1.0, 121.0)
    y, d = _curve(t, full_well=88000.0)
    r = linearity_turnoff(t, y)
    truth = y[(d < 0.01) & (y < 88000.0)].max()
    assert abs(r.turnoff - truth) <= 1000.0
    assert r.max_signal == pytest.approx(88000.0)  # median of the plateau


def test_linear_curve_turnoff_is_last_point():
    t = np.arange(1.0, 51.0)
    y = K * t
    r = linearity_turnoff(t, y)
    assert r.turnoff == y[-1]
    assert r.max_signal == y[-1]  # the turnoff is the last point
    assert r.slope == pytest.approx(K, rel=1e-12)
    assert np.allclose(r.residuals, 0.0, atol=1e-12)


def test_min_signal_mask_max_turnoff_and_groups():
    t = np.arange(0.2, 100.0, 0.5)
    y, d = _curve(t)
    # Two illumination groups: the second with 1.7x the flux per second.
    groups = (np.arange(len(t)) % 2).astype(int)
    x = np.where(groups == 1, t / 1.7, t)
    r = linearity_turnoff(x, y, groups=groups)
    assert r.group_slopes[0] == pytest.approx(K, rel=0.02)
    assert r.group_slopes[1] == pytest.approx(1.7 * K, rel=0.02)
    truth = y[d < 0.01].max()
    assert abs(r.turnoff - truth) <= 2 * 500.0  # sampling step 500 adu (either group)
    assert not r.fit_mask[y < 1000.0].any()  # min_signal
    # max_turnoff caps the fit and the turnoff.
    capped = linearity_turnoff(x, y, groups=groups, max_turnoff=50000.0)
    assert capped.turnoff < 50000.0 and capped.turnoff >= 50000.0 - 1000.0
    # A mask removing the high points from the fit does not stop them from being "good".
    mask = y < 40000.0
    masked = linearity_turnoff(x, y, mask, groups=groups)
    assert abs(masked.turnoff - truth) <= 1000.0


def test_too_few_points():
    # Fewer than 4 fit points: never "found"; cp_pipe then quotes the largest fitted y.
    r = linearity_turnoff(np.array([1.0, 2.0, 3.0]), np.array([2000.0, 4000.0, 6000.0]))
    assert not r.found
    assert r.turnoff == 6000.0
    empty = linearity_turnoff(np.array([1.0, 2.0]), np.array([np.nan, np.nan]))
    assert np.isnan(empty.turnoff) and np.isnan(empty.max_signal)


def test_eo_linearity():
    gain = 1.6
    t = np.arange(1.0, 101.0)
    y, d = _curve(t, onset=40000.0, scale=10000.0)
    x = 3.0 * t  # photodiode charge
    ne = gain * y
    r = eo_linearity(x, y, gain)
    fit = (ne > 1e3) & (ne < 9e4)
    assert np.array_equal(r.fit_mask, fit)
    # Poisson-weighted slope through the origin, closed form.
    a = np.sum(x[fit]) / np.sum(x[fit] ** 2 / ne[fit])
    assert r.slope == pytest.approx(a, rel=1e-12)
    resid = (ne - a * x) / ne
    assert r.max_frac_dev == pytest.approx(np.max(np.abs(resid[fit])), rel=1e-12)
    assert r.linearity_turnoff == pytest.approx(np.max(ne[np.abs(resid) < 0.05]) / gain)
    assert r.max_observed_signal == y.max()
    # A collapsed point (x beyond the peak, signal ~ 0) is excluded; the peak abscissa limits x.
    x2 = np.append(x, x[-1] * 1.05)
    y2 = np.append(y, 10.0)
    r2 = eo_linearity(x2, y2, gain)
    assert not r2.fit_mask[-1]
    assert r2.slope == pytest.approx(r.slope, rel=1e-12)
    assert np.isnan(eo_linearity(x, y, np.nan).slope)


def test_linear_fit_residuals():
    t = np.arange(1.0, 41.0)
    y = 50.0 + K * t
    y_out = y.copy()
    y_out[7] *= 1.2  # a 20% outlier: Cauchy weight ~ 1/(1 + (1600/sqrt(8050)/2.385)^2) = 0.02
    r = linear_fit_residuals(t, y_out)
    assert r.slope == pytest.approx(K, rel=2e-4)
    assert r.intercept == pytest.approx(50.0, abs=10.0)
    # cp_pipe drops the intercept: residual = y - slope t, i.e. ~ the intercept for good points.
    good = np.arange(40) != 7
    assert np.allclose(r.residuals[good], y_out[good] - r.slope * t[good])
    assert np.allclose(r.residuals[good], 50.0, atol=15.0)
    exact = linear_fit_residuals(t, y, t < 30)
    assert exact.slope == pytest.approx(K, rel=1e-12) and exact.intercept == pytest.approx(50.0)
    assert np.isnan(exact.residuals[t >= 30]).all()
    assert np.allclose(exact.residuals_unmasked, 50.0)


def test_cp_max_signal_uses_array_position_and_tolerance_threshold():
    # 10 linear points y = 1000 t (t = 1..10) then a plateau 10100, 10300, 10250 (t = 11..13).
    # First fit over all 13 points: k = sum t / sum(t^2 / y) < 1000, so the linear points share one
    # residual c = 1 - k/1000 > 0 and the plateau ones are far below; the median of the 13 is c,
    # leaving the 10 linear points at 0 (good, > 4 of them) and the plateau at < -8%: turnoff =
    # 10000 (index 9).  It is not the last array entry, so max_signal = median of the points above
    # (1 - 0.01) x 10300 = 10197: {10300, 10250} -> 10275.  With a 2% tolerance the threshold is
    # 0.98 x 10300 = 10094: {10100, 10300, 10250} -> 10250 (the turnoff is unchanged).
    t = np.concatenate([np.arange(1.0, 11.0), [11.0, 12.0, 13.0]])
    y = np.concatenate([1000.0 * np.arange(1.0, 11.0), [10100.0, 10300.0, 10250.0]])
    r = linearity_turnoff(t, y)
    assert r.turnoff == 10000.0
    assert r.max_signal == pytest.approx(10275.0)
    r2 = linearity_turnoff(t, y, max_frac_deviation=0.02)
    assert r2.turnoff == 10000.0
    assert r2.max_signal == pytest.approx(10250.0)
    # Turnoff at the last array entry: its own value.
    lin = linearity_turnoff(t[:10], y[:10])
    assert lin.turnoff == lin.max_signal == 10000.0
