"""Run summary files with provenance: export, read back, checks, and use as a previous run."""

import re

import numpy as np
import pytest
from astropy.table import Table
from lsst.daf.butler import CollectionType, DatasetType

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.metrics import load_metrics
from lsst.eo.baseline.repo import create_repo
from lsst.eo.baseline.runCompare import compare_runs, load_runs
from lsst.eo.baseline.runSummary import EoRunSummaryConfig, build_run_summary
from lsst.eo.baseline.summaryExport import (
    SummaryFileError,
    config_digest,
    export_summary,
    provenance,
    read_summary_file,
    summary_paths,
    write_summary,
)
from lsst.eo.baseline.version import __version__

METRICS = {m.name: m for m in load_metrics()}


def _summary(read_noise):
    det = get_camera()["R22_S11"]
    return build_run_summary(
        {"eoReadNoise": {det.id: Table({"amp": det.amp_names, "read_noise_e": read_noise})}}
    )


def test_write_read_round_trip_with_provenance(tmp_path):
    values = np.linspace(5.0, 6.5, 16)
    values[2] = np.nan
    meta = provenance(
        "/repo", ["u/eo/13600"], digest=config_digest(["a = 1\n"]), date="2026-12-02T00:00:00+00:00"
    )
    parquet, ecsv = write_summary(_summary(values), str(tmp_path / "run13600.parquet"), meta)
    assert (parquet, ecsv) == summary_paths(str(tmp_path / "run13600"))
    for path in (parquet, ecsv):
        t = read_summary_file(path)
        assert t.meta["ACQUISITION_RUN"] == "13600"  # from the collection name
        assert t.meta["REPOSITORY"] == "/repo" and t.meta["COLLECTION"] == "u/eo/13600"
        assert t.meta["PACKAGE_VERSION"] == __version__ and t.meta["DATE"].startswith("2026-12-02")
        assert t.meta["CONFIG_DIGEST"] == config_digest(["a = 1\n"]) != config_digest(["a = 2\n"])
        assert t.meta["SUMMARY_SOURCE"] == "eo_baseline" and t.meta["UNITS"]["read_noise"] == "e-"
        np.testing.assert_array_equal(np.asarray(t["read_noise"]), values)  # NaN included
        assert list(t["amp"]) == get_camera()["R22_S11"].amp_names


def test_bad_files_are_reported_by_name(tmp_path):
    parquet, ecsv = write_summary(_summary(np.full(16, 6.0)), str(tmp_path / "s"), provenance("r", ["c"]))
    t = Table.read(ecsv)
    t.meta["UNITS"]["read_noise"] = "adu"
    t.write(tmp_path / "wrong_unit.ecsv")
    with pytest.raises(SummaryFileError, match=r"wrong_unit\.ecsv.*read_noise in 'adu', expected 'e-'"):
        read_summary_file(str(tmp_path / "wrong_unit.ecsv"))
    t = Table.read(ecsv)
    t.remove_column("vendor")
    t.write(tmp_path / "no_vendor.ecsv")
    with pytest.raises(SummaryFileError, match=r"no_vendor\.ecsv: missing column\(s\) vendor"):
        read_summary_file(str(tmp_path / "no_vendor.ecsv"))
    Table({"a": [1]}).write(tmp_path / "other.ecsv")
    with pytest.raises(SummaryFileError, match="not an eo_baseline run summary"):
        read_summary_file(str(tmp_path / "other.ecsv"))


def test_export_from_a_repository_and_compare_with_the_file(tmp_path):
    repo = str(tmp_path / "repo")
    butler = create_repo(repo)
    butler.registry.registerDatasetType(
        DatasetType("eoRunSummary", ("instrument",), "ArrowAstropy", universe=butler.dimensions)
    )
    run = "u/eo/13550/summary"
    butler.collections.register(run, CollectionType.RUN)
    butler.collections.register("u/eo/13550", CollectionType.CHAINED)
    butler.collections.redefine_chain("u/eo/13550", [run])
    before = np.full(16, 6.0)
    from lsst.daf.butler import Butler

    writer = Butler.from_config(repo, writeable=True, run=run)
    writer.put(_summary(before), "eoRunSummary", instrument="LSSTCam")
    config = EoRunSummaryConfig()
    writer.registry.registerDatasetType(
        DatasetType("eoRunSummary_config", (), "Config", universe=writer.dimensions)
    )
    writer.put(config, "eoRunSummary_config")
    parquet, ecsv = export_summary(repo, ["u/eo/13550"], str(tmp_path / "run6.ecsv"))
    t = read_summary_file(parquet)
    assert t.meta["ACQUISITION_RUN"] == "13550" and t.meta["REPOSITORY"] == repo
    assert re.fullmatch(r"[0-9a-f]{64}", t.meta["CONFIG_DIGEST"])
    # The exported file, the repository's collection and REPO:COLLECTION all give the same run.
    after = before.copy()
    after[0] = 7.0
    runs, where = load_runs(
        {"file": ecsv, "same repo": "u/eo/13550", "other repo": f"{repo}:u/eo/13550"}, repo
    )
    assert where["file"] == f"file {ecsv}" and where["other repo"] == f"{repo}:u/eo/13550"
    runs["now"] = _summary(after)
    c = compare_runs(runs, [METRICS["read_noise"]])
    assert c["metrics"]["read_noise"]["exceeds"] == {
        "same repo": [],
        "other repo": [],
        "now": ["R22_S11 C10"],
    }
