"""Incomplete runs: the pipelines run what they can and the report says what is missing.

One e2v detector of a B protocol cut short (tests/data/plans/incomplete_run.yaml): 3 biases, no dark,
two flat pairs at a single flux level (fewer points than the PTC fit needs) and one flat without a
partner; amplifier C11 is dead in every file.  ``run_analysis`` runs the whole b_protocol run type
on it.  A second run type with a task that always fails checks that a failed step does not stop
the run (the runner used to stop at the first step with a non-zero pipetask exit code).
"""

import logging
import os
import types

import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler

from lsst.eo.baseline.ampFlags import FLAGS_COLUMN, AmpFlag, metadata_amp_flags
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.ptcExtract import EoPtcExtractConfig, EoPtcExtractConnections
from lsst.eo.baseline.ptcSolve import MIN_PTC_POINTS, EoPtcSolveTask
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.report import build_report
from lsst.eo.baseline.runner import run_analysis
from lsst.eo.baseline.runState import error_summary, parse_step_record
from lsst.eo.baseline.simulator import load_truth, simulate

from tests.reliability_helpers import ROOT, corrupt_amps

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "incomplete_run.yaml")
RUN = "13701"
DET, DET_ID = "R22_S11", 94
DEAD_AMP = "C11"
STEPS = ["bias", "dark", "flat", "readnoise", "darkcurrent", "stability", "lambda", "persistence", "summary"]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    top = tmp_path_factory.mktemp("incomplete")
    raws = str(top / "raws")
    paths = simulate(PLAN, DET, raws, run=RUN, seed=7, jobs=2)
    corrupt_amps(paths, {DEAD_AMP: "dead"})
    repo = str(top / "repo")
    assert ingest_raws(create_repo(repo), [raws], progress=False).ok
    results = run_analysis(repo, RUN, "b_protocol")
    report = build_report(repo, f"u/eo/{RUN}", str(top / "report"))
    return types.SimpleNamespace(repo=repo, truth=load_truth(raws), results=results, report=report)


def _butler(analysed):
    return Butler.from_config(analysed.repo, collections=f"u/eo/{RUN}")


@pytest.mark.slow
def test_steps_run_what_they_can(analysed):
    status = {r.step.name: r.status for r in analysed.results}
    assert list(status) == STEPS
    assert status == {"bias": "done", "dark": "skipped", "flat": "done", "readnoise": "done",
                      "darkcurrent": "skipped", "stability": "skipped", "lambda": "skipped",
                      "persistence": "skipped", "summary": "done"}, [
        (r.step.name, r.message[-500:]) for r in analysed.results
    ]  # fmt: skip
    butler = _butler(analysed)
    summary = butler.get("eoRunSummary", instrument="LSSTCam")
    assert len(summary) == 16
    assert np.isnan(summary["dark_current_median"]).all()  # no dark
    assert np.isfinite(summary["read_noise"][summary["amp"] != DEAD_AMP]).all()
    # The PTC has no gain (too few points): the read noise falls back to the camera-model gains.
    # The butler strips table metadata on read unless asked not to.
    keep_meta = {"strip_astropy_meta_yaml": False}
    rn = butler.get("eoReadNoise", instrument="LSSTCam", detector=DET_ID, parameters=keep_meta)
    assert set(rn["gain_source"]) == {"CAMERA"} and rn.meta["GAIN_SOURCE"] == "CAMERA"
    # The PTC step certified an eoPtc (with NaN gains): found, its gains unusable.
    assert rn.meta["PTC_FOUND"] is True


@pytest.mark.slow
def test_unpaired_flat_is_left_out(analysed):
    truth = analysed.truth
    flats = truth.exposures[truth.exposures["imgtype"] == "FLAT"]
    paired = set(int(e) for e in flats[flats["pair"] >= 0]["exposure_id"])
    lonely = set(int(e) for e in flats["exposure_id"]) - paired
    assert len(lonely) == 1 and len(paired) == 4
    butler = _butler(analysed)
    refs = butler.query_datasets("eoPtcPair", collections=f"u/eo/{RUN}")
    assert len(refs) == 2
    used = set()
    for ref in refs:
        table = butler.get(ref)
        used |= set(int(e) for e in table["exposure_1"]) | set(int(e) for e in table["exposure_2"])
    assert used == paired


def test_unpaired_flat_is_logged(caplog):
    """Quantum-graph pairing drops a flat without a partner and names it in a warning."""

    class Adjuster:
        def __init__(self, exposures):
            self.ids = [{"detector": DET_ID, "exposure": e} for e, _ in exposures]
            self.times = dict(exposures)
            self.removed = []

        def iter_data_ids(self):
            return iter(self.ids)

        def expand_quantum_data_id(self, data_id):
            record = types.SimpleNamespace(exposure_time=self.times[data_id["exposure"]])
            return types.SimpleNamespace(records={"exposure": record})

        def get_inputs(self, data_id):
            return {"raws": [data_id]}

        def add_input(self, target, name, raw_id):
            pass

        def remove_quantum(self, data_id):
            self.removed.append(data_id["exposure"])

    adjuster = Adjuster([(101, 5.0), (102, 5.0), (103, 9.0), (104, 2.0), (105, 2.0)])
    connections = EoPtcExtractConnections(config=EoPtcExtractConfig())
    with caplog.at_level(logging.WARNING, logger="lsst.eo.baseline.ptcExtract"):
        connections.adjust_all_quanta(adjuster)
    # The second exposure of each pair is merged into the first's quantum; 103 is dropped.
    assert sorted(adjuster.removed) == [102, 103, 105]
    messages = [r.getMessage() for r in caplog.records]
    assert any("Flat exposure 103 of detector 94 has no partner" in m for m in messages), messages
    assert not any("exposure 102" in m or "exposure 105" in m for m in messages)


@pytest.mark.slow
def test_ptc_with_too_few_points(analysed, caplog):
    butler = _butler(analysed)
    summary = butler.get("eoPtcSummary", instrument="LSSTCam", detector=DET_ID)
    assert np.isnan(summary["ptc_gain_e_per_adu"]).all() and np.isnan(summary["ptc_noise_e"]).all()
    flags = dict(zip(summary["amp"], summary[FLAGS_COLUMN], strict=True))
    assert flags[DEAD_AMP] == AmpFlag.DEAD
    assert all(v == AmpFlag.FIT_FAILED for a, v in flags.items() if a != DEAD_AMP)
    assert all("too few" in f for f in summary["failure"])
    # The task on 2 pairs, then on 1: NaN gains, FIT_FAILED, a warning naming detector and count.
    tables = [butler.get(ref) for ref in butler.query_datasets("eoPtcPair", collections=f"u/eo/{RUN}")]
    det = get_camera()[DET]
    for n in (2, 1):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = EoPtcSolveTask().run(tables[:n], det)
        assert np.isnan(result.summary["ptc_gain_e_per_adu"]).all()
        text = " ".join(r.getMessage() for r in caplog.records)
        assert f"{DET}: {n} flat pair(s), the PTC fit needs at least {MIN_PTC_POINTS} points" in text
        assert metadata_amp_flags(result.ptc.metadata)["C10"] == AmpFlag.FIT_FAILED


@pytest.mark.slow
def test_bad_amp_through_the_pipeline(analysed):
    butler = _butler(analysed)
    truth = analysed.truth
    # eoBias written and read back by the butler carries the flag in its metadata.
    bias = butler.get("eoBias", instrument="LSSTCam", detector=DET_ID, collections=f"u/eo/{RUN}/bias")
    assert metadata_amp_flags(bias.metadata) == {DEAD_AMP: int(AmpFlag.DEAD)}
    for name in ("eoReadNoise", "eoCti", "eoBiasStability", "eoLinearity"):
        table = butler.get(name, instrument="LSSTCam", detector=DET_ID)
        flags = dict(zip(table["amp"], table[FLAGS_COLUMN], strict=True))
        assert flags[DEAD_AMP] == AmpFlag.DEAD, name
        assert all(v == 0 for a, v in flags.items() if a != DEAD_AMP), name
    rn = butler.get("eoReadNoise", instrument="LSSTCam", detector=DET_ID)
    for row in rn:
        if row["amp"] == DEAD_AMP:
            assert np.isnan(row["read_noise_overscan_e"])
            continue
        amp = truth.amp(DET, str(row["amp"]))
        # 3 biases: overscan stdev to 0.2% each; the bias/dark tests' 2% requirement.
        assert row["read_noise_overscan_adu"] == pytest.approx(amp.read_noise / amp.gain, rel=0.02)


@pytest.mark.slow
def test_report_says_what_is_missing(analysed):
    report = analysed.report
    assert set(report.incomplete_steps) == {"dark", "darkcurrent", "stability", "lambda", "persistence"}
    assert all(text.startswith("skipped: no exposure") for text in report.incomplete_steps.values())
    assert "dark_current_median" in report.missing and "ptc_gain" in report.missing
    assert "read_noise" not in report.missing
    assert f"{DET} {DEAD_AMP}" in report.flagged and len(report.flagged) == 16
    text = open(report.html).read()
    section = text[text.index(">Missing / incomplete</h2>") : text.index(">Bias metrics</h2>")]
    for expected in ("dark", "persistence", "Dark current (median)", "PTC gain", "DEAD", "FIT_FAILED",
                     "eoPtcSummary", "without a usable PTC gain", "camera-model gains"):  # fmt: skip
        assert expected in section, expected


@pytest.mark.slow
def test_failed_step_does_not_stop_the_run(analysed, tmp_path, monkeypatch):
    """A step whose quanta all fail does not stop the next one, in which some quanta fail."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    pipelines = {
        "allfail.yaml": {"eoAlwaysFails": "tests.reliability_helpers.EoAlwaysFailsTask"},
        "somefail.yaml": {"eoAlwaysFails": "tests.reliability_helpers.EoAlwaysFailsTask",
                          "eoReadNoise": "lsst.eo.baseline.readNoise.EoReadNoiseTask"},
    }  # fmt: skip
    for name, tasks in pipelines.items():
        spec = {"description": "test", "instrument": "lsst.eo.baseline.LsstCam",
                "tasks": {label: {"class": cls} for label, cls in tasks.items()}}  # fmt: skip
        (tmp_path / name).write_text(yaml.safe_dump(spec))
    where = "exposure.observation_type = 'bias'"
    run_type = {"name": "failing", "steps": [
        {"name": "allfail", "pipeline": str(tmp_path / "allfail.yaml"), "where": where},
        {"name": "somefail", "pipeline": str(tmp_path / "somefail.yaml"), "where": where},
    ]}  # fmt: skip
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(run_type))
    results = run_analysis(analysed.repo, RUN, str(path), output_prefix="u/failing")
    status = {r.step.name: r.status for r in results}
    assert status == {"allfail": "failed", "somefail": "partial"}, [
        (r.step.name, r.message[-800:]) for r in results
    ]
    assert "some quanta failed" in results[1].message and "eoReadNoise: 1" in results[1].message
    # The message names the failed quantum and its exception.
    assert "1 of 2 quanta failed: eoAlwaysFails" in results[1].message
    assert "RuntimeError: EoAlwaysFailsTask fails on purpose" in results[0].message.splitlines()[0]
    butler = Butler.from_config(analysed.repo)
    assert len(butler.query_datasets("eoReadNoise", collections=f"u/failing/{RUN}")) == 1
    record = parse_step_record(butler.registry.getCollectionDocumentation(f"u/failing/{RUN}"))
    assert list(record) == ["allfail", "somefail"]
    assert record["allfail"]["status"] == "failed" and record["somefail"]["status"] == "partial"


@pytest.mark.slow
def test_step_without_its_calibration_fails_clearly(analysed):
    """The flat step of an analysis whose bias step never ran: failed, naming the missing eoBias."""
    results = run_analysis(analysed.repo, RUN, "b_protocol", steps=["flat"], output_prefix="u/nocalib")
    assert [(r.step.name, r.status) for r in results] == [("flat", "failed")]
    first_line = results[0].message.splitlines()[0]
    assert first_line.startswith("pipetask failed (exit 1): ") and "eoBias" in first_line, first_line


def test_step_record_and_error_summary():
    assert parse_step_record(None) == {} and parse_step_record("free text: [") == {}
    log = "\n".join([
        "lsst.pipe.base.single_quantum_executor ERROR: Execution of task 'eoCti' on quantum {instrument: "
        "'LSSTCam', detector: 94} failed. Exception ZeroDivisionError: float division by zero",
        "lsst.pipe.base.mp_graph_executor INFO: Executed 3 quanta successfully, 1 failed and 0 remain out of "
        "total 4 quanta.",
        "lsst.pipe.base.mp_graph_executor.MPGraphExecutorError: One or more tasks failed during execution.",
    ])  # fmt: skip
    assert error_summary(log) == (
        "1 of 4 quanta failed: eoCti {instrument: 'LSSTCam', detector: 94}: "
        "ZeroDivisionError: float division by zero"
    )
    assert error_summary("Traceback:\n  x\nValueError: bad input\n") == "ValueError: bad input"


@pytest.mark.slow
def test_summary_step_rerun_replaces_its_output(analysed):
    """Re-running the summary step redoes it in place of the previous output: one eoRunSummary."""
    results = run_analysis(analysed.repo, RUN, "b_protocol", steps=["summary"])
    assert [(r.step.name, r.status) for r in results] == [("summary", "done")], results[0].message[-2000:]
    assert "--replace-run" in results[0].commands[0]
    butler = Butler.from_config(analysed.repo)
    output = f"u/eo/{RUN}/summary"
    refs = butler.query_datasets("eoRunSummary", collections=output, find_first=False)
    assert len(refs) == 1
    runs = [c for c in butler.collections.get_info(output).children if c.startswith(output + "/")]
    assert runs == [refs[0].run]
