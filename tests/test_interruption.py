"""Interrupted processing: a killed ``pipetask run`` and a killed ``eo-baseline run`` resume cleanly.

* ``pipetask run`` of the overscan pipeline (one quantum per raw) is killed (SIGKILL) after some
  quanta wrote their outputs, then re-run with ``--extend-run --skip-existing-in <output>
  --clobber-outputs``: the outputs equal those of an uninterrupted run and no dataset is duplicated.
* The runner (``run_analysis``, bias step) is killed the same way, then run again: it resumes the
  step instead of failing, certifies the combined bias once, and a further run changes nothing.

Raws are small synthetic biases of one detector (tests/rawfactory.py).
"""

import os
import re
import signal
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from astropy.table import Table
from lsst.daf.butler import Butler, MissingCollectionError, MissingDatasetTypeError

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.biasStability import EoBiasStabilityTask
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.paths import pipelines_dir
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.runner import run_analysis

from tests.rawfactory import make_raw
from tests.reliability_helpers import wait_for

PIPETASK = os.path.join(os.path.dirname(sys.executable), "pipetask")
N_OVERSCAN = 12  # quanta of the overscan pipeline (~0.4 s each)
OVERSCAN_RUN, STEP_RUN = "13601", "13602"
STEP_BIASES = 4
STEP_OUTPUTS = ("eoBias", "eoBiasStability", "eoBiasStabilityExposures", "eoBiasStabilityPlot")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    top = tmp_path_factory.mktemp("interruption")
    for i in range(N_OVERSCAN):
        make_raw(str(top / "raw" / f"o{i}.fits"), seqnum=i + 1, runnum=OVERSCAN_RUN, seed=i)
    for i in range(STEP_BIASES):
        make_raw(str(top / "raw" / f"b{i}.fits"), seqnum=100 + i, runnum=STEP_RUN, seed=100 + i)
    path = str(top / "repo")
    assert ingest_raws(create_repo(path), [str(top / "raw")], progress=False).ok
    return path


def _overscan_cmd(repo, output):
    query = f"instrument='LSSTCam' AND exposure.science_program='{OVERSCAN_RUN}'"
    return [PIPETASK, "run", "--register-dataset-types", "-b", repo, "-i", "LSSTCam/raw/all", "-o", output,
            "-p", pipelines_dir("overscan.yaml"), "-d", query, "-j", "1"]  # fmt: skip


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 120.0) -> None:
    """SIGKILL the process group of ``proc`` (started with a new session) once ``condition()``."""
    reached = wait_for(lambda: condition() or proc.poll() is not None, timeout)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reached, "the process did not reach the point where it was to be killed"


def _per_data_id(butler, dataset_type, collection):
    """Number of datasets per data ID of a type in a collection (chains flattened, all runs)."""
    try:
        refs = butler.query_datasets(dataset_type, collections=collection, find_first=False, explain=False)
    except MissingDatasetTypeError:
        refs = []
    return Counter(tuple(sorted(ref.dataId.required.items())) for ref in refs)


def _registered(repo: str, dataset_type: str, collection: str):
    """A function counting the datasets of a type in a collection (0 until both exist)."""
    watcher = Butler.from_config(repo)

    def count() -> int:
        try:
            watcher.registry.refresh()
            return len(watcher.query_datasets(dataset_type, collections=collection, explain=False))
        except (MissingCollectionError, MissingDatasetTypeError):
            return 0

    return count


@pytest.mark.slow
def test_killed_pipetask_resumes_to_identical_outputs(repo):
    output = "u/test/interrupted"
    proc = subprocess.Popen(_overscan_cmd(repo, output), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    registered = _registered(repo, "eoOverscanStats", output)
    _kill_when(proc, lambda: registered() >= 3)
    assert proc.returncode == -signal.SIGKILL, "pipetask finished before it could be killed"
    # The first writeable access rolls back the killed process's open SQLite transaction.
    butler = Butler.from_config(repo, writeable=True)
    runs_before = [c for c in butler.collections.get_info(output).children if c.startswith(output + "/")]
    n_before = len(butler.query_datasets("eoOverscan_metadata", collections=output, explain=False))
    assert len(runs_before) == 1 and n_before < N_OVERSCAN
    # pipe_base writes a quantum's log after its metadata, and --skip-existing-in takes the metadata
    # as the mark of a finished quantum: a kill between the two puts leaves that one quantum finished
    # without its log, and the re-run does not redo it.  Only the quanta with metadata may lack a log.
    with_metadata = set(_per_data_id(butler, "eoOverscan_metadata", output))
    without_log = with_metadata - set(_per_data_id(butler, "eoOverscan_log", output))
    assert len(without_log) <= 1, without_log
    resume = _overscan_cmd(repo, output) + ["--extend-run", "--skip-existing-in", output, "--clobber-outputs"]
    done = subprocess.run(resume, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # Only the quanta without outputs (or with partial ones) ran again.
    total = re.findall(
        r"Executed (\d+) quanta successfully, 0 failed and 0 remain out of total (\d+)", done.stderr
    )
    assert total and int(total[-1][1]) == N_OVERSCAN - n_before, done.stderr[-2000:]
    reference = subprocess.run(_overscan_cmd(repo, "u/test/reference"), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-3000:]

    butler = Butler.from_config(repo)
    runs_after = [c for c in butler.collections.get_info(output).children if c.startswith(output + "/")]
    assert runs_after == runs_before  # resumed in the same RUN collection
    # No duplicate: one dataset per type and data ID in the whole output chain.
    for dataset_type in ("eoOverscanStats", "eoOverscan_metadata"):
        counts = _per_data_id(butler, dataset_type, output)
        assert len(counts) == N_OVERSCAN and set(counts.values()) == {1}, (dataset_type, counts)
    logs = _per_data_id(butler, "eoOverscan_log", output)
    assert set(logs.values()) == {1} and len(logs) == N_OVERSCAN - len(without_log), logs
    assert not without_log & set(logs)
    # Identical outputs to the uninterrupted run.
    ref_refs = {
        ref.dataId["exposure"]: ref
        for ref in butler.query_datasets("eoOverscanStats", collections="u/test/reference")
    }
    for ref in butler.query_datasets("eoOverscanStats", collections=output):
        table: Table = butler.get(ref)
        expected: Table = butler.get(ref_refs[ref.dataId["exposure"]])
        assert table.colnames == expected.colnames
        for name in table.colnames:
            if table[name].dtype.kind == "f":
                np.testing.assert_array_equal(table[name], expected[name])
            else:
                assert list(table[name]) == list(expected[name])


def _runner_script(repo: str) -> list[str]:
    code = (
        "from lsst.eo.baseline.runner import run_analysis; "
        f"run_analysis({repo!r}, {STEP_RUN!r}, 'b_protocol', steps=['bias'])"
    )
    return [sys.executable, "-c", code]


@pytest.mark.slow
def test_killed_runner_resumes(repo):
    output = f"u/eo/{STEP_RUN}/bias"
    calib = f"LSSTCam/calib/eo/{STEP_RUN}"
    proc = subprocess.Popen(_runner_script(repo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    watcher = Butler.from_config(repo)

    def some_outputs_registered() -> bool:
        try:
            watcher.registry.refresh()
            return any(
                watcher.query_datasets(name, collections=output, explain=False) for name in STEP_OUTPUTS[:3]
            )
        except Exception:  # noqa: BLE001 - the chain or dataset types do not exist yet
            return False

    # The runner and its pipetask child share the new session's process group.
    _kill_when(proc, some_outputs_registered)
    assert proc.returncode == -signal.SIGKILL, "the runner finished before it could be killed"
    butler = Butler.from_config(repo, writeable=True)
    before = {name: len(_per_data_id(butler, name, output)) for name in STEP_OUTPUTS}
    assert 0 < sum(before.values()) < len(STEP_OUTPUTS), before

    results = run_analysis(repo, STEP_RUN, "b_protocol", steps=["bias"])
    assert [(r.step.name, r.status) for r in results] == [("bias", "done")], results[0].message[-3000:]
    assert "--extend-run" in results[0].commands[0] and "--skip-existing-in" in results[0].commands[0]
    again = run_analysis(repo, STEP_RUN, "b_protocol", steps=["bias"])
    assert [(r.step.name, r.status) for r in again] == [("bias", "done")], again[0].message[-3000:]

    butler = Butler.from_config(repo)
    for name in STEP_OUTPUTS:
        counts = _per_data_id(butler, name, output)
        assert list(counts.values()) == [1], (name, counts)
    certified = list(butler.registry.queryDatasetAssociations("eoBias", collections=calib))
    assert len(certified) == 1
    runs = [c for c in butler.collections.get_info(output).children if c.startswith(output + "/")]
    assert len(runs) == 1
    # The resumed bias stability is the task's on the same raws.
    truth_files = sorted(
        os.path.join(root, f) for root, _, files in os.walk(os.path.join(os.path.dirname(repo), "raw"))
        for f in files if f.startswith("b")
    )  # fmt: skip
    handles = [RawFileHandle(p) for p in truth_files]
    direct = EoBiasStabilityTask().run(handles, get_camera()["R22_S11"]).stability
    piped = butler.get("eoBiasStability", instrument="LSSTCam", detector=94, collections=output)
    np.testing.assert_array_equal(piped["level_mean_adu"], direct["level_mean_adu"])
