"""The technote format of the report: skeleton headings, generated prose, Background table, Sphinx build."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.metrics import load_metrics
from lsst.eo.baseline.plotTasks import mosaic_dataset_name
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.report import metric_statistics
from lsst.eo.baseline.runSummary import build_run_summary
from lsst.eo.baseline.technote import (
    METRIC_TABLE_HEADER,
    acquisition_runs_of,
    background_table,
    build_technote,
    comparison_table,
    exposure_census,
    flat_pair_density,
    metric_paragraph,
    metric_table,
    query_exposures,
    rst_headings,
)

from tests.rawfactory import make_raw

SKELETON = os.path.join(
    os.path.dirname(__file__), "data", "technote", "baseline_characterization_technote.rst"
)
METRICS = {m.name: m for m in load_metrics()}
E2V, ITL = get_camera()["R22_S11"], get_camera()["R01_S01"]

# Acquisition runs written as raw files: (seqnum, IMGTYPE, TESTTYPE, EXPTIME, CCOBFLUX or None).
B_RUN = [
    (1, "BIAS", "BIAS", 0.0, None),
    (2, "BIAS", "BIAS", 0.0, None),
    (3, "DARK", "DARK", 30.0, None),
    (4, "DARK", "DARK", 30.0, None),
    (5, "FLAT", "PTC", 1.0, 100.0),
    (6, "FLAT", "PTC", 1.0, 100.0),
    (7, "FLAT", "PTC", 4.0, 100.0),
    (8, "FLAT", "PTC", 4.0, 100.0),
    (9, "FLAT", "PTC", 16.0, 400.0),
    (10, "FLAT", "PTC", 16.0, 400.0),
    (11, "FLAT", "GAIN_STABILITY", 10.0, 100.0),
    (12, "FLAT", "LAMBDA", 10.0, 100.0),
    (13, "FLAT", "PERSISTENCE", 20.0, 5000.0),
    (14, "DARK", "PERSISTENCE", 15.0, None),
]
PTC_RUN = [(20, "BIAS", "BIAS", 0.0, None)] + [
    (21 + 2 * i + k, "FLAT", "PTC", t, 1000.0) for i, t in enumerate((1.0, 2.0, 4.0, 8.0)) for k in (0, 1)
]


def _summary(read_noise_e2v, read_noise_itl, gain=1.5):
    """Run summary of two detectors with read noise and PTC gain (per amp values given)."""
    return build_run_summary(
        {
            "eoReadNoise": {
                E2V.id: Table({"amp": E2V.amp_names, "read_noise_e": read_noise_e2v}),
                ITL.id: Table({"amp": ITL.amp_names, "read_noise_e": read_noise_itl}),
            },
            "eoPtcSummary": {
                det.id: Table({"amp": det.amp_names, "ptc_gain_e_per_adu": np.full(16, gain)})
                for det in (E2V, ITL)
            },
        }
    )


E2V_NOISE = np.linspace(5.0, 11.0, 16)  # amps above 9 e- fail
ITL_NOISE = np.linspace(4.0, 7.0, 16)  # none fails


def test_skeleton_headings_are_parsed():
    headings = rst_headings(open(SKELETON).read())
    assert headings[0] == (0, "Baseline characterization")
    top = [t for level, t in headings if level == 1]
    assert top[0] == "Background" and top[-1] == "Differences from previous runs" and len(top) == 7
    assert sum(level == 2 for level, _ in headings) == 15


def test_metric_paragraph_states_the_numbers():
    summary = _summary(E2V_NOISE, ITL_NOISE)
    m = METRICS["read_noise"]
    text = metric_paragraph(m, metric_statistics(summary, m))
    found = re.search(
        r"median is ([\d.]+) e- for the (\d+) ITL amplifiers \(5th to 95th percentile ([\d.]+) to ([\d.]+)\) "
        r"and ([\d.]+) e- for the (\d+) e2v amplifiers",
        text,
    )
    assert found, text
    assert float(found[1]) == pytest.approx(np.median(ITL_NOISE), rel=1e-3) and int(found[2]) == 16
    assert float(found[3]) == pytest.approx(np.percentile(ITL_NOISE, 5), rel=1e-3)
    assert float(found[4]) == pytest.approx(np.percentile(ITL_NOISE, 95), rel=1e-3)
    assert float(found[5]) == pytest.approx(np.median(E2V_NOISE), rel=1e-3) and int(found[6]) == 16
    failing = [f"R22_S11 {a}" for a, v in zip(E2V.amp_names, E2V_NOISE, strict=True) if v > 9.0]
    count = re.search(r"(\d+) of the (\d+) measured amplifiers fail the requirement \((.*?)\): (.*)\.$", text)
    assert count, text
    assert int(count[1]) == len(failing) and int(count[2]) == 32
    assert count[4].split(", ") == failing
    # The requirement is stated with its source (data/metrics.yaml spec.source).
    assert count[3] == f"<= 9 e-; source: {m.spec_source}"
    # No requirement: said so, with the source's words, and no count.
    g = METRICS["ptc_gain"]
    assert g.spec_source.startswith("no requirement")
    gain_text = metric_paragraph(g, metric_statistics(summary, g))
    assert gain_text.endswith(" N" + g.spec_source[1:] + ".") and "fail" not in gain_text
    # Every amp within the requirement; a metric with no data.
    ok = _summary(ITL_NOISE, ITL_NOISE)
    assert "All 32 measured amplifiers meet the requirement" in metric_paragraph(m, metric_statistics(ok, m))
    c = METRICS["serial_cti"]
    assert "no amplifier has a value" in metric_paragraph(c, metric_statistics(summary, c))


def test_metric_paragraph_lists_a_bounded_number():
    summary = _summary(np.full(16, 12.0), np.full(16, 12.0))
    m = METRICS["read_noise"]
    text = metric_paragraph(m, metric_statistics(summary, m), max_listed=5)
    assert "32 of the 32 measured amplifiers fail" in text and text.endswith("and 27 more.")


def test_metric_table_rows():
    summary = _summary(E2V_NOISE, ITL_NOISE)
    rows = metric_table(summary, [METRICS["read_noise"], METRICS["serial_cti"]])
    assert all(len(r) == len(METRIC_TABLE_HEADER) for r in rows)
    itl, e2v, cti = rows
    assert itl[1] == "ITL" and float(itl[3]) == pytest.approx(np.median(ITL_NOISE), rel=1e-3)
    assert e2v[1] == "e2v" and int(e2v[8]) == int((E2V_NOISE > 9).sum()) and itl[8] == "0"
    assert itl[6] == "<= 9" and itl[7] == METRICS["read_noise"].spec_source
    assert cti[2] == "0" and cti[3] == "--" and cti[7] == METRICS["serial_cti"].spec_source
    gain = metric_table(_summary(E2V_NOISE, ITL_NOISE), [METRICS["ptc_gain"]])[0]
    assert gain[6] == "none" and gain[7] == METRICS["ptc_gain"].spec_source and gain[8] == "--"


def test_flat_pair_density_by_hand():
    records = Table(
        rows=[(s, "13600", t.lower(), r.lower(), e, np.nan if f is None else f) for s, t, r, e, f in B_RUN],
        names=(
            "exposure",
            "science_program",
            "observation_type",
            "observation_reason",
            "exposure_time",
            "flux",
        ),
    )
    d = flat_pair_density(records)
    # Pairs (5,6) (7,8) (9,10): illuminations 100, 400, 6400.
    assert d["n_pairs"] == 3 and d["basis"] == "illumination"
    assert (d["level_min"], d["level_max"]) == (100.0, 6400.0)
    assert d["per_decade"] == pytest.approx(3 / math.log10(64.0))
    assert (d["exptime_min"], d["exptime_max"]) == (1.0, 16.0)
    records["flux"][4] = np.nan  # flux unknown for one pair: exposure time stands in
    d = flat_pair_density(records)
    assert d["basis"] == "exposure time" and d["per_decade"] == pytest.approx(3 / math.log10(16.0))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository with a small B protocol (run 13600) and a dense PTC run (13601), one detector."""
    top = tmp_path_factory.mktemp("technote")
    raws = top / "raws"
    for run, specs in (("13600", B_RUN), ("13601", PTC_RUN)):
        for seq, imgtype, testtype, exptime, flux in specs:
            make_raw(
                str(raws / f"{run}_{seq:03d}.fits"),
                detector="R22_S11",
                seqnum=seq,
                imgtype=imgtype,
                testtype=testtype,
                runnum=run,
                exptime=exptime,
                signal=1000.0 if imgtype == "FLAT" else 0.0,
                overrides={"CCOBFLUX": flux},
                seed=seq,
            )
    path = str(top / "repo")
    butler = create_repo(path)
    report = ingest_raws(butler, [str(raws)], progress=False)
    assert report.ok, report.bad
    return path


def test_background_counts_match_the_registry(repo):
    from lsst.daf.butler import Butler

    butler = Butler.from_config(repo)
    records = query_exposures(butler, ["13600", "13601"])
    assert len(records) == len(B_RUN) + len(PTC_RUN)
    census = exposure_census(records)
    # Worked out from what was written, by the run-type selection rules.
    assert census["13600"] == {
        "bias": 2,
        "dark": 2,
        "flat_pair": 6,
        "stability_flat": 1,
        "wavelength_flat": 1,
        "persistence": 2,
        "other": 0,
    }
    assert census["13601"]["bias"] == 1 and census["13601"]["flat_pair"] == 8
    assert sum(census["13601"].values()) == 9
    header, rows = background_table(records)
    assert header[1:] == ["B protocol (run 13600)", "dense PTC (run 13601)"]
    table = {r[0]: r[1:] for r in rows}
    assert table["Bias images"] == ["2", "1"] and table["Flat-pair exposures"] == ["6", "8"]
    assert table["Persistence exposures"] == ["2", "0"] and table["Flat pairs"] == ["3", "4"]
    # Flux from eoExposureInfo (CCOBFLUX): 100..6400 and 1000..8000.
    assert table["Flat-pair illumination (CCOBFLUX x EXPTIME)"] == ["100 to 6400", "1000 to 8000"]
    per_decade = [float(v) for v in table["Flat pairs per decade of illumination"]]
    assert per_decade == pytest.approx([3 / math.log10(64), 4 / math.log10(8)], rel=1e-3)
    assert acquisition_runs_of(butler, ["u/eo/13600", "LSSTCam/raw/all"]) == ["13600"]


def test_technote_headings_and_sphinx_build(repo, tmp_path):
    out = str(tmp_path / "note")
    summary = _summary(E2V_NOISE, ITL_NOISE)
    previous = _summary(E2V_NOISE, ITL_NOISE, gain=1.2)
    result = build_technote(
        repo,
        "LSSTCam/raw/all",
        out,
        compare="u/eo/previous",
        summary=summary,
        previous=previous,
        acquisition_runs=["13600", "13601"],
    )
    for name in ("technote.toml", "conf.py", "index.rst"):
        assert os.path.exists(os.path.join(out, name)), name
    text = open(result.index).read()
    assert rst_headings(text) == rst_headings(open(SKELETON).read())
    # The generated read-noise paragraph, its table and both figures are in the document.
    assert metric_paragraph(METRICS["read_noise"], metric_statistics(summary, METRICS["read_noise"])) in text
    for kind in ("Mosaic", "Hist"):
        assert f".. figure:: figures/{mosaic_dataset_name('read_noise', kind)}.png" in text
    assert result.n_figures == len(os.listdir(os.path.join(out, "figures")))
    assert "B protocol (run 13600)" in text
    assert "PTC gain (e-/adu)" in text.split("Differences from previous runs")[-1]
    sphinx = os.path.join(os.path.dirname(sys.executable), "sphinx-build")
    run = subprocess.run(
        [sphinx, "-W", "--keep-going", "-q", "-b", "html", ".", "_build/html"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    html = open(os.path.join(out, "_build", "html", "index.html")).read()
    for title in ("Divisidero Tearing", "Brighter fatter a_00 coefficient", "Differences from previous runs"):
        assert title in html


def test_metric_entries_parse_whole():
    """A label with a comma, unquoted in a YAML flow mapping, would be cut and leave a stray key."""
    import yaml

    from lsst.eo.baseline.paths import package_data

    with open(package_data("metrics.yaml")) as f:
        raw = yaml.safe_load(f)["metrics"]
    for name, entry in raw.items():
        stray = [k for k in entry if not str(k).isidentifier()]
        assert not stray, (name, stray)
        assert entry["label"].count("(") == entry["label"].count(")"), name


def _list_tables(text):
    """``{caption: rows}`` of the list-tables of a reStructuredText text (cells as written)."""
    tables, caption, rows = {}, None, []
    for line in text.splitlines() + [""]:
        if line.startswith(".. list-table:: "):
            caption, rows = line[len(".. list-table:: ") :], []
        elif caption is not None and line.startswith("   * - "):
            rows.append([line[len("   * - ") :]])
        elif caption is not None and line.startswith("     - "):
            rows[-1].append(line[len("     - ") :])
        elif caption is not None and rows and not line.strip():
            tables[caption], caption = rows, None
    return tables


def _three_runs():
    """Run 6, Run 7 initial and this run (Run 7 final), with known changes of read noise."""
    run6 = _summary(E2V_NOISE, ITL_NOISE)
    # Within the 5% tolerance everywhere, and no amplifier crosses 9 e-; one amp not measured.
    initial = _summary(E2V_NOISE * 0.995, ITL_NOISE * 0.995)
    col = initial["read_noise"]
    lost = (initial["det_name"] == ITL.name) & (initial["amp"] == ITL.amp_names[5])
    col[lost] = np.nan
    final = _summary(E2V_NOISE, ITL_NOISE)
    values = final["read_noise"]

    def at(det, i):
        return (final["det_name"] == det.name) & (final["amp"] == det.amp_names[i])

    values[at(ITL, 0)] = 9.5  # 4.0 -> 9.5: beyond tolerance and newly out of requirement
    values[at(E2V, 15)] = 8.0  # 11.0 -> 8.0: beyond tolerance and back within requirement
    values[at(E2V, 3)] *= 1.2  # 6.2 -> 7.44: beyond tolerance, within requirement in both
    changed = {
        "exceeds": {f"{ITL.name} {ITL.amp_names[0]}", f"{E2V.name} {E2V.amp_names[3]}",
                    f"{E2V.name} {E2V.amp_names[15]}"},
        "newly_out": {f"{ITL.name} {ITL.amp_names[0]}"},
        "back_in": {f"{E2V.name} {E2V.amp_names[15]}"},
        "missing": {f"{ITL.name} {ITL.amp_names[5]}"},
    }  # fmt: skip
    return {"Run 6": run6, "Run 7 initial": initial}, final, changed


def _amps_after(text, what):
    """Amplifier names listed after ``N amplifier(s) WHAT: ...`` in a sentence (empty if 0 or absent).

    Sentences of a metric without requirement have no newly-out / back-in counts.
    """
    found = re.search(rf"(\d+) amplifier\(s\) {what}(?:: (.*?))?\.(?: \d|$)", text)
    if found is None:
        assert "requirement" in what, (what, text)
        return set()
    names = set(found[2].split(", ")) if found[2] else set()
    assert len(names) == int(found[1])
    return names


def test_differences_three_runs_and_sphinx_build(repo, tmp_path):
    previous, final, changed = _three_runs()
    out = str(tmp_path / "note")
    result = build_technote(
        repo,
        "LSSTCam/raw/all",
        out,
        compare=previous,
        summary=final,
        label="Run 7 final",
        acquisition_runs=["13600", "13601"],
    )
    text = open(result.index).read()
    assert rst_headings(text) == rst_headings(open(SKELETON).read())
    diff = text.split("\nDifferences from previous runs\n")[-1]
    labels = ["Run 6", "Run 7 initial", "Run 7 final"]
    assert result.comparison["labels"] == labels and result.comparison["reference"] == "Run 6"

    # Every amplifier flagged anywhere in the section, over every metric: exactly the changed ones.
    lines = [line for line in diff.splitlines() if " against Run 6: " in line]
    flagged = {
        key: set().union(*(_amps_after(line, what) for line in lines))
        for key, what in (
            ("exceeds", "changed beyond the tolerance"),
            ("newly_out", "newly out of requirement"),
            ("back_in", "back within requirement"),
        )
    }
    assert flagged == {k: changed[k] for k in flagged}
    noise = METRICS["read_noise"]
    final_line = [line for line in lines if line.startswith(f"{noise.label}, Run 7 final against")]
    assert (
        len(final_line) == 1
        and _amps_after(final_line[0], "changed beyond the tolerance") == changed["exceeds"]
    )
    missing = [line for line in diff.splitlines() if "are missing from" in line]
    assert missing and all(line.endswith(f"missing from Run 7 initial: {ITL.name} {ITL.amp_names[5]}.")
                           for line in missing)  # fmt: skip

    # The side-by-side table: numpy percentiles of each run, per vendor.
    table = _list_tables(diff)[f"{noise.title}: per vendor, each run"]
    assert table[0] == ["Vendor", "Statistic", *labels]
    cells = {(r[0], r[1]): r[2:] for r in table[1:]}
    runs = {**previous, "Run 7 final": final}
    for vendor, name in (("ITL", "ITL"), ("E2V", "e2v")):
        for i, lb in enumerate(labels):
            t = runs[lb]
            v = np.asarray(t["read_noise"], dtype=float)[np.asarray(t["vendor"]) == vendor]
            v = v[np.isfinite(v)]
            assert int(cells[(name, "Amplifiers")][i]) == len(v)
            for stat, q in (("Median", 50), ("5th pct", 5), ("95th pct", 95)):
                assert float(cells[(name, stat)][i]) == pytest.approx(np.percentile(v, q), rel=1e-3)
            assert int(cells[(name, "Out of requirement")][i]) == int((v > 9.0).sum())
    # The requirement and its source, and the figures (difference maps, histograms, trend).
    block = diff.split(f".. rubric:: {noise.title}")[1]
    assert f"Requirement: <= 9 e-; source: {noise.spec_source}." in block
    gain = METRICS["ptc_gain"]
    assert f"\n\nN{gain.spec_source[1:]}.\n" in diff.split(f".. rubric:: {gain.title}")[1]
    for kind in ("Diff", "DiffHist"):
        for lb in ("Run_7_initial", "Run_7_final"):
            assert f".. figure:: figures/{mosaic_dataset_name('read_noise', kind)}_{lb}.png" in block
    assert f".. figure:: figures/{mosaic_dataset_name('read_noise', 'Trend')}.png" in block
    assert result.n_figures == len(os.listdir(os.path.join(out, "figures")))

    sphinx = os.path.join(os.path.dirname(sys.executable), "sphinx-build")
    run = subprocess.run(
        [sphinx, "-W", "--keep-going", "-q", "-b", "html", ".", "_build/html"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_definition_differences_are_notes(tmp_path):
    """A run whose metric is defined differently is shown side by side, with a note, not differenced."""
    other = _summary(E2V_NOISE + 3.0, ITL_NOISE + 3.0)
    other.meta["SUMMARY_SOURCE"] = "eo_pipe"
    other.meta["DEFINITION_NOTES"] = {"read_noise": "read noise in adu, not converted"}
    summary = _summary(E2V_NOISE, ITL_NOISE)
    result = build_technote(None, "u/eo/now", str(tmp_path / "note"), compare={"eo_pipe run": other},
                            summary=summary)  # fmt: skip
    diff = open(result.index).read().split("\nDifferences from previous runs\n")[-1]
    block = diff.split(f".. rubric:: {METRICS['read_noise'].title}")[1].split(".. rubric::")[0]
    note = block.split(".. note::\n\n   ")[1].splitlines()[0]
    assert "read noise in adu, not converted" in note and "not differenced" in note
    assert "measured in both" not in block and "changed beyond" not in block
    assert "eo_pipe run" in _list_tables(block)[f"{METRICS['read_noise'].title}: per vendor, each run"][0]


def test_comparison_table_marks_runs_without_values():
    from lsst.eo.baseline.runCompare import compare_runs

    now = _summary(E2V_NOISE, ITL_NOISE)
    empty = _summary(E2V_NOISE, ITL_NOISE)
    empty["read_noise"] = np.nan
    result = compare_runs({"old": empty, "now": now}, [METRICS["read_noise"], METRICS["ptc_gain"]])
    header, rows = comparison_table(result["metrics"]["read_noise"], result["labels"])
    assert header == ["Vendor", "Statistic", "old", "now"]
    assert [r[1] for r in rows[:5]] == ["Amplifiers", "Median", "5th pct", "95th pct", "Out of requirement"]
    assert all(r[2] == "--" for r in rows) and rows[0][3] == "16" and rows[9][3] == str((E2V_NOISE > 9).sum())
    # No requirement: no out-of-requirement row.
    _, gain_rows = comparison_table(result["metrics"]["ptc_gain"], result["labels"])
    assert [r[1] for r in gain_rows] == ["Amplifiers", "Median", "5th pct", "95th pct"] * 2
