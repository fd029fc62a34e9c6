"""The B-protocol analysis through pipetask: steps, data selection, calibration certification."""

import os
import subprocess
import sys

import numpy as np
import pytest
from lsst.daf.butler import Butler, CollectionType

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.readNoise import EoReadNoiseTask
from lsst.eo.baseline.repo import create_repo
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
    steps = ["bias", "dark", "flat", "stability", "lambda", "persistence"]
    assert [(r.step.name, r.status) for r in results] == [(s, "done") for s in steps], [
        r.message for r in results
    ]
    butler = Butler.from_config(repo)
    assert butler.collections.get_info("LSSTCam/calib/eo/13600").type == CollectionType.CALIBRATION
    chain = butler.collections.get_info("u/eo/13600").children
    assert list(chain) == [f"u/eo/13600/{s}" for s in reversed(steps)] + ["LSSTCam/calib/eo/13600"]
    for name in ("eoBias", "eoDark"):
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
    direct = EoReadNoiseTask().run(
        [RawFileHandle(os.path.join(raws, p)) for _, p in files], get_camera()["R22_S11"]
    )
    butler = Butler.from_config(repo, collections="u/eo/13600")
    piped = butler.get("eoReadNoise", instrument="LSSTCam", detector=94)
    np.testing.assert_array_equal(
        piped["read_noise_overscan_adu"], direct.readNoise["read_noise_overscan_adu"]
    )
    stab = butler.get("eoBiasStabilityExposures", instrument="LSSTCam", detector=94)
    assert set(stab["exposure"]) == bias_ids
    cti = butler.get("eoCtiVsSignal", instrument="LSSTCam", detector=94)
    ptc_ids = set(int(e) for e in truth.exposures[truth.exposures["testtype"] == "PTC"]["exposure_id"])
    assert set(cti["exposure"]) == ptc_ids


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
    assert [r.status for r in results] == ["skipped"] * 6
    assert "no exposure matches" in results[0].message
