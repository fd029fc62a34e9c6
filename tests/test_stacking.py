"""Calibration stacking: the chunked clipped mean against afw's scalar rule, the fused ISR path."""

import numpy as np
import pytest
from lsst.images import Image

from lsst.eo.baseline import stacking
from lsst.eo.baseline.afwstats import clipped_stats
from lsst.eo.baseline.calibCombine import make_calib_image
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.isr import split_ccd
from lsst.eo.baseline.isrTask import EoIsrTask
from lsst.eo.baseline.rawdata import RawAmp
from lsst.eo.baseline.stacking import clipped_mean_stack, sort_stack

DETECTOR = get_camera()["R22_S11"]


def _flat_like_stack(rng, n, n_pixels):
    """Normalised-flat values (1 +- 0.5%) with outliers, NaN and a random mask.

    Values near 1 in float32 are where rounding of the window edges would show: 64 of 16 million
    pixels of a 4-flat stack changed their kept count under float32 edges.
    """
    values = (1.0 + 0.005 * rng.standard_normal((n, n_pixels))).astype(np.float32)
    values[rng.random(values.shape) < 0.02] = 1.1
    values[rng.random(values.shape) < 0.01] = np.nan
    return values, rng.random(values.shape) < 0.02


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20, 40])
def test_clipped_mean_stack_is_afw_meanclip_per_pixel(n, monkeypatch):
    # Small chunks so that the 6000 pixels span many of them, including a partial last one.
    monkeypatch.setattr(stacking, "_CHUNK_VALUES", 4096)
    rng = np.random.default_rng(100 + n)
    values, mask = _flat_like_stack(rng, n, 6000)
    mean, var, n_used = clipped_mean_stack(values, mask=mask)
    for i in range(values.shape[1]):
        ref = clipped_stats(values[:, i][~mask[:, i]].astype(np.float64))
        # The kept values are exactly afw's (double-precision window test) ...
        assert n_used[i] == ref.n, i
        if ref.n == 0:
            assert np.isnan(mean[i])
            continue
        # ... so the statistics agree to the float32 rounding of the outputs.
        assert mean[i] == pytest.approx(ref.mean, rel=2e-7), i
        if ref.n > 1:
            assert var[i] == pytest.approx(ref.variance, rel=1e-6, abs=1e-12), i
        else:
            assert np.isnan(var[i])


def test_clipped_mean_stack_shape_and_bias_like_levels():
    # Bias-like values around 0 adu with a cosmic ray: the same rule as the scalar reference.
    rng = np.random.default_rng(5)
    stack = rng.normal(0.0, 5.0, (12, 31, 17)).astype(np.float32)
    stack[4, 10, 3] = 3000.0
    mean, var, n_used = clipped_mean_stack(stack)
    assert mean.shape == var.shape == n_used.shape == (31, 17)
    assert n_used[10, 3] == 11
    ref = clipped_stats(stack[:, 10, 3].astype(np.float64))
    assert mean[10, 3] == pytest.approx(ref.mean, rel=1e-6)


def test_clipped_mean_stack_refuses_empty_and_oversized_stacks():
    with pytest.raises(ValueError, match="at least one"):
        clipped_mean_stack(np.zeros((0, 3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="at most 127"):
        clipped_mean_stack(np.zeros((128, 2, 2), dtype=np.float32))


@pytest.mark.parametrize("n", [1, 5, 16, 20, 33])
def test_sort_stack_sorts_with_nan_last(n):
    rng = np.random.default_rng(n)
    stack = rng.normal(size=(n, 40, 3)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.1] = np.nan
    assert np.array_equal(sort_stack(stack), np.sort(stack, axis=0), equal_nan=True)


def _raw_amp(layout, rng):
    array = 20000.0 + rng.normal(0.0, 6.0, (2048, 576)) + np.linspace(0.0, 40.0, 2048)[:, None]
    d = layout.raw.data_bbox
    array[d.y.start : d.y.stop, d.x.start : d.x.stop] += 3000.0
    return RawAmp(layout=layout, image=Image(np.rint(array).astype(np.int32), yx0=(0, 0)), header={})


@pytest.mark.parametrize(
    "options",
    [
        {"doParallelOverscan": False},
        {"doParallelOverscan": False, "doBias": True, "doApplyGains": True},
        {"doParallelOverscan": False, "doBias": True, "doDark": True},
        {"doParallelOverscan": True, "doBias": True},
        {"doSerialOverscan": False, "doParallelOverscan": False},
    ],
)
def test_image_into_equals_run_amp_image(options):
    layout = DETECTOR.ccd_type.amps[3]
    rng = np.random.default_rng(9)
    amp = _raw_amp(layout, rng)
    shape = tuple(layout.raw.data_bbox.shape)
    bias = rng.normal(0.0, 2.0, shape).astype(np.float32)
    dark = np.full(shape, 0.02, dtype=np.float32)
    task = EoIsrTask()
    for key, value in options.items():
        setattr(task.config, key, value)
    kwargs = {"gain": 1.4, "dark_time": 30.0, "bias": bias, "dark": dark}
    out = np.full(shape, np.nan, dtype=np.float32)
    assert task.image_into(amp, out, **kwargs) is out
    expected = task.run_amp(amp, **kwargs).image
    assert np.array_equal(out, expected)
    # A subsample of rows (as the wavelength-flat statistics use).
    rows = slice(5, shape[0] - 5, 4)
    part = np.empty((len(range(shape[0])[rows]), shape[1]), dtype=np.float32)
    assert np.array_equal(task.image_into(amp, part, data_rows=rows, **kwargs), expected[rows])


def test_image_into_requires_the_calibrations_it_applies():
    layout = DETECTOR.ccd_type.amps[0]
    amp = _raw_amp(layout, np.random.default_rng(1))
    task = EoIsrTask()
    task.config.doParallelOverscan = False
    task.config.doBias = True
    with pytest.raises(ValueError, match="no bias"):
        task.image_into(amp, np.empty(tuple(layout.raw.data_bbox.shape), dtype=np.float32))


def test_make_calib_image_planes():
    ccd = DETECTOR.ccd_type
    rng = np.random.default_rng(3)
    means, variances, counts = {}, {}, {}
    for layout in ccd.amps[1:]:  # the first amplifier is missing
        shape = tuple(layout.raw.data_bbox.shape)
        means[layout.name] = rng.normal(10.0, 1.0, shape).astype(np.float32)
        variances[layout.name] = np.full(shape, 8.0, dtype=np.float32)
        counts[layout.name] = np.full(shape, 4, dtype=np.int32)
    second = ccd.amps[1].name
    means[second][5, 6] = np.nan  # no value survived
    counts[second][5, 6] = 0
    variances[second][5, 6] = np.nan
    variances[second][7, 8] = np.nan  # a single value: no variance estimate
    counts[second][7, 8] = 1
    calib = make_calib_image(DETECTOR, means, variances, counts, {"OBSTYPE": "TEST"})
    image = split_ccd(calib.image.array, ccd)
    variance = split_ccd(calib.variance.array, ccd)
    bad = split_ccd(calib.mask.get("BAD"), ccd)
    assert calib.image.array.shape == ccd.shape
    # Variance of the mean = variance of the values / n; undefined -> 0.
    assert variance[second][0, 0] == pytest.approx(2.0)
    assert variance[second][7, 8] == 0.0
    # Pixels without input (and the whole missing amplifier) are BAD and filled with the median.
    assert bad[second][5, 6] and not bad[second][7, 8] and bad[ccd.amps[0].name].all()
    assert bad[second].sum() == 1
    good = calib.image.array[~calib.mask.get("BAD")]
    assert image[second][5, 6] == pytest.approx(np.median(good))
    assert np.isfinite(calib.image.array).all()
    assert image[second][0, 0] == means[second][0, 0]


def test_read_noise_and_transient_image_match_run_amp():
    layout = DETECTOR.ccd_type.amps[5]
    amp = _raw_amp(layout, np.random.default_rng(2))
    task = EoIsrTask()
    task.config.doParallelOverscan = False
    full = task.run_amp(amp)
    rows = task.serial_rows(amp)
    assert task.read_noise_adu(amp) == pytest.approx(full.read_noise_adu, rel=1e-6)
    assert task.read_noise_adu(amp, rows) == task.read_noise_adu(amp)
    assert full.read_noise_adu == pytest.approx(6.0, rel=0.03)  # the injected noise
    first = task.transient_image(amp)
    assert np.array_equal(first, full.image)
    # One buffer, reused by the next call.
    assert task.transient_image(amp, rows=rows) is first
    task.config.doSerialOverscan = False
    assert np.isnan(task.read_noise_adu(amp))


@pytest.mark.parametrize(
    ("connections", "config", "minimum"),
    [("EoBiasConnections", "EoBiasConfig", 3), ("EoDarkConnections", "EoDarkConfig", 2)],
)
def test_stack_quanta_with_too_few_raws_are_pruned(connections, config, minimum):
    from lsst.pipe.base import NoWorkFound

    from lsst.eo.baseline import calibCombine

    cfg = getattr(calibCombine, config)()
    conn = getattr(calibCombine, connections)(config=cfg)
    too_few = {"raws": (conn.raws, [object()] * (minimum - 1))}
    with pytest.raises(NoWorkFound, match=f"need {minimum}"):
        conn.adjustQuantum(too_few, {}, "eoStack", {"detector": 94})
    # Enough raws pass the check (the rest of adjustQuantum is the stack's own).
    calibCombine._require_min_inputs(cfg, {"raws": (conn.raws, [object()] * minimum)}, "eoStack", {})
