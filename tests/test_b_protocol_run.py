"""The B-protocol analysis through pipetask: steps, data selection, calibration certification."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table
from lsst.daf.butler import Butler, CollectionType
from matplotlib.image import imread as plt_imread

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.camera import get_camera, nominal_amps
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.metrics import load_metrics
from lsst.eo.baseline.readNoise import EoReadNoiseTask
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.report import compare_summaries
from lsst.eo.baseline.runGains import run_gains
from lsst.eo.baseline.runner import run_analysis
from lsst.eo.baseline.simulator import load_truth, simulate

EO = os.path.join(os.path.dirname(sys.executable), "eo-baseline")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    top = tmp_path_factory.mktemp("bprot")
    raws = str(top / "raws")
    simulate("b_protocol_short", "R22_S11", raws, run="13600", seed=5, jobs=2)
    repo = str(top / "repo")
    butler = create_repo(repo)
    assert ingest_raws(butler, [raws], progress=False).ok
    results = run_analysis(repo, "13600", "b_protocol")
    return repo, raws, results


@pytest.mark.slow
def test_steps_and_collections(analysed):
    repo, _, results = analysed
    # cp_pipe's order: bias and the adu/s dark, the PTC, then every value in electrons.
    steps = ["bias", "dark", "flat", "readnoise", "darkcurrent", "stability", "lambda", "persistence",
             "summary"]  # fmt: skip
    assert [(r.step.name, r.status) for r in results] == [(s, "done") for s in steps], [
        r.message for r in results
    ]
    butler = Butler.from_config(repo)
    assert butler.collections.get_info("LSSTCam/calib/eo/13600").type == CollectionType.CALIBRATION
    chain = butler.collections.get_info("u/eo/13600").children
    assert list(chain) == [f"u/eo/13600/{s}" for s in reversed(steps)] + ["LSSTCam/calib/eo/13600"]
    for name in ("eoBias", "eoDark", "eoPtc"):
        refs = butler.query_datasets(name, collections="LSSTCam/calib/eo/13600", find_first=False)
        assert len(refs) == 1, name
    butler = Butler.from_config(repo, collections="u/eo/13600")
    for name in ("eoReadNoise", "eoBiasStability", "eoBiasStabilityExposures", "eoDarkCurrent",
                 "eoBrightDefects", "eoBrightDefectsList", "eoCti", "eoCtiVsSignal", "eoPtcSummary",
                 "eoLinearity", "eoBrighterFatter", "eoRowMeansVariance", "eoGainStability",
                 "eoDivisaderoTearing", "eoDarkDefects", "eoWavelengthFlats", "eoPersistence"):  # fmt: skip
        table = butler.get(name, instrument="LSSTCam", detector=94)
        assert len(table) >= 16, name


@pytest.mark.slow
def test_pipeline_selects_the_right_exposures(analysed):
    """eoReadNoise from pipetask equals the task run on exactly the run's bias files."""
    repo, raws, _ = analysed
    truth = load_truth(raws)
    bias_ids = set(int(e) for e in truth.exposures[truth.exposures["imgtype"] == "BIAS"]["exposure_id"])
    files = sorted(
        (int(r["exposure_id"]), r["path"]) for r in truth.files if int(r["exposure_id"]) in bias_ids
    )
    butler = Butler.from_config(repo, collections="u/eo/13600")
    det = get_camera()["R22_S11"]
    gains = run_gains(det, butler.get("eoPtc", instrument="LSSTCam", detector=94))
    direct = EoReadNoiseTask().run([RawFileHandle(os.path.join(raws, p)) for _, p in files], det, gains)
    piped = butler.get("eoReadNoise", instrument="LSSTCam", detector=94)
    np.testing.assert_array_equal(
        piped["read_noise_overscan_adu"], direct.readNoise["read_noise_overscan_adu"]
    )
    # The read noise in e- uses the certified PTC's gains, amplifier by amplifier.
    np.testing.assert_array_equal(piped["read_noise_e"], direct.readNoise["read_noise_e"])
    assert list(piped["gain_source"]) == [gains.sources[a] for a in piped["amp"]]
    stab = butler.get("eoBiasStabilityExposures", instrument="LSSTCam", detector=94)
    assert set(stab["exposure"]) == bias_ids
    cti = butler.get("eoCtiVsSignal", instrument="LSSTCam", detector=94)
    ptc_ids = set(int(e) for e in truth.exposures[truth.exposures["testtype"] == "PTC"]["exposure_id"])
    assert set(cti["exposure"]) == ptc_ids


@pytest.mark.slow
def test_short_run_falls_back_to_camera_gains(analysed):
    """4 flat pairs give no FULLCOVARIANCE PTC gain: every e- table says CAMERA, the report lists it."""
    repo, _, _ = analysed
    butler = Butler.from_config(repo, collections="u/eo/13600")
    ptc = butler.get("eoPtc", instrument="LSSTCam", detector=94)
    camera = {a: v.gain for a, v in nominal_amps("R22_S11").items()}
    usable = {a for a, g in ptc.gain.items() if np.isfinite(g) and g > 0}
    assert not usable, f"b_protocol_short now has PTC gains for {sorted(usable)}: update this test"
    dark = butler.get("eoDark", instrument="LSSTCam", detector=94)
    assert dark.metadata["UNITS"] == "adu/s"
    for name in ("eoReadNoise", "eoDarkCurrent", "eoWavelengthFlats", "eoPersistence"):
        # The butler strips table metadata on read unless asked not to.
        table = butler.get(
            name, instrument="LSSTCam", detector=94, parameters={"strip_astropy_meta_yaml": False}
        )
        assert set(table["gain_source"]) == {"CAMERA"}, name
        # The certified eoPtc was found (its gains are unusable, not absent).
        assert table.meta["PTC_FOUND"] is True, name
        np.testing.assert_array_equal(table["gain_e_per_adu"], [camera[a] for a in table["amp"]])
    dc = butler.get("eoDarkCurrent", instrument="LSSTCam", detector=94)
    np.testing.assert_allclose(
        dc["dark_current_median_e_per_s"], dc["dark_current_median_adu_per_s"] * dc["gain_e_per_adu"]
    )
    summary = butler.get("eoRunSummary", instrument="LSSTCam")
    assert all("eoReadNoise" in s and "eoDarkCurrent" in s for s in summary["camera_gain_sources"])


@pytest.mark.slow
def test_dry_run_prints_commands(analysed):
    repo, _, _ = analysed
    proc = subprocess.run([EO, "run", repo, "--run", "13600", "--dry-run", "--steps", "bias"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pipetask run" in proc.stdout and "bProtocol.yaml#bias" in proc.stdout
    assert "exposure.observation_type = 'bias'" in proc.stdout


def test_missing_run_is_skipped_with_a_reason(tmp_path):
    repo = str(tmp_path / "repo")
    create_repo(repo)
    results = run_analysis(repo, "99999", "b_protocol")
    assert [r.status for r in results] == ["skipped"] * 9
    assert "no exposure matches" in results[0].message


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def reported(analysed, tmp_path_factory):
    """A second, smaller run (biases and darks of R22_S11 only) and the report comparing both."""
    repo, _, _ = analysed
    top = tmp_path_factory.mktemp("previous")
    raws = str(top / "raws")
    plan = os.path.join(os.path.dirname(__file__), "data", "plans", "previous_run.yaml")
    simulate(plan, "R22_S11", raws, run="13599", seed=6, jobs=1)
    butler = Butler.from_config(repo, writeable=True)
    assert ingest_raws(butler, [raws], progress=False).ok
    previous = run_analysis(repo, "13599", "b_protocol")
    assert {r.step.name: r.status for r in previous}["bias"] == "done"
    out = str(top / "report")
    proc = subprocess.run([EO, "report", repo, "--collections", "u/eo/13600", "--compare", "u/eo/13599",
                           "--out", out], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return repo, out


@pytest.mark.slow
def test_report_sections_and_numbers(reported):
    _, out = reported
    text = open(os.path.join(out, "index.html")).read()
    for section in ("Bias metrics", "Dark metrics", "Stability flat metrics", "Flat pair metrics",
                    "Wavelength flats", "Persistence", "Differences from previous runs"):  # fmt: skip
        assert f">{section}</h2>" in text, section
    summary = Table.read(os.path.join(out, "run_summary.ecsv"))
    # The report's numbers are the summary's: the ITL-less run has e2v read noise medians.
    median = float(np.nanmedian(summary["read_noise"]))
    assert f"{median:.4g}" in text
    rst = open(os.path.join(out, "report.rst")).read()
    assert "Differences from previous runs" in rst and ".. figure:: images/" in rst
    # Every image the page references exists.
    for src in re.findall(r'<img src="([^"]+)"', text):
        assert os.path.exists(os.path.join(out, src)), src


@pytest.mark.slow
def test_report_comparison(reported):
    repo, out = reported
    text = open(os.path.join(out, "index.html")).read()
    butler = Butler.from_config(repo)
    now = butler.get("eoRunSummary", instrument="LSSTCam", collections="u/eo/13600")
    before = butler.get("eoRunSummary", instrument="LSSTCam", collections="u/eo/13599")
    metric = {m.name: m for m in load_metrics()}["read_noise"]
    c = compare_summaries(now, before, metric)
    # Same detector and seed-independent camera truth: read noise changes little, within tolerance.
    assert c["vendors"]["E2V"]["n"] == 16
    assert abs(c["vendors"]["E2V"]["median_diff"]) < 0.05 * c["vendors"]["E2V"]["previous"]
    # Flat-pair metrics exist only in the current run: reported as amps only in this run.
    ptc = compare_summaries(now, before, {m.name: m for m in load_metrics()}["ptc_gain"])
    assert not ptc["vendors"] and (len(ptc["only_current"]) == 16 or not np.isfinite(now["ptc_gain"]).any())
    assert "Read noise (eo_pipe) (e-)" in text and "eoFpDiffReadNoise.png" in text


@pytest.mark.slow
def test_report_renders_in_chromium(reported, tmp_path):
    _, out = reported
    page = "file://" + os.path.join(out, "index.html")
    shot = str(tmp_path / "report.png")
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    proc = subprocess.run(["chromium", *flags, "--window-size=1300,3000", f"--screenshot={shot}", page],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    pixels = plt_imread(shot)
    assert pixels.shape[0] >= 3000 and pixels.std() > 0.05  # not a blank page
    dom = subprocess.run(["chromium", *flags, "--virtual-time-budget=10000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    match = re.search(r'data-images="(\d+)" data-broken-images="(\d+)"', dom)
    assert match, "the page's image self-check did not run"
    assert int(match.group(1)) > 20 and int(match.group(2)) == 0


@pytest.mark.slow
def test_notebook_executes(reported):
    import nbformat
    from nbclient import NotebookClient

    repo, _ = reported
    path = os.path.join(os.path.dirname(__file__), "..", "doc", "notebooks", "eo_outputs.ipynb")
    nb = nbformat.read(path, as_version=4)
    os.environ["EO_REPO"] = repo
    os.environ["EO_COLLECTION"] = "u/eo/13600"
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the focal-plane map was not drawn"
    assert any("eoReadNoise" in "".join(o.get("text", "")) for o in outputs)


@pytest.mark.slow
def test_technote_of_the_run(reported, tmp_path):
    """``report --format technote`` on the analysed run: skeleton headings, registry counts, Sphinx -W."""
    import yaml

    from lsst.eo.baseline.paths import config_dir
    from lsst.eo.baseline.technote import KIND_LABELS, rst_headings

    repo, _ = reported
    out = str(tmp_path / "technote")
    proc = subprocess.run([EO, "report", repo, "--collections", "u/eo/13600", "--compare", "u/eo/13599",
                           "--format", "technote", "--out", out], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = open(os.path.join(out, "index.rst")).read()
    skeleton = os.path.join(
        os.path.dirname(__file__), "data", "technote", "baseline_characterization_technote.rst"
    )
    assert rst_headings(text) == rst_headings(open(skeleton).read())
    # Background counts: each kind's exposures selected by the run type's own `where` clauses.
    with open(config_dir("runs", "b_protocol.yaml")) as f:
        steps = {s["name"]: s["where"] for s in yaml.safe_load(f)["steps"]}
    butler = Butler.from_config(repo)

    def count(where):
        where = f"instrument = 'LSSTCam' AND exposure.science_program = '13600' AND ({where})"
        return len(butler.query_dimension_records("exposure", where=where, limit=None, explain=False))

    expected = {
        "Bias images": count(steps["bias"]),
        "Dark images": count(steps["dark"]),
        "Flat-pair exposures": count(steps["flat"]),
        "Stability flats": count(steps["stability"]),
        "Wavelength flats": count(steps["lambda"]),
        "Persistence exposures": count(steps["persistence"]),
    }
    assert set(expected) <= set(KIND_LABELS.values())
    lines = text.splitlines()
    start = lines.index(".. list-table:: Exposures of the acquisition runs")
    end = lines.index("", start + 3)
    cells = [line.split("- ", 1)[1] for line in lines[start + 3 : end]]
    ncol = 2  # label and run 13600 (run 13599 is not named by --collections)
    rows = {cells[i]: cells[i + 1] for i in range(ncol, len(cells) - 1, ncol)}
    assert cells[1] == "B protocol (run 13600)"
    for label, n in expected.items():
        assert rows[label] == str(n), (label, rows)
    sphinx = os.path.join(os.path.dirname(sys.executable), "sphinx-build")
    build = subprocess.run([sphinx, "-W", "--keep-going", "-q", "-b", "html", ".", "_build/html"], cwd=out,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
