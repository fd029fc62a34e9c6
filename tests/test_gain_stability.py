"""Gain stability: the drift and scatter functions on arrays, and the injected gain drift recovered.

One e2v (R22_S11) and one ITL (R01_S01) CCD are simulated with 6 stability flats at 5e4 e-; the
simulator drifts each amplifier's gain linearly in time by ``gain_drift`` (0.05-0.15 %) over the
sequence, on top of a 0.3 % source flux jitter recorded in CCOBFLUX and sinusoidal bias drifts.
The task runs in its default configuration, overscan correction only; the pipetask path is tested
in test_persistence.py.
"""

import os

import fitsio
import numpy as np
import pytest

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.gainStability import (
    EoGainStabilityConfig,
    EoGainStabilityTask,
    flux_normalization,
    normalize_series,
    stability_summary,
    temperature_slope,
)
from lsst.eo.baseline.rawio import housekeeping_temperatures
from lsst.eo.baseline.simulator import load_truth, simulate

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "gain_stability.yaml")
DETECTORS = ("R22_S11", "R01_S01")


def test_stability_summary_of_a_linear_drift():
    mjd = 60000.0 + np.arange(11) / 24.0 / 6.0  # every 10 minutes, 100 minutes in all
    phase = (mjd - mjd[0]) / np.ptp(mjd)
    gain_drift = 1.0e-3
    signal = 1.0 / (1.0 + gain_drift * phase)  # adu of a fixed charge: inversely proportional to the gain
    s = stability_summary(mjd, signal / np.median(signal))
    # 1/(1 + d x) is linear in x to d^2 = 1e-6, i.e. 1e-3 ppt.
    assert s["gain_drift_ppt"] == pytest.approx(1.0, abs=2e-3)
    assert s["drift_ppt"] == pytest.approx(-1.0, abs=2e-3)
    assert s["slope_ppt_per_hour"] == pytest.approx(-1.0 / (100.0 / 60.0), rel=3e-3)
    assert s["time_span_hours"] == pytest.approx(100.0 / 60.0)
    assert s["scatter_ppt"] < 1e-3
    assert s["peak_to_peak_ppt"] == pytest.approx(1e3 * (1.0 - 1.0 / 1.001) / np.median(signal), rel=1e-9)
    assert s["n"] == 11


def test_stability_summary_scatter_and_degenerate_input():
    rng = np.random.default_rng(3)
    mjd = 60000.0 + np.arange(400) / 1440.0
    values = 1.0 + 2e-4 * rng.standard_normal(400)
    s = stability_summary(mjd, values)
    # rms about the fit estimates the 0.2 ppt noise to 1/sqrt(2 x 398) = 3.5 %.
    assert s["scatter_ppt"] == pytest.approx(0.2, rel=0.15)
    assert abs(s["drift_ppt"]) < 0.1  # drift error ~ 0.2 ppt x sqrt(12 / 400) = 0.035 ppt
    few = stability_summary(mjd[:2], values[:2])
    assert np.isnan(few["drift_ppt"]) and np.isnan(few["scatter_ppt"]) and few["n"] == 2
    nan_in = stability_summary(np.array([1.0, np.nan, 3.0, 4.0]), np.array([1.0, 1.0, np.nan, 1.0]))
    assert nan_in["n"] == 2


def test_flux_normalization_and_series():
    header = {"EXPTIME": 10.0, "CCOBFLUX": 50150.0}
    assert flux_normalization(header, "CCOBFLUX") == pytest.approx(501500.0)
    assert flux_normalization(header, "EXPTIME") == 10.0
    assert flux_normalization(header, "DETECTOR_MEDIAN") == 10.0
    assert flux_normalization(header, "NONE") == 1.0
    assert np.isnan(flux_normalization({"EXPTIME": 10.0, "CCOBFLUX": None}, "CCOBFLUX"))
    with pytest.raises(ValueError):
        flux_normalization(header, "PHOTODIODE")
    signal = np.array([100.0, 103.0, 99.0])
    norm = np.array([1.0, 1.03, 0.99])
    np.testing.assert_allclose(normalize_series(signal, norm), 1.0)
    np.testing.assert_allclose(normalize_series(signal), signal / 100.0)


def test_temperature_slope_by_hand():
    # T = -100.1, -100.0, -99.9 C and s = 0.999, 1.000, 1.001: the line s = 1 + 0.01 (T - Tmean)
    # passes through every point, so b = 0.01 per C, s(Tmean) = 1: 10 ppt per C.
    t = np.array([-100.1, -100.0, -99.9])
    assert temperature_slope(t, np.array([0.999, 1.0, 1.001])) == pytest.approx(10.0, rel=1e-9)
    # Flat signal: zero slope; NaN points are ignored.
    assert temperature_slope(np.append(t, np.nan), np.array([1.0, 1.0, 1.0, 2.0])) == pytest.approx(
        0.0, abs=1e-9
    )
    # Too few points or too small a temperature range (0.02 C < 0.05 C): NaN.
    assert np.isnan(temperature_slope(t[:2], np.array([1.0, 1.0])))
    assert np.isnan(temperature_slope(np.array([-100.0, -99.99, -99.98]), np.ones(3)))


def test_housekeeping_temperatures_by_hand():
    # CCDTEMP as written; reb_temp_c the mean of TEMP1..TEMPn: (1 + 3) / 2 = 2.
    hk = {"CONFIG_COND": {"FPDAQCS": "1"}, "REB_COND": {"CCDTEMP": -99.5, "TEMP1": 1.0, "TEMP2": 3.0}}
    assert housekeeping_temperatures(hk) == {"ccd_temp_c": -99.5, "reb_temp_c": 2.0}
    # 2019 files: no EXTNAME, no CCDTEMP; (-4 - 3) / 2 = -3.5.
    old = housekeeping_temperatures({"HDU17": {"TEMP1": -4.0, "TEMP2": -3.0, "GD": 0}, "HDU18": {}})
    assert np.isnan(old["ccd_temp_c"]) and old["reb_temp_c"] == -3.5
    assert all(np.isnan(v) for v in housekeeping_temperatures({}).values())


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sim_gain_stability"))
    simulate(PLAN, ",".join(DETECTORS), out, run="13600", seed=21, jobs=2)
    return load_truth(out)


def _handles(truth, det_name):
    rows = sorted((r for r in truth.files if r["det_name"] == det_name), key=lambda r: int(r["exposure_id"]))
    return [RawFileHandle(os.path.join(truth.out_dir, r["path"])) for r in rows]


def _task(mode="CCOBFLUX"):
    config = EoGainStabilityConfig()
    config.fluxNormalization = mode
    return EoGainStabilityTask(config=config)


def test_calibrations_are_optional_prerequisites():
    config = EoGainStabilityConfig()
    assert not config.connections.ConnectionsClass(config=config).prerequisiteInputs
    config.isr.doBias = True
    config.isr.doDark = True
    assert set(config.connections.ConnectionsClass(config=config).prerequisiteInputs) == {"bias", "dark"}
    config.isr.doApplyGains = True
    with pytest.raises(ValueError):
        config.validate()


def test_injected_gain_drift_recovered(sim):
    """Issue 6: a 0.1 % gain drift is recovered within 0.02 % (0.2 ppt), on every amplifier.

    Each normalised signal is a clipped mean of ~1e6 pixels at 5e4 e-: shot noise 4.5e-6, and the
    per-row overscan correction adds ~1e-6.  The drift of a straight-line fit through 6 such points
    is uncertain by ~6e-6 (0.006 ppt), 30 times below the issue's tolerance; the measured scatter
    about the fit must be of that order, while the raw (not flux-normalised) series carries the
    0.3 % source jitter.  One test per simulation, so that pytest-xdist never simulates twice.
    """
    exposures = sim.exposures.copy()
    exposures.sort("exposure_id")
    for det_name in DETECTORS:
        det = get_camera()[det_name]
        result = _task().run(_handles(sim, det_name), det)
        summary, per_exposure = result.stability, result.exposures
        assert len(summary) == 16 and len(per_exposure) == 16 * len(exposures)
        assert summary.meta["FLUX_NORMALIZATION"] == "CCOBFLUX"
        truth_amps = sim.exposure_amps(det_name)
        for row in summary:
            amp = row["amp"]
            injected = 1e3 * sim.amp(det_name, amp).gain_drift
            assert abs(injected) >= 0.5  # the simulator draws |gain_drift| in [0.05, 0.15] %
            assert row["gain_drift_ppt"] == pytest.approx(injected, abs=0.2), (det_name, amp)
            # Tighter, from the statistics above (5 sigma): the method is not just within spec.
            assert row["gain_drift_ppt"] == pytest.approx(injected, abs=0.04), (det_name, amp)
            assert row["drift_ppt"] == pytest.approx(-row["gain_drift_ppt"], abs=0.01)
            assert row["scatter_ppt"] < 0.03, (det_name, amp)
            assert row["raw_rms_ppt"] > 1.0, (det_name, amp)  # 3 ppt source jitter when not divided out
            # Per exposure: the normalised signal follows charge / effective gain / CCOBFLUX.
            t = truth_amps[truth_amps["amp"] == amp]
            t.sort("exposure_id")
            expected = (
                (t["photo_e"] + t["dark_e"]) / t["gain"] / (exposures["ccobflux"] * exposures["exptime"])
            )
            expected = np.asarray(expected / np.median(expected))
            measured = per_exposure[per_exposure["amp"] == amp]
            measured.sort("exposure")
            np.testing.assert_allclose(
                measured["signal_norm"], expected, atol=3e-5, err_msg=f"{det_name} {amp}"
            )
            assert np.all(np.diff(measured["mjd"]) > 0)
        # Temperatures: those of each file's REB_COND HDU (read here independently with fitsio).
        # (handles are in exposure order, like the sorted table)
        in_files = [(0, fitsio.read_header(h.path, "REB_COND")) for h in _handles(sim, det_name)]
        c10 = per_exposure[per_exposure["amp"] == "C10"]
        c10.sort("exposure")
        np.testing.assert_array_equal(c10["ccd_temp_c"], [h["CCDTEMP"] for _, h in in_files])
        reb = [np.mean([h[f"TEMP{k}"] for k in range(1, 11)]) for _, h in in_files]
        np.testing.assert_allclose(c10["reb_temp_c"], reb, rtol=1e-12)
        assert str(per_exposure["ccd_temp_c"].unit) == "deg_C"
        assert "signal_temp_slope_ppt_per_c" in summary.colnames

    # Without a photodiode, dividing by the detector median removes the common-mode drift only: for
    # linear drifts the per-exposure median over amplifiers drifts by the median of the gain
    # drifts, so each amplifier keeps gain_drift - median(gain_drift).
    det_name = DETECTORS[0]
    det = get_camera()[det_name]
    summary = _task("DETECTOR_MEDIAN").run(_handles(sim, det_name), det).stability
    drifts = 1e3 * np.array([sim.amp(det_name, a).gain_drift for a in det.amp_names])
    np.testing.assert_allclose(summary["gain_drift_ppt"], drifts - np.median(drifts), atol=0.04)
    assert summary.meta["FLUX_NORMALIZATION"] == "DETECTOR_MEDIAN"


def test_gain_stability_figure_has_temperature_panel():
    from astropy.table import Table

    from lsst.eo.baseline.plotting import gain_stability_figure

    # 2 amplifiers x 3 exposures: one line per amplifier in each panel.
    table = Table(
        {
            "mjd": np.repeat([60000.0, 60000.01, 60000.02], 2),
            "amp": np.tile(["C10", "C11"], 3),
            "signal_norm": [1.0, 1.0, 1.001, 0.999, 1.002, 0.998],
            "ccd_temp_c": np.repeat([-100.1, -100.0, -99.9], 2),
        }
    )
    fig = gain_stability_figure(table, "R22_S11")
    time_ax, temp_ax = fig.axes
    assert len(time_ax.lines) == 2 and len(temp_ax.lines) == 2
    np.testing.assert_allclose(sorted(temp_ax.lines[0].get_xdata()), [-100.1, -100.0, -99.9])
    # Without temperatures, the panel says so instead of drawing nothing silently.
    table["ccd_temp_c"] = np.nan
    temp_ax = gain_stability_figure(table, "R22_S11").axes[1]
    assert not temp_ax.lines and "no CCD temperature" in temp_ax.texts[0].get_text()
