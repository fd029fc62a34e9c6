"""Several runs side by side (runCompare) and their report section, on hand-made summaries."""

import os

import numpy as np
import pytest
from astropy.table import Table

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.metrics import load_metrics
from lsst.eo.baseline.report import build_report
from lsst.eo.baseline.runCompare import (
    DETECTOR_MEANS,
    DETECTOR_SUMS,
    GeometryMismatchError,
    check_geometry,
    compare_runs,
    condense_amp_list,
    load_runs,
    parse_compare_option,
    resolve_source,
    to_detector_level,
)
from lsst.eo.baseline.runSummary import build_run_summary

METRICS = {m.name: m for m in load_metrics()}
DETS = ["R22_S11", "R22_S12", "R01_S01", "R01_S02"]  # two e2v, two ITL


def _truth(seed):
    """Per-detector truth: read noise (e-) and PTC turnoff (e-) of every amplifier."""
    rng = np.random.default_rng(seed)
    camera = get_camera()
    return {
        name: {
            "read_noise_e": rng.uniform(5.0, 7.0, 16),
            "ptc_turnoff_e": rng.uniform(95000.0, 150000.0, 16),
        }
        for name in DETS
        if camera[name]
    }


def _summary(truth, dets=DETS):
    camera = get_camera()
    tables = {"eoReadNoise": {}, "eoPtcSummary": {}}
    for name in dets:
        det = camera[name]
        tables["eoReadNoise"][det.id] = Table(
            {"amp": det.amp_names, "read_noise_e": truth[name]["read_noise_e"]}
        )
        tables["eoPtcSummary"][det.id] = Table(
            {"amp": det.amp_names, "ptc_turnoff_e": truth[name]["ptc_turnoff_e"]}
        )
    return build_run_summary(tables)


def _copy(truth):
    return {d: {k: v.copy() for k, v in cols.items()} for d, cols in truth.items()}


@pytest.fixture(scope="module")
def three_runs():
    """Run A (reference), run B with injected changes, run C = A within tolerance, one CCD missing."""
    a = _truth(1)
    b = _copy(a)
    # Everything moves by 0.1% (within every tolerance) ...
    for cols in b.values():
        for v in cols.values():
            v *= 1.001
    # ... except the injected changes.
    b["R22_S11"]["read_noise_e"][3] = a["R22_S11"]["read_noise_e"][3] * 1.2  # +20% > 5%
    b["R01_S01"]["ptc_turnoff_e"][5] = 85000.0  # newly below 90000 e-
    a["R01_S02"]["ptc_turnoff_e"][7] = 85000.0  # out in A ...
    b["R01_S02"]["ptc_turnoff_e"][7] = 100000.0  # ... back in in B
    c = _copy(a)
    c["R22_S12"]["read_noise_e"] *= 1.0 + 0.02  # within 5%
    return {"A": _summary(a), "B": _summary(b), "C": _summary(c, dets=DETS[:1] + DETS[2:])}


def test_injected_changes_and_only_those_are_flagged(three_runs):
    camera = get_camera()
    e2v, itl1, itl2 = camera["R22_S11"], camera["R01_S01"], camera["R01_S02"]
    c = compare_runs(three_runs, [METRICS["read_noise"], METRICS["ptc_turnoff"]])
    assert c["labels"] == ["A", "B", "C"] and c["reference"] == "A" and c["level"] == "amp"
    rn, to = c["metrics"]["read_noise"], c["metrics"]["ptc_turnoff"]
    assert rn["exceeds"]["B"] == [f"R22_S11 {e2v.amp_names[3]}"]
    assert rn["exceeds"]["C"] == []
    assert sorted(to["exceeds"]["B"]) == sorted(
        [f"R01_S01 {itl1.amp_names[5]}", f"R01_S02 {itl2.amp_names[7]}"]
    )
    assert to["newly_out"]["B"] == [f"R01_S01 {itl1.amp_names[5]}"]
    assert to["back_in"]["B"] == [f"R01_S02 {itl2.amp_names[7]}"]
    assert rn["newly_out"]["B"] == [] and to["newly_out"]["C"] == [] and to["back_in"]["C"] == []
    # Run C lacks R22_S12: its 16 amplifiers are missing from C, and from no other run.
    assert sorted(rn["missing"]["C"]) == sorted(f"R22_S12 {a}" for a in camera["R22_S12"].amp_names)
    assert rn["missing"]["A"] == [] and rn["missing"]["B"] == []
    changes = rn["changes"]["B"]
    assert len(changes) == 64 and int(changes["exceeds"].sum()) == 1
    np.testing.assert_allclose(changes["change"], changes["value"] - changes["reference"])
    assert len(rn["changes"]["C"]) == 48


def test_side_by_side_statistics_are_numpy_percentiles(three_runs):
    c = compare_runs(three_runs, [METRICS["read_noise"]], reference="B")
    assert c["reference"] == "B"
    stats = c["metrics"]["read_noise"]["stats"]
    for label, table in three_runs.items():
        for vendor in ("E2V", "ITL"):
            values = np.asarray(table["read_noise"])[np.asarray(table["vendor"]) == vendor]
            row = stats[(stats["run"] == label) & (stats["vendor"] == vendor)][0]
            p5, med, p95 = np.percentile(values, [5, 50, 95])
            assert row["n"] == values.size
            assert row["median"] == pytest.approx(med) and row["p5"] == pytest.approx(p5)
            assert row["p95"] == pytest.approx(p95)
            assert row["n_out"] == int((values > 9.0).sum())


def test_geometry_mismatch_names_the_detector(three_runs):
    bad = three_runs["B"].copy()
    bad["vendor"][bad["det_name"] == "R22_S12"] = "ITL"
    with pytest.raises(GeometryMismatchError, match="R22_S12") as err:
        compare_runs({"A": three_runs["A"], "B": bad}, [METRICS["read_noise"]])
    assert "R22_S11" not in str(err.value)
    renamed = three_runs["B"].copy()
    renamed["amp"][(renamed["det_name"] == "R01_S01") & (renamed["amp"] == "C10")] = "C99"
    with pytest.raises(GeometryMismatchError, match=r"detector \d+ .*amplifiers C10,C99"):
        check_geometry({"A": three_runs["A"], "B": renamed})


def test_definition_difference_is_a_note_not_a_difference(three_runs):
    eo_pipe = three_runs["B"].copy()
    eo_pipe.meta["SUMMARY_SOURCE"] = "eo_pipe"
    eo_pipe.meta["DEFINITION_NOTES"] = {"ptc_turnoff": "converted with another gain"}
    c = compare_runs({"A": three_runs["A"], "P": eo_pipe}, [METRICS["read_noise"], METRICS["ptc_turnoff"]])
    assert "P" not in c["metrics"]["ptc_turnoff"]["changes"]
    assert "converted with another gain" in c["metrics"]["ptc_turnoff"]["notes"][0]
    assert len(c["metrics"]["ptc_turnoff"]["stats"]) == 4  # still side by side
    assert len(c["metrics"]["read_noise"]["exceeds"]["P"]) == 1  # same definition: differenced


def test_per_ccd_run_compares_summed_counts():
    camera = get_camera()
    det = camera["R22_S11"]
    pixels = np.arange(16, dtype=float)
    amp_run = build_run_summary(
        {
            "eoBrightDefects": {
                det.id: Table({"amp": det.amp_names, "bright_pixels": pixels, "bright_columns": np.ones(16)})
            }
        }  # fmt: skip
    )
    per_ccd = to_detector_level(amp_run)
    assert len(per_ccd) == 1 and per_ccd["bright_pixels"][0] == pixels.sum() == 120
    assert per_ccd["bright_columns"][0] == 16
    ccd = Table({"detector": [det.id], "det_name": [det.name], "vendor": ["E2V"], "amp": [""],
                 "bright_pixels": [300.0], "bright_columns": [16.0]})  # fmt: skip
    ccd.meta["LEVEL"] = "detector"
    c = compare_runs({"old": ccd, "new": amp_run}, load_metrics())
    assert c["level"] == "detector"
    assert set(c["metrics"]) == set(DETECTOR_SUMS + DETECTOR_MEANS)
    assert c["metrics"]["bright_pixels"]["changes"]["new"]["change"][0] == pytest.approx(120 - 300)
    assert c["metrics"]["bright_pixels"]["exceeds"]["new"] == ["R22_S11"]  # |-180| > 100
    assert c["metrics"]["bright_columns"]["exceeds"]["new"] == []  # no change


def test_compare_option_forms(tmp_path):
    assert parse_compare_option("u/eo/13550") == ("u/eo/13550", "u/eo/13550")
    assert parse_compare_option("Run 6=u/eo/13550") == ("Run 6", "u/eo/13550")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert resolve_source("old", f"{repo}:u/eo/1").kind == "repository"
    assert resolve_source("old", f"{repo}:u/eo/1").collections == ("u/eo/1",)
    assert resolve_source("old", "u/eo/1,u/eo/2").collections == ("u/eo/1", "u/eo/2")
    f = tmp_path / "s.ecsv"
    f.write_text("")
    assert resolve_source("old", str(f)).kind == "file"
    with pytest.raises(FileNotFoundError):
        resolve_source("old", str(tmp_path / "missing.parquet"))
    assert condense_amp_list(["R22_S11 C10", "R22_S11 C11", "R01_S01 C00"]) == "R22_S11 C10 C11, R01_S01 C00"


def test_report_shows_three_runs(tmp_path, three_runs):
    runs, where = load_runs({"A": three_runs["A"], "B": three_runs["B"]})
    assert list(runs) == ["A", "B"] and where["A"] == "summary table"
    out = tmp_path / "report"
    result = build_report(None, "C", str(out), compare=runs, summary=three_runs["C"])
    comp = result.comparison
    assert comp["labels"] == ["A", "B", "C"]
    assert comp["metrics"]["read_noise"]["exceeds"]["B"] == [
        f"R22_S11 {get_camera()['R22_S11'].amp_names[3]}"
    ]
    text = (out / "index.html").read_text()
    assert "Differences from previous runs" in text and "newly out of requirement" in text
    assert "LCA-57 CCD-007" in text or "SITCOMTN-148 Table 6" in text
    images = set(os.listdir(out / "images"))
    # Three runs measured: a trend plot; difference map and histogram for B and C against A.
    assert {"eoFpTrendReadNoise.png", "eoFpDiffReadNoise_B.png",
            "eoFpDiffHistReadNoise_C.png"} <= images  # fmt: skip


def test_requirements_carry_their_sources(tmp_path):
    for m in METRICS.values():
        assert m.spec_source, m.name  # a source, or the statement that there is no requirement
        if not m.has_requirement:
            assert m.spec_source.startswith("no requirement"), m.name
    assert "CCD-007" in METRICS["read_noise"].requirement_text()
    assert METRICS["dark_current_95"].requirement_text() == (
        "<= 0.2 (95th percentile < 0.2 e-/pix/s, LCA-57 CCD-014 (EOTP))"
    )
    assert (
        METRICS["total_defect_fraction"].spec_max == 0.005
        and "CCD-012" in METRICS["total_defect_fraction"].spec_source
    )
    assert not METRICS["ptc_noise"].has_requirement and not METRICS["bright_defect_fraction"].has_requirement
    override = tmp_path / "specs.yaml"
    override.write_text("metrics:\n  read_noise: {spec: {max: 8.0}}\n")
    rn = {m.name: m for m in load_metrics(str(override))}["read_noise"]
    assert rn.spec_max == 8.0 and rn.spec_source == f"overridden by {override}"


def test_report_with_one_previous_run_keeps_its_image_names(tmp_path, three_runs):
    result = build_report(None, "B", str(tmp_path / "r"), compare={"A": three_runs["A"]},
                          summary=three_runs["B"])  # fmt: skip
    assert result.comparison["labels"] == ["A", "B"]
    images = set(os.listdir(tmp_path / "r" / "images"))
    assert {"eoFpDiffReadNoise.png", "eoFpDiffHistReadNoise.png"} <= images
    assert not any("Trend" in name for name in images)  # two runs: no trend plot
