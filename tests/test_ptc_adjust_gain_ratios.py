"""EoPtcAdjustGainRatiosTask on simulated flats of one detector (cp_pipe's PTC gain-ratio step).

The unadjusted PTC is made by hand from the simulation truth: its gains are the true gains times
known factors (+-2 % in a pattern orthogonal to the order-1 Chebyshev field over the amplifier
grid).  The adjustment of that PTC is compared with the adjustment of a PTC holding the true gains:
the injected factors must be taken out (the simulated flats also have per-amplifier response
steps of ~1 %, which the adjustment reads as gain errors in both runs alike).
"""

import numpy as np
import pytest
from astropy.table import Table

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ptcAdjustGainRatios import EoPtcAdjustGainRatiosTask
from lsst.eo.baseline.ptcDataset import EoPtcDataset
from lsst.eo.baseline.simulator import Simulation

DET = "R22_S11"
PAIRS = [(17, 18), (27, 28)]  # ptc_short: 16380 e- (in the 1000-20000 adu window) and 3e5 e- (above)
PATTERN = np.array([1, -1, -1, 1, -1, 1, 1, -1], dtype=float)


class _CachedHandle:
    """A simulated raw handle read once (the task is run several times on the same flats)."""

    def __init__(self, handle):
        self.handle, self.dataId, self.reads, self._raw = handle, handle.dataId, 0, None

    def get(self, **kwargs):
        self.reads += 1
        if self._raw is None:
            self._raw = self.handle.get()
        return self._raw


@pytest.fixture(scope="module")
def setup():
    sim = Simulation("ptc_short", DET, seed=5)
    det = get_camera()[DET]
    truth = sim.detector_truth(DET)
    amps = det.amp_names
    gains = np.array([truth.amp(a).gain for a in amps])
    raws = {sim.exposures[i].exposure_id: _CachedHandle(sim.raw_handle(DET, i)) for i, _ in PAIRS}
    factors = np.array([1.0 + 0.02 * PATTERN[det.ccd_type.amp(a).ix] for a in amps])
    return sim, det, amps, gains, raws, factors


def _ptc(sim, amps, true_gains, gains):
    ptc = EoPtcDataset(ampNames=list(amps), metadata={"DETECTOR": 94})
    ids = np.array([[sim.exposures[i].exposure_id, sim.exposures[j].exposure_id] for i, j in PAIRS])
    for k, a in enumerate(amps):
        ptc.set("inputExpIdPairs", a, ids)
        ptc.set(
            "finalMeans", a, np.array([sim.exposures[i].nominal_signal / true_gains[k] for i, _ in PAIRS])
        )
        ptc.set("rawMeans", a, ptc.finalMeans[a].copy())
        ptc.set("gain", a, gains[k])
        ptc.set("gainUnadjusted", a, gains[k])
        ptc.set("gainErr", a, 1e-3)
        ptc.set("noise", a, 6.0)
        ptc.set("ptcTurnoff", a, 9.0e4)
    summary = Table(
        {
            "amp": amps,
            "ptc_gain_e_per_adu": gains,
            "ptc_gain_unadjusted_e_per_adu": gains,
            "ptc_turnoff_adu": np.full(len(amps), 9.0e4),
            "ptc_turnoff_e": 9.0e4 * gains,
        }
    )
    return ptc, summary


def _adjusted(setup, gains, **config):
    sim, det, amps, true_gains, raws, _ = setup
    task = EoPtcAdjustGainRatiosTask()
    for name, value in config.items():
        setattr(task.config, name, value)
    ptc, summary = _ptc(sim, amps, true_gains, gains)
    result = task.run(ptc, summary, raws, det)
    return result, ptc, np.array([result.ptc.gain[a] for a in amps])


def test_injected_gain_errors_are_removed_without_radial_term(setup):
    # Without the radial spline the field is an order-1 Chebyshev field, to which the injected
    # pattern is orthogonal: the two adjustments differ by one common factor only, to a small
    # fraction (5 %) of the injected 2 %.
    _, _, _, gains, _, factors = setup
    _, _, base = _adjusted(setup, gains, do_remove_radial_gradient=False)
    result, _, off = _adjusted(setup, gains * factors, do_remove_radial_gradient=False)
    q = off / base
    np.testing.assert_allclose(q / np.median(q), 1.0, atol=1e-3)
    # One flat: the 3e5 e- pair is out of the signal window.
    assert len(result.adjustment) == 1


def test_default_adjustment_moves_gains_toward_the_truth(setup):
    # cp_pipe's configuration (radial spline on): the 20-node spline in focal-plane radius takes up
    # part of the amplifier steps near the focal-plane centre (corner amplifiers most), so the
    # injected errors are reduced, not removed: residual below a quarter of the injected 2 % rms.
    _, _, amps, gains, _, factors = setup
    _, _, base = _adjusted(setup, gains)
    result1, ptc1, off = _adjusted(setup, gains * factors)
    q = off / base
    residual = q / np.median(q) - 1.0
    assert np.std(residual) < 0.25 * np.std(factors - 1.0)
    assert np.max(np.abs(residual)) < 0.5 * 0.02
    # Against the truth: closer than the injected errors (the simulated response steps remain).
    assert np.std(off / gains - 1.0) < 0.6 * np.std(factors - 1.0)
    # gainUnadjusted is the solver's gain, everything else is copied, only gain changes.
    for a, g in zip(amps, gains * factors, strict=True):
        assert result1.ptc.gainUnadjusted[a] == g
        assert result1.ptc.gain[a] == pytest.approx(g / result1.summary["ptc_gain_correction"][amps.index(a)])
    before, after = ptc1.to_table(), result1.ptc.to_table()
    assert before.colnames == after.colnames
    for col in before.colnames:
        if col != "GAIN":
            np.testing.assert_array_equal(np.asarray(before[col]), np.asarray(after[col]), err_msg=col)
    # The summary: eo_pipe's ptc_gain (adjusted) beside the fit value; turnoff in e- follows.
    s = result1.summary
    np.testing.assert_array_equal(s["ptc_gain_e_per_adu"], off)
    np.testing.assert_array_equal(s["ptc_gain_unadjusted_e_per_adu"], gains * factors)
    np.testing.assert_allclose(s["ptc_turnoff_e"], 9.0e4 * off, rtol=1e-12)
    # The corrections have median 1 (the detector's median gain is kept).
    assert np.median(s["ptc_gain_correction"]) == pytest.approx(1.0, abs=1e-12)
    # cp_pipe's ptc_adjustment_summary: the one flat in the window and a ratio per amplifier; the
    # reference amplifier's ratio is 1.
    table = result1.adjustment
    assert table["exp_id"].tolist() == [setup[0].exposures[PAIRS[0][0]].exposure_id]
    assert table["mean_adu"][0] == pytest.approx(np.mean(16380.0 / gains), rel=1e-9)
    ref = table.meta["fixed_amp_name"]
    assert table[f"{ref}_gain_ratio"][0] == 1.0
    assert [c for c in table.colnames if c.endswith("_gain_ratio")] == [f"{a}_gain_ratio" for a in amps]


def test_no_adjustment_when_switched_off_or_without_reference(setup):
    _, _, amps, gains, raws, _ = setup
    reads = sum(h.reads for h in raws.values())
    result, _, g = _adjusted(setup, gains * 1.01, do_adjust_gain_ratios=False)
    np.testing.assert_array_equal(g, gains * 1.01)
    assert len(result.adjustment) == 0
    # Every amplifier too noisy for a reference: fewer than 2 candidates, no adjustment.
    result, _, g = _adjusted(setup, gains, max_noise_reference=1.0)
    np.testing.assert_array_equal(g, gains)
    assert result.adjustment.meta["fixed_amp_index"] == -1
    # No flat in the signal window: gains kept.
    result, _, g = _adjusted(setup, gains, min_adu=50000.0, max_adu=60000.0)
    np.testing.assert_array_equal(g, gains)
    assert sum(h.reads for h in raws.values()) == reads  # no flat was read
