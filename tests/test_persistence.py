"""Persistence: the decay model and fit on arrays, the injected traps recovered, and the pipelines.

One e2v (R22_S11) and one ITL (R01_S01) CCD are simulated with biases and darks (for eoBias and
eoDark) and a persistence sequence: a flat at ~7 x full well and 8 darks of 15 s (2.6 s to 140 s
after it).  The task's ``run`` is checked against the truth on both CCDs, in its default
configuration (bias, dark and camera-model gains).

The pipetask test simulates its own R22_S11 run (biases, darks, 3 stability flats, 2 uv flats and
a persistence sequence), certifies eoBias/eoDark made by ``run`` and runs the three pipelines of
the family: persistence must equal what ``run`` gives on the same inputs, gain stability and
wavelength flats must match the truth.  Each expensive fixture serves one test, so that
pytest-xdist never builds it twice.
"""

import os

import astropy.time
import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler, CollectionType, DatasetType, Timespan

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.calibCombine import EoBiasTask, EoDarkTask
from lsst.eo.baseline.camera import get_camera, nominal_amps
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.persistence import (
    EoPersistenceConfig,
    EoPersistenceTask,
    fit_persistence,
    persistence_model,
)
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.runner import run_analysis
from lsst.eo.baseline.simulator import load_truth, simulate

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "persistence.yaml")
PIPETASK_PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "stability_pipetask.yaml")
DETECTORS = ("R22_S11", "R01_S01")
RUN = "13600"
CALIB = f"LSSTCam/calib/eo/{RUN}"

# The steps of this family, with the data selection each needs (as config/runs/b_protocol.yaml
# should have them after the bias and dark steps).
RUN_TYPE = {
    "name": "stability_family",
    "steps": [
        {
            "name": "gain_stability",
            "pipeline": "bProtocolGainStability.yaml",
            "where": "exposure.observation_type = 'flat' AND exposure.observation_reason = 'gain_stability'",
        },
        {
            "name": "lambda",
            "pipeline": "bProtocolLambda.yaml",
            "where": "exposure.observation_type = 'flat' AND exposure.observation_reason = 'lambda'",
        },
        {
            "name": "persistence",
            "pipeline": "bProtocolPersistence.yaml",
            "where": "exposure.observation_reason = 'persistence'",
        },
    ],
}


def test_persistence_model_integrates_the_release():
    # Charge released over [0, inf) is q0; over consecutive windows the pieces add up.
    assert persistence_model(np.array([0.0]), np.array([np.inf]), 50.0, 40.0)[0] == pytest.approx(50.0)
    edges = np.linspace(0.0, 100.0, 11)
    pieces = persistence_model(edges[:-1], edges[1:], 50.0, 40.0)
    assert pieces.sum() == pytest.approx(50.0 * (1.0 - np.exp(-100.0 / 40.0)))
    assert np.all(np.diff(pieces) < 0)


def test_fit_recovers_synthetic_decay():
    rng = np.random.default_rng(11)
    t0 = 2.6 + 17.692 * np.arange(10)
    t1 = t0 + 15.092
    truth = persistence_model(t0, t1, 20.0, 45.0)
    sigma = np.full(t0.size, 0.02)
    fit = fit_persistence(t0, t1, truth + sigma * rng.standard_normal(t0.size), sigma)
    assert fit["ok"] and fit["n"] == 10 and fit["dof"] == 8
    # Errors are scaled by the reduced chi-square: the fit must lie within 4 of them.
    assert fit["q0"] == pytest.approx(20.0, abs=4 * fit["q0_err"])
    assert fit["tau"] == pytest.approx(45.0, abs=4 * fit["tau_err"])
    assert fit["q0_err"] < 0.2 and fit["tau_err"] < 1.0
    # With a constant offset (a residual bias level), fitted as a third parameter.
    data = truth + 0.3 + sigma * rng.standard_normal(t0.size)
    with_offset = fit_persistence(t0, t1, data, sigma, fit_offset=True)
    assert with_offset["offset"] == pytest.approx(0.3, abs=4 * with_offset["offset_err"])
    assert with_offset["tau"] == pytest.approx(45.0, abs=4 * with_offset["tau_err"])
    biased = fit_persistence(t0, t1, data, sigma)
    assert biased["chi2"] > 10 * with_offset["chi2"]


def test_fit_degenerate_cases():
    t0 = np.array([2.6, 20.3])
    few = fit_persistence(t0, t0 + 15.0, np.array([5.0, 3.0]))
    assert not few["ok"] and np.isnan(few["q0"])
    t0 = 2.6 + 17.7 * np.arange(6)
    nothing = fit_persistence(t0, t0 + 15.0, np.zeros(6) + 1e-3 * np.arange(6))
    assert not nothing["ok"]  # no decay: tau runs to a bound or q0 <= 0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sim_persistence"))
    simulate(PLAN, ",".join(DETECTORS), out, run=RUN, seed=41, jobs=2)
    return load_truth(out)


def _handles(truth, det_name, testtype):
    ids = {int(e) for e in truth.exposures[truth.exposures["testtype"] == testtype]["exposure_id"]}
    rows = [r for r in truth.files if r["det_name"] == det_name and int(r["exposure_id"]) in ids]
    rows.sort(key=lambda r: int(r["exposure_id"]))
    return [RawFileHandle(os.path.join(truth.out_dir, r["path"])) for r in rows]


@pytest.fixture(scope="module")
def products(sim):
    """Combined calibrations and the persistence tables of both detectors (default configuration)."""
    out = {}
    for det_name in DETECTORS:
        det = get_camera()[det_name]
        bias = EoBiasTask().run(_handles(sim, det_name, "BIAS"), det).bias
        dark = EoDarkTask().run(_handles(sim, det_name, "DARK"), det, bias=bias).dark
        result = EoPersistenceTask().run(_handles(sim, det_name, "PERSISTENCE"), det, bias=bias, dark=dark)
        out[det_name] = {"bias": bias, "dark": dark, "persistence": result}
    return out


def test_persistence_recovers_injected_traps(sim, products):
    """Issue 6: amplitude and time constant within 10 % of the injected ones, on every amplifier.

    Each residual is a clipped mean of 1e6 pixels of 6-9 e- read noise (0.007 e-); the per-row
    overscan levels leave ~0.03 e- per exposure (the fits' reduced chi-square of ~10-20 says so), and
    the camera-model gains differ from the true ones by up to 2.5 %, which scales the residuals.
    The fit errors of Q0 and tau are 0.2-2 %: a 10 % tolerance is the issue's, and the measured
    values must also lie within 5 of their own errors plus the 2.5 % gain scale.
    """
    for det_name in DETECTORS:
        summary = products[det_name]["persistence"].persistence
        per_exposure = products[det_name]["persistence"].exposures
        assert len(summary) == 16 and len(per_exposure) == 16 * 8
        assert set(per_exposure["imgtype"]) == {"DARK"} and per_exposure["used_in_fit"].all()
        truth_amps = sim.exposure_amps(det_name)
        for row in summary:
            amp = row["amp"]
            truth = sim.amp(det_name, amp)
            assert row["fit_ok"] and row["n_exposures"] == 8, (det_name, amp)
            assert row["persistence_q0_e"] == pytest.approx(truth.persistence_q0, rel=0.10), (det_name, amp)
            assert row["persistence_tau_s"] == pytest.approx(truth.persistence_tau, rel=0.10), (det_name, amp)
            q0_tol = 5 * row["persistence_q0_err_e"] + 0.025 * truth.persistence_q0
            assert abs(row["persistence_q0_e"] - truth.persistence_q0) < q0_tol, (det_name, amp)
            assert (
                abs(row["persistence_tau_s"] - truth.persistence_tau) < 5 * row["persistence_tau_err_s"] + 1.0
            )
            # The saturating flat is at the full well (blooming spreads the excess, the rest is lost),
            # less the output non-linearity there (1 % at 0.88-0.97 full well, power 6-10: <= 3.6 %),
            # and scaled by the camera-model gain error (<= 2.5 %).
            assert 0.9 < row["flat_signal_e"] / truth.full_well < 1.03, (det_name, amp)
            # Per dark: residual = released charge, within the per-exposure errors and gain scale.
            t = truth_amps[truth_amps["amp"] == amp]
            injected = dict(zip(t["exposure_id"], t["persistence_e"], strict=True))
            dark_e = dict(zip(t["exposure_id"], t["dark_e"], strict=True))
            for r in per_exposure[per_exposure["amp"] == amp]:
                expected = injected[r["exposure"]]
                assert abs(r["residual_e"] - expected) < 0.15 + 0.025 * expected, (
                    det_name,
                    amp,
                    r["exposure"],
                )
                # eoDark from two 60 s darks: its clipped mean is good to ~1e-3 e-/s (x 15 s).
                assert r["dark_subtracted_e"] == pytest.approx(dark_e[r["exposure"]], abs=0.02)
                assert r["model_e"] == pytest.approx(r["residual_e"], abs=0.15 + 0.025 * expected)
            times = per_exposure[per_exposure["amp"] == amp]
            assert times["t_start_s"][0] == pytest.approx(2.6, abs=1e-3)  # 2 s readout + 0.6 s overhead
            np.testing.assert_allclose(times["t_end_s"] - times["t_start_s"], 15.092, atol=1e-3)

    # With isr.doDark off, the configured dark current x DARKTIME is subtracted instead (here 0).
    det_name = DETECTORS[0]
    config = EoPersistenceConfig()
    config.isr.doDark = False
    config.darkCurrent = 0.0
    assert "dark" not in config.connections.ConnectionsClass(config=config).prerequisiteInputs
    # The flat and the first 3 darks are enough for this check.
    result = EoPersistenceTask(config=config).run(
        _handles(sim, det_name, "PERSISTENCE")[:4], get_camera()[det_name], bias=products[det_name]["bias"]
    )
    with_dark = products[det_name]["persistence"].exposures
    with_dark = with_dark[np.isin(with_dark["exposure"], result.exposures["exposure"])]
    diff = result.exposures["residual_e"] - with_dark["residual_e"]
    # The e2v dark current is ~0.003 e-/s: 0.05 e- per 15 s dark, left in the residuals.  eoDark,
    # from two 60 s darks, knows it to ~1e-3 e-/s (overscan levels of 0.03 e- / 60 s, clipping).
    expected = [sim.amp(det_name, a).dark_current * 15.092 for a in result.exposures["amp"]]
    np.testing.assert_allclose(diff, expected, atol=0.02)
    assert result.persistence.meta["DARK"] == "0.0 e-/s"


def _certify_calibs(repo, sim, calibs, detector):
    """Put eoBias/eoDark of one detector into the repo and certify them, as the bias/dark steps do."""
    butler = Butler.from_config(repo, writeable=True)
    run = f"u/eo/{RUN}/calibs"
    butler.collections.register(run, CollectionType.RUN)
    refs = []
    for name, calib in calibs.items():
        butler.registry.registerDatasetType(
            DatasetType(name, ("instrument", "detector"), "MaskedImageV2", universe=butler.dimensions,
                        isCalibration=True)
        )  # fmt: skip
        refs.append(butler.put(calib, name, instrument="LSSTCam", detector=detector, run=run))
    dates = astropy.time.Time(list(sim.exposures["date_beg"]), scale="tai")
    day = astropy.time.TimeDelta(1.0, format="jd")
    butler.collections.register(CALIB, CollectionType.CALIBRATION)
    butler.registry.certify(CALIB, refs, Timespan(dates.min() - day, dates.max() + day))


@pytest.mark.slow
def test_pipelines_through_pipetask(tmp_path):
    """The three pipelines run through pipetask on the right exposures, with the calibrations."""
    det_name = DETECTORS[0]
    det = get_camera()[det_name]
    raws = str(tmp_path / "raws")
    simulate(PIPETASK_PLAN, det_name, raws, run=RUN, seed=43, jobs=2)
    sim = load_truth(raws)
    bias = EoBiasTask().run(_handles(sim, det_name, "BIAS"), det).bias
    dark = EoDarkTask().run(_handles(sim, det_name, "DARK"), det, bias=bias).dark
    repo = str(tmp_path / "repo")
    butler = create_repo(repo)
    assert ingest_raws(butler, [raws], progress=False).ok
    _certify_calibs(repo, sim, {"eoBias": bias, "eoDark": dark}, det.id)
    run_type = str(tmp_path / "stability_family.yaml")
    with open(run_type, "w") as f:
        yaml.safe_dump(RUN_TYPE, f)
    results = run_analysis(repo, RUN, run_type, detectors=[det.id])
    assert [(r.step.name, r.status) for r in results] == [
        ("gain_stability", "done"),
        ("lambda", "done"),
        ("persistence", "done"),
    ], [r.message for r in results]
    butler = Butler.from_config(repo, collections=f"u/eo/{RUN}")

    def get(name):
        return butler.get(name, instrument="LSSTCam", detector=det.id)

    def same(piped, direct, columns):
        assert len(piped) == len(direct)
        for name in columns:
            np.testing.assert_allclose(piped[name], direct[name], rtol=1e-9, err_msg=name)

    # Each quantum got exactly its step's exposures and the calibrations: persistence is compared
    # with ``run`` on the same inputs, the other two with the truth.
    pers = EoPersistenceTask().run(_handles(sim, det_name, "PERSISTENCE"), det, bias=bias, dark=dark)
    same(get("eoPersistence"), pers.persistence, ("persistence_q0_e", "persistence_tau_s", "flat_signal_e"))
    same(get("eoPersistenceExposures"), pers.exposures, ("exposure", "residual_e", "t_start_s"))
    q0 = np.array([sim.amp(det_name, a).persistence_q0 for a in pers.persistence["amp"]])
    np.testing.assert_allclose(pers.persistence["persistence_q0_e"], q0, rtol=0.10)
    ids = {int(e) for e in sim.exposures[sim.exposures["testtype"] == "GAIN_STABILITY"]["exposure_id"]}
    gs = get("eoGainStability")
    assert set(get("eoGainStabilityExposures")["exposure"]) == ids
    assert list(gs["n_exposures"]) == [3] * 16  # (the butler's parquet reader drops table.meta)
    injected = 1e3 * np.array([sim.amp(det_name, a).gain_drift for a in gs["amp"]])
    np.testing.assert_allclose(gs["gain_drift_ppt"], injected, atol=0.2)  # the 0.02 %
    wl = get("eoWavelengthFlats")
    assert list(wl["led"]) == ["uv"] * 16 and list(wl["n_exposures"]) == [2] * 16
    injected = np.array([sim.amp(det_name, a).led_response["uv"] for a in wl["amp"]])
    # Camera-model gains differ from the true ones by up to 2.5 %.
    np.testing.assert_allclose(10 * wl["response_per_ccobflux"], injected, rtol=0.03)
    prnu = np.array([2.0 * sim.amp(det_name, a).prnu_rms for a in wl["amp"]])  # uv: 2 x red PRNU
    np.testing.assert_allclose(wl["prnu"], prnu, rtol=0.03)


def test_eo_pipe_columns(sim, products):
    """eo_pipe's mean_signal / stdev (adu, 5-sigma clip, bias subtracted, no gain or dark) and time.

    By construction our residual is (adu image x gain) less the dark charge of every pixel, so
    mean_signal_adu x gain = residual_e + dark_subtracted_e up to the different clips (5 vs 3
    sigma) of a near-Gaussian pixel distribution, whose means agree to far below the 0.03 e-
    per-exposure level noise; the tolerance 0.05 e- + 0.2% allows for the hot pixels the two clips
    treat differently.  time_min is minutes since the earliest MJD-TRG (the flat's): the first
    dark starts 2.6 s after the flat's end, the flat lasting its exposure time after its trigger,
    so time_min > 2.6 / 60.
    """
    for det_name in DETECTORS:
        gains = nominal_amps(det_name)
        result = products[det_name]["persistence"]
        per_exposure = result.exposures
        for r in per_exposure:
            expected = (r["residual_e"] + r["dark_subtracted_e"]) / gains[r["amp"]].gain
            assert r["mean_signal_adu"] == pytest.approx(expected, abs=(0.05 + 0.002 * abs(expected)))
            assert r["stdev_adu"] > 0
        for amp in set(per_exposure["amp"]):
            rows = per_exposure[per_exposure["amp"] == amp]
            assert np.all(np.diff(rows["time_min"]) > 0)
            assert rows["time_min"][0] > 2.6 / 60.0
            # Successive darks are as far apart in time_min as in MJD-TRG.
            np.testing.assert_allclose(np.diff(rows["time_min"]), np.diff(rows["mjd_trg"]) * 1440.0)
        # The flat (saturated: at the ADC maximum less the bias) is far above any dark.
        summary = result.persistence
        assert np.all(summary["flat_mean_signal_adu"] > 1.0e4)
