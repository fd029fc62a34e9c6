"""PTC solver on plain arrays: EXPAPPROXIMATION, turnoff, roll-off, FULLCOVARIANCE.

Truth is injected through the models; tolerances are derived from the statistics (comments).
"""

import numpy as np
import pytest
from scipy.signal import fftconvolve

from lsst.eo.baseline.ptc import (
    _FullCovModel,
    evaluate_exp_model,
    evaluate_full_model,
    evaluate_rolloff_model,
    fit_ptc_amp,
)

A00, GAIN, NOISE2 = -2.0e-6, 1.5, 25.0  # 1/e-, e-/adu, e-^2
NPIX = 9.0e5  # pixels per amplifier: sigma(var)/var = sqrt(2/NPIX) = 0.15%


def _weights(var, npix=NPIX):
    """cp_pipe covariance weights at lag 0: 1/sigma(var) = sqrt(npix/2)/var, shape (N, 1, 1)."""
    return (np.sqrt(npix / 2.0) / var)[:, None, None]


def _noisy(rng, var, npix=NPIX):
    """A measured variance: Gaussian with the sample-variance error var sqrt(2/npix)."""
    return var + rng.normal(0.0, 1.0, var.shape) * var * np.sqrt(2.0 / npix)


def _fisher_errors(mu, var, weights, params):
    """Expected parameter errors of a weighted fit of Eq. 16: sqrt(diag((J^T W^2 J)^-1))."""
    jac = np.empty((len(mu), 3))
    for k in range(3):
        h = 1e-6 * abs(params[k])
        p1, p2 = list(params), list(params)
        p1[k] += h
        p2[k] -= h
        jac[:, k] = (evaluate_exp_model(mu, *p1) - evaluate_exp_model(mu, *p2)) / (2 * h)
    jw = jac * weights[:, None]
    return np.sqrt(np.diag(np.linalg.inv(jw.T @ jw)))


def test_exp_model_limits():
    mu = np.array([0.0, 100.0, 5e4])
    # a00 -> 0 is the linear PTC mu/g + n/g^2 (also at tiny but non-zero a00).
    lin = mu / GAIN + NOISE2 / GAIN**2
    assert np.allclose(evaluate_exp_model(mu, 0.0, GAIN, NOISE2), lin, rtol=1e-15)
    assert np.allclose(evaluate_exp_model(mu, -1e-14, GAIN, NOISE2), lin, rtol=1e-8)
    # Series: mu/g + a00 mu^2 + (2/3) a00^2 g mu^3 + (1/3) a00^3 g^2 mu^4 + (2/15) a00^4 g^3 mu^5...
    m = 1e4
    series = m / GAIN + A00 * m**2 + (2 / 3) * A00**2 * GAIN * m**3 + (1 / 3) * A00**3 * GAIN**2 * m**4
    next_term = (2 / 15) * A00**4 * GAIN**3 * m**5
    value = evaluate_exp_model(m, A00, GAIN, NOISE2) - NOISE2 / GAIN**2
    assert abs(value - series) < 1.5 * next_term


def test_noiseless_exp_model_recovered():
    mu = np.geomspace(300.0, 9.0e4, 40)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    fit = fit_ptc_amp(mu, var, covariance_weights=_weights(var))
    assert fit.valid, fit.failure
    # Exact model: the LM fit converges to the truth within its tolerance (xtol 1e-8).
    assert fit.a00 == pytest.approx(A00, rel=1e-6)
    assert fit.gain == pytest.approx(GAIN, rel=1e-7)
    assert fit.noise == pytest.approx(np.sqrt(NOISE2), rel=1e-5)
    assert fit.mask.all()
    assert fit.ptc_turnoff == mu[-1]
    assert fit.max_signal == mu[-1]
    assert np.allclose(fit.final_model_vars, var, rtol=1e-8)
    assert fit.fit_params == pytest.approx([A00, GAIN, NOISE2], rel=1e-5)


def test_noisy_ptc_gain_errors_are_consistent():
    # Per-point variances drawn from the sample-variance distribution; over many seeds the pulls
    # (fit - truth)/gain_err must be ~N(0, 1).  With 40 seeds (4 sigma bounds): mean within
    # +-4/sqrt(40) = 0.63 and rms within 1 +- 4/sqrt(80) = 1 +- 0.45.  gain_err itself (scaled by
    # sqrt(chi2/dof), dof 37) scatters by 1/sqrt(74) = 12% around the Fisher error; allow 4 sigma.
    # (Over 400 seeds the mean pull is -0.05 +- 0.05: no bias.)
    mu = np.geomspace(500.0, 8.0e4, 40)
    var_true = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    fisher = _fisher_errors(mu, var_true, np.sqrt(NPIX / 2) / var_true, [A00, GAIN, NOISE2])
    pulls_g, pulls_a = [], []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        var = _noisy(rng, var_true)
        fit = fit_ptc_amp(mu, var, covariance_weights=_weights(var))
        assert fit.valid, fit.failure
        assert fit.mask.all()
        assert abs(fit.gain - GAIN) < 5 * fisher[1]
        assert fit.gain_err == pytest.approx(fisher[1], rel=0.5)
        pulls_g.append((fit.gain - GAIN) / fit.gain_err)
        pulls_a.append((fit.a00 - A00) / fit.a00_err)
    for pulls in (np.array(pulls_g), np.array(pulls_a)):
        assert abs(pulls.mean()) < 0.63
        assert 0.55 < np.sqrt(np.mean(pulls**2)) < 1.45


def test_statistical_weights_without_covariance_weights():
    # Without weights the fit uses 1/C_model (proportional to the true 1/sigma); the gain is
    # then as good as with cp_pipe's weights: within 5 Fisher sigma.
    rng = np.random.default_rng(7)
    mu = np.geomspace(500.0, 8.0e4, 40)
    var_true = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    fisher = _fisher_errors(mu, var_true, np.sqrt(NPIX / 2) / var_true, [A00, GAIN, NOISE2])
    fit = fit_ptc_amp(mu, _noisy(rng, var_true))
    assert fit.valid
    assert abs(fit.gain - GAIN) < 5 * fisher[1]
    assert fit.gain_err == pytest.approx(fisher[1], rel=0.5)


@pytest.mark.parametrize("noisy", [False, True])
def test_saturation_turnoff_and_sampling_error(noisy):
    # Uniform sampling (step 2000 adu); above the full well (100000 adu) the variance collapses.
    step = 2000.0
    mu = np.arange(1000.0, 150001.0, step)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    if noisy:
        var = _noisy(np.random.default_rng(3), var)
    sat = mu > 1.0e5
    var[sat] *= np.linspace(0.3, 0.01, sat.sum())
    fit = fit_ptc_amp(mu, var, covariance_weights=_weights(var))
    assert fit.valid, fit.failure
    last_good = mu[~sat].max()  # 99000
    assert fit.ptc_turnoff == last_good
    # cp_pipe's definition: half the distance between the neighbours of the turnoff point, i.e.
    # one step (= half the distance to the first unused point on either side) for uniform sampling.
    assert fit.ptc_turnoff_sampling_error == pytest.approx(step)
    assert np.array_equal(fit.mask, ~sat)
    assert fit.max_signal == mu.max()
    assert np.all(np.isnan(fit.final_vars[sat]))
    fisher = _fisher_errors(mu[~sat], var[~sat], np.sqrt(NPIX / 2) / var[~sat], [A00, GAIN, NOISE2])
    assert abs(fit.gain - GAIN) < (5 * fisher[1] if noisy else 1e-6)


def test_isolated_outliers_are_rejected():
    # Dense sampling (400 adu: an isolated rejected point leaves an 800 adu gap, below the
    # 1000 adu jump threshold).  Outliers of +20% variance are > 5 sqrt(var) away above ~600 adu^2.
    rng = np.random.default_rng(4)
    mu = np.arange(1000.0, 60001.0, 400.0)
    var = _noisy(rng, evaluate_exp_model(mu, A00, GAIN, NOISE2))
    bad = np.zeros(len(mu), dtype=bool)
    bad[[20, 60, 100]] = True
    var[bad] *= 1.2
    fit = fit_ptc_amp(mu, var, covariance_weights=_weights(var))
    assert fit.valid, fit.failure
    assert np.array_equal(fit.mask, ~bad)
    assert fit.ptc_turnoff == mu[-1]
    fisher = _fisher_errors(mu[~bad], var[~bad], np.sqrt(NPIX / 2) / var[~bad], [A00, GAIN, NOISE2])
    assert abs(fit.gain - GAIN) < 5 * fisher[1]


def test_jump_check_truncates_after_a_gap():
    # 800 adu sampling: rejecting one point leaves a 1600 adu gap >= 1000 adu, so cp_pipe's jump
    # check masks everything above the gap (and the turnoff is the point before the outlier).
    mu = np.arange(1000.0, 60001.0, 800.0)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    i_out = 40
    var[i_out] *= 1.3
    fit = fit_ptc_amp(mu, var)
    assert fit.valid
    assert fit.mask[:i_out].all() and not fit.mask[i_out:].any()
    assert fit.ptc_turnoff == mu[i_out - 1]
    # A larger jump threshold keeps the points above the gap.
    fit = fit_ptc_amp(mu, var, max_delta_initial=2000.0)
    assert np.array_equal(fit.mask, np.arange(len(mu)) != i_out)


def test_unsorted_input_and_exp_id_mask():
    rng = np.random.default_rng(5)
    mu = np.arange(1000.0, 120001.0, 1500.0)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    var[mu > 1e5] *= 0.1
    allowed = np.ones(len(mu), dtype=bool)
    allowed[10] = False
    ref = fit_ptc_amp(mu, var, exp_id_mask=allowed)
    perm = rng.permutation(len(mu))
    fit = fit_ptc_amp(mu[perm], var[perm], exp_id_mask=allowed[perm])
    assert fit.gain == pytest.approx(ref.gain, rel=1e-10)
    assert fit.ptc_turnoff == ref.ptc_turnoff
    assert np.array_equal(fit.mask, ref.mask[perm])
    assert np.array_equal(fit.final_model_vars, ref.final_model_vars[perm], equal_nan=True)
    assert not ref.mask[10]


@pytest.mark.parametrize("case", ["two_points", "all_nan", "all_masked", "nothing_below_initial"])
def test_bad_amplifiers_give_nan_and_failure(case):
    mu = np.arange(1000.0, 50001.0, 1000.0)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    mask = None
    if case == "two_points":
        mu, var = mu[:2], var[:2]
    elif case == "all_nan":
        var[:] = np.nan
    elif case == "all_masked":
        mask = np.zeros(len(mu), dtype=bool)
    elif case == "nothing_below_initial":
        mu = mu + 30000.0
    fit = fit_ptc_amp(mu, var, exp_id_mask=mask)
    assert not fit.valid and fit.failure
    assert np.isnan(fit.gain) and np.isnan(fit.noise) and np.isnan(fit.ptc_turnoff)
    assert fit.mask.shape == mu.shape and not fit.mask.any()


def test_no_points_and_nan_covariances():
    # No pair at all (even for FULLCOVARIANCE without covariances): a failure, not an exception.
    fit = fit_ptc_amp(np.array([]), np.array([]), "FULLCOVARIANCE", max_lag_fit=3)
    assert not fit.valid and fit.covariances_model.shape == (0, 3, 3)
    # A point whose covariances are NaN (weight 0) does not spoil the FULLCOVARIANCE fit.
    r = 3
    a, b, n = _truth_matrices(r)
    mu = np.geomspace(300.0, 8.0e4, 20)
    cov = evaluate_full_model(mu, a, b, n, GAIN)
    w = np.sqrt(NPIX) / cov[:, :1, :1] * np.ones((1, r, r))
    cov[5, 1, 0] = np.nan
    fit = fit_ptc_amp(mu, cov[:, 0, 0], "FULLCOVARIANCE", covariances=cov, covariance_weights=w)
    assert fit.valid, fit.failure
    assert fit.gain == pytest.approx(GAIN, rel=1e-8)
    assert fit.a_matrix[1, 0] == pytest.approx(a[1, 0], rel=1e-6)


def test_rolloff():
    # Variance following cp_pipe's roll-off model (deficit exp(-(mu - mu_t)/tau) - 1 above mu_t).
    # The roll-off fit is cp_pipe's unscaled bounded TRF, which need not land on the truth; the
    # rule is checked against the parameters it returns: roll-off = the last fitted mean (array
    # order = mean order here) with |with/without - 1| <= 0.5%, capped at the turnoff, and the
    # final mask = fitted points strictly below it.  The turnoff is not changed by the roll-off.
    mu = np.arange(1000.0, 100001.0, 1000.0)
    var = evaluate_rolloff_model(mu, A00, GAIN, NOISE2, 80000.0, -1500.0)
    plain = fit_ptc_amp(mu, var)
    fit = fit_ptc_amp(mu, var, model_rolloff=True)
    assert fit.valid, fit.failure
    assert fit.ptc_turnoff == plain.ptc_turnoff
    assert fit.rolloff_mask.sum() > fit.turnoff_mask.sum()
    p = fit.rolloff_params
    x = mu[fit.rolloff_mask]
    dev = np.abs(evaluate_rolloff_model(x, *p) / evaluate_exp_model(x, *p[:3]) - 1.0)
    expected = min(x[np.flatnonzero(dev <= 0.005)[-1]], fit.ptc_turnoff)
    assert fit.ptc_rolloff == expected
    assert np.array_equal(fit.mask, fit.rolloff_mask & (mu < expected))
    # No candidate above the turnoff (there the variances are high outliers, not a deficit): the
    # roll-off is the turnoff and the mask is left as the turnoff pass left it.
    var0 = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    var0[mu > 9e4] *= 1.5
    fit0 = fit_ptc_amp(mu, var0, model_rolloff=True)
    assert fit0.ptc_rolloff == fit0.ptc_turnoff == 90000.0
    assert mu[fit0.mask].max() == 90000.0
    assert np.isnan(fit0.rolloff_params).all()


# --------------------------------------------------------------------------------------------
# FULLCOVARIANCE


def _truth_matrices(r):
    a = np.zeros((r, r))
    a[0, 0], a[1, 0], a[0, 1], a[1, 1] = -2.0e-6, 3.0e-7, 1.2e-7, 4.0e-8
    a[2, 0], a[0, 2] = 6.0e-8, 3.0e-8
    b = np.zeros((r, r))
    b[0, 0], b[1, 0], b[0, 1] = 1.0e-6, -2.0e-6, -1.0e-6
    n = np.zeros((r, r))
    n[0, 0], n[1, 0] = NOISE2, 0.5
    return a, b, n


def _recipe_model(mu, a, b, n, g):
    """Direct transcription of cp_pipe's Eq. 20 recipe (spec section 2.6) with fftconvolve."""
    r = a.shape[0]
    m = int(1.5 * r) + 1

    def sym(x):
        pad = np.zeros((m, m))
        pad[:r, :r] = x
        full = np.zeros((2 * m - 1, 2 * m - 1))
        full[m - 1 :, m - 1 :] = pad
        full[: m - 1, m - 1 :] = pad[:0:-1, :]
        full[m - 1 :, : m - 1] = pad[:, :0:-1]
        full[: m - 1, : m - 1] = pad[:0:-1, :0:-1]
        return full

    c = a * b
    a_s, c_s = sym(a), sym(c)
    aa = fftconvolve(a_s, a_s, mode="same")
    aaa = fftconvolve(aa, a_s, mode="same")
    ac = fftconvolve(a_s, c_s, mode="same")
    i0, j0 = np.unravel_index(np.argmax(np.abs(a_s)), a_s.shape)

    def crop(x):
        return x[i0 : i0 + r, j0 : j0 + r]

    out = []
    for m_ in mu:
        mu_e = g * m_
        cov = (
            a * mu_e**2
            + (2 / 3) * (crop(aa) + c) * mu_e**3
            + ((1 / 3) * crop(aaa) + (5 / 6) * crop(ac)) * mu_e**4
            + n
        ) / g**2
        cov[0, 0] += m_ / g
        out.append(cov)
    return np.array(out)


def test_full_model_matches_cp_pipe_recipe():
    mu = np.array([1000.0, 3.0e4, 9.0e4])
    for r in (3, 8):
        a, b, n = _truth_matrices(r)
        ours = evaluate_full_model(mu, a, b, n, GAIN)
        ref = _recipe_model(mu, a, b, n, GAIN)
        assert np.allclose(ours, ref, rtol=1e-9, atol=1e-12 * ref[:, 0, 0].max())


def test_full_model_reduces_to_exp_model():
    # With a = a00 delta and b = 0, Eq. 20 at (0, 0) is the exp model's series to mu^4; the first
    # neglected term is (2/15) a00^4 g^3 mu^5 (0.7 adu^2 at 1e5 adu).
    mu = np.geomspace(100.0, 1.0e5, 20)
    a = np.zeros((4, 4))
    a[0, 0] = A00
    n = np.zeros((4, 4))
    n[0, 0] = NOISE2
    full = evaluate_full_model(mu, a, None, n, GAIN)[:, 0, 0]
    bound = (2 / 15) * A00**4 * GAIN**3 * mu**5
    assert np.all(np.abs(full - evaluate_exp_model(mu, A00, GAIN, NOISE2)) <= 1.5 * bound + 1e-9 * full)


@pytest.mark.parametrize("with_b", [True, False])
def test_full_model_jacobian(with_b):
    rng = np.random.default_rng(6)
    r = 3
    model = _FullCovModel(r)
    mu = np.array([2000.0, 40000.0])
    a, b, n = _truth_matrices(r)
    a = a + rng.normal(0, 1e-8, a.shape)
    c = a * b if with_b else None
    g = 1.3
    _, jac = model.evaluate_with_jacobian(mu, a, c, n, g)
    params = [a.ravel()] + ([c.ravel()] if with_b else []) + [n.ravel(), [g]]
    p = np.concatenate(params)
    r2 = r * r

    def f(p):
        k = r2
        cc = None
        if with_b:
            cc = p[k : k + r2].reshape(r, r)
            k += r2
        return model.evaluate(mu, p[:r2].reshape(r, r), cc, p[k : k + r2].reshape(r, r), p[-1]).reshape(
            len(mu), r2
        )

    scale = np.abs(jac).max(axis=(0, 1))
    for k in range(len(p)):
        h = 1e-4 * max(abs(p[k]), 1e-9 if k < (2 * r2 if with_b else r2) else 1e-3)
        pp, pm = p.copy(), p.copy()
        pp[k] += h
        pm[k] -= h
        num = (f(pp) - f(pm)) / (2 * h)
        # Central differences of a polynomial of degree <= 3 in each parameter: error O(h^2).
        assert np.allclose(jac[:, :, k], num, rtol=1e-5, atol=1e-7 * scale[k])


@pytest.mark.parametrize("fit_type", ["FULLCOVARIANCE", "FULLCOVARIANCE_NO_B"])
def test_fullcovariance_noiseless_recovery(fit_type):
    r = 5
    a, b, n = _truth_matrices(r)
    if fit_type == "FULLCOVARIANCE_NO_B":
        b = np.zeros_like(b)
    mu = np.geomspace(300.0, 8.0e4, 30)
    cov = evaluate_full_model(mu, a, b, n, GAIN)
    w = np.sqrt(NPIX) / cov[:, :1, :1] * np.ones((1, r, r))
    fit = fit_ptc_amp(mu, cov[:, 0, 0], fit_type, covariances=cov, covariance_weights=w)
    assert fit.valid, fit.failure
    assert fit.gain == pytest.approx(GAIN, rel=1e-8)
    assert fit.noise == pytest.approx(np.sqrt(NOISE2), rel=1e-6)
    assert fit.a_matrix == pytest.approx(a, rel=1e-6, abs=1e-13)
    assert fit.noise_matrix == pytest.approx(n, abs=1e-5)
    if fit_type == "FULLCOVARIANCE":
        assert fit.b_matrix[0, 0] == pytest.approx(b[0, 0], rel=1e-4)
        assert fit.b_matrix[1, 0] == pytest.approx(b[1, 0], rel=1e-4)
    assert fit.a00 == fit.a_matrix[0, 0]
    assert np.allclose(fit.covariances_model, cov, rtol=1e-8, atol=1e-9)
    assert np.allclose(fit.final_model_vars, cov[:, 0, 0], rtol=1e-8)


def test_fullcovariance_noisy_recovery():
    # Covariances with Gaussian errors 1/w (w = cp_pipe weights for NPIX pixels): a00, a10, a01
    # and the gain within 5 of their (chi2-scaled) errors; the errors match the scatter (chi2/dof
    # ~ 1 within 5 sigma of sqrt(2/dof)).
    rng = np.random.default_rng(8)
    r = 4
    a, b, n = _truth_matrices(r)
    mu = np.geomspace(300.0, 8.0e4, 35)
    cov_true = evaluate_full_model(mu, a, b, n, GAIN)
    sig = cov_true[:, :1, :1] / np.sqrt(NPIX) * np.ones((1, r, r))
    sig[:, 0, 0] *= np.sqrt(2.0)
    cov = cov_true + rng.normal(0, 1, cov_true.shape) * sig
    fit = fit_ptc_amp(mu, cov[:, 0, 0], "FULLCOVARIANCE", covariances=cov, covariance_weights=1.0 / sig)
    assert fit.valid, fit.failure
    dof = cov.size - (3 * r * r + 1)
    assert abs(fit.chi2_dof - 1.0) < 5 * np.sqrt(2.0 / dof)
    r2 = r * r
    err_a = fit.fit_params_err[:r2].reshape(r, r)
    for i, j in [(0, 0), (1, 0), (0, 1)]:
        assert abs(fit.a_matrix[i, j] - a[i, j]) < 5 * err_a[i, j]
    assert abs(fit.gain - GAIN) < 5 * fit.gain_err
    assert fit.gain_err < 2e-3 * GAIN
    assert abs(fit.noise - np.sqrt(NOISE2)) < 5 * fit.noise_err
