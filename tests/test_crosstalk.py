"""Crosstalk: the shipped matrices, their conventions, injection by the simulator, ISR correction."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.images import Image

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.crosstalk import CrosstalkMatrix, crosstalk_subtrahend, load_crosstalk
from lsst.eo.baseline.isr import assemble_ccd, split_ccd
from lsst.eo.baseline.isrTask import EoIsrTask
from lsst.eo.baseline.rawdata import RawAmp, RawCcd
from lsst.eo.baseline.simulator.crosstalk import inject_crosstalk


def _two_amp(c01: float, c10: float = 0.0, q01: float = 0.0) -> CrosstalkMatrix:
    return CrosstalkMatrix(
        ("A", "B"), np.array([[0.0, c01], [c10, 0.0]]), np.array([[0.0, q01], [0.0, 0.0]]), "test"
    )


def test_shipped_matrices_and_fallback():
    camera = get_camera()
    own = load_crosstalk(camera["R22_S11"])
    assert own.origin == "R22_S11" and own.coeffs.shape == (16, 16)
    assert np.all(np.diag(own.coeffs) == 0)
    # obs_lsst_data R22_S11 CT_COEFFS[0, 1] (C10 -> C11) and CT_COEFFS[1, 0] (C11 -> C10).
    assert own.coeffs[0, 1] == pytest.approx(2.345923e-4, rel=1e-6)
    assert own.coeffs[1, 0] == pytest.approx(2.031169e-4, rel=1e-6)
    # The nearest neighbours dominate: the largest coefficient of each source is one of them.
    for s in range(16):
        t = int(np.argmax(np.abs(own.coeffs[s])))
        assert abs(t - s) == 1, (s, t)
    assert load_crosstalk(camera["R33_S00"]).origin == "MEDIAN_E2V"
    assert load_crosstalk(camera["R10_S11"]).origin == "MEDIAN_ITL"
    assert load_crosstalk(camera["R00_SW0"]).coeffs.shape == (8, 8)


def test_two_amp_convention_by_hand():
    # coeffs[source, target] in electrons; images in adu with gains 2 (A) and 1 (B).
    # A's pixel [1, 2] holds 1000 adu = 2000 e-: B receives 1e-3 * 2000 + 2.5e-7 * 2000**2 = 3 e- = 3 adu
    # at the same readout pixel; A receives nothing (coeffs[B, A] = 0, B empty).
    matrix = _two_amp(1e-3, c10=0.5, q01=2.5e-7)
    images = np.zeros((2, 3, 4), dtype=np.float32)
    images[0, 1, 2] = 1000.0
    lin = crosstalk_subtrahend(images, matrix, gains=[2.0, 1.0])
    both = crosstalk_subtrahend(images, matrix, gains={"A": 2.0, "B": 1.0}, quadratic=True)
    expected = np.zeros_like(images)
    expected[1, 1, 2] = 2.0
    np.testing.assert_allclose(lin, expected, atol=1e-6)
    expected[1, 1, 2] = 3.0
    np.testing.assert_allclose(both, expected, atol=1e-6)
    # The simulator adds the same signal to the raw integers, above each amplifier's bias level.
    raws = {"A": np.full((3, 4), 100.0, dtype=np.float32), "B": np.full((3, 4), 50.2, dtype=np.float32)}
    raws["A"][1, 2] = 1100.0
    inject_crosstalk(raws, matrix, bias_levels=[100.0, 50.0], gains=[2.0, 1.0])
    assert raws["B"].dtype == np.int32
    # 50.2 + 3 is digitised once: 53 (B's 0.2 adu above its bias gives A 0.5 * 0.2 = 0.1 adu).
    assert raws["B"][1, 2] == 53 and (raws["B"] == 50).sum() == 11
    assert raws["A"][1, 2] == 1100 and (raws["A"] == 100).sum() == 11


def test_flip_between_amplifiers_by_hand():
    # ITL R01_S01: C10 reads out at its upper right corner, C00 at its lower right (cameraGeom).
    # A spot at detector (x=100, y=2005) in C10 is readout pixel (y=3999-2005, x=508-100) of C10;
    # its ghost is the same readout pixel of C00, i.e. detector (x=508-408=100, y=0+1994): ip_isr's
    # y-flip of the source into the target's readout orientation (same x flip: none in x).
    ccd = get_camera()["R01_S01"].ccd_type
    full = load_crosstalk(get_camera()["R01_S01"])
    s, t = full.amp_names.index("C10"), full.amp_names.index("C00")
    c = np.zeros((16, 16))
    c[s, t] = 0.01
    matrix = CrosstalkMatrix(full.amp_names, c, np.zeros_like(c), "test")
    image = np.zeros(ccd.shape, dtype=np.float32)
    image[2005, 100] = 1000.0
    amps = split_ccd(image, ccd)
    stack = np.stack([amps[a] for a in matrix.amp_names])
    ghost = crosstalk_subtrahend(stack, matrix)
    assembled = assemble_ccd({a: ghost[k] for k, a in enumerate(matrix.amp_names)}, ccd)
    assert assembled[1994, 100] == pytest.approx(10.0)
    assert np.count_nonzero(assembled) == 1


def _raw_ccd(det_name: str, arrays: dict[str, np.ndarray]) -> RawCcd:
    det = get_camera()[det_name]
    amps = {lay.name: RawAmp(lay, Image(arrays[lay.name], yx0=(0, 0))) for lay in det.ccd_type.amps}
    return RawCcd(header={"EXPTIME": 1.0, "DARKTIME": 1.0}, detector=det, amps=amps)


@pytest.mark.parametrize("quadratic", [True, False])
def test_saturated_amp_ghost_removed(quadratic):
    # One e2v amplifier at full well (150 ke-), the others dark; crosstalk injected with the detector's
    # matrix, corrected by the ISR with the same matrix and gains.  Without the quadratic term the
    # residual is the quadratic term itself, q * (150 ke-)**2 / g.
    det = get_camera()["R22_S11"]
    ccd = det.ccd_type
    rng = np.random.default_rng(5)
    names = det.amp_names
    gains = {a: 1.4 + 0.02 * k for k, a in enumerate(names)}
    bias = {a: 15000.0 + 100 * k for k, a in enumerate(names)}
    source = "C13"
    well_e = 150000.0
    analogue = {}
    for a in names:
        arr = bias[a] + rng.normal(0.0, 5.0, ccd.raw_shape).astype(np.float32)
        if a == source:
            d = ccd.amp(a).raw.data_bbox
            arr[d.y.start : d.y.stop, d.x.start : d.x.stop] += well_e / gains[a]
        analogue[a] = arr
    clean = {a: np.rint(v).astype(np.int32) for a, v in analogue.items()}
    dirty = {a: v.copy() for a, v in analogue.items()}
    matrix = load_crosstalk(det)
    inject_crosstalk(dirty, matrix, [bias[a] for a in names], [gains[a] for a in names])

    # Serial overscan only: the per-column median of 40 integer parallel-overscan pixels jumps by
    # 0.5-1 adu in many columns when the sources' read noise, coupled at 1e-4, changes the rounding
    # of a few of them (~0.03 adu on the mean): ISR estimator noise, not crosstalk.
    def isr_task(crosstalk):
        task = EoIsrTask()
        task.config.doParallelOverscan = False
        task.config.doCrosstalk = crosstalk
        task.config.doCrosstalkSquared = quadratic
        return task

    reference = isr_task(False).run_ccd(_raw_ccd(det.name, clean), gains=gains)
    corrected = isr_task(True).run_ccd(_raw_ccd(det.name, dirty), gains=gains)
    uncorrected = isr_task(False).run_ccd(_raw_ccd(det.name, dirty), gains=gains)
    s = names.index(source)
    for k, a in enumerate(names):
        if a == source:
            continue
        lin_e = matrix.coeffs[s, k] * well_e
        sqr_e = matrix.coeffs_sqr[s, k] * well_e**2
        ghost = float(np.mean(uncorrected[a].image - reference[a].image))
        # The injected ghost is there (digitised with the signal: its mean survives to < 0.01 adu).
        print(a, ghost, (lin_e + sqr_e) / gains[a], float(np.mean(corrected[a].image - reference[a].image)))
        residual = float(np.mean(corrected[a].image - reference[a].image))
        left = 0.0 if quadratic else sqr_e / gains[a]
        assert residual == pytest.approx(left, abs=0.01), (a, ghost, residual)
    # The largest ghost (a nearest neighbour, > 10 adu) is removed to better than 0.1% with both terms.
    ghosts = {a: float(np.mean(uncorrected[a].image - reference[a].image)) for a in names if a != source}
    worst = max(ghosts, key=lambda a: abs(ghosts[a]))
    assert worst in ("C12", "C14") and abs(ghosts[worst]) > 10.0
    if quadratic:
        residual = float(np.mean(corrected[worst].image - reference[worst].image))
        assert abs(residual) < 1e-3 * abs(ghosts[worst])
    # The source is unchanged (no amplifier is its own source).
    np.testing.assert_allclose(corrected[source].image, uncorrected[source].image, atol=0.02)


def test_correction_needs_every_amplifier():
    det = get_camera()["R22_S11"]
    isr = EoIsrTask()
    isr.config.doCrosstalk = True
    images = {a: np.zeros((4, 4), dtype=np.float32) for a in det.amp_names[:3]}
    with pytest.raises(ValueError, match="needs every amplifier"):
        isr.correct_crosstalk(images, det, None)
    isr.config.doCrosstalk = False
    assert not isr.correct_crosstalk(images, det, None)


_PTC_PLAN = """
name: crosstalk_ptc
start: "2026-01-15T19:00:00"
crosstalk: {crosstalk}
defaults: {{filter: NONE, led: red}}
blocks:
  - {{name: ptc, imgtype: FLAT, testtype: PTC, pairs: true, flux: 10000.0,
     signal: {{logspace: [1000.0, 80000.0, 10]}}}}
"""


def test_ptc_gain_unbiased_with_crosstalk(tmp_path):
    # Ten flat pairs of R22_S11 with the measured crosstalk injected, extracted with the PTC's
    # crosstalk correction (linear, as cp_pipe's PTC ISR); the same run without crosstalk (same seed:
    # the same photon and read noise) as the paired reference.
    from lsst.eo.baseline.ptcExtract import EoPtcExtractTask
    from lsst.eo.baseline.ptcSolve import EoPtcSolveTask
    from lsst.eo.baseline.simulator.run import Simulation

    det = get_camera()["R22_S11"]
    amps = ["C12", "C13"]
    pairs = {}
    solved = {}
    for crosstalk in (True, False):
        path = tmp_path / f"plan_{crosstalk}.yaml"
        path.write_text(_PTC_PLAN.format(crosstalk=str(crosstalk).lower()))
        sim = Simulation(str(path), det.name, seed=11)
        task = EoPtcExtractTask()
        task.config.amps = amps
        task.config.isr.doCrosstalk = crosstalk
        tables = [
            task.run([sim.raw_handle(det.name, k), sim.raw_handle(det.name, k + 1)], det).pair
            for k in range(0, len(sim.exposures), 2)
        ]
        pairs[crosstalk] = tables
        summary = EoPtcSolveTask().run(tables, det).summary
        solved[crosstalk] = {r["amp"]: r for r in summary if r["amp"] in amps}
    truth = sim.detector_truth(det.name)
    matrix = load_crosstalk(det)
    for amp in amps:
        row = solved[True][amp]
        gain, err = row["ptc_gain_e_per_adu"], row["ptc_gain_err_e_per_adu"]
        assert 0 < err < 0.005
        assert gain == pytest.approx(truth.amp(amp).gain, abs=3 * err), (amp, gain, err)
        # Paired with the run without crosstalk the gain moves by far less than its error.
        assert gain == pytest.approx(solved[False][amp]["ptc_gain_e_per_adu"], abs=0.1 * err)
    # Per pair, after the linear correction the means differ from the crosstalk-free ones by the
    # uncorrected quadratic term only: sum_s q[s, t] mu_s**2 / g_t, with every source's mean mu_s
    # taken as the target's own (a flat field: responses within a few percent, hence the 20%).
    t_index = {a: k for k, a in enumerate(matrix.amp_names)}
    for with_xt, without in zip(pairs[True], pairs[False], strict=True):
        by_amp = {r["amp"]: r for r in without}
        for r in with_xt:
            amp = r["amp"]
            g_t = truth.amp(amp).gain
            mu_e = by_amp[amp]["raw_mean_adu"] * g_t
            quad = float(np.sum(matrix.coeffs_sqr[:, t_index[amp]])) * mu_e**2 / g_t
            delta = r["raw_mean_adu"] - by_amp[amp]["raw_mean_adu"]
            assert delta == pytest.approx(quad, abs=0.05 + 0.2 * abs(quad)), (
                amp,
                r["photo_charge"],
                delta,
                quad,
            )
            # The per-pair gain (statistical error ~1%) moves by < 0.1%: the quadratic residual and the
            # sources' read noise coupled into the target.
            assert r["gain_e_per_adu"] == pytest.approx(by_amp[amp]["gain_e_per_adu"], rel=1e-3)


def test_simulator_injects_the_matrix_per_plan():
    # b_protocol_demo injects crosstalk; the same exposure without it (same seed, same noise) gives
    # the ghost: in each target the mean of sum_s c[s, t] e_s / g_t over the sources' mean signals.
    from dataclasses import replace

    from lsst.eo.baseline.simulator.run import Simulation, simulate_ccd_arrays

    sim = Simulation("b_protocol_demo", "R22_S11", seed=2)
    index = next(
        i for i, e in enumerate(sim.exposures) if e.imgtype == "FLAT" and 2e4 < e.nominal_signal < 1e5
    )
    exposure = sim.exposures[index]
    assert exposure.crosstalk and not Simulation("b_protocol", "R22_S11").exposures[0].crosstalk
    truth = sim.detector_truth("R22_S11")
    states = sim.states("R22_S11")[index]
    with_xt = simulate_ccd_arrays(truth, exposure, states)
    without = simulate_ccd_arrays(truth, replace(exposure, crosstalk=False), states)
    alone = simulate_ccd_arrays(truth, exposure, states, amps=["C11"])
    assert list(alone) == ["C11"] and np.array_equal(alone["C11"], with_xt["C11"])
    matrix = load_crosstalk(truth.detector)
    layout = truth.detector.ccd_type.amp("C11")
    d = layout.raw.data_bbox
    gains = {a.amp: s.gain for a, s in zip(truth.amps, states, strict=True)}
    levels = {a.amp: a.bias_level + s.bias_drift for a, s in zip(truth.amps, states, strict=True)}
    signal_e = np.array(
        [
            (without[a][d.y.start : d.y.stop, d.x.start : d.x.stop].mean() - levels[a]) * gains[a]
            for a in matrix.amp_names
        ]
    )
    t = matrix.amp_names.index("C11")
    expected = (matrix.coeffs[:, t] @ signal_e + matrix.coeffs_sqr[:, t] @ signal_e**2) / gains["C11"]
    region = (slice(d.y.start, d.y.stop), slice(d.x.start, d.x.stop))
    ghost = float(np.mean(with_xt["C11"][region] - without["C11"][region].astype(np.float64)))
    # The per-pixel products average to the product of the means to << 1 % (flat sources).
    assert expected > 5.0
    assert ghost == pytest.approx(expected, rel=0.01)
