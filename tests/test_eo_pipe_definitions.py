"""eo_pipe / cp_pipe metric definitions pinned on plain arrays (issue 15 items 4-6, bias/dark parts).

Every expectation is worked out by hand from the definition (derivation in the comments), never
copied from our own output.  References: ``eo_pipe.md`` section 9 and ``cp_pipe_algorithms.md``.
"""

import numpy as np
import pytest

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.readNoise import box_stdevs, eo_pipe_read_noise, overscan_sampling_region, sampler_rng

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
