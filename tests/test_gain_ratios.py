"""cp_pipe's PTC gain-ratio adjustment on plain arrays (lsst.eo.baseline.gainRatios).

Expected values follow from the definitions (cp_pipe_algorithms.md 2.7): hand-made tables for the
flat and reference selection, and flats whose amplifier errors are orthogonal to the Chebyshev
field (so the field fit is unbiased and the ratios are recovered to the noise of a median).
"""

import logging

import numpy as np
import pytest

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.focalPlane import pixel_focal_plane_mm
from lsst.eo.baseline.gainRatios import (
    BinnedFlat,
    bin_flat,
    chebyshev_field_fit,
    choose_reference_amp,
    clip_bins,
    fit_amp_ratios,
    flat_gain_ratios,
    gain_corrections,
    select_flats,
)

# A toy detector of 8 x 2 amplifiers, 100 x 160 pixels each (y, x): 800 x 320 bins... kept small.
AMP_NY, AMP_NX = 160, 100
SHAPE = (2 * AMP_NY, 8 * AMP_NX)
STEP = 10  # bin spacing of the synthetic bin grids


def _grid(shape=SHAPE, amp_ny=AMP_NY, amp_nx=AMP_NX, step=STEP):
    """Bins on an 8 x 2 amplifier grid: x, y, amp index, amplifier column ix (same bins per amp)."""
    xs, ys, amps, ixs = [], [], [], []
    for iy in range(2):
        for ix in range(8):
            gx, gy = np.meshgrid(
                ix * amp_nx + np.arange(step // 2, amp_nx, step),
                iy * amp_ny + np.arange(step // 2, amp_ny, step),
            )
            xs.append(gx.ravel())
            ys.append(gy.ravel())
            amps.append(np.full(gx.size, iy * 8 + ix))
            ixs.append(np.full(gx.size, ix))
    return (
        np.concatenate(xs).astype(float),
        np.concatenate(ys).astype(float),
        np.concatenate(amps),
        np.concatenate(ixs),
    )


# Amplifier-column pattern orthogonal to 1, x, y and xy over identical per-amplifier bin grids:
# zero sum, zero sum against the column centres (-3.5 ... 3.5), the same in both rows.
PATTERN = np.array([1, -1, -1, 1, -1, 1, 1, -1], dtype=float)


def _linear_field(x, y, shape=SHAPE):
    u = (x + 0.5) / shape[1] * 2 - 1
    v = (y + 0.5) / shape[0] * 2 - 1
    return 5000.0 * (1 + 0.03 * u - 0.02 * v + 0.01 * u * v)


def test_bin_flat_borders_bin_centres_gains_and_bad_amps():
    # Two amplifiers side by side, 40 x 57 pixels; border 4, bins of 8: (40-8)//8 = 4 rows and
    # (57-8)//8 = 6 columns per amplifier, the 57th column dropped.  Bin centres: 4 + 8/2 = 8, 16, ...
    image = np.empty((40, 114))
    image[:, :57] = 100.0
    image[:, 57:] = 200.0
    # Bin rows 4-11, columns 4-11: one NaN pixel and one high pixel in other columns.  cp_pipe's
    # NaN-mean is over each column of the bin first, then over the columns: column 9 gives
    # (7 x 100 + 163) / 8 = 107.875, column 10 (7 finite) 100, so the bin is 807.875 / 8 = 100.984375.
    image[10, 10] = np.nan
    image[9, 9] = 163.0
    boxes = [(slice(0, 40), slice(0, 57)), (slice(0, 40), slice(57, 114))]
    b = bin_flat(image, boxes, [2.0, 0.5], bin_factor=8, border=4)
    assert len(b) == 2 * 4 * 6
    first = b.amp_index == 0
    assert np.unique(b.x[first]).tolist() == [8.0, 16.0, 24.0, 32.0, 40.0, 48.0]
    assert np.unique(b.y[first]).tolist() == [8.0, 16.0, 24.0, 32.0]
    assert np.unique(b.x[~first]).tolist() == [57.0 + c for c in (8, 16, 24, 32, 40, 48)]
    assert b.value[first][0] == pytest.approx(2.0 * 100.984375, rel=1e-12)
    assert np.all(b.value[first][1:] == 200.0) and np.all(b.value[~first] == 100.0)
    bad = bin_flat(image, boxes, [2.0, 0.5], [False, True], bin_factor=8, border=4)
    assert np.isnan(bad.value[bad.amp_index == 1]).all()


def test_clip_bins_keeps_0p8_p5_to_1p2_p95():
    # 100 bins at 1, one at 0.79 (below 0.8 x p5 = 0.8), one at 1.2 (kept), one at 1.21, one NaN.
    values = np.concatenate([np.ones(100), [0.79, 1.2, 1.21, np.nan]])
    b = BinnedFlat(np.arange(104.0), np.zeros(104), values, np.zeros(104, dtype=int))
    kept = clip_bins(b)
    assert sorted(set(kept.value.tolist())) == [1.0, 1.2]
    assert len(kept) == 101


def test_select_flats_window_average_and_subsample():
    ids = np.array([10, 11, 12, 13, 14])
    # Two amplifiers; pair 12 has one amplifier masked (NaN): its average is the other's value.
    means = np.array([[900.0, 1000.0, 5000.0, 19000.0, 30000.0], [1100.0, 1000.0, np.nan, 21000.0, 30000.0]])
    chosen, average = select_flats(ids, means, min_adu=1000.0, max_adu=20000.0)
    np.testing.assert_array_equal(average, [1000.0, 1000.0, 5000.0, 20000.0, 30000.0])
    # Open interval: 1000 and 20000 are out.
    assert chosen.tolist() == [12]
    # More than n_flat: numpy RandomState(seed).choice without replacement, then sorted.
    many = np.arange(100, 160)
    chosen, _ = select_flats(many, np.full((1, 60), 5000.0), n_flat=50, seed=12345)
    expected = np.sort(np.random.RandomState(12345).choice(many, size=50, replace=False))
    np.testing.assert_array_equal(chosen, expected)
    assert len(set(chosen.tolist())) == 50
    few, _ = select_flats(many[:7][::-1], np.full((1, 7), 5000.0), n_flat=50)
    assert few.tolist() == sorted(many[:7].tolist())


def test_reference_amplifier_rule():
    gains = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]
    noise = [5.0, 13.0, 5.0, 12.0, 5.0, 5.0, np.nan]
    # Turnoff percentile 25 of [50, 100 x 5, NaN] (NaN ignored): position 0.25 x 5 = 1.25 -> 100.
    turnoff = [100.0, 100.0, 50.0, 100.0, 100.0, 100.0, np.nan]
    # Excluded: amp 1 (noise 13 > 12), amp 2 (turnoff 50 < 100).  Noise 12 is allowed, NaN noise or
    # turnoff does not exclude.  Candidates by gain: 0, 3, 4, 5, 6 -> position 5 // 2 = 2 -> amp 4.
    assert choose_reference_amp(gains, noise, turnoff) == 4
    # Only one candidate left (others noisy): no adjustment.
    assert choose_reference_amp(gains[:3], [5.0, 13.0, 13.0], [1.0, 1.0, 1.0]) == -1
    assert choose_reference_amp([np.nan, np.nan], [5.0, 5.0], [1.0, 1.0]) == -1
    # Two candidates: position 1 of the sorted pair, the larger gain.
    assert choose_reference_amp([1.5, 1.2], [5.0, 5.0], [1.0, 1.0]) == 0


def test_chebyshev_field_is_the_full_order_1_field():
    # Order 1 non-triangular contains the xy term: a bilinear field is reproduced exactly.
    x, y, _, _ = _grid()
    coeffs = chebyshev_field_fit(x, y, _linear_field(x, y), SHAPE, 1)
    assert coeffs.shape == (2, 2)
    # In the mapped coordinates u (x) and v (y): 5000 (1 + 0.03 u - 0.02 v + 0.01 u v), indexed [v, u].
    np.testing.assert_allclose(coeffs, [[5000.0, 150.0], [-100.0, 50.0]], rtol=1e-10, atol=1e-8)


def _noisy(values, sigma, seed):
    return values * (1.0 + sigma * np.random.default_rng(seed).standard_normal(values.size))


def test_ratios_of_an_orthogonal_gain_error_pattern_are_recovered():
    # Gains mis-estimated by +-2 % in the orthogonal pattern: the flat in "electrons" is the field
    # times 1 + 0.02 s(ix).  The field fit is then unbiased and each ratio is its amplifier's
    # factor over the reference's, to the error of a median of n bins: 1.25 sigma / sqrt(n).
    x, y, amp, ix = _grid()
    factors = 1.0 + 0.02 * PATTERN[ix]
    sigma = 2e-3
    b = BinnedFlat(x, y, _noisy(_linear_field(x, y) * factors, sigma, 1), amp)
    reference = 5
    ratios = fit_amp_ratios(b, 16, reference, SHAPE)
    amp_factor = 1.0 + 0.02 * PATTERN[np.arange(16) % 8]
    expected = amp_factor / amp_factor[reference]
    n = np.count_nonzero(amp == 0)
    tol = 5 * 1.2533 * sigma / np.sqrt(n) * np.sqrt(2)  # amplifier and reference medians
    assert ratios[reference] == 1.0
    np.testing.assert_allclose(ratios, expected, atol=tol)
    # The same through the per-flat driver without the radial term, and its corrections.
    ratios2 = flat_gain_ratios(b, None, 16, reference, SHAPE)
    np.testing.assert_array_equal(ratios, ratios2)
    corrections = gain_corrections(np.array([ratios, ratios]))
    np.testing.assert_allclose(corrections, amp_factor, atol=2 * tol)


def test_outlier_amp_left_out_of_the_field_and_amp_beyond_5_percent_removed(caplog):
    x, y, amp, _ = _grid()
    base = _noisy(_linear_field(x, y), 1e-3, 2)
    n = np.count_nonzero(amp == 0)
    tol = 5 * 1.2533 * 1e-3 / np.sqrt(n) * np.sqrt(2)
    # 4 % off: more than 5 MADs from the others (which scatter by noise only), so it is left out of
    # the field fit from the second pass on; its ratio is then 1.04 and it is kept (< 5 %).
    values = base.copy()
    values[amp == 3] *= 1.04
    ratios = flat_gain_ratios(BinnedFlat(x, y, values, amp), None, 16, 0, SHAPE)
    assert ratios[3] == pytest.approx(1.04, abs=tol)
    np.testing.assert_allclose(np.delete(ratios, 3), 1.0, atol=tol)
    # 8 % off: removed from the flat's fit; without bins its ratio is 1, the others are 1.
    values = base.copy()
    values[amp == 12] *= 1.08
    with caplog.at_level(logging.WARNING):
        ratios = flat_gain_ratios(
            BinnedFlat(x, y, values, amp), None, 16, 0, SHAPE, amp_names=[f"A{k}" for k in range(16)]
        )
    assert ratios[12] == 1.0
    np.testing.assert_allclose(ratios, 1.0, atol=tol)
    assert "A12" in caplog.text


def test_radial_spline_removes_a_vignetting_falloff():
    # A strong radial fall-off across R01_S01 (focal-plane radius 270-330 mm), no gain error.
    # The order-1 field alone cannot follow the curvature (ratios off by > 1e-3); with the radial
    # spline every ratio is 1 to the noise of the medians.
    det = get_camera()["R01_S01"]
    step = 40
    xs, ys, amps = [], [], []
    for k, layout in enumerate(det.ccd_type.amps):
        b = layout.bbox
        gx, gy = np.meshgrid(
            np.arange(b.x.start + 24, b.x.stop - 20, step), np.arange(b.y.start + 24, b.y.stop - 20, step)
        )
        xs.append(gx.ravel())
        ys.append(gy.ravel())
        amps.append(np.full(gx.size, k))
    x, y, amp = np.concatenate(xs).astype(float), np.concatenate(ys).astype(float), np.concatenate(amps)
    fx, fy = pixel_focal_plane_mm(det, x, y)
    radius = np.hypot(fx, fy)
    flat = 8000.0 * (1.0 - 0.2 * ((radius - 270.0) / 60.0) ** 2)
    sigma = 1e-3
    values = _noisy(flat, sigma, 3)
    b = BinnedFlat(x, y, values, amp)
    n = np.count_nonzero(amp == 0)
    tol = 5 * 1.2533 * sigma / np.sqrt(n) * np.sqrt(2)
    without = flat_gain_ratios(b, None, 16, 0, det.ccd_type.shape)
    assert np.max(np.abs(without - 1.0)) > 1e-3
    ratios = flat_gain_ratios(b, radius, 16, 0, det.ccd_type.shape)
    np.testing.assert_allclose(ratios, 1.0, atol=tol)


def test_gain_corrections_hand_example():
    # Per-amplifier medians over 3 flats: [1.0, 1.02, 0.98, 1.04]; their median (1.0 + 1.02)/2 = 1.01.
    ratios = np.array([[1.0, 1.02, 0.97, 1.04], [1.0, 1.03, 0.98, 1.05], [1.0, 1.01, 0.99, 1.03]])
    np.testing.assert_allclose(gain_corrections(ratios), np.array([1.0, 1.02, 0.98, 1.04]) / 1.01, rtol=1e-14)
