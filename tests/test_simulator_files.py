"""Simulator output: file format, headers, truth files, plans, determinism, CLI."""

from __future__ import annotations

import gzip
import json
import os

import fitsio
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.rawio import check_raw_file, read_raw
from lsst.eo.baseline.simulator import (
    Simulation,
    draw_detector_truth,
    list_plans,
    load_plan,
    load_truth,
    simulate,
)
from lsst.eo.baseline.simulator.cli import simulate_cmd
from lsst.eo.baseline.simulator.housekeeping import simulated_temperatures
from lsst.eo.baseline.simulator.plans import mjd
from lsst.eo.baseline.simulator.truth import A_MATRIX_SIZE, amp_table_row
from lsst.eo.baseline.translate import translate_header

HEADER_DIR = os.path.join(os.path.dirname(__file__), "data", "headers")
DETS = "R22_S11,R01_S01"  # one e2v, one ITL
N_EXP = 3


def _real_header(name: str) -> tuple[dict, dict]:
    path = os.path.join(HEADER_DIR, name)
    with open(path) as f:
        data = json.load(f) if name.endswith(".json") else yaml.safe_load(f)
    data.pop("__CONTENT__", None)
    primary, segment, target = {}, {}, None
    target = primary
    for key, value in data.items():
        if key == "XTENSION":
            target = segment
        target[key] = value
    return primary, segment


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sim"))
    paths = simulate("b_protocol_short", DETS, out, run="13600", seed=7, jobs=1, max_exposures=N_EXP)
    return out, paths


def test_files_and_layout(run_dir):
    out, paths = run_dir
    assert len(paths) == 2 * N_EXP
    plan = load_plan("b_protocol_short")
    for det in ("R22_S11", "R01_S01"):
        for e in plan.exposures[:N_EXP]:
            path = os.path.join(out, str(e.day_obs), e.obs_id, f"{e.obs_id}_{det}.fits")
            assert path in paths and os.path.isfile(path)


def test_raw_format(run_dir):
    _, paths = run_dir
    camera = get_camera()
    for path in paths:
        summary = check_raw_file(path)
        det = summary.detector
        with fitsio.FITS(path) as f:
            # 16 segments, then the camera's two header-only housekeeping tables.
            assert len(f) == 19
            assert [f[i].get_extname() for i in range(1, 17)] == [a.extname for a in det.ccd_type.amps]
            assert [f[i].get_extname() for i in (17, 18)] == ["REB_COND", "CONFIG_COND"]
            for i in range(1, 17):
                hdr = f[i].read_header()
                assert hdr["ZCMPTYPE"] == "RICE_1"
                assert (hdr["ZTILE1"], hdr["ZTILE2"]) == (576, 1)
                assert hdr["ZBITPIX"] == 32
                assert (hdr["ZNAXIS1"], hdr["ZNAXIS2"]) == (576, 2048)
            for i in range(1, 19):
                assert f[i].verify_checksum() is None  # raises if CHECKSUM/DATASUM are wrong
                assert "CHECKSUM" in f[i].read_header()
            for i in (17, 18):
                hdr = f[i].read_header()
                assert f[i].get_exttype() == "BINARY_TBL"
                assert (hdr["NAXIS1"], hdr["NAXIS2"], hdr["TFIELDS"]) == (0, 0, 0)
        assert summary.layout.housekeeping == [(17, "REB_COND"), (18, "CONFIG_COND")]
        raw = read_raw(path)
        for amp in raw.amps.values():
            assert amp.array.dtype == np.int32 and amp.array.shape == (2048, 576)
            assert 0 <= amp.array.min() and amp.array.max() <= 262143
        assert det.name in camera


def test_primary_header_has_real_keywords(run_dir):
    _, paths = run_dir
    itl_primary, _ = _real_header("lsstCam-MC_C_20231107_000078_R01_S01.json")
    e2v_primary, _ = _real_header("lsstCam_MC_C_20231125_000600_R12_S10.yaml")
    structural = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "CHECKSUM", "DATASUM"}
    wanted = (set(itl_primary) | set(e2v_primary)) - structural
    plan = load_plan("b_protocol_short")
    for path in paths:
        hdr = fitsio.read_header(path, 0)
        missing = wanted - set(hdr.keys())
        assert not missing, f"{path} lacks {sorted(missing)}"
        assert hdr["SIMULATE"] is True
        assert hdr["INSTRUME"] == "lsstCam" and hdr["TSTAND"] == "BOT" and hdr["HEADVER"] == 2
        assert hdr["RUNNUM"] == "13600"
        det = get_camera()[f"{hdr['RAFTBAY']}_{hdr['CCDSLOT']}"]
        assert hdr["CCD_MANU"] == det.vendor
        assert hdr["CCD_TYPE"] == {"ITL": "3800C", "E2V": "CCD250"}[det.vendor]
        assert hdr["DETSIZE"] == det.ccd_type.detsize()
        e = plan.exposures[hdr["SEQNUM"] - 1]
        assert hdr["OBSID"] == e.obs_id == f"MC_C_{hdr['DAYOBS']}_{hdr['SEQNUM']:06d}"
        assert hdr["FILENAME"] == os.path.basename(path)
        assert hdr["IMGTYPE"] == e.imgtype and hdr["TESTTYPE"] == e.testtype
        assert hdr["DARKTIME"] > hdr["EXPTIME"]
        # DATE-END - DATE-BEG = DARKTIME, as in the real headers
        assert abs((hdr["MJD-END"] - hdr["MJD-BEG"]) * 86400 - hdr["DARKTIME"]) < 2e-3
        assert hdr["CCOBLED"] is None  # biases: no LED
        lsst_num = draw_detector_truth(det, 7).lsst_num
        assert hdr["LSST_NUM"] == lsst_num


def test_headers_translate(run_dir):
    _, paths = run_dir
    for path in paths:
        hdr = read_raw(path, header_only=True)
        tr = translate_header(hdr)
        rec = tr.record
        assert not tr.warnings
        assert rec["id"] == int(hdr["DAYOBS"]) * 100000 + hdr["SEQNUM"]
        assert rec["observation_type"] == "bias" and rec["observation_reason"] == "bias"
        assert rec["science_program"] == "13600" and rec["physical_filter"] == "NONE"
        assert rec["has_simulated"] is True


def test_segment_headers_match_real_e2v(run_dir):
    _, paths = run_dir
    _, real_seg = _real_header("lsstCam_MC_C_20231125_000600_R12_S10.yaml")
    path = next(p for p in paths if p.endswith("R22_S11.fits"))
    seg = fitsio.read_header(path, "Segment10")
    for key in ("EXTNAME", "CHANNEL", "CCDSUM", "DATASEC", "DETSEC", "DETSIZE", "DTV1", "DTV2", "DTM1_1",
                "DTM2_2", "DTM1_2", "DTM2_1"):  # fmt: skip
        assert seg[key] == real_seg[key], key


def _real_housekeeping() -> dict[str, list[tuple[str, str]]]:
    """(keyword, comment) of the housekeeping HDUs of a real LSSTCam raw (obs_lsst test data)."""
    from astropy.io import fits

    path = os.path.join(HEADER_DIR, "30211212000310-R22-S22-det098.hdr.txt.gz")
    out = {}
    for block in gzip.open(path, "rt").read().split("END" + " " * 77 + "\n"):
        header = fits.Header.fromstring(block, sep="\n")
        if header.get("EXTNAME") in ("REB_COND", "CONFIG_COND"):
            skip = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS",
                    "CHECKSUM", "DATASUM", "EXTNAME"}  # fmt: skip
            out[header["EXTNAME"]] = [(c.keyword, c.comment) for c in header.cards if c.keyword not in skip]
    return out


def test_housekeeping_has_real_keywords(run_dir):
    _, paths = run_dir
    real = _real_housekeeping()
    assert set(real) == {"REB_COND", "CONFIG_COND"}
    for path in paths:
        with fitsio.FITS(path) as f:
            for extname, cards in real.items():
                got = [(r["name"], r["comment"]) for r in f[extname].read_header().records()]
                got = [g for g in got if g[0] not in ("CHECKSUM", "DATASUM")][-len(cards) :]
                # Same keywords in the same order, each with the camera's comment.
                assert [g[0] for g in got] == [c[0] for c in cards], extname
                assert [g[1].strip() for g in got] == [c[1].strip() for c in cards], extname


def test_housekeeping_temperatures_drift_smoothly(run_dir):
    """CCD temperature near the -100 C set point, drifting smoothly and deterministically.

    Bounds: the drift is 0.1 C x sin(2 pi t / 10 h) on a constant offset of at most 0.2 C, so
    |CCDTEMP + 100| <= 0.3 C, and its steepest slope is 0.1 x 2 pi / 600 min = 1.05e-3 C/min
    (plus 1e-4 C of rounding per step).  Over the whole short plan (hours), the temperature must
    move by more than the rounding.  REB board temperatures move with the same phase.
    """
    out, paths = run_dir
    for path in paths:
        raw = read_raw(path, amps=[])
        det = raw.detector
        expected = simulated_temperatures(raw.header["MJD-BEG"], det.name, det.raft, "13600", 7)
        for key, value in expected.items():
            assert raw.housekeeping["REB_COND"][key] == pytest.approx(value, abs=1e-9), key
    plan = load_plan("b_protocol_short")
    t = np.array([mjd(e.date(0.0)) for e in plan.exposures])
    for det, raft in (("R22_S11", "R22"), ("R01_S01", "R01")):
        temps = [simulated_temperatures(x, det, raft, "13600", 7) for x in t]
        ccd = np.array([x["CCDTEMP"] for x in temps])
        reb = np.array([x["TEMP1"] for x in temps])
        assert np.all(np.abs(ccd + 100.0) <= 0.3 + 1e-9)
        assert np.ptp(ccd) > 1e-3, "temperatures do not change over the run"
        minutes = np.diff(t) * 1440.0
        steps = np.abs(np.diff(ccd))
        assert np.all(steps <= 1.05e-3 * minutes + 2e-4), steps.max()
        big = steps > 1e-3  # steps well above the rounding: same direction for CCD and REB
        assert np.all(np.sign(np.diff(ccd))[big] == np.sign(np.diff(reb))[big])
        np.testing.assert_allclose(ccd - np.array([x["RTDTEMP"] for x in temps]), 5.8, atol=2e-4)
    # Deterministic per seed, different for another seed.
    again = simulated_temperatures(t[5], "R22_S11", "R22", "13600", 7)
    assert again == simulated_temperatures(t[5], "R22_S11", "R22", "13600", 7)
    assert again != simulated_temperatures(t[5], "R22_S11", "R22", "13600", 8)


def _parse_sec(sec: str) -> tuple[int, int, int, int]:
    x, y = sec.strip("[]").split(",")
    x0, x1 = (int(v) for v in x.split(":"))
    y0, y1 = (int(v) for v in y.split(":"))
    return x0, x1, y0, y1


def test_segment_dtv_maps_datasec_onto_detsec(run_dir):
    """For every segment of both vendors, DTV/DTM map the DATASEC corners onto the DETSEC corners."""
    _, paths = run_dir
    for path in (p for p in paths if p.endswith(("R22_S11.fits", "R01_S01.fits"))):
        with fitsio.FITS(path) as f:
            for i in range(1, 17):
                h = f[i].read_header()
                dx0, dx1, dy0, dy1 = _parse_sec(h["DATASEC"])
                tx0, tx1, ty0, ty1 = _parse_sec(h["DETSEC"])
                assert h["DTM1_1"] * dx0 + h["DTV1"] == tx0 and h["DTM1_1"] * dx1 + h["DTV1"] == tx1
                assert h["DTM2_2"] * dy0 + h["DTV2"] == ty0 and h["DTM2_2"] * dy1 + h["DTV2"] == ty1
        break


def test_truth_files(run_dir):
    out, paths = run_dir
    truth = load_truth(out)
    idx = truth.index
    assert idx["seed"] == 7 and idx["run"] == "13600" and idx["plan"]["name"] == "b_protocol_short"
    assert idx["detectors"] == ["R01_S01", "R22_S11"]
    assert len(truth.amps) == 32 and len(truth.files) == 2 * N_EXP
    assert sorted(os.path.join(out, p) for p in truth.files["path"]) == sorted(paths)
    assert len(truth.exposures) == N_EXP
    for det in ("R22_S11", "R01_S01"):
        drawn = draw_detector_truth(det, 7)
        back = truth.detector(det)
        for a, b in zip(drawn.amps, back.amps, strict=True):
            ra, rb = amp_table_row(a), amp_table_row(b)
            for key, value in ra.items():
                np.testing.assert_array_equal(value, rb[key], err_msg=key)
        assert back.defects == drawn.defects
        assert truth.amp(det, "C11").gain == drawn.amp("C11").gain
        ea = truth.exposure_amps(det)
        assert len(ea) == 16 * N_EXP
        assert set(ea.colnames) >= {
            "exposure_id",
            "amp",
            "bias_drift",
            "gain",
            "photo_e",
            "dark_e",
            "persistence_e",
        }
        assert len(truth.defects(det)) == len(drawn.defects)
        assert truth.detectors[det].name == det and truth.detectors[det].amps[0].gain == drawn.amps[0].gain
    assert list(truth.detectors) == ["R01_S01", "R22_S11"] and len(truth.detector_table) == 2


def test_determinism_across_jobs_and_selection(run_dir, tmp_path):
    """Pixels depend only on (seed, plan, detector, exposure): not on -j nor on the detector list.

    The reference run simulated two detectors in one process; this one simulates one of them
    alone with two worker processes.
    """
    out, _ = run_dir
    out2 = str(tmp_path / "j2")
    paths2 = simulate("b_protocol_short", "R01_S01", out2, run="13600", seed=7, jobs=2, max_exposures=2)
    assert len(paths2) == 2
    for p in paths2:
        ref = os.path.join(out, os.path.relpath(p, out2))
        a, b = read_raw(ref), read_raw(p)
        assert a.header == b.header
        assert a.housekeeping == b.housekeeping
        for name in a.amps:
            np.testing.assert_array_equal(a.amps[name].array, b.amps[name].array)


def test_different_seed_differs():
    a = Simulation("b_protocol_short", "R22_S11", seed=1).simulate_exposure("R22_S11", 0, amps=["C10"])
    b = Simulation("b_protocol_short", "R22_S11", seed=2).simulate_exposure("R22_S11", 0, amps=["C10"])
    assert not np.array_equal(a["C10"], b["C10"])


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


def _check_plan_invariants(plan):
    exps = plan.exposures
    assert [e.index for e in exps] == list(range(len(exps)))
    ids = [e.exposure_id for e in exps]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for a, b in zip(exps, exps[1:], strict=False):
        assert b.t_beg >= a.t_end + 2.0  # readout between exposures
    for e in exps:
        assert e.darktime > e.exptime or (e.exptime == 0 and e.darktime > 0)
        assert abs(e.t_end - e.t_beg - e.darktime) < 1e-9
        assert (e.led is None) == (not e.has_light)
    pairs: dict[int, list] = {}
    for e in exps:
        if e.pair >= 0:
            pairs.setdefault(e.pair, []).append(e)
    for members in pairs.values():
        assert len(members) == 2
        a, b = members
        assert a.exptime == b.exptime and b.seq_num == a.seq_num + 1
        assert a.imgtype == "FLAT" and a.testtype == "PTC"
    return pairs


def test_shipped_plans():
    assert {"b_protocol", "ptc", "b_protocol_short", "ptc_short"} <= set(list_plans())
    b = load_plan("b_protocol")
    counts = b.summary()
    assert counts["BIAS/BIAS"] >= 15 and counts["DARK/DARK"] >= 8
    assert 30 <= counts["FLAT/PTC"] // 2 <= 60 and counts["FLAT/GAIN_STABILITY"] >= 20
    assert {e.led for e in b.exposures if e.testtype == "LAMBDA"} == {
        "uv",
        "blue",
        "red",
        "nm750",
        "nm850",
        "nm960",
    }
    assert len({e.exptime for e in b.exposures if e.imgtype == "DARK" and e.testtype == "DARK"}) >= 2
    # persistence: a saturating flat, then darks only
    pers = [e for e in b.exposures if e.testtype == "PERSISTENCE"]
    flat = [i for i, e in enumerate(pers) if e.imgtype == "FLAT"]
    assert len(flat) == 1 and all(e.imgtype == "DARK" for e in pers[flat[0] + 1 :])
    assert pers[flat[0]].nominal_signal > 5 * 1.8e5  # far above any full well
    assert len(pers) - flat[0] - 1 >= 8
    _check_plan_invariants(b)
    stab = [e for e in b.exposures if e.testtype == "GAIN_STABILITY"]
    assert stab[0].stability_phase == 0.0 and stab[-1].stability_phase == 1.0

    p = load_plan("ptc")
    pairs = _check_plan_invariants(p)
    assert len(pairs) >= 200
    signals = np.array([pairs[k][0].nominal_signal for k in sorted(pairs)])
    assert np.all(np.diff(signals) > 0)
    steps = signals[1:] / signals[:-1]
    assert steps.max() < 1.035  # log-spaced: every step <= 3.5 %
    # up to ~2x the largest drawn full well (1.8e5 e- at most)
    assert signals.max() >= 1.6 * 1.8e5
    for name in ("b_protocol_short", "ptc_short"):
        _check_plan_invariants(load_plan(name))


def test_plan_truncation_keeps_timeline():
    full = load_plan("b_protocol")
    short = load_plan("b_protocol", max_exposures=5)
    assert len(short) == 5 and short.exposures == full.exposures[:5]


def test_a_matrix_and_turnoffs_consistent():
    for det in ("R22_S11", "R01_S01", "R10_S22", "R33_S00"):
        truth = draw_detector_truth(det, 3)
        for a in truth.amps:
            m = a.a_matrix
            assert m.shape == (A_MATRIX_SIZE, A_MATRIX_SIZE)
            mult = np.where(np.arange(A_MATRIX_SIZE) > 0, 2, 1)
            assert abs(np.sum(m * mult[:, None] * mult[None, :])) < 1e-12  # charge conservation
            assert (m[0, 0], m[1, 0], m[0, 1]) == (a.a00, a.a10, a.a01)
            s_lin = a.linearity_turnoff_adu * a.gain / 0.99
            assert abs(1 - a.nonlinear(s_lin) / s_lin - 0.01) < 1e-9
            assert s_lin < a.full_well
            assert a.ptc_turnoff_adu == pytest.approx(a.full_well / a.gain)
            if a.vendor == "E2V":
                assert -3.0e-6 <= a.a00 <= -2.5e-6 and a.divisadero_tearing == 0
        assert sum(a.serial_cti >= 5e-6 for a in truth.amps) >= 2  # CTI recovery can be tested


def test_cli(tmp_path):
    out = str(tmp_path / "cli")
    result = CliRunner().invoke(
        simulate_cmd,
        [
            "--plan",
            "ptc_short",
            "--detectors",
            "R22_S11",
            "--seed",
            "3",
            "--out",
            out,
            "--max-exposures",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    truth = load_truth(out)
    assert truth.index["plan"]["name"] == "ptc_short" and len(truth.files) == 1
    assert os.path.isfile(os.path.join(out, truth.files["path"][0]))
    bad = CliRunner().invoke(simulate_cmd, ["--plan", "nope", "--out", out])
    assert bad.exit_code != 0 and "No plan" in bad.output
