"""ISR pure functions on plain arrays: overscans, NaN filling, assembly, stacking, the ISR subtask."""

import numpy as np
import pytest
from lsst.images import Image

from lsst.eo.baseline.afwstats import clipped_stats
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.cti import eper
from lsst.eo.baseline.isr import (
    apply_parallel_overscan,
    apply_serial_overscan,
    assemble_ccd,
    fill_nan_runs,
    parallel_overscan_columns,
    serial_overscan_rows,
    split_ccd,
)
from lsst.eo.baseline.isrTask import EoIsrTask
from lsst.eo.baseline.rawdata import RawAmp
from lsst.eo.baseline.stacking import clipped_mean_stack

E2V = get_camera()["R22_S11"].ccd_type
ITL = get_camera()["R01_S01"].ccd_type


def test_fill_nan_runs():
    v = np.arange(20, dtype=float)
    v[8:10] = np.nan
    out = fill_nan_runs(v)
    # Neighbours 3..7 and 10..14 -> median 8.5.
    assert out[8] == out[9] == pytest.approx(8.5)
    assert np.array_equal(out[~np.isnan(v)], v[~np.isnan(v)])
    w = np.arange(20, dtype=float)
    w[:3] = np.nan  # run at the start: only the 5 values after it
    assert fill_nan_runs(w)[0] == pytest.approx(np.median([3, 4, 5, 6, 7]))
    assert np.isnan(fill_nan_runs(np.full(4, np.nan))).all()


def test_serial_overscan_rows_recovers_row_pattern():
    rng = np.random.default_rng(1)
    n_rows, n_cols = 2048, 64
    pattern = 1000.0 + 3.0 * np.sin(np.arange(n_rows) / 50.0)
    overscan = pattern[:, None] + rng.normal(0, 5.0, (n_rows, n_cols))
    overscan[100, 10] += 5000.0  # cosmic-ray-like hits
    overscan[200, :] += 2000.0  # a fully corrupted row, filled from its neighbours
    overscan[:, :3] += 50.0  # deferred charge in the leading columns, skipped
    rows = serial_overscan_rows(overscan, leading=3, trailing=3)
    # A median of 58 values of sigma 5 has error ~ 1.25*5/sqrt(58) = 0.8; allow 5 sigma per row.
    resid = rows - pattern
    assert np.abs(resid).max() < 4.1
    assert abs(np.mean(resid)) < 0.1
    assert abs(rows[200] - pattern[200]) < 4.1


def test_apply_serial_overscan_touches_data_and_overscan_not_prescan():
    layout = E2V.amp("C10")
    rng = np.random.default_rng(2)
    amp = 20000.0 + rng.normal(0, 4.0, (2048, 576))
    d = layout.raw.data_bbox
    amp[d.y.start : d.y.stop, d.x.start : d.x.stop] += 100.0
    result = apply_serial_overscan(amp, layout)
    assert np.median(amp[: d.y.stop, d.x.start : d.x.stop]) == pytest.approx(100.0, abs=0.2)
    assert np.median(amp[:, :10]) == pytest.approx(20000.0, abs=0.2)  # prescan untouched
    # Residual noise of the corrected overscan is the read noise (sigma 4) lowered by 3-sigma
    # clipping (x0.984 after three passes) and by subtracting a row median that shares most of its
    # pixels (x0.996): 3.92; the statistical error of a stdev of 110k pixels is 0.2%.
    assert result.residual_stdev == pytest.approx(4.0 * 0.980, rel=0.01)
    assert result.median == pytest.approx(20000.0, abs=0.2)


def test_parallel_overscan_columns_pattern_flood_and_bad_column():
    rng = np.random.default_rng(3)
    cols = 512
    # Column structure of ~1 adu rms: larger jumps (>= 5 adu from a running median) are treated as bad
    # columns by the algorithm and filled from their neighbours.
    pattern = rng.normal(0, 1.0, cols)
    overscan = pattern[None, :] + rng.normal(0, 4.0, (46, cols))
    data = 500.0 + pattern[None, :] + rng.normal(0, 4.0, (2002, cols))
    values, skipped = parallel_overscan_columns(overscan, data)
    assert not skipped
    # Median of 40 values with sigma 4: error 1.25 x 4 / sqrt(40) = 0.8 adu; allow 5 sigma.
    assert np.abs(values - pattern).max() < 4.0
    # A flooded overscan (super-saturated flat) is not used.
    _, skipped = parallel_overscan_columns(overscan + 60000.0, data + 100000.0)
    assert skipped
    # A hot column in the overscan is masked with its neighbours, and filled.
    hot = overscan.copy()
    hot[:, 250] += 60.0
    values, _ = parallel_overscan_columns(hot, data)
    assert abs(values[250] - np.median(pattern[243:258])) < 4.0


def test_assembly_orientation_and_round_trip():
    # Mark each amplifier's output-node pixel (raw data [0, 0]) with its index.
    amps = {}
    for i, layout in enumerate(E2V.amps):
        a = np.zeros(tuple(layout.raw.data_bbox.shape), dtype=np.float32)
        a[0, 0] = i + 1
        amps[layout.name] = a
    image = assemble_ccd(amps, E2V)
    assert image.shape == (4004, 4096)
    # e2v C10 (cameraGeom ixy [0, 1], flipped in x and y): node at the upper right of its block.
    assert image[4003, 511] == 1
    # e2v C00 (ixy [0, 0], no flip): node at the lower left of the CCD.
    assert image[0, 0] == 16
    itl = assemble_ccd({"C00": np.arange(2000 * 509, dtype=np.float32).reshape(2000, 509)}, ITL)
    assert itl[0, 508] == 0  # ITL C00 (ixy [0, 0], flipped in x) read out at the lower right
    back = split_ccd(image, E2V)
    for name, a in amps.items():
        assert np.array_equal(back[name], a)


def test_clipped_mean_stack_matches_scalar_rule():
    rng = np.random.default_rng(4)
    stack = rng.normal(10.0, 1.0, (15, 6, 7)).astype(np.float32)
    stack[3, 2, 2] = 500.0
    mean, var, n = clipped_mean_stack(stack)
    for y in range(6):
        for x in range(7):
            s = clipped_stats(stack[:, y, x].astype(np.float64))
            assert mean[y, x] == pytest.approx(s.mean, rel=1e-5)
            assert n[y, x] == s.n
    assert n[2, 2] == 14


def _raw_amp(layout, array):
    return RawAmp(layout=layout, image=Image(np.rint(array).astype(np.int32), yx0=(0, 0)), header={})


def test_isr_task_gain_dark_variance():
    layout = ITL.amp("C13")
    rng = np.random.default_rng(5)
    arr = 15000.0 + rng.normal(0.0, 5.0, (2048, 576))
    d = layout.raw.data_bbox
    arr[d.y.start : d.y.stop, d.x.start : d.x.stop] += 2000.0  # adu of signal
    task = EoIsrTask()
    task.config.doApplyGains = True
    task.config.doDark = True
    task.config.doVariance = True
    dark = np.full(tuple(d.shape), 0.5)  # adu/s (a bootstrap dark, no gains)
    result = task.run_amp(_raw_amp(layout, arr), gain=1.5, dark_time=100.0, dark=dark)
    assert result.units == "electron"
    # (2000 adu - 0.5 adu/s x 100 s) x 1.5 e-/adu = 2925 e-.  The error is dominated by the parallel
    # overscan level, which inherits the per-row serial medians of its 42 rows:
    # 1.25 x 5 / sqrt(58) / sqrt(42) = 0.13 adu = 0.19 e- (1 sigma); allow 4 sigma.
    assert np.mean(result.image) == pytest.approx(2925.0, abs=0.8)
    # image_into gives the same image (the dark also subtracted in adu, before the gains).
    out = np.empty(tuple(d.shape), dtype=np.float32)
    task.image_into(_raw_amp(layout, arr), out, gain=1.5, dark_time=100.0, dark=dark)
    assert np.mean(out) == pytest.approx(2925.0, abs=0.8)
    np.testing.assert_allclose(out, result.image, atol=0.01)
    # Variance: signal (e-) + read noise^2 (e-^2) with read noise 5 adu x 1.5.
    assert np.median(result.variance) == pytest.approx(2925.0 + (5.0 * 1.5) ** 2, rel=0.01)
    assert result.read_noise_adu == pytest.approx(5.0, rel=0.03)


def test_eper_recovers_injected_trail():
    """A flat with a first-order serial/parallel deferred-charge trail in the overscans."""
    layout = E2V.amp("C04")
    g = layout.raw
    d = g.data_bbox
    rng = np.random.default_rng(6)
    arr = np.zeros((2048, 576)) + rng.normal(0.0, 3.0, (2048, 576))
    signal = 30000.0
    arr[d.y.start : d.y.stop, d.x.start : d.x.stop] += signal
    cti_s, cti_p = 2e-5, 4e-6
    arr[d.y.start : d.y.stop, d.x.stop] += signal * d.x.stop * cti_s
    arr[d.y.stop, d.x.start : d.x.stop] += signal * d.y.stop * cti_p
    work = arr.copy()
    apply_serial_overscan(work, layout)
    apply_parallel_overscan(work, layout)
    e = eper(work, layout)
    # Trails are 313 and 240 adu against a noise of 3/sqrt(2000): far better than 1%.
    assert e["serial_eper"] == pytest.approx(cti_s, rel=0.01)
    assert e["parallel_eper"] == pytest.approx(cti_p, rel=0.01)
    assert e["image_mean"] == pytest.approx(signal, rel=1e-3)


def test_overscan_outlier_mask_uses_ip_isr_0p74_iqr_factor():
    # Each row: 50 values -1, 50 values +1 and one value v (101 columns).  Sorted, the quartiles at
    # 0.25 * 100 = 25 and 0.75 * 100 = 75 are -1 and +1 (IQR 2) and the median (index 50) is +1.
    # ip_isr's maskOutliers: sigma_row = 0.74 * 2 = 1.48, masked if |v - 1| > 3 * 1.48 = 4.44.
    # v = 5.445 (|v - 1| = 4.445) is masked with 0.74 but would be kept with afw's 0.7413
    # (3 * 0.7413 * 2 = 4.448).  Masked: the row median of the other 100 values is (-1 + 1) / 2 = 0;
    # kept: the median of 101 values is +1.
    row = np.concatenate([np.full(50, -1.0), np.full(50, 1.0), [5.445]])
    overscan = np.tile(row, (10, 1))
    np.testing.assert_array_equal(serial_overscan_rows(overscan, 0, 0, 1000.0, 3.0), 0.0)
    # Same on the general (non-finite-aware) path: a NaN pixel in row 0 only changes row 0.
    overscan[0, 0] = np.nan
    np.testing.assert_array_equal(serial_overscan_rows(overscan, 0, 0, 1000.0, 3.0)[1:], 0.0)
    # Just inside the 0.74 threshold (|v - 1| = 4.435 < 4.44) the value is kept: median +1.
    overscan = np.tile(np.concatenate([row[:-1], [5.435]]), (10, 1))
    np.testing.assert_array_equal(serial_overscan_rows(overscan, 0, 0, 1000.0, 3.0), 1.0)
