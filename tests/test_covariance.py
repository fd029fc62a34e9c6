"""Flat-pair measurements: FFT covariances, variance, row means, per-pair gain, BF slopes.

Every assertion compares with an injected truth; tolerances are derived from the statistics of
the estimator (derivations in the comments), never copied from an output.
"""

import numpy as np
import pytest

from lsst.eo.baseline.covariance import (
    fft_covariances,
    measure_pair,
    pair_gain,
    row_means_variance_slope,
)
from lsst.eo.baseline.flatPairStats import eo_bf_stats

EDGE = 20


def _flat_pair(rng, shape, mean_e, gain, read_noise_e=0.0, poisson=True, mismatch=0.0):
    """Two flats (adu, float32) of mean_e and mean_e*(1+mismatch) electrons."""
    out = []
    for m in (mean_e, mean_e * (1.0 + mismatch)):
        e = rng.poisson(m, shape).astype(np.float64) if poisson else rng.normal(m, np.sqrt(m), shape)
        if read_noise_e:
            e += rng.normal(0.0, read_noise_e, shape)
        out.append((e / gain).astype(np.float32))
    return out


def _correlated(rng, shape, sigma, alpha, beta):
    """White noise z plus alpha z shifted by one column and beta z shifted by one row.

    x[y, x] = z[y, x] + alpha z[y, x-1] + beta z[y-1, x] has variance (1 + alpha^2 + beta^2) s^2,
    covariance alpha s^2 at serial lag (dx=1, dy=0), beta s^2 at parallel lag (0, 1), 0 at (1, 1)
    and alpha beta s^2 at (1, -1), so the (dx, dy)/(dx, -dy) average at [1, 1] is alpha beta s^2/2.
    """
    z = rng.normal(0.0, sigma, (shape[0] + 1, shape[1] + 1))
    return z[1:, 1:] + alpha * z[1:, :-1] + beta * z[:-1, 1:]


def _direct_covariance(d, w, dx, dy):
    """Mean-corrected covariance over pairs (y, x), (y + dy, x + dx) with both weights 1."""
    ny, nx = d.shape

    def pairs(dx, dy):
        y0, y1 = max(0, -dy), min(ny, ny - dy)
        x0, x1 = max(0, -dx), min(nx, nx - dx)
        a, wa = d[y0:y1, x0:x1], w[y0:y1, x0:x1]
        b, wb = d[y0 + dy : y1 + dy, x0 + dx : x1 + dx], w[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        both = (wa * wb) > 0
        n = both.sum()
        return (a * b)[both].sum() / n - a[both].sum() * b[both].sum() / n**2, n

    c1, n1 = pairs(dx, dy)
    if dx and dy:
        c2, n2 = pairs(dx, -dy)
        return 0.5 * (c1 + c2), n1 + n2
    return c1, n1


def test_fft_covariances_match_direct_sums():
    rng = np.random.default_rng(11)
    d = rng.normal(3.0, 2.0, (90, 70))  # non-zero mean: the estimator must remove it
    w = (rng.random(d.shape) > 0.15).astype(np.float64)
    cov, n = fft_covariances(d * w, w, 5)
    for dx in range(5):
        for dy in range(5):
            c_ref, n_ref = _direct_covariance(d, w, dx, dy)
            assert n[dx, dy] == n_ref
            # float32 transforms: error ~1e-7 of the total power sum(d^2) ~ 13 n.
            assert cov[dx, dy] == pytest.approx(c_ref, abs=1e-4)


def test_independent_pixels_variance_and_zero_covariances():
    rng = np.random.default_rng(1)
    shape, mean, sigma = (440, 340), 5000.0, 40.0
    a = rng.normal(mean, sigma, shape).astype(np.float32)
    b = rng.normal(mean, sigma, shape).astype(np.float32)
    r = measure_pair(a, b)
    assert r.valid, r.reason
    n = (shape[0] - 2 * EDGE) * (shape[1] - 2 * EDGE)
    assert r.n_pixels == n
    assert r.covariances.shape == (8, 8)
    # Clipped means: error sigma/sqrt(n) = 0.07 adu.
    assert r.raw_mean == pytest.approx(mean, abs=5 * sigma / np.sqrt(n))
    # raw_var = Var(D)/2 from n pixels: relative error sqrt(2/n) = 0.46%; 5 sigma.
    tol = 5 * np.sqrt(2.0 / n)
    assert r.raw_var == pytest.approx(sigma**2, rel=tol)
    assert r.covariances[0, 0] == pytest.approx(sigma**2, rel=tol)
    # The two variance estimators see (almost) the same pixels: they agree far better than tol.
    assert r.covariances[0, 0] == pytest.approx(r.raw_var, rel=2e-3)
    # Off-diagonal covariances of white noise are N(0, 1/weight): pulls have unit scatter and
    # (63 nearly independent lags) an rms within 1 +- 3/sqrt(2*63) = 1 +- 0.27.
    off = np.ones((8, 8), dtype=bool)
    off[0, 0] = False
    pulls = (r.covariances * r.covariance_sqrt_weights)[off]
    assert np.all(np.abs(pulls) < 5)
    assert 0.73 < np.sqrt(np.mean(pulls**2)) < 1.27
    # Weights: sqrt(n_pairs)/var off-diagonal, sqrt(n/2)/var at (0, 0).
    assert r.covariance_sqrt_weights[0, 0] == pytest.approx(np.sqrt(n / 2) / sigma**2, rel=tol)
    assert r.covariance_sqrt_weights[1, 0] == pytest.approx(np.sqrt(n) / sigma**2, rel=tol)


def test_correlated_noise_recovered_with_index_order_dx_dy():
    rng = np.random.default_rng(2)
    shape, s, alpha, beta = (600, 400), 30.0, 0.10, 0.05
    a = (20000.0 + _correlated(rng, shape, s, alpha, beta)).astype(np.float32)
    b = (20000.0 + _correlated(rng, shape, s, alpha, beta)).astype(np.float32)
    r = measure_pair(a, b, max_lag=4)
    assert r.valid, r.reason
    n = r.n_pixels
    var = (1 + alpha**2 + beta**2) * s**2
    # Sample (co)variance error ~ var sqrt((1 + sum_k rho_k^2)/n) for lag != 0 (sqrt(2/n) at 0);
    # rho^2 terms add < 2% here.  5 sigma.
    err = var / np.sqrt(n) * 1.02
    assert r.raw_var == pytest.approx(var, abs=5 * np.sqrt(2) * err)
    assert r.covariances[1, 0] == pytest.approx(alpha * s**2, abs=5 * err)  # serial lag dx = 1
    assert r.covariances[0, 1] == pytest.approx(beta * s**2, abs=5 * err)  # parallel lag dy = 1
    assert r.covariances[1, 1] == pytest.approx(0.5 * alpha * beta * s**2, abs=5 * err / np.sqrt(2))
    for dx, dy in [(2, 0), (0, 2), (3, 3), (2, 1)]:
        assert abs(r.covariances[dx, dy]) < 5 * err


def test_per_pair_gain_and_variance_on_poisson_flats():
    rng = np.random.default_rng(3)
    gain, mean_e, rn_e = 1.5, 20000.0, 6.0
    shape = (540, 440)
    a, b = _flat_pair(rng, shape, mean_e, gain, rn_e)
    rn_adu = rn_e / gain
    r = measure_pair(a, b, read_noise_adu=(rn_adu, rn_adu))
    assert r.valid, r.reason
    n = r.n_pixels
    var_true = mean_e / gain**2 + rn_adu**2
    assert r.raw_var == pytest.approx(var_true, rel=5 * np.sqrt(2.0 / n))
    # K averages n terms ~ chi^2_1/g: relative error sqrt(2/n) = 0.3%; the FULL formula's own
    # bias, 1/(2 N_e) = 2.5e-5, is negligible.  5 sigma.
    assert r.gain == pytest.approx(gain, rel=5 * np.sqrt(2.0 / n))
    assert r.noise == pytest.approx(rn_adu)


def test_gain_read_noise_correction_at_low_signal():
    rng = np.random.default_rng(4)
    gain, mean_e, rn_e = 1.5, 500.0, 10.0
    a, b = _flat_pair(rng, (800, 800), mean_e, gain, rn_e)
    mu = 0.5 * (a.mean() + b.mean())
    n = a.size
    stat = np.sqrt(2.0 / n)  # 0.18%
    # Without correction K = 1/g + s^2/mu: g is low by s^2 g/mu = 20% here.
    g_none = pair_gain(a, b, mu, read_noise_adu=rn_e / gain, correction="NONE")
    assert g_none == pytest.approx(gain / (1 + rn_e**2 / mean_e), rel=5 * stat)
    # FULL (and SIMPLE) remove it, up to their known 1/(2 N_e) = 0.1% bias (+ statistics).
    for corr in ("FULL", "SIMPLE"):
        g = pair_gain(a, b, mu, read_noise_adu=rn_e / gain, correction=corr)
        assert g == pytest.approx(gain, rel=1 / (2 * mean_e) + 5 * stat)
    # No read noise given -> NONE, as cp_pipe.
    assert pair_gain(a, b, mu) == pytest.approx(g_none)


def test_row_mean_variance_of_independent_pixels():
    rng = np.random.default_rng(5)
    shape, sigma = (1040, 300), 25.0
    a = rng.normal(1000.0, sigma, shape).astype(np.float32)
    b = rng.normal(1000.0, sigma, shape).astype(np.float32)
    mask = rng.random(shape) < 0.1  # unequal pixel counts per row
    r = measure_pair(a, b, mask)
    assert r.valid, r.reason
    n_rows = shape[0] - 2 * EDGE
    # Row means of D (variance 2 sigma^2) over N_i pixels: Var = 2 sigma^2 <1/N_i>, and
    # row_mean_n_cols is the harmonic mean 1/<1/N_i>; relative error sqrt(2/n_rows) = 4.5%.
    expected = 2 * sigma**2 / r.row_mean_n_cols
    assert r.row_mean_variance == pytest.approx(expected, rel=5 * np.sqrt(2.0 / n_rows))
    assert r.row_mean_n_cols == pytest.approx(0.9 * (shape[1] - 2 * EDGE), rel=0.01)


def test_row_mean_variance_uses_the_last_row():
    # Four rows with known row means of D: no clipping happens (their spread is far inside
    # 5.5 x 0.74 IQR of the median), so the result is the plain n-1 variance of all 4 row means.
    nx = 3000
    a = np.full((4, nx), 1000.0, dtype=np.float32)
    a += np.array([0.0, 4.0, 1.0, 9.0], dtype=np.float32)[:, None]
    b = np.full((4, nx), 1000.0, dtype=np.float32)
    r = measure_pair(a, b, edge=0, min_pixels=0, max_lag=2)
    assert r.valid, r.reason
    mu1, mu2 = a.mean(), b.mean()
    mu = 0.5 * (mu1 + mu2)
    d = (mu2 * a.astype(np.float64) - mu1 * b) / mu
    assert r.row_mean_variance == pytest.approx(np.var(d.mean(axis=1), ddof=1), rel=1e-5)
    assert r.row_mean_variance != pytest.approx(np.var(d[:-1].mean(axis=1), ddof=1), rel=0.1)


def test_nan_rows_and_masks_are_ignored():
    rng = np.random.default_rng(6)
    shape, sigma = (400, 300), 20.0
    a = rng.normal(3000.0, sigma, shape).astype(np.float32)
    b = rng.normal(3000.0, sigma, shape).astype(np.float32)
    a[100:110] = np.nan
    b[:, 50] = np.inf
    a[200, 200] = 1e6  # a cosmic ray: clipped
    r = measure_pair(a, b)
    assert r.valid, r.reason
    assert r.n_pixels == (shape[0] - 2 * EDGE - 10) * (shape[1] - 2 * EDGE - 1)
    assert r.raw_var == pytest.approx(sigma**2, rel=5 * np.sqrt(2.0 / r.n_pixels))
    assert np.isfinite(r.covariances).all()


@pytest.mark.parametrize(
    "case, reason",
    [
        ("all_masked", "too few unmasked pixels"),
        ("too_small", "too few unmasked pixels"),
        ("all_nan", "too few unmasked pixels"),
        ("negative", "non-positive mean"),
        ("edge", "no pixels left"),
        ("shape", "equal shape"),
    ],
)
def test_failures_give_invalid_with_reason(case, reason):
    rng = np.random.default_rng(7)
    a = rng.normal(1000.0, 10.0, (300, 300)).astype(np.float32)
    b = rng.normal(1000.0, 10.0, (300, 300)).astype(np.float32)
    mask = None
    if case == "all_masked":
        mask = np.ones(a.shape, dtype=bool)
    elif case == "too_small":
        a, b = a[:60, :60], b[:60, :60]
    elif case == "all_nan":
        a[:] = np.nan
    elif case == "negative":
        a -= 2000.0
        b -= 2000.0
    elif case == "edge":
        a, b = a[:30], b[:30]
    elif case == "shape":
        b = b[:-1]
    r = measure_pair(a, b, mask)
    assert not r.valid
    assert reason in r.reason
    assert r.covariances.shape == (8, 8)
    assert np.isnan(r.raw_var)


def test_full_size_pair():
    # One full e2v amplifier (2002 x 512): Gaussian shot noise of variance mu/g.
    rng = np.random.default_rng(8)
    gain, mean_e = 1.4, 50000.0
    a, b = _flat_pair(rng, (2002, 512), mean_e, gain, poisson=False)
    r = measure_pair(a, b, read_noise_adu=(0.0, 0.0), max_lag=10)
    assert r.valid, r.reason
    n = (2002 - 40) * (512 - 40)
    assert r.n_pixels == n
    var = mean_e / gain**2
    tol = 5 * np.sqrt(2.0 / n)  # 0.5%
    assert r.raw_var == pytest.approx(var, rel=tol)
    assert r.gain == pytest.approx(gain, rel=tol)
    assert r.covariances.shape == (10, 10)
    # Off-diagonal: |c| < 5 var/sqrt(n_pairs) for every lag.
    off = r.covariances.copy()
    off[0, 0] = 0.0
    assert np.all(np.abs(off) < 5 * var / np.sqrt(r.covariance_n_pairs))
    assert r.row_mean_variance == pytest.approx(2 * var / 472, rel=5 * np.sqrt(2.0 / 1962))


def test_eo_bf_stats_recover_linear_trends():
    rng = np.random.default_rng(9)
    mu = np.linspace(1000.0, 80000.0, 30)
    cov = np.zeros((30, 3, 3))
    sx, sy = 4e-3, 1.5e-3  # adu^2 per adu
    noise = 2.0
    cov[:, 1, 0] = sx * mu + rng.normal(0, noise, 30)
    cov[:, 0, 1] = sy * mu + rng.normal(0, noise, 30)
    mask = np.ones(30, dtype=bool)
    mask[-3:] = False
    cov[-3:, 1, 0] = 1e6  # excluded by the mask
    r = eo_bf_stats(mu, cov, mask)
    assert r.n_points == 27
    # Least-squares slope error = noise / sqrt(sum (mu - <mu>)^2); 5 sigma, and the reported
    # stderr estimates it to within its chi^2 scatter (~14% for 25 dof).
    expected_err = noise / np.sqrt(np.sum((mu[mask] - mu[mask].mean()) ** 2))
    assert r.slope_x == pytest.approx(sx, abs=5 * expected_err)
    assert r.slope_y == pytest.approx(sy, abs=5 * expected_err)
    assert r.slope_x_err == pytest.approx(expected_err, rel=0.5)
    assert r.mean == mu[0]
    assert r.xcorr == cov[0, 1, 0] and r.ycorr == cov[0, 0, 1]
    empty = eo_bf_stats(mu, cov, np.zeros(30, dtype=bool))
    assert empty.n_points == 0 and np.isnan(empty.slope_x)


def test_row_means_variance_slope():
    s = np.array([1000.0, 5000.0, 20000.0, 60000.0, 2e5])
    ncols = 472.0
    v = 2 * s / ncols * 1.2
    v[0] = v[-1] = 1e9  # outside (3000, 1e5) e-: ignored
    assert row_means_variance_slope(s, v, ncols) == pytest.approx(1.2)
    # With read noise the expectation is 2 (S + rn^2)/N.
    rn = 50.0
    v2 = 2 * (s + rn**2) / ncols
    assert row_means_variance_slope(s, v2, ncols, read_noise_e=rn) == pytest.approx(1.0)
    assert np.isnan(row_means_variance_slope(s[:1], v[:1], ncols))
