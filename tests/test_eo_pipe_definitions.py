"""eo_pipe / cp_pipe metric definitions pinned on plain arrays (issue 15 items 4-6, bias/dark parts).

Every expectation is worked out by hand from the definition (derivation in the comments), never
copied from our own output.  References: ``eo_pipe.md`` section 9 and ``cp_pipe_algorithms.md``.
"""

import numpy as np
import pytest

from lsst.eo.baseline.biasStability import eo_pipe_bias_stats, readout_corner_slices
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.cosmicRays import find_cosmic_rays, persistent_hits_unmasked
from lsst.eo.baseline.cti import eo_pipe_eper, eo_pipe_minimal_isr, eper
from lsst.eo.baseline.darkCurrent import dark_current_table
from lsst.eo.baseline.readNoise import box_stdevs, eo_pipe_read_noise, overscan_sampling_region, sampler_rng
from lsst.eo.baseline.runGains import RunGains
from lsst.eo.baseline.stacking import clipped_mean_stack

ITL = get_camera()["R01_S01"].ccd_type
E2V = get_camera()["R22_S11"].ccd_type


# --- 9.1 read noise -------------------------------------------------------------------------------


def _coordinate_amp(ccd_type):
    """A raw amplifier whose pixel value encodes its position: 10000 * y + x."""
    ny, nx = ccd_type.amps[0].raw.bbox.shape
    y, x = np.mgrid[0:ny, 0:nx]
    return (10000 * y + x).astype(np.float32)


@pytest.mark.parametrize(
    "ccd_type, shape, first_x",
    # ITL serial overscan: x 512..575, data rows 0..1999 -> grown by -2: x 514..573, y 2..1997 (60 x 1996).
    # e2v serial overscan: x 522..575, data rows 0..2001 -> x 524..573, y 2..1999 (50 x 1998).
    [(ITL, (1996, 60), 514), (E2V, (1998, 50), 524)],
)
def test_read_noise_region_is_the_raw_serial_overscan_grown_by_minus_2(ccd_type, shape, first_x):
    amp = _coordinate_amp(ccd_type)
    region = overscan_sampling_region(amp, ccd_type.amps[0], 2)
    assert region.shape == shape
    assert region[0, 0] == 10000 * 2 + first_x
    assert region[-1, -1] == 10000 * (2 + shape[0] - 1) + first_x + shape[1] - 1


def test_box_stdev_is_the_unclipped_n_minus_1_stdev():
    # Checkerboard of 0 and 1: every 20 x 20 box holds 200 zeros and 200 ones, mean 1/2, sum of
    # squared deviations 400 * 1/4 = 100, so STDEV (n - 1) = sqrt(100 / 399) wherever the box is.
    y, x = np.mgrid[0:60, 0:50]
    region = ((x + y) % 2).astype(np.float32)
    stdevs = box_stdevs(region, np.random.default_rng(1), n_boxes=100, box_size=20)
    np.testing.assert_allclose(stdevs, np.sqrt(100.0 / 399.0), rtol=1e-12)
    # A single outlier is not clipped: 399 zeros and one 20 give mean 0.05 and
    # sum of squares 399 * 0.05^2 + 19.95^2 = 399.0, STDEV = sqrt(399 / 399) = 1 for a box holding it.
    spike = np.zeros((21 + 2, 21 + 2), dtype=np.float32)
    spike[10, 10] = 20.0  # inside every box (offsets 0 or 1, boxes span 0..19 to 1..20)
    np.testing.assert_allclose(box_stdevs(spike, np.random.default_rng(2), 50, 20), 1.0, rtol=1e-12)


def test_boxes_never_reach_the_last_two_columns_or_rows():
    # eo_pipe draws the corner with np.random.randint(minX, maxX - 20): for a width of 23 the
    # offsets are 0 and 1 only, so a box covers columns 0..19 or 1..20, never 21 or 22 (same in y).
    region = np.zeros((23, 23), dtype=np.float32)
    region[:, 21:] = 1000.0
    region[21:, :] = 1000.0
    assert np.all(box_stdevs(region, np.random.default_rng(3), 200, 20) == 0.0)
    # Column 0 is in the boxes at offset 0 only: a ramp there shows both offsets are drawn.
    region[:21, 0] = np.arange(21)
    values = box_stdevs(region, np.random.default_rng(4), 200, 20)
    assert (values == 0).any() and (values > 0).any()


def test_eo_pipe_read_noise_recovers_white_noise_and_is_seeded():
    sigma, level = 5.0, 20000.0
    region = np.random.default_rng(5).normal(level, sigma, size=(1996, 60))
    noise, bias = eo_pipe_read_noise(region, sampler_rng(7, 123, 0))
    # Each box stdev (400 pixels) scatters by sigma / sqrt(2 * 399) = 0.18 adu; the median of 100
    # boxes by ~1.25 * 0.18 / 10 = 0.022 adu (boxes overlap, so allow 5x: 0.11 adu ~ 2.2%).
    assert noise == pytest.approx(sigma, rel=0.022)
    # Median of 120k pixels: sigma * 1.25 / sqrt(1.2e5) = 0.018 adu.
    assert bias == pytest.approx(level, abs=0.1)
    again, _ = eo_pipe_read_noise(region, sampler_rng(7, 123, 0))
    other, _ = eo_pipe_read_noise(region, sampler_rng(7, 124, 0))
    assert again == noise and other != noise


# --- 9.2 bias stability ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flip_x, flip_y, expected",
    # Amplifier of 5 rows x 6 columns, box 2: the box holds the maximum index in each flipped
    # direction (x 4..5 = maxX - 1 .. maxX, y 3..4), the minimum otherwise.  eo_pipe's box for a
    # flipped amp would start at maxX - 2 = 3 and stop at 4, missing the corner column 5.
    [
        (False, False, (slice(0, 2), slice(0, 2))),
        (True, False, (slice(0, 2), slice(4, 6))),
        (False, True, (slice(3, 5), slice(0, 2))),
        (True, True, (slice(3, 5), slice(4, 6))),
    ],
)
def test_readout_corner_box_contains_the_corner_pixel(flip_x, flip_y, expected):
    assert readout_corner_slices((5, 6), flip_x, flip_y, 2) == expected
    # The first pixel read (raw [0, 0]) is in the box once the raw array is flipped for assembly.
    raw = np.zeros((5, 6))
    raw[0, 0] = 1.0
    assembled = raw[:: -1 if flip_y else 1, :: -1 if flip_x else 1]
    assert assembled[readout_corner_slices((5, 6), flip_x, flip_y, 2)].sum() == 1.0


@pytest.mark.parametrize(
    "layout", [ITL.amps[0], ITL.amps[-1], E2V.amps[0], E2V.amps[-1]], ids=lambda a: a.name
)
def test_readout_corner_follows_the_camera_flips(layout):
    # Whatever the amplifier's flips, the box in assembled orientation is the raw [0:200, 0:200].
    ny, nx = layout.raw.data_bbox.shape
    raw = np.arange(ny * nx, dtype=np.float64).reshape(ny, nx)
    assembled = raw[:: -1 if layout.flip_y else 1, :: -1 if layout.flip_x else 1]
    box = assembled[readout_corner_slices(assembled.shape, layout.flip_x, layout.flip_y, 200)]
    assert set(box.ravel()) == set(raw[:200, :200].ravel())


def test_eo_pipe_bias_stats_10_sigma_and_corner_box():
    # Assembled 300 x 300 amp flipped in x only: readout corner box = y 0..199, x 100..299.
    # Box: 0/1 checkerboard except the corner column x = 299, which is 3; zeros outside the box.
    img = np.zeros((300, 300))
    y, x = np.mgrid[0:200, 100:300]
    img[0:200, 100:300] = (x + y) % 2
    img[0:200, 299] = 3.0
    mean, stdev, rc_mean, rc_stdev = eo_pipe_bias_stats(img, True, False, 200, 10.0)
    # Box: 19900 zeros, 19900 ones, 200 threes (n = 40000).  Pass 1: median 1, IQR 1, half-width
    # 10 * 0.7413 = 7.4 keeps all.  Mean = (19900 + 600) / 40000 = 0.5125; variance (n - 1) =
    # (19900 + 1800 - 40000 * 0.5125^2) / 39999 = 11193.75 / 39999 (sigma 0.529, 10 sigma keeps all).
    assert rc_mean == pytest.approx(20500 / 40000, rel=1e-12)
    assert rc_stdev == pytest.approx(np.sqrt(11193.75 / 39999), rel=1e-9)
    # At 3 sigma the threes (2.49 from the mean, > 3 * 0.529) would be clipped: mean 0.5.
    assert eo_pipe_bias_stats(img, True, False, 200, 3.0)[2] == pytest.approx(0.5)
    # Whole amp: 69900 zeros of 90000, so Q1 = median = Q3 = 0 and the zero half-width keeps the
    # zeros only: mean 0, stdev 0.
    assert (mean, stdev) == (0.0, 0.0)


# --- 9.3 EPER CTI ---------------------------------------------------------------------------------


def _itl_flat_with_trails():
    """ITL segment (2048 x 576): data (x 3..511, y 0..1999) at 1000, serial trail 10 and 5 in
    overscan columns 512, 513 over the data rows, parallel trail 4 and 2 in rows 2000, 2001 over the
    data columns; everything else 0."""
    seg = np.zeros((2048, 576))
    seg[0:2000, 3:512] = 1000.0
    seg[0:2000, 512] = 10.0
    seg[0:2000, 513] = 5.0
    seg[2000, 3:512] = 4.0
    seg[2001, 3:512] = 2.0
    return seg


def test_eo_pipe_eper_known_trails():
    layout = ITL.amps[0]
    scti, pcti = eo_pipe_eper(_itl_flat_with_trails(), layout, 2)
    # Serial: S = MEANCLIP(last column, 2000 x 1000) * 2000 = 2e6.  T over 2000 x 2 pixels half 10,
    # half 5: pass 1 median 7.5, IQR 5 (Q1 5, Q3 10), half-width 3 * 0.7413 * 5 = 11.1 keeps all;
    # later passes: mean 7.5, sigma 2.5, half-width 7.5 keeps all -> T = 7.5 * 4000 = 30000.
    # scti = (30000 / 2e6) / (509 + 1).
    assert scti == pytest.approx((30000 / 2e6) / 510, rel=1e-12)
    # Parallel: S = 1000 * 509; T = 3 * (2 * 509) (rows 4 and 2, same clipping argument);
    # pcti = (3054 / 509000) / (2000 + 1).
    assert pcti == pytest.approx((3054 / 509000) / 2001, rel=1e-12)
    # cp_pipe's convention on the same segment: (10 + 5) / ((509 + 3) * 1000) -- a different number.
    cp = eper(_itl_flat_with_trails().astype(np.float32), layout, 2)
    assert cp["serial_eper"] == pytest.approx(15 / (512 * 1000), rel=1e-6)
    assert cp["serial_eper"] != pytest.approx(scti, rel=1e-3)


def test_eo_pipe_minimal_isr_skips_4_columns_and_rows():
    layout = ITL.amps[0]  # serial overscan x 512..575, parallel overscan y 2000..2047
    amp = np.zeros((2048, 576))
    # Serial overscan: the 56 columns 516..571 kept by the 4/4 skip hold 100 (even) and 200 (odd)
    # -> per-row median (100 + 200) / 2 = 150.  The skipped columns 512..515 and 572..575 hold
    # 30000: a 3/3 skip would add 512+3 = 515 and 572 and the median of 58 values would be 200.
    amp[:, 512:576] = 30000.0
    amp[:, 516:572:2] = 100.0
    amp[:, 517:572:2] = 200.0
    amp[:, 3:512] += 150.0 + 7.0  # data and parallel overscan: bias 150 + column offset 7
    amp[0:2000, 3:512] += 1000.0  # signal
    amp[2000:2004, 3:512] += 500.0  # rows skipped by the parallel 4/4 skip (trail-like)
    bias = np.full((2000, 509), 0.5)
    seg = eo_pipe_minimal_isr(amp, layout, nx_skip=4, do_parallel=True, bias=bias)
    # Serial: every row - 150.  Parallel: per-column median of rows 2004..2043 of the result = 7
    # for data columns.  Data = 1000 + 150 + 7 - 150 - 7 - 0.5 = 999.5.
    np.testing.assert_allclose(seg[0:2000, 3:512], 999.5)
    np.testing.assert_allclose(seg[2004:2044, 3:512], 0.0)
    no_parallel = eo_pipe_minimal_isr(amp, layout, nx_skip=4, do_parallel=False)
    np.testing.assert_allclose(no_parallel[0:2000, 3:512], 1007.0)


# --- 9.4 / cp_pipe 7: combined darks reject cosmic rays -------------------------------------------


def test_cosmic_ray_tests_significance_sharpness_flux_and_growth():
    img = np.zeros((21, 21), dtype=np.float32)
    img[10, 10] = 200.0
    mask = find_cosmic_rays(img, 1.0, background=0.0)
    # One sharp pixel, 200 sigma, flux 200 >= 150: a cosmic ray, grown by a disk of radius 2:
    # 1 + 4 + 4 + 4 = 13 pixels (offsets with dx^2 + dy^2 <= 4).
    assert mask.sum() == 13 and mask[10, 10] and mask[10, 12] and not mask[11, 12]
    img[10, 10] = 100.0  # flux 100 < min_flux 150: not a cosmic ray
    assert not find_cosmic_rays(img, 1.0, background=0.0).any()
    img[10, 10] = 5.0  # 5 sigma < 6 sigma: not significant
    assert not find_cosmic_rays(img, 1.0, background=0.0, min_flux=0.0).any()
    # A source with the PSF (Gaussian, FWHM 3): the side neighbours are 1000 psi, so
    # (1000 psi + 0.4 * 0.707) / psi = 1000.4 is not below 1000 - 2.5: not sharper than the PSF.
    g = 3.0 / (2 * np.sqrt(2 * np.log(2)))
    y, x = np.mgrid[0:21, 0:21]
    star = (1000.0 * np.exp(-((x - 10) ** 2 + (y - 10) ** 2) / (2 * g * g))).astype(np.float32)
    assert not find_cosmic_rays(star, 1.0, background=0.0).any()


def test_one_frame_hit_in_three_darks_is_not_a_hot_pixel():
    rng = np.random.default_rng(8)
    sigma, level = 5.0, 10.0
    stack = rng.normal(level, sigma, size=(3, 100, 100)).astype(np.float32)
    stack[1, 50, 50:52] += 2000.0  # cosmic ray in one frame
    stack[:, 20, 20] += 500.0  # hot pixel, in every frame
    # Without CR masking the 3-value clipped mean keeps the hit: sorted v0 <= v1 << H, Q1 = (v0 +
    # v1) / 2, Q3 = (v1 + H) / 2, so the pass-1 half-width 3 * 0.7413 * (H - v0) / 2 = 1.11 (H - v0)
    # exceeds |H - v1|; the mean of the three, ~10 + 2000 / 3 = 677, would be a hot pixel.
    plain = clipped_mean_stack(stack)[0]
    assert plain[50, 50] == pytest.approx(level + 2000 / 3, abs=4 * sigma)
    masks = np.array([find_cosmic_rays(frame, sigma) for frame in stack])
    assert masks[1, 50, 50] and masks[1, 50, 51] and not masks[0, 50, 50]
    # The hot pixel is flagged in all three frames (> half): released, not lost.
    assert masks[:, 20, 20].all()
    persistent_hits_unmasked(masks)
    assert not masks[:, 20, 20].any() and masks[1, 50, 50]
    mean, _, n_used = clipped_mean_stack(stack, mask=masks)
    # The two clean values: their mean scatters by 5 / sqrt(2) = 3.5; 5 sigma = 18.
    assert abs(mean[50, 50] - level) < 18.0 and n_used[50, 50] == 2
    assert mean[20, 20] == pytest.approx(level + 500.0, abs=5 * sigma / np.sqrt(3))
    # Only the grown hit is masked (13 pixels per hit pixel disk, 2 adjacent pixels: 18 distinct).
    assert masks.sum() == 18


def test_dark_current_95_is_the_linear_percentile_of_all_amp_pixels():
    det = get_camera()["R22_S11"]
    image = np.zeros(det.ccd_type.shape)
    layout = det.ccd_type.amp("C10")
    b = layout.bbox
    ny, nx = b.y.stop - b.y.start, b.x.stop - b.x.start
    n = ny * nx
    # The amp holds 0 .. n - 1 (shuffled) and one hot pixel is kept, not clipped: np.percentile
    # (linear) of n values v_k = k at 95 is 0.95 (n - 1); the median is (n - 1) / 2.
    values = np.random.default_rng(9).permutation(n).astype(np.float64).reshape(ny, nx)
    image[b.y.start : b.y.stop, b.x.start : b.x.stop] = values
    # The dark is in adu/s; with a PTC gain of 2 e-/adu the e-/s values are twice the adu/s ones.
    gains = RunGains(gains=dict.fromkeys(det.amp_names, 2.0), sources=dict.fromkeys(det.amp_names, "PTC"))
    row = dark_current_table(image, det, gains=gains)[0]
    assert row["amp"] == "C10"
    assert row["dark_current_95_adu_per_s"] == pytest.approx(0.95 * (n - 1), rel=1e-12)
    assert row["dark_current_median_adu_per_s"] == pytest.approx((n - 1) / 2, rel=1e-12)
    assert row["dark_current_95_e_per_s"] == pytest.approx(2 * 0.95 * (n - 1), rel=1e-12)
    assert row["dark_current_median_e_per_s"] == pytest.approx(2 * (n - 1) / 2, rel=1e-12)
