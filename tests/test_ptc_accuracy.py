"""PTC family on a dense simulated PTC run: gain, noise, a00, turnoff, linearity (issue 5 targets).

The full ``ptc`` plan (10 biases, 297 flat pairs log-spaced by 2.7% from 100 e- to 3e5 e-) is
simulated in memory for two amplifiers of an e2v and an ITL CCD -- the one with the highest serial
CTI and a typical one -- and run through the tasks' ``run`` methods (extraction of every pair,
solve, linearity, brighter-fatter).  The butler/pipetask path is covered by test_b_protocol_run.
"""

import numpy as np
import pytest

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ptcExtract import EoPtcExtractTask
from lsst.eo.baseline.ptcMetrics import EoBrighterFatterTask, EoLinearityTask
from lsst.eo.baseline.ptcSolve import EoPtcSolveTask
from lsst.eo.baseline.simulator import Simulation

DETECTORS = ("R22_S11", "R01_S01")


def _amps(sim, det):
    amps = sim.detector_truth(det).amps
    worst = max(amps, key=lambda a: a.serial_cti)
    typical = next(a for a in amps if a.amp != worst.amp and a.serial_cti < 3e-6)
    return [worst.amp, typical.amp]


@pytest.fixture(scope="module")
def results():
    sim = Simulation("ptc", ",".join(DETECTORS), seed=21)
    out = {}
    for det_name in DETECTORS:
        det = get_camera()[det_name]
        amps = _amps(sim, det_name)
        extract = EoPtcExtractTask()
        extract.config.amps = amps
        flats = [i for i, e in enumerate(sim.exposures) if e.imgtype == "FLAT"]
        tables = [
            extract.run(
                [sim.raw_handle(det_name, flats[k]), sim.raw_handle(det_name, flats[k + 1])], det
            ).pair
            for k in range(0, len(flats), 2)
        ]
        solved = EoPtcSolveTask().run(tables, det)
        out[det_name] = {
            "sim": sim,
            "amps": amps,
            "summary": {r["amp"]: r for r in solved.summary},
            "ptc": solved.ptc,
            "linearity": {r["amp"]: r for r in EoLinearityTask().run(solved.ptc, det).metric},
            "bf": {r["amp"]: r for r in EoBrighterFatterTask().run(solved.ptc, det).metric},
        }
    return out


def _each(results):
    for det_name, r in results.items():
        for amp in r["amps"]:
            yield det_name, amp, r["sim"].detector_truth(det_name).amp(amp), r


def test_gain_within_half_a_percent(results):
    # Statistical error of the gain from ~250 pairs of ~1M pixels is < 0.05%; the tolerance is the
    # issue's.  The highest-CTI amplifiers check the first-order CTI correction (without it their
    # gain is biased by ~2 <N> eps, up to 1.5%).
    for det, amp, truth, r in _each(results):
        measured = r["summary"][amp]["ptc_gain_e_per_adu"]
        assert measured == pytest.approx(truth.gain, rel=0.005), (det, amp, measured, truth.gain)


def test_noise_within_3_percent(results):
    # The intercept of ~60 pairs below 2000 e- constrains the noise to ~1%.
    for det, amp, truth, r in _each(results):
        measured = r["summary"][amp]["ptc_noise_e"]
        assert measured == pytest.approx(truth.read_noise, rel=0.03), (det, amp, measured, truth.read_noise)
        # Ours in eoBrighterFatter, with the vendor's overscan column count (ITL 58, e2v 48).
        ours = r["bf"][amp]["ptc_noise_overscan_corrected_e"]
        assert ours == pytest.approx(truth.read_noise, rel=0.03), (det, amp, ours, truth.read_noise)
        assert r["bf"][amp]["overscan_columns"] == (48 if det == "R22_S11" else 58)
        # eoPtcSummary carries the same two definitions under the same names.
        assert r["summary"][amp]["ptc_noise_e"] == pytest.approx(r["bf"][amp]["ptc_noise_e"], rel=1e-12)
        assert r["summary"][amp]["ptc_noise_overscan_corrected_e"] == pytest.approx(ours, rel=1e-9)


def test_a00_within_10_percent(results):
    for det, amp, truth, r in _each(results):
        measured = r["summary"][amp]["ptc_a00_per_e"]
        assert measured == pytest.approx(truth.a00, rel=0.10), (det, amp, measured, truth.a00)
        assert r["bf"][amp]["a00_per_e"] == measured
        # eo_pipe's ptc_a00 is -a00: positive for the simulated (negative-a00) devices.
        assert r["bf"][amp]["ptc_minus_a00_per_e"] == -measured > 0
        # Nearest-neighbour covariances grow with flux (positive BF correlation slopes).
        assert r["bf"][amp]["bf_slope_x_adu"] > 0 and r["bf"][amp]["bf_slope_y_adu"] > 0


def test_turnoff_within_one_sampling_step(results):
    """The turnoff is the last sampled mean before saturation sets in (1% of the pixels full)."""
    for det, amp, truth, r in _each(results):
        row = r["summary"][amp]
        step = row["ptc_turnoff_sampling_error_adu"]
        assert 0 < step < 0.04 * row["ptc_turnoff_adu"]
        assert abs(row["ptc_turnoff_adu"] - truth.ptc_turnoff_onset_adu) <= step, (
            det, amp, row["ptc_turnoff_adu"], truth.ptc_turnoff_onset_adu, step
        )  # fmt: skip
        # The turnoff is a linearised mean (the fit's rawMeans); the maximum observed signal is the
        # largest *measured* mean, so it is at least the measured mean of the turnoff pair.
        ptc = r["ptc"]
        at_turnoff = int(np.nanargmin(np.abs(np.asarray(ptc.rawMeans[amp]) - row["ptc_turnoff_adu"])))
        assert row["max_observed_signal_adu"] >= ptc.measuredMeans[amp][at_turnoff]
        assert row["max_observed_signal_adu"] == np.nanmax(ptc.measuredMeans[amp])


def test_linearity_turnoff_within_2_percent(results):
    for det, amp, truth, r in _each(results):
        row = r["linearity"][amp]
        # The truth is the 1% point: cp_pipe's definition, interpolated between samples (ours).
        measured = row["linearity_turnoff_interpolated_adu"]
        assert measured == pytest.approx(truth.linearity_turnoff_adu, rel=0.02), (det, amp, measured)
        assert row["max_frac_dev"] < 0.05
        # eo_pipe's 5% turnoff lies above the 1% one on a monotonically growing non-linearity.
        assert row["linearity_turnoff_adu"] > row["cp_linearity_turnoff_adu"]
        # eo_pipe's max_observed_signal: the largest measured (not linearised) mean of all pairs.
        assert row["max_observed_signal_adu"] == np.nanmax(r["ptc"].measuredMeans[amp])


def test_ptc_dataset_round_trip(results, tmp_path):
    """eoPtc writes cp_pipe's column names and reads back identically."""
    from astropy.table import Table

    from lsst.eo.baseline.ptcDataset import EoPtcDataset

    ptc = results["R22_S11"]["ptc"]
    table = ptc.to_table()
    for col in ("AMPLIFIER_NAME", "RAW_MEANS", "RAW_VARS", "EXP_ID_MASK", "GAIN", "NOISE", "PTC_TURNOFF",
                "COVARIANCES", "A_MATRIX", "INPUT_EXP_ID_PAIRS"):  # fmt: skip
        assert col in table.colnames, col
    path = tmp_path / "ptc.fits"
    with pytest.warns(Warning):
        table.write(path)  # HIERARCH cards for the long keywords, as in ip_isr files
    back = EoPtcDataset.from_table(Table.read(path))
    amp = results["R22_S11"]["amps"][0]
    assert back.gain[amp] == ptc.gain[amp]
    np.testing.assert_array_equal(back.rawMeans[amp], ptc.rawMeans[amp])
    assert back.covariances[amp].shape == ptc.covariances[amp].shape
