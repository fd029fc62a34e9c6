"""BPS on parsl: the B-protocol steps as workflows, identical to pipetask, clustered per detector."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from lsst.ctrl.bps import BpsConfig
from lsst.daf.butler import Butler, DimensionUniverse
from lsst.pipe.base import Pipeline

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.paths import config_dir
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.runner import calib_collection, run_analysis
from lsst.eo.baseline.simulator import simulate

BIN = os.path.dirname(sys.executable)
DETECTORS = ["R01_S01", "R22_S11"]  # one ITL and one e2v CCD
DET_IDS = sorted(get_camera()[name].id for name in DETECTORS)
# The read noise runs after the PTC in a full run; without the flat step it uses the camera gains.
STEPS = ["bias", "dark", "readnoise"]
# Tables compared between the pipetask and the BPS runs.
TABLES = {"bias": ["eoBiasStability"], "dark": ["eoBrightDefects"], "readnoise": ["eoReadNoise"]}


def _run_with_bps(repo: str, submit: str):
    """The bias, dark and read-noise steps as BPS workflows on parsl (output prefix u/bps)."""
    return run_analysis(
        repo,
        "13600",
        "b_protocol",
        steps=STEPS,
        jobs=2,
        output_prefix="u/bps",
        bps="local",
        submit_dir=submit,
    )


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    top = tmp_path_factory.mktemp("bps")
    raws = str(top / "raws")
    simulate("b_protocol_short", ",".join(DETECTORS), raws, run="13600", seed=5, jobs=2)
    repo = str(top / "repo")
    butler = create_repo(repo)
    assert ingest_raws(butler, [raws], progress=False).ok
    del butler
    reference = run_analysis(repo, "13600", "b_protocol", steps=STEPS, jobs=2)
    submit = str(top / "submit")
    with_bps = _run_with_bps(repo, submit)
    return repo, submit, reference, with_bps


def _assert_same_table(a, b, name):
    assert a.colnames == b.colnames, name
    assert len(a) == len(b) > 0, name
    for col in a.colnames:
        if a[col].dtype.kind in "fc":
            np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), err_msg=f"{name}.{col}")
        else:
            assert list(a[col]) == list(b[col]), f"{name}.{col}"


@pytest.mark.slow
def test_bps_steps_match_pipetask(analysed):
    repo, _, reference, with_bps = analysed
    for results in (reference, with_bps):
        assert [(r.step.name, r.status) for r in results] == [(s, "done") for s in STEPS], [
            r.message for r in results
        ]
    assert with_bps[0].commands[0].split()[1] == "submit"  # really went through bps
    ref = Butler.from_config(repo, collections="u/eo/13600")
    new = Butler.from_config(repo, collections="u/bps/13600")
    for step, names in TABLES.items():
        for name in names:
            for det in DET_IDS:
                # The same code on the same pixels: the workflow engine must not change a single bit.
                _assert_same_table(
                    ref.get(name, instrument="LSSTCam", detector=det),
                    new.get(name, instrument="LSSTCam", detector=det),
                    f"{step}/{name}/{det}",
                )
    # The BPS analysis certified its own combined bias instead of the pipetask run's.
    bps_calib = calib_collection("13600", "u/bps")
    assert bps_calib != calib_collection("13600")
    refs = new.query_datasets("eoBias", collections=bps_calib, find_first=False)
    assert sorted(r.dataId["detector"] for r in refs) == DET_IDS


@pytest.mark.slow
def test_quanta_are_clustered_one_job_per_detector(analysed):
    _, submit, _, _ = analysed
    for step in STEPS:
        logs = glob.glob(os.path.join(submit, "13600", step, "u", "bps", "13600", step, "*", "logs"))
        assert len(logs) == 1, logs
        jobs = sorted(os.listdir(logs[0]))
        # Every per-detector quantum of the step runs in its detector's job: no per-task jobs.
        assert jobs == ["finalJob", "perDetector", "pipetaskInit"], jobs
        # parsl's run directory lands beside the submit file, not in the caller's directory.
        assert os.path.isdir(os.path.join(submit, "13600", step, "runinfo"))
        per_detector = glob.glob(os.path.join(logs[0], "perDetector", "*.stdout"))
        assert sorted(int(p.rsplit("_", 1)[1].split(".")[0]) for p in per_detector) == DET_IDS


@pytest.mark.slow
def test_bps_submit_of_a_shipped_step_file(analysed):
    """What doc/bps.rst tells users to type: ``bps submit config/bps/bProtocol_bias.yaml``."""
    repo, _, _, _ = analysed
    det = DET_IDS[0]
    query = (
        f"instrument = 'LSSTCam' AND exposure.science_program = '13600' AND "
        f"exposure.observation_type = 'bias' AND NOT (exposure.observation_reason = 'persistence') "
        f"AND detector = {det}"
    )
    work = os.path.dirname(repo)  # bps puts submit/ under ${PWD} and parsl runinfo/ under the cwd
    env = dict(os.environ, PATH=os.pathsep.join([BIN, os.environ.get("PATH", "")]), PWD=work)
    proc = subprocess.run(
        [os.path.join(BIN, "bps"), "submit", config_dir("bps", "bProtocol_bias.yaml"), "-b", repo,
         "-i", "LSSTCam/raw/all", "-o", "u/direct/bias", "-d", query],
        capture_output=True, text=True, env=env, cwd=work,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    butler = Butler.from_config(repo)
    got = butler.get("eoBiasStability", instrument="LSSTCam", detector=det, collections="u/direct/bias")
    ref = butler.get("eoBiasStability", instrument="LSSTCam", detector=det, collections="u/eo/13600")
    _assert_same_table(ref, got, "eoBiasStability")
    # Only the selected detector was processed.
    assert len(butler.query_datasets("eoBiasStability", collections="u/direct/bias", limit=None)) == 1


def _per_detector_labels(pipeline_file: str) -> set[str]:
    graph = Pipeline.from_uri(pipeline_file).to_graph()
    graph.resolve(dimensions=DimensionUniverse())
    return {label for label, node in graph.tasks.items() if "detector" in node.dimensions.names}


def test_shipped_bps_configs_are_complete():
    """Every step file parses, names an existing pipeline, and clusters all its per-detector tasks."""
    files = sorted(glob.glob(config_dir("bps", "*.yaml")))
    step_files = [f for f in files if not f.endswith("eo_common.yaml")]
    assert len(step_files) >= 8  # six B-protocol steps, PTC, summary
    for path in step_files:
        config = BpsConfig(path)
        assert config["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
        pipeline = config["pipelineYaml"]
        assert os.path.exists(pipeline.split("#")[0]), (path, pipeline)
        clustered = {label.strip() for label in config["cluster"]["perDetector"]["pipetasks"].split(",")}
        missing = _per_detector_labels(pipeline) - clustered
        assert not missing, f"{path}: per-detector tasks left unclustered: {missing}"
    for site in glob.glob(config_dir("bps", "sites", "*.yaml")):
        assert BpsConfig(site)["computeSite"], site


@pytest.mark.slow
def test_bps_step_resumes_only_what_is_missing(analysed):
    """A rerun with --bps skips the quanta already done and redoes a lost one, duplicating nothing."""
    repo, submit, _, _ = analysed
    butler = Butler.from_config(repo, writeable=True)
    det = DET_IDS[0]
    lost = [
        ref
        for name in ("eoReadNoise", "eoReadNoise_metadata")
        for ref in butler.query_datasets(
            name, collections="u/bps/13600/readnoise", data_id={"instrument": "LSSTCam", "detector": det}
        )
    ]
    assert len(lost) == 2
    butler.pruneDatasets(lost, disassociate=True, unstore=True, purge=True)
    results = _run_with_bps(repo, submit)
    assert [(r.step.name, r.status) for r in results] == [(s, "done") for s in STEPS], [
        r.message for r in results
    ]
    assert "--skip-existing-in u/bps/13600/readnoise" in results[2].commands[0]
    butler = Butler.from_config(repo)
    for name in ("eoReadNoise", "eoBiasStability", "eoBrightDefects"):
        refs = butler.query_datasets(name, collections="u/bps/13600", find_first=False, limit=None)
        assert sorted(r.dataId["detector"] for r in refs) == DET_IDS, name  # one per detector
    _assert_same_table(
        butler.get("eoReadNoise", instrument="LSSTCam", detector=det, collections="u/eo/13600"),
        butler.get("eoReadNoise", instrument="LSSTCam", detector=det, collections="u/bps/13600"),
        "eoReadNoise after resume",
    )
