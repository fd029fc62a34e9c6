"""eo_pipe's flat-pair metrics (eo_pipe.md 9.8-9.12, 9.14) on plain arrays, expectations by hand."""

import numpy as np
import pytest

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.flatPairStats import (
    eo_a00,
    eo_bf_stats,
    eo_row_means_pair,
    eo_row_means_variance_slope,
    max_observed_signal,
    overscan_corrected_noise,
    ptc_noise,
    serial_overscan_columns,
)
from lsst.eo.baseline.linearity import eo_linearity


def test_max_observed_signal_of_a_saturating_sequence_is_its_largest_measured_mean():
    # A sequence rising to full well (150000 adu) then falling as the charge bleeds, with a failed
    # pair (NaN) in the middle: eo_pipe's max(rawMeans), NaN-safe, is 150000 whatever the order.
    means = np.array([1000.0, 20000.0, np.nan, 90000.0, 150000.0, 149000.0, 147500.0])
    assert max_observed_signal(means) == 150000.0
    assert max_observed_signal(means[::-1]) == 150000.0
    assert np.isnan(max_observed_signal(np.array([np.nan, np.nan])))
    # eo_linearity reports the same, also for a point whose abscissa is missing.
    x = np.array([1.0, 20.0, 30.0, 90.0, np.nan, 160.0, 170.0])
    assert eo_linearity(x, means, 1.5).max_observed_signal == 150000.0


def test_eo_linearity_five_percent_turnoff_on_a_hand_made_curve():
    # N_e = 10 x exactly for x = 1000 .. 9000; then 3%, 6%, 10% low at x = 10000, 11000, 12000.
    # Fit set F: 1e3 < N < 9e4 -> x = 1000 .. 8000 (N = 90000 is not < 9e4), all exactly linear:
    # a = sum x / sum(x^2 / N) = sum x / sum(x / 10) = 10, so r = 0 on F: max_frac_dev = 0.
    # r at x = 10000: (97000 - 100000)/97000 = -0.0309 (< 5%); x = 11000: (103400 - 110000)/103400
    # = -0.0638; x = 12000: (108000 - 120000)/108000 = -0.111.  Largest N with |r| < 0.05: 97000 e-,
    # / gain 2 -> 48500 adu.
    x = 1000.0 * np.arange(1, 13)
    ne = 10.0 * x
    ne[9:] *= np.array([0.97, 0.94, 0.90])
    gain = 2.0
    r = eo_linearity(x, ne / gain, gain)
    assert r.slope == pytest.approx(10.0, rel=1e-12)
    assert r.max_frac_dev == pytest.approx(0.0, abs=1e-12)
    assert r.linearity_turnoff == pytest.approx(48500.0, rel=1e-12)
    assert r.max_observed_signal == pytest.approx(108000.0 / gain)
    np.testing.assert_array_equal(r.fit_mask, x <= 8000.0)


def test_a00_has_eo_pipe_sign_and_source():
    a = np.zeros((3, 3))
    a[0, 0] = -2.5e-6
    assert eo_a00("FULLCOVARIANCE", a, None) == (2.5e-6, "aMatrix")
    pars = np.array([-3.0e-6, 1.5, 25.0])
    assert eo_a00("EXPAPPROXIMATION", a, pars) == (3.0e-6, "ptcFitPars")
    # FULLCOVARIANCE fit without its matrix: fall back to the EXPAPPROXIMATION parameters.
    assert eo_a00("FULLCOVARIANCE", np.full((3, 3), np.nan), pars) == (3.0e-6, "ptcFitPars")
    value, source = eo_a00("FULLCOVARIANCE", None, np.full(3, np.nan))
    assert np.isnan(value) and source == "none"


def test_ptc_noise_is_the_fit_noise():
    assert ptc_noise(6.5) == 6.5
    # FULLCOVARIANCE: sqrt(|noiseMatrix[0][0]|) = sqrt(|-36|) = 6 when the noise is missing.
    nm = np.zeros((2, 2))
    nm[0, 0] = -36.0
    assert ptc_noise(np.nan, nm) == 6.0


def test_overscan_columns_per_vendor_and_noise_correction():
    camera = get_camera()
    itl = camera["R01_S01"].ccd_type.amps[0]
    e2v = camera["R22_S11"].ccd_type.amps[0]
    # Serial overscan 64 (ITL) / 54 (e2v) columns, minus 3 skipped at each end.
    assert serial_overscan_columns(itl) == 58
    assert serial_overscan_columns(e2v) == 48
    # noise 6 e-, overscan noise 5 adu, gain 1.5, 58 columns:
    # added = (pi/2) 25 2.25 / 58 = 1.52353 e-^2; sqrt(36 - 1.52353) = 5.87168.
    assert overscan_corrected_noise(6.0, 5.0, 1.5, 58) == pytest.approx(np.sqrt(36 - np.pi / 2 * 56.25 / 58))
    assert overscan_corrected_noise(6.0, 5.0, 1.5, 58) == pytest.approx(5.87168, abs=1e-5)
    assert overscan_corrected_noise(6.0, np.nan, 1.5, 58) == 6.0


def test_bf_stats_slopes_in_adu_and_first_pair_in_dataset_order():
    # cov10 = 0.01 + 2e-6 mu, cov01 = 5e-7 mu exactly: slopes 2e-6 and 5e-7 (adu^2 / adu = adu)
    # with zero error.  Pair 2 is an outlier outside expIdMask.  Dataset order is not mean order:
    # the first used pair (index 0, mean 30000) gives bf_xcorr = 0.01 + 0.06 = 0.07, bf_ycorr =
    # 0.015, bf_mean = 30000 -- not the lowest-mean pair.
    mu = np.array([30000.0, 10000.0, 50000.0, 20000.0, 40000.0])
    cov = np.zeros((5, 3, 3))
    cov[:, 1, 0] = 0.01 + 2e-6 * mu
    cov[:, 0, 1] = 5e-7 * mu
    cov[2, 1, 0] = 99.0
    mask = np.array([True, True, False, True, True])
    s = eo_bf_stats(mu, cov, mask)
    assert s.slope_x == pytest.approx(2e-6, rel=1e-9)
    assert s.slope_y == pytest.approx(5e-7, rel=1e-9)
    assert s.slope_x_err == pytest.approx(0.0, abs=1e-15)
    assert (s.xcorr, s.ycorr, s.mean, s.n_points) == (pytest.approx(0.07), pytest.approx(0.015), 30000.0, 4)
    empty = eo_bf_stats(mu, cov, np.zeros(5, dtype=bool))
    assert np.isnan(empty.slope_x) and empty.n_points == 0


def test_row_means_variance_slope_ratio_of_sums_by_hand():
    # Signals 2000, 5000, 50000, 2e5 e-; only 5000 and 50000 lie in (3000, 1e5).  N_cols = 100:
    # expectations 2 S / N = 100 and 1000 e-^2.  V = 150 and 1050: slope = 1200 / 1100.
    # No read-noise term: a read noise would not change it (it is not an argument).
    s = np.array([2000.0, 5000.0, 50000.0, 2.0e5])
    v = np.array([1.0e6, 150.0, 1050.0, 1.0e6])
    assert eo_row_means_variance_slope(s, v, 100.0) == pytest.approx(1200.0 / 1100.0, rel=1e-12)
    assert np.isnan(eo_row_means_variance_slope(s[:1], v[:1], 100.0))


def test_row_means_pair_skips_the_last_row_and_masked_pixels():
    # f1 - f2 = 0 everywhere except: the last row (+1000, skipped by eo_pipe's loop) and one
    # masked pixel (+1e6).  Row means are all 0 -> variance 0; means are 100 and 100 (the masked
    # pixel excluded from the unmasked MEANs as well).
    a = np.full((50, 40), 100.0)
    b = np.full((50, 40), 100.0)
    a[-1] += 1000.0
    a[10, 5] = 1.0e6
    bad = np.zeros(a.shape, dtype=bool)
    bad[10, 5] = True
    r = eo_row_means_pair(a, b, bad, bad)
    # Means (masked, unclipped, the last row included): image 1 has 50 x 40 - 1 = 1999 unmasked
    # pixels, 1959 at 100 (rows 0..48 less the masked one) and 40 at 1100 (row 49).
    m1 = (100.0 * 1959 + 1100.0 * 40) / 1999
    assert r.mean_1_adu == pytest.approx(m1, rel=1e-12)
    assert r.mean_2_adu == pytest.approx(100.0, rel=1e-12)
    assert r.mean_adu == pytest.approx(0.5 * (m1 + 100.0), rel=1e-12)
    assert r.row_means_variance_adu2 == pytest.approx(0.0, abs=1e-20)
    assert r.n_cols == 40
    # With the last row: 49 row means of 0 and one of 1000.  The first clip pass is centred on the
    # median 0 with half-width 10 x 0.7413 x IQR = 0, so the 0s are kept and 1000 is dropped; the
    # next passes (mean 0, variance 0) keep the same set: variance 0 again.  A clip that did not
    # drop it would give 1000^2 / 50 = 2e4.
    assert r.row_means_variance_all_rows_adu2 == pytest.approx(0.0, abs=1e-20)


def test_row_means_pair_known_row_offsets():
    # f1 - f2 has per-row offsets d_y = +1, -1 alternating (rows 0..8) and +7 on the last row
    # (row 9).  eo_pipe (rows 0..8): values five +1 and four -1, mean 1/9, variance (n - 1)
    # = (9 - 9 (1/9)^2) / 8 = (9 - 1/9) / 8 = 10/9.  The clip (10 sigma) keeps all.  With the last
    # row: ten values, sum 1 + 7 = 8, sum of squares 9 + 49 = 58: (58 - 10 x 0.8^2) / 9 = 5.733...;
    # the first pass centres on the median 1 with half-width 10 x 0.7413 x IQR(= 2) = 14.8: kept.
    ny, nx = 10, 6
    offsets = np.array([1.0, -1.0] * 4 + [1.0, 7.0])
    rng = np.random.default_rng(1)
    base = rng.normal(1000.0, 5.0, (ny, nx))
    a = base + offsets[:, None]
    # One masked pixel with a wild value in f2 (row 3): excluded from row 3's mean, whose other
    # pixels still give the offset, and from f2's own mean, but not from f1's.
    b = base.copy()
    b[3, 2] = 1.0e9
    bad2 = np.zeros((ny, nx), dtype=bool)
    bad2[3, 2] = True
    r = eo_row_means_pair(a, b, None, bad2)
    assert r.row_means_variance_adu2 == pytest.approx(10.0 / 9.0, rel=1e-9)
    assert r.row_means_variance_all_rows_adu2 == pytest.approx((58.0 - 10 * 0.8**2) / 9.0, rel=1e-9)
    assert r.mean_1_adu == pytest.approx(np.mean(a), rel=1e-12)
    keep = ~bad2
    assert r.mean_2_adu == pytest.approx(np.sum(b[keep]) / keep.sum(), rel=1e-12)
    # A fully masked row has no mean and is dropped, not counted as 0: mask row 0 (+1) entirely.
    bad_row = np.zeros((ny, nx), dtype=bool)
    bad_row[0] = True
    r0 = eo_row_means_pair(a, base, bad_row, None)
    # Rows 1..8: four +1, four -1: mean 0, variance 8 / 7.
    assert r0.row_means_variance_adu2 == pytest.approx(8.0 / 7.0, rel=1e-9)


def test_row_means_variance_slope_signal_window_is_exclusive():
    # Signals exactly 3000 and 1e5 e- are outside eo_pipe's (3000, 1e5); NaN V is left out.
    s = np.array([3000.0, 1.0e5, 5000.0, 20000.0])
    v = np.array([1.0e6, 1.0e6, 100.0, np.nan])
    assert eo_row_means_variance_slope(s, v, 100.0) == pytest.approx(100.0 / 100.0, rel=1e-12)


def test_row_means_slope_is_one_for_pure_shot_noise():
    # Pixels Poisson(S) e- / g adu, independent: a row mean of f1 - f2 over N columns has variance
    # 2 S / (g^2 N) adu^2, i.e. 2 S / N e-^2 -> slope 1.  Each pair's V comes from R = 1999 rows:
    # relative standard deviation sqrt(2 / (R - 1)) = 0.0316.  The ratio of sums weights pair k by
    # its expectation E_k (propto S_k): relative error sigma = 0.0316 sqrt(sum E^2) / sum E.  The
    # 10-sigma clip removes nothing from Gaussian row means.  Tolerance 5 sigma.
    rng = np.random.default_rng(42)
    gain, ny, nx = 1.4, 2000, 200
    levels = np.array([4000.0, 8000.0, 15000.0, 30000.0, 60000.0, 90000.0])
    signal, var, ncols = [], [], []
    for s_e in levels:
        f1 = rng.poisson(s_e, (ny, nx)) / gain
        f2 = rng.poisson(s_e, (ny, nx)) / gain
        r = eo_row_means_pair(f1, f2)
        signal.append(r.mean_adu * gain)
        var.append(r.row_means_variance_adu2 * gain**2)
        ncols.append(r.n_cols)
    slope = eo_row_means_variance_slope(np.array(signal), np.array(var), np.array(ncols, dtype=float))
    e = 2 * levels / nx
    sigma = np.sqrt(2.0 / (ny - 2)) * np.sqrt(np.sum(e**2)) / np.sum(e)
    assert slope == pytest.approx(1.0, abs=5 * sigma)
