"""Raw ingest into a butler repository: round trip, idempotency, transfers, bad files, CLI."""

import os
import shutil
import subprocess
import sys

import fitsio
import numpy as np
import pytest
from lsst.daf.butler import Butler

from lsst.eo.baseline.ingest import find_raw_files, ingest_raws
from lsst.eo.baseline.rawio import read_raw
from lsst.eo.baseline.repo import create_repo

from tests.rawfactory import make_raw

EO = os.path.join(os.path.dirname(sys.executable), "eo-baseline")
BUTLER = os.path.join(os.path.dirname(sys.executable), "butler")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    """Two detectors (e2v R22_S11, ITL R01_S01) x (2 biases + 1 flat), in nested directories."""
    top = tmp_path_factory.mktemp("raws")
    specs = [(1, "BIAS", "BIAS", 0.0, 0.0), (2, "BIAS", "BIAS", 0.0, 0.0), (3, "FLAT", "PTC", 15.0, 5000.0)]
    for seq, imgtype, testtype, exptime, signal in specs:
        for det in ("R22_S11", "R01_S01"):
            make_raw(
                str(top / f"2026112{seq}" / f"{det}.fits"),
                detector=det,
                seqnum=seq,
                imgtype=imgtype,
                testtype=testtype,
                exptime=exptime,
                signal=signal,
                overrides={"CCOBFLUX": 1234.5 if imgtype == "FLAT" else None},
                seed=seq,
            )
    return str(top)


def _bad_files(directory, good_file):
    """Write one file per failure mode; return {path: expected words in the reason}."""
    os.makedirs(directory, exist_ok=True)
    bad = {}
    data = open(good_file, "rb").read()
    p = os.path.join(directory, "truncated.fits")
    open(p, "wb").write(data[: len(data) // 3])
    bad[p] = "truncated"
    p = os.path.join(directory, "text.fits")
    open(p, "w").write("SIMPLE = nonsense\n" * 300)
    bad[p] = "not a readable FITS file"
    p = make_raw(os.path.join(directory, "noseq.fits"), seqnum=77, drop=("SEQNUM",))
    bad[p] = "SEQNUM"
    p = make_raw(os.path.join(directory, "baddate.fits"), seqnum=78, overrides={"DATE-BEG": "soon"})
    bad[p] = "DATE-BEG"
    raw = read_raw(good_file)
    p = os.path.join(directory, "fewhdus.fits")
    with fitsio.FITS(p, "rw", clobber=True) as f:
        f.write(None, header=[{"name": k, "value": v} for k, v in raw.header.items()])
        for amp in list(raw.amps.values())[:8]:
            f.write(amp.array, extname=amp.layout.extname, compress="RICE")
    bad[p] = "has 8 of the 16 amplifier segments"
    return bad


def _records(butler):
    return {r.id: r for r in butler.query_dimension_records("exposure", instrument="LSSTCam")}


def test_round_trip(raw_dir, tmp_path):
    butler = create_repo(str(tmp_path / "repo"))
    report = ingest_raws(butler, [raw_dir], progress=False)
    assert report.ok, report.bad
    assert (report.n_files, report.ingested, report.new_exposures) == (6, 6, 3)
    records = _records(butler)
    assert sorted(records) == [2026112500001, 2026112500002, 2026112500003]
    flat = records[2026112500003]
    assert flat.observation_type == "flat"
    assert flat.observation_reason == "ptc"
    assert flat.science_program == "13600"
    assert flat.exposure_time == 15.0
    assert flat.physical_filter == "NONE"
    assert flat.obs_id == "MC_C_20261125_000003"
    refs = butler.query_datasets("raw", collections="LSSTCam/raw/all")
    assert len(refs) == 6
    # What comes out of the butler is what is in the file.
    ref = next(r for r in refs if r.dataId["detector"] == 94 and r.dataId["exposure"] == 2026112500003)
    raw = butler.get(ref)
    direct = read_raw(os.path.join(raw_dir, "20261123", "R22_S11.fits"))
    assert raw.detector.id == 94
    for name in ("C10", "C00"):
        assert np.array_equal(raw[name].array, direct[name].array)
    info = butler.get(
        "eoExposureInfo", instrument="LSSTCam", exposure=2026112500003, collections="LSSTCam/raw/all"
    )
    assert info["CCOBFLUX"] == 1234.5
    assert info["IMGTYPE"] == "FLAT"


def test_idempotent_and_says_so(raw_dir, tmp_path, caplog):
    butler = create_repo(str(tmp_path / "repo"))
    first = ingest_raws(butler, [raw_dir], progress=False)
    assert first.ingested == 6
    n_datasets = len(butler.query_datasets("raw", collections="LSSTCam/raw/all"))
    with caplog.at_level("INFO"):
        second = ingest_raws(butler, [raw_dir], jobs=2, progress=False)
    assert (second.ingested, second.already_present, second.new_exposures) == (0, 6, 0)
    assert second.ok
    assert len(butler.query_datasets("raw", collections="LSSTCam/raw/all")) == n_datasets
    assert "0 ingested, 6 already present" in second.summary()


@pytest.mark.parametrize("transfer", ["copy", "symlink"])
def test_transfer_modes(raw_dir, tmp_path, transfer):
    repo = str(tmp_path / "repo")
    butler = create_repo(repo)
    report = ingest_raws(butler, [raw_dir], transfer=transfer, progress=False)
    assert report.ingested == 6
    ref = butler.query_datasets("raw", collections="LSSTCam/raw/all")[0]
    uri = butler.getURI(ref).ospath
    assert uri.startswith(os.path.abspath(repo))
    if transfer == "symlink":
        assert os.path.islink(uri)
        assert os.path.realpath(uri).startswith(raw_dir)
    else:
        assert not os.path.islink(uri)
    assert butler.get(ref, parameters={"amps": ["C11"]}).amp_names == ["C11"]


def test_bad_files_reported_good_files_ingested(raw_dir, tmp_path):
    bad = _bad_files(str(tmp_path / "bad"), os.path.join(raw_dir, "20261121", "R22_S11.fits"))
    repo = str(tmp_path / "repo")
    create_repo(repo)
    missing = str(tmp_path / "does_not_exist")
    proc = subprocess.run(
        [EO, "ingest", repo, raw_dir, str(tmp_path / "bad"), missing, "-j", "2", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "6 ingested" in summary and f"{len(bad) + 1} bad" in summary
    for path, words in bad.items():
        line = next((ln for ln in proc.stderr.splitlines() if path in ln), None)
        assert line is not None, f"{path} not reported:\n{proc.stderr}"
        assert words in line, line
    assert missing in proc.stderr
    butler = Butler.from_config(repo)
    assert len(butler.query_datasets("raw", collections="LSSTCam/raw/all")) == 6


def test_inconsistent_exposure_rejected(tmp_path):
    """Two files of one exposure that disagree: the second is reported, the first ingested."""
    a = make_raw(
        str(tmp_path / "a" / "R22_S11.fits"), detector="R22_S11", seqnum=5, imgtype="FLAT", exptime=1.0
    )
    b = make_raw(
        str(tmp_path / "b" / "R22_S12.fits"), detector="R22_S12", seqnum=5, imgtype="DARK", exptime=1.0
    )
    butler = create_repo(str(tmp_path / "repo"))
    report = ingest_raws(butler, [a, b], progress=False)
    assert report.ingested == 1
    assert len(report.bad) == 1
    path, reason = report.bad[0]
    assert path == b and "observation_type" in reason and a in reason


def test_many_files_cross_batches(tmp_path):
    """600 files (more than one ingest batch), made by copying one file and editing SEQNUM/OBSID."""
    template = make_raw(str(tmp_path / "t.fits"), detector="R22_S11", noise=0.0)
    paths = []
    for seq in range(1, 601):
        p = str(tmp_path / "many" / f"{seq:04d}.fits")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        shutil.copyfile(template, p)
        with fitsio.FITS(p, "rw") as f:
            f[0].write_key("SEQNUM", seq)
            f[0].write_key("OBSID", f"MC_C_20261125_{seq:06d}")
        paths.append(p)
    butler = create_repo(str(tmp_path / "repo"))
    report = ingest_raws(butler, [str(tmp_path / "many")], jobs=2, progress=False)
    assert report.ok, report.bad[:3]
    assert report.ingested == 600 and report.new_exposures == 600
    assert len(butler.query_datasets("raw", collections="LSSTCam/raw/all", limit=None)) == 600


def test_find_raw_files(raw_dir, tmp_path):
    files, missing = find_raw_files([raw_dir, os.path.join(raw_dir, "20261121", "R22_S11.fits"), "nope"])
    assert len(files) == 6  # de-duplicated
    assert missing == [(os.path.abspath("nope"), "no such file or directory")]


def test_butler_register_instrument_cli(tmp_path):
    repo = str(tmp_path / "repo")
    subprocess.run([BUTLER, "create", repo], check=True, capture_output=True)
    for _ in range(2):  # idempotent
        proc = subprocess.run(
            [BUTLER, "register-instrument", repo, "lsst.eo.baseline.LsstCam"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    butler = Butler.from_config(repo)
    detectors = butler.query_dimension_records("detector", instrument="LSSTCam", limit=None)
    assert len(detectors) == 205
    by_name = {d.full_name: d for d in detectors}
    assert by_name["R22_S11"].id == 94
    assert by_name["R00_SW0"].purpose == "WAVEFRONT"
    filters = {f.name for f in butler.query_dimension_records("physical_filter", instrument="LSSTCam")}
    assert {"NONE", "ph_05", "uv"} <= filters
