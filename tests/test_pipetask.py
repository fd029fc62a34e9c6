"""The first EO task end to end: create repo, ingest, ``pipetask run``, read the outputs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from lsst.daf.butler import Butler

from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.overscan import EoOverscanTask
from lsst.eo.baseline.paths import pipelines_dir
from lsst.eo.baseline.rawio import read_raw
from lsst.eo.baseline.repo import create_repo

from tests.rawfactory import make_raw

PIPETASK = os.path.join(os.path.dirname(sys.executable), "pipetask")

# Injected values.  Raw pixels are rounded to integers, which adds 1/12 adu^2 of variance.
LEVEL = 20000.0
NOISE = 5.0
EXPECTED_STDEV = np.hypot(NOISE, np.sqrt(1.0 / 12.0))


@pytest.mark.slow
def test_pipetask_run_overscan(tmp_path):
    raws = []
    for seq in (1, 2):
        for det in ("R22_S11", "R01_S01"):
            raws.append(
                make_raw(
                    str(tmp_path / "raw" / f"{seq}_{det}.fits"),
                    detector=det,
                    seqnum=seq,
                    level=LEVEL,
                    noise=NOISE,
                    seed=seq,
                )  # fmt: skip
            )
    # A flat that the data query must leave out.
    make_raw(str(tmp_path / "raw" / "flat.fits"), seqnum=3, imgtype="FLAT", testtype="PTC", exptime=5.0)
    repo = str(tmp_path / "repo")
    butler = create_repo(repo)
    assert ingest_raws(butler, [str(tmp_path / "raw")], progress=False).ok
    del butler

    query = "instrument='LSSTCam' AND exposure.observation_type='bias' AND exposure.science_program='13600'"
    cmd = [
        PIPETASK, "run", "--register-dataset-types", "-b", repo, "-i", "LSSTCam/raw/all", "-o", "u/eo/test",
        "-p", pipelines_dir("overscan.yaml"), "-d", query,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Executed 4 quanta successfully" in proc.stderr

    butler = Butler.from_config(repo, collections="u/eo/test")
    refs = butler.query_datasets("eoOverscanStats")
    assert len(refs) == 4
    for ref in refs:
        table = butler.get(ref)
        assert len(table) == 16
        assert table["serial_overscan_median_adu"].unit == "adu"
        # Median of ~116k Gaussian pixels: statistical error ~0.02 adu; rounding to integers
        # shifts a median by at most 0.5 adu.
        assert np.all(np.abs(table["serial_overscan_median_adu"] - LEVEL) <= 0.5)
        # Relative error of a standard deviation from N pixels is 1/sqrt(2N) ~ 0.2% (N >= 96k);
        # 3-sigma clipping of a Gaussian lowers it by ~1.5%: allow 2.5%.
        np.testing.assert_allclose(table["serial_overscan_stdev_adu"], EXPECTED_STDEV, rtol=0.025)
        assert np.all(np.abs(table["parallel_overscan_median_adu"] - LEVEL) <= 0.5)


def test_task_run_matches_numpy(tmp_path):
    """EoOverscanTask.run on an in-memory raw gives the numpy statistics of the same regions."""
    path = make_raw(str(tmp_path / "r.fits"), detector="R01_S01", level=1000.0, noise=3.0, seed=9)
    raw = read_raw(path)
    result = EoOverscanTask().run(raw)
    table = result.stats
    assert list(table["amp"]) == raw.amp_names
    amp = raw["C07"]
    row = table[list(table["amp"]).index("C07")]
    assert row["serial_overscan_median_adu"] == np.median(amp.serial_overscan[:, 3:-3])
    assert row["parallel_overscan_median_adu"] == np.median(amp.parallel_overscan[3:, :])
    assert table.meta["DET_NAME"] == "R01_S01"
