"""The B-protocol analysis on a PostgreSQL registry (the shared-repository option)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.paths import pipelines_dir
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.runner import run_analysis
from lsst.eo.baseline.simulator import load_truth, simulate

PIPETASK = os.path.join(os.path.dirname(sys.executable), "pipetask")
DET = get_camera()["R01_S01"].id
STEPS = ["bias", "dark", "flat", "readnoise", "darkcurrent", "stability", "lambda", "persistence", "summary"]


@pytest.fixture(scope="module")
def pg_analysed(postgres_server, tmp_path_factory):
    top = tmp_path_factory.mktemp("pgrun")
    raws = str(top / "raws")
    simulate("b_protocol_short", "R01_S01", raws, run="13600", seed=11, jobs=2)
    repo = str(top / "repo")
    butler = create_repo(repo, registry_db=postgres_server.url)
    assert ingest_raws(butler, [raws], progress=False).ok
    del butler
    results = run_analysis(repo, "13600", "b_protocol")
    return repo, raws, results


def _password(server) -> str:
    return yaml.safe_load(open(server.auth_file))[0]["password"]


@pytest.mark.slow
def test_repo_uses_postgres_without_storing_the_password(pg_analysed, postgres_server):
    repo, _, _ = pg_analysed
    config = open(os.path.join(repo, "butler.yaml")).read()
    assert postgres_server.url in config
    assert _password(postgres_server) not in config
    assert oct(os.stat(postgres_server.auth_file).st_mode & 0o777) == "0o600"
    butler = Butler.from_config(repo)
    assert butler._registry._db.dialect.name == "postgresql"  # not a silent SQLite fallback
    assert len(butler.query_dimension_records("detector", instrument="LSSTCam", limit=None)) == 205


@pytest.mark.slow
def test_b_protocol_runs_on_postgres(pg_analysed):
    repo, raws, results = pg_analysed
    assert [(r.step.name, r.status) for r in results] == [(s, "done") for s in STEPS], [
        r.message for r in results
    ]
    butler = Butler.from_config(repo, collections="u/eo/13600")
    summary = butler.get("eoRunSummary", instrument="LSSTCam")
    assert len(summary) == 16 and set(summary["detector"]) == {DET}
    # Metrics come back through the PostgreSQL registry and recover the injected truth: the read
    # noise of 16 amps, each from ~10^6 overscan pixels, matches to within 3% (the clipped estimate's
    # statistical error is ~0.2%; the rest is the bias structure the simulator adds).
    truth = load_truth(raws)
    rn = butler.get("eoReadNoise", instrument="LSSTCam", detector=DET)
    ratio = [
        row["read_noise_overscan_adu"] * truth.amp("R01_S01", row["amp"]).gain
        / truth.amp("R01_S01", row["amp"]).read_noise
        for row in rn
    ]  # fmt: skip
    np.testing.assert_allclose(ratio, 1.0, atol=0.03)


@pytest.mark.slow
def test_pipetask_logs_carry_no_credentials(pg_analysed, postgres_server):
    repo, _, _ = pg_analysed
    query = "instrument='LSSTCam' AND exposure.observation_type='bias' AND exposure.science_program='13600'"
    proc = subprocess.run(
        [PIPETASK, "--log-level", "DEBUG", "run", "--register-dataset-types", "-b", repo,
         "-i", "LSSTCam/raw/all", "-o", "u/eo/logcheck", "-p", pipelines_dir("overscan.yaml"), "-d", query],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "quanta successfully" in proc.stderr
    assert _password(postgres_server) not in proc.stdout + proc.stderr
