"""Wavelength flats: the non-uniformity functions on arrays, and response and PRNU against the truth.

One e2v (R22_S11) and one ITL (R01_S01) CCD are simulated with two flats through each of the uv
and red LEDs and one through nm960, all near 3e4 e-.  The plan has no bias or dark: the task runs
with overscan correction only, and with the true gains (standing for PTC gains) so that responses
in electrons can be compared with the injected ones.
"""

import os

import numpy as np
import pytest

from lsst.eo.baseline.afwstats import clipped_stats, gaussian_clip_factor
from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.runGains import GAIN_SOURCE_PTC, RunGains
from lsst.eo.baseline.simulator import load_truth, simulate
from lsst.eo.baseline.simulator.model import make_fixed
from lsst.eo.baseline.simulator.truth import LED_PRNU_SCALE
from lsst.eo.baseline.wavelengthFlats import (
    EoWavelengthFlatsConfig,
    EoWavelengthFlatsTask,
    fixed_pattern_rms,
    large_scale_model,
    pair_temporal_variance,
    shot_noise_variance,
)

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "wavelength_flats.yaml")
DETECTORS = ("R22_S11", "R01_S01")


def test_large_scale_model_recovers_a_quadratic():
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:500, 0:502] + 0.5
    u, v = 2 * x / 502 - 1, 2 * y / 500 - 1
    smooth = 1.0 + 0.004 * u - 0.003 * v + 0.002 * u * v - 0.006 * (u**2 + v**2)
    image = (smooth * (1 + 0.005 * rng.standard_normal(smooth.shape))).astype(np.float32)
    image[100, 200] = 0.2  # a dark pixel does not move a block median
    model = large_scale_model(image, block=32, degree=2)
    assert model.shape == image.shape and model.dtype == np.float32
    # ~240 block medians of 256 pixels each (rms 0.5 % x 1.25 / 16 = 4e-4) fit 6 terms.
    assert np.abs(model - smooth).max() < 3e-4
    flat = large_scale_model(np.full((64, 64), 2.0, dtype=np.float32), block=16, degree=0)
    np.testing.assert_allclose(flat, 2.0, rtol=1e-6)


def test_temporal_and_fixed_pattern_variances():
    rng = np.random.default_rng(7)
    shape = (500, 500)
    prnu = 0.004 * rng.standard_normal(shape)
    noise = 0.006  # per-image temporal rms
    images = [(1.0 + prnu + noise * rng.standard_normal(shape)).astype(np.float32) for _ in range(3)]
    temporal = pair_temporal_variance(images)
    # Variance of 2.5e5 differences: relative error sqrt(2 / 2.5e5) = 0.3 % per pair.
    assert temporal == pytest.approx(noise**2, rel=0.02)
    mean = np.mean(images, axis=0)
    assert fixed_pattern_rms(mean, temporal / 3) == pytest.approx(0.004, rel=0.02)
    assert fixed_pattern_rms(images[0], noise**2) == pytest.approx(0.004, rel=0.02)
    assert fixed_pattern_rms(images[0], 1.0) == 0.0  # more noise than variance: no fixed pattern
    with pytest.raises(ValueError):
        pair_temporal_variance(images[:1])


def test_shot_noise_variance():
    # 2e4 adu at 1.5 e-/adu = 3e4 e-: Poisson variance 1/3e4, plus (5 adu / 2e4 adu)^2.
    assert shot_noise_variance(2e4, 1.5, 5.0) == pytest.approx(1 / 3e4 + (5 / 2e4) ** 2)
    bf = shot_noise_variance(2e4, 1.5, 0.0, a00=-2e-6)
    # Astier+19 Eq. 16: C00 = (exp(2 a mu) - 1) / (2 a) ~ mu (1 + a mu) = 0.94 mu at 3e4 e-.
    assert bf == pytest.approx(np.expm1(-0.12) / -4e-6 / 9e8)
    assert bf == pytest.approx(0.94 / 3e4, rel=0.005)
    assert np.isnan(shot_noise_variance(0.0, 1.5))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sim_wavelength"))
    simulate(PLAN, ",".join(DETECTORS), out, run="13600", seed=31, jobs=2)
    return load_truth(out)


def _tables(sim):
    config = EoWavelengthFlatsConfig()
    config.isr.doBias = False
    config.isr.doDark = False
    out = {}
    for det_name in DETECTORS:
        det = get_camera()[det_name]
        rows = sorted(
            (r for r in sim.files if r["det_name"] == det_name), key=lambda r: int(r["exposure_id"])
        )
        handles = [RawFileHandle(os.path.join(sim.out_dir, r["path"])) for r in rows]
        # The true gains, as the run's PTC would measure them.
        gains = RunGains(
            gains={a: sim.amp(det_name, a).gain for a in det.amp_names},
            sources={a: GAIN_SOURCE_PTC for a in det.amp_names},
        )
        out[det_name] = EoWavelengthFlatsTask(config=config).run(handles, det, gains=gains).wavelengthFlats
    return out


def test_response_and_nonuniformity(sim):
    """Responses and non-uniformities match the injected LED responses and response maps.

    Response: CCOBFLUX is 10 x the source flux, so ``10 x response_per_ccobflux`` is the
    amplifier's response ``led_response_<led>``.  Errors: shot noise and PRNU over 1e6 pixels,
    < 1e-5; dark current, 0.04 e- in 3e4 e-; the trimmed edges (5 pixels) against a response map
    normalised over the whole amplifier, < 1e-4.  Tolerance 5e-4.

    Non-uniformity: ``prnu`` is compared with ``prnu_rms x LED_PRNU_SCALE[led]``, ``nonuniformity``
    with the clipped rms of the simulator's response map (gradient, tearing, dark defects and PRNU)
    over the same trimmed area.  Variances come from 2.5e5 pixels (0.3 %, i.e. 0.15 % on the rms);
    clipping of the slightly non-Gaussian distributions and defects move them by ~1 %: tolerance
    3 %.  With one flat (nm960) the shot noise is modelled with a typical a00 = -2e-6 / e-; the
    simulated a00 lie within ~1e-6 of it, i.e. 3 % of the shot variance, up to ~4 % on the PRNU
    rms: tolerance 6 %.  One test per simulation, so that pytest-xdist never simulates twice.
    """
    tables = _tables(sim)
    factor = gaussian_clip_factor(3.0, 3)
    for det_name in DETECTORS:
        table = tables[det_name]
        assert len(table) == 3 * 16
        counts = {led: set(table[table["led"] == led]["n_exposures"]) for led in ("uv", "red", "nm960")}
        assert counts == {"uv": {2}, "red": {2}, "nm960": {1}}
        assert set(table["filter"]) == {"NONE"} and table.meta["GAIN_SOURCE"] == "PTC"
        assert set(table["gain_source"]) == {"PTC"}
        for led in ("uv", "red", "nm960"):
            rows = table[table["led"] == led]
            injected = np.array([sim.amp(det_name, a).led_response[led] for a in rows["amp"]])
            np.testing.assert_allclose(10 * rows["response_per_ccobflux"], injected, rtol=5e-4, err_msg=led)
            np.testing.assert_allclose(rows["relative_response"], injected / np.median(injected), rtol=5e-4)
            np.testing.assert_allclose(
                rows["response_e_per_s"], rows["response_adu_per_s"] * rows["gain_e_per_adu"]
            )
            np.testing.assert_allclose(rows["response_adu_per_s"], rows["signal_adu"] / rows["exptime_s"])
        # The simulator's response maps of 4 amplifiers (0.2 s each) for the total non-uniformity.
        det_truth = sim.detector(det_name)
        fixed = {a.amp: make_fixed(det_truth, a.amp_index) for a in det_truth.amps if a.amp_index % 4 == 0}
        for row in table:
            amp, led = row["amp"], row["led"]
            truth = sim.amp(det_name, amp)
            pairs = row["noise_method"] == "pairs"
            assert pairs == (led != "nm960")
            tolerance = 0.03 if pairs else 0.06
            expected_prnu = truth.prnu_rms * LED_PRNU_SCALE[led]
            assert row["prnu"] == pytest.approx(expected_prnu, rel=tolerance), (det_name, amp, led)
            if amp in fixed:
                response = fixed[amp].response_map(led)[5:-5, 5:-5]
                stats = clipped_stats(response)
                expected_total = stats.stdev / stats.mean / factor
                assert row["nonuniformity"] == pytest.approx(expected_total, rel=tolerance), (
                    det_name,
                    amp,
                    led,
                )
            assert row["nonuniformity"] >= row["prnu"]
            # Temporal rms of one normalised flat: at least the Poisson rms of ~3e4 e-.
            assert 0.8 / np.sqrt(row["signal_adu"] * row["gain_e_per_adu"]) < row["temporal_rms"] < 0.01
