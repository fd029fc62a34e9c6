"""Ingest reliability: bad files, interrupted and concurrent ingests, input sanity, credentials.

Every case here is listed in doc/reliability.rst ("Ingest and repository").  Files are copies of one
small factory-made e2v raw (R22_S11) with SEQNUM/OBSID and other keywords edited, so that making
them costs little; subprocesses run the real ``eo-baseline ingest`` command.
"""

from __future__ import annotations

import fcntl
import filecmp
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import fitsio
import numpy as np
import pytest
import sqlalchemy
import yaml
from lsst.daf.butler import Butler, MissingDatasetTypeError

from lsst.eo.baseline import ingest as ingest_module
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import (
    INGEST_LOCK_NAME,
    find_raw_files,
    ingest_raws,
    log_report,
    validate_run_name,
)
from lsst.eo.baseline.rawio import read_raw
from lsst.eo.baseline.repo import create_repo

from tests.rawfactory import make_raw

EO = os.path.join(os.path.dirname(sys.executable), "eo-baseline")
RUN = "LSSTCam/raw/all"
DAYOBS = 20261125
DETECTOR = "R22_S11"
SATURATED = 2**18 - 1  # the LSSTCam ADCs are 18-bit
_STRUCTURAL = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND")

# ``eo-baseline`` with ingest batches of 2 files; each batch start is recorded in a marker file and
# followed by a short pause, so that a test can SIGKILL the process part-way.
_SLOW_INGEST = """
import sys, time
from lsst.daf.butler.direct_butler import DirectButler
from lsst.eo.baseline import ingest
from lsst.eo.baseline.cli import main

ingest._BATCH = 2
marker = sys.argv[1]
original = DirectButler.ingest

def slow_ingest(self, *datasets, **kwargs):
    with open(marker, "a") as f:
        f.write("batch\\n")
    original(self, *datasets, **kwargs)
    time.sleep(0.3)

DirectButler.ingest = slow_ingest
main(sys.argv[2:], prog_name="eo-baseline")
"""

# ``eo-baseline -vv ...`` with every logger (SQLAlchemy, daf_butler, psycopg2) at DEBUG.
_DEBUG_CLI = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
for name in ("sqlalchemy.engine", "sqlalchemy.pool", "lsst.daf.butler"):
    logging.getLogger(name).setLevel(logging.DEBUG)
from lsst.eo.baseline.cli import main
main(sys.argv[1:], prog_name="eo-baseline")
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    """One noiseless raw (compresses to < 1 MB, so copies are cheap)."""
    return make_raw(str(tmp_path_factory.mktemp("template") / "t.fits"), detector=DETECTOR, noise=0.0)


def _obsid(seq: int) -> str:
    return f"MC_C_{DAYOBS}_{seq:06d}"


def _exposure(seq: int) -> int:
    return DAYOBS * 100000 + seq


def _copy(template: str, path: str, seq: int, edits: dict[str, Any] | None = None, drop: tuple = ()) -> str:
    """Copy the template as exposure ``seq``; ``edits`` set keywords (None: null), ``drop`` deletes."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    shutil.copyfile(template, path)
    with fitsio.FITS(path, "rw") as f:
        f[0].write_key("SEQNUM", seq)
        f[0].write_key("OBSID", _obsid(seq))
        for key, value in (edits or {}).items():
            f[0].write_key(key, value)
        for key in drop:
            f[0].delete_key(key)
    return path


def _copies(template: str, directory: str, seqs: range | list[int]) -> list[str]:
    return [_copy(template, os.path.join(directory, f"{seq:04d}.fits"), seq) for seq in seqs]


def _rewrite(
    template: str,
    path: str,
    seq: int,
    change: Callable[[list[tuple[str, np.ndarray]]], list[tuple[str, np.ndarray]]],
) -> str:
    """Rewrite the template's segments through ``change`` (a list of (EXTNAME, array)).

    Integer segments are Rice-compressed, floating-point ones GZIP-compressed (lossless).
    """
    raw = read_raw(template)
    header = dict(raw.header, SEQNUM=seq, OBSID=_obsid(seq))
    segments = change([(a.layout.extname, a.array) for a in raw.amps.values()])
    with fitsio.FITS(path, "rw", clobber=True) as f:
        f.write(None, header=[{"name": k, "value": v} for k, v in header.items() if k not in _STRUCTURAL])
        for extname, array in segments:
            f.write(array, extname=extname, compress="RICE" if array.dtype.kind == "i" else "GZIP")
    return path


def _replace_amp(index: int, make: Callable[[np.ndarray], np.ndarray]):
    def change(segments):
        name, array = segments[index]
        segments[index] = (name, make(array))
        return segments

    return change


def _raw_refs(butler: Butler, run: str = RUN) -> list:
    try:
        return butler.query_datasets("raw", collections=run, limit=None, explain=False)
    except MissingDatasetTypeError:  # nothing ingested yet
        return []


def _check_repository(butler: Butler, sources: dict[int, str], run: str = RUN) -> None:
    """Every source file is in the repository exactly once, with its file, record and metadata."""
    refs = _raw_refs(butler, run)
    keys = [(r.dataId["exposure"], r.dataId["detector"]) for r in refs]
    assert len(keys) == len(set(keys)) == len({r.id for r in refs})
    assert sorted(r.dataId["exposure"] for r in refs) == sorted(sources)
    stored = butler.stored_many(refs)
    assert all(stored.values()), [r.dataId for r, ok in stored.items() if not ok]
    for ref in refs:
        uri = butler.getURI(ref).ospath
        assert filecmp.cmp(uri, sources[ref.dataId["exposure"]], shallow=False), uri
    records = butler.query_dimension_records("exposure", instrument="LSSTCam", limit=None, explain=False)
    assert sorted(r.id for r in records) == sorted(sources)
    infos = butler.query_datasets("eoExposureInfo", collections=run, limit=None, explain=False)
    assert sorted(r.dataId["exposure"] for r in infos) == sorted(sources)


def _summary_counts(stdout: str) -> dict[str, int]:
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("Ingest into"), stdout
    return {
        key: int(re.search(rf"(\d+) {key}", line).group(1))
        for key in ("ingested", "already present", "bad", "new exposure")
    }


# --- 1. bad raw files -------------------------------------------------------------------------------


def test_bad_files_reported_pixel_problems_and_header_defaults_ingested(template, tmp_path):
    src = tmp_path / "in"
    amps = get_camera()[DETECTOR].ccd_type.amps
    good = {seq: _copy(template, str(src / f"good{seq}.fits"), seq) for seq in (1, 2)}
    # Pixel problems, format fine: must be ingested (the analysis tasks flag them).
    saturate = _replace_amp(5, lambda a: np.full_like(a, SATURATED))
    dead = _replace_amp(9, lambda a: np.full_like(a, 20000))  # stuck at the bias level, no noise
    pixel = {
        3: _rewrite(template, str(src / "zero_amp.fits"), 3, _replace_amp(2, np.zeros_like)),
        4: _rewrite(template, str(src / "saturated_amp.fits"), 4, saturate),
        5: _rewrite(template, str(src / "dead_amp.fits"), 5, dead),
    }
    # Header values with a documented default: ingested, with a warning naming file and keyword.
    defaults = {
        6: _copy(template, str(src / "imgtype_unknown.fits"), 6, {"IMGTYPE": "UNKNOWN"}),
        7: _copy(template, str(src / "filter_null.fits"), 7, {"FILTER": None}),
        8: _copy(template, str(src / "filter_empty.fits"), 8, {"FILTER": ""}),
        9: _copy(template, str(src / "no_runnum.fits"), 9, drop=("RUNNUM",)),
    }
    # Unusable files: reported with file, HDU and reason.
    data = open(template, "rb").read()
    truncated = str(src / "truncated.fits")
    open(truncated, "wb").write(data[: len(data) // 2])
    not_fits = str(src / "notes.fits")
    open(not_fits, "w").write("these are not FITS data\n" * 200)
    to_3d = _replace_amp(3, lambda a: a.reshape(2, a.shape[0] // 2, a.shape[1]))
    narrow = _replace_amp(3, lambda a: a[:, :500].copy())
    to_float = _replace_amp(3, lambda a: a.astype(np.float32))
    seg3 = amps[3].extname
    bad = {
        truncated: ["file is truncated", "HDU"],
        not_fits: ["not a readable FITS file"],
        _rewrite(template, str(src / "seg15.fits"), 20, lambda s: s[:5] + s[6:]): [
            "has 15 of the 16 amplifier segments",
            f"missing: {amps[5].extname}",
        ],
        _rewrite(template, str(src / "naxis3.fits"), 21, to_3d): [seg3, "NAXIS = 3", "(HDU 4)"],
        _rewrite(template, str(src / "shape.fits"), 22, narrow): [f"{seg3} has shape (2048, 500)", "(HDU 4)"],
        _rewrite(template, str(src / "float.fits"), 23, to_float): [seg3, "floating-point", "BITPIX -32"],
        _copy(template, str(src / "noseq.fits"), 24, drop=("SEQNUM",)): ["HDU 0", "SEQNUM"],
        _copy(template, str(src / "exptime.fits"), 25, {"EXPTIME": "abc"}): ["HDU 0", "EXPTIME = 'abc'"],
        _copy(template, str(src / "noraft.fits"), 26, drop=("RAFTBAY",)): ["HDU 0", "RAFTBAY"],
    }
    repo = str(tmp_path / "repo")
    create_repo(repo)
    proc = subprocess.run([EO, "ingest", repo, str(src), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    counts = _summary_counts(proc.stdout)
    assert counts == {"ingested": 9, "already present": 0, "bad": len(bad), "new exposure": 9}, proc.stdout
    assert "4 header warning(s)" in proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == len(bad), proc.stderr
    for path, words in bad.items():
        line = next((ln for ln in errors if f"Not ingested: {path}:" in ln), None)
        assert line is not None, f"{path} not reported:\n{proc.stderr}"
        for word in words:
            assert word in line, (word, line)
    for path in [*good.values(), *pixel.values(), *defaults.values()]:
        assert f"{path}:" not in "\n".join(errors)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING") and "Header warning" in ln]
    for keyword, paths in (("IMGTYPE", [defaults[6]]), ("FILTER", [defaults[7], defaults[8]]),
                           ("RUNNUM", [defaults[9]])):  # fmt: skip
        line = next((ln for ln in warnings if f": {keyword}" in ln), None)
        assert line is not None, proc.stderr
        assert all(p in line for p in paths), line
    butler = Butler.from_config(repo)
    records = {r.id: r for r in butler.query_dimension_records("exposure", instrument="LSSTCam")}
    assert sorted(records) == [_exposure(s) for s in range(1, 10)]
    assert records[_exposure(6)].observation_type == "unknown"
    assert records[_exposure(7)].physical_filter == records[_exposure(8)].physical_filter == "UNKNOWN"
    assert records[_exposure(9)].science_program == "unknown"
    assert (
        records[_exposure(1)].physical_filter == "NONE" and records[_exposure(1)].science_program == "13600"
    )

    # The pixel problems went in untouched.
    def amp(seq: int, index: int) -> np.ndarray:
        name = amps[index].name
        raw = butler.get("raw", instrument="LSSTCam", exposure=_exposure(seq), detector=94, collections=RUN,
                         parameters={"amps": [name]})  # fmt: skip
        return raw[name].array

    assert not amp(3, 2).any()
    assert (amp(4, 5) == SATURATED).all()
    assert (amp(5, 9) == 20000).all()


# --- 2. interrupted ingest ------------------------------------------------------------------------


def test_interrupted_ingest_resumes(template, tmp_path, monkeypatch, caplog):
    """Ctrl-C after two batches of three: the re-run adds the rest and says what it skipped."""
    files = _copies(template, str(tmp_path / "in"), range(1, 13))
    butler = create_repo(str(tmp_path / "repo"))
    monkeypatch.setattr(ingest_module, "_BATCH", 3)
    original = type(butler).ingest
    calls = []

    def interrupted(self, *datasets, **kwargs):
        calls.append(len(datasets))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *datasets, **kwargs)

    monkeypatch.setattr(type(butler), "ingest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest_raws(butler, [str(tmp_path / "in")], progress=False)
    monkeypatch.setattr(type(butler), "ingest", original)
    butler = Butler.from_config(str(tmp_path / "repo"), writeable=True)
    assert len(_raw_refs(butler)) == 6
    with caplog.at_level(logging.INFO, logger="lsst.eo.baseline.ingest"):
        report = ingest_raws(butler, [str(tmp_path / "in")], progress=False)
        log_report(report)
    assert report.ok, report.bad
    assert (report.ingested, report.already_present, report.new_exposures) == (6, 6, 0)
    assert report.skipped == files[:6]
    assert "Skipped 6 file(s) already ingested into LSSTCam/raw/all" in caplog.text
    assert files[0] in caplog.text
    _check_repository(butler, {_exposure(i + 1): f for i, f in enumerate(files)})


def test_sigkilled_copy_ingest_resumes(template, tmp_path):
    """SIGKILL part-way through a ``--transfer copy`` ingest; running it again completes it."""
    files = _copies(template, str(tmp_path / "in"), range(1, 13))
    repo = str(tmp_path / "repo")
    create_repo(repo)
    marker = str(tmp_path / "batches")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_INGEST, marker, "ingest", repo, str(tmp_path / "in"), "-t", "copy",
         "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(marker) and len(open(marker).read().split()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    before = len(_raw_refs(Butler.from_config(repo)))
    assert 4 <= before < 12, before  # some files in, not all
    rerun = subprocess.run(
        [EO, "ingest", repo, str(tmp_path / "in"), "-t", "copy", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    counts = _summary_counts(rerun.stdout)
    assert counts["already present"] == before and counts["ingested"] == 12 - before, rerun.stdout
    assert f"Skipped {before} file(s) already ingested" in rerun.stderr
    butler = Butler.from_config(repo)
    _check_repository(butler, {_exposure(i + 1): f for i, f in enumerate(files)})
    for ref in _raw_refs(butler):
        uri = butler.getURI(ref).ospath
        assert uri.startswith(os.path.abspath(repo)) and not os.path.islink(uri)


# --- 3. concurrency -------------------------------------------------------------------------------


def _concurrent_ingests(repo: str, a: list[str], b: list[str]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen([EO, "ingest", repo, *paths, "-t", "copy", "--no-progress"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for paths in (a, b)
    ]  # fmt: skip
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def _assert_concurrent_outcome(results, n_total: int, n_overlap: int) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    counts = [_summary_counts(r.stdout) for r in results]
    assert sum(c["ingested"] for c in counts) == n_total
    assert sum(c["already present"] for c in counts) == n_overlap
    assert sum(c["new exposure"] for c in counts) == n_total


def test_concurrent_ingests_sqlite(template, tmp_path):
    """Two ingests at once, overlapping (4 files) and disjoint (4 + 4) sets: nothing lost or doubled."""
    files = _copies(template, str(tmp_path / "in"), range(1, 13))
    repo = str(tmp_path / "repo")
    butler = create_repo(repo)
    # daf_butler's SQLite connections wait for locks (instead of failing with "database is locked").
    with butler._registry._db._engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("PRAGMA busy_timeout")).scalar() >= 60_000
    results = _concurrent_ingests(repo, files[:8], files[4:])
    _assert_concurrent_outcome(results, 12, 4)
    _check_repository(Butler.from_config(repo), {_exposure(i + 1): f for i, f in enumerate(files)})


def test_ingest_waits_for_the_repository_lock(template, tmp_path):
    """While another ingest holds the lock, an ingest reads headers, says it waits, then completes."""
    files = _copies(template, str(tmp_path / "in"), [1, 2])
    repo = str(tmp_path / "repo")
    create_repo(repo)
    err_path = str(tmp_path / "stderr")
    fd = os.open(os.path.join(repo, INGEST_LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o664)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                [EO, "ingest", repo, *files, "--no-progress"], stdout=subprocess.PIPE, stderr=err, text=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "waiting for it to end" not in open(err_path).read():
            assert proc.poll() is None, open(err_path).read()
            time.sleep(0.05)
        assert "waiting for it to end" in open(err_path).read()
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting
        assert _raw_refs(Butler.from_config(repo)) == []
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, open(err_path).read()
    assert _summary_counts(out)["ingested"] == 2
    assert "Ingest lock acquired after" in open(err_path).read()


def test_lost_races_are_rechecked_not_failed(template, tmp_path, monkeypatch):
    """Without the lock (another tool, lock-less file system) lost insert races must not fail."""
    files = _copies(template, str(tmp_path / "in"), range(1, 5))
    repo = str(tmp_path / "repo")
    first = create_repo(repo)
    assert ingest_raws(first, files, transfer="copy", progress=False).ok
    butler = Butler.from_config(repo, writeable=True)

    # Exposure records: the insert fails as a PostgreSQL INSERT does when another session has just
    # committed the same row; the record found on re-check is identical, so the files go on.
    registry_type = type(butler.registry)
    real_sync = registry_type.syncDimensionData

    def racing_sync(self, element, row, *args, **kwargs):
        if element == "exposure":
            raise sqlalchemy.exc.IntegrityError("INSERT INTO exposure ...", {}, Exception("duplicate key"))
        return real_sync(self, element, row, *args, **kwargs)

    # Datasets: this ingest's "already there?" checks ran before the other one committed.
    real_keys = ingest_module._existing_raw_keys
    key_calls = []

    def stale_keys(*args):
        key_calls.append(1)
        return set() if len(key_calls) == 1 else real_keys(*args)

    datastore_type = type(butler._datastore)
    real_knows = datastore_type.knows_these
    knows_calls = []

    def stale_knows(self, refs):
        knows_calls.append(1)
        return {r: False for r in refs} if len(knows_calls) == 1 else real_knows(self, refs)

    monkeypatch.setattr(registry_type, "syncDimensionData", racing_sync)
    monkeypatch.setattr(ingest_module, "_existing_raw_keys", stale_keys)
    monkeypatch.setattr(datastore_type, "knows_these", stale_knows)
    report = ingest_raws(butler, files, transfer="copy", progress=False)
    assert report.ok, report.bad
    assert (report.ingested, report.already_present, report.new_exposures) == (0, 4, 0)
    monkeypatch.undo()
    _check_repository(Butler.from_config(repo), {_exposure(i + 1): f for i, f in enumerate(files)})

    # A real conflict is still one: same exposure, different IMGTYPE.
    other = _copy(template, str(tmp_path / "other" / "dark.fits"), 1, {"IMGTYPE": "DARK"})
    report = ingest_raws(Butler.from_config(repo, writeable=True), [other], progress=False)
    assert [p for p, _ in report.bad] == [other]
    assert "conflicts with the repository" in report.bad[0][1] and "observation_type" in report.bad[0][1]


def _password(server) -> str:
    return yaml.safe_load(open(server.auth_file))[0]["password"]


def test_postgres_concurrent_ingests_and_no_password_in_debug_logs(template, tmp_path, postgres_server):
    files = _copies(template, str(tmp_path / "in"), range(1, 11))
    repo = str(tmp_path / "repo")
    create_repo(repo, registry_db=postgres_server.url, namespace="ingest_reliability")
    results = _concurrent_ingests(repo, files[:6], files[3:8])
    _assert_concurrent_outcome(results, 8, 3)
    # The last two files, then all of them again, with every logger at DEBUG.
    password = _password(postgres_server)
    proc = subprocess.run(
        [sys.executable, "-c", _DEBUG_CLI, "-vv", "ingest", repo, str(tmp_path / "in"), "-t", "copy",
         "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _summary_counts(proc.stdout)["ingested"] == 2
    assert "DEBUG sqlalchemy.engine" in proc.stderr and "DEBUG lsst.eo.baseline.ingest" in proc.stderr
    assert password not in proc.stdout + proc.stderr
    for r in results:
        assert password not in r.stdout + r.stderr
    butler = Butler.from_config(repo)
    assert butler._registry._db.dialect.name == "postgresql"
    _check_repository(butler, {_exposure(i + 1): f for i, f in enumerate(files)})


# --- 4. input sanity ------------------------------------------------------------------------------


def _snapshot(top: str, exclude: str) -> set[str]:
    found = set()
    for root, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) != exclude]
        found.update(os.path.join(root, n) for n in names + dirs)
    return found


@pytest.mark.parametrize("run", ["../../outside", "/tmp/outside", "LSSTCam/./raw", "LSSTCam//raw", "a/.."])
def test_run_name_cannot_escape_the_repository(template, tmp_path, run):
    src = _copy(template, str(tmp_path / "in" / "a.fits"), 1)
    repo = str(tmp_path / "deep" / "er" / "repo")
    butler = create_repo(repo)
    before = _snapshot(str(tmp_path), repo)
    with pytest.raises(ValueError, match="outside the repository"):
        ingest_raws(butler, [src], transfer="copy", run=run, progress=False)
    assert _snapshot(str(tmp_path), repo) == before
    validate_run_name("u/someone/raw-2026.11")  # ordinary names pass


def test_cli_refuses_an_escaping_run_name_as_a_usage_error(template, tmp_path):
    src = _copy(template, str(tmp_path / "in" / "a.fits"), 1)
    repo = str(tmp_path / "repo")
    create_repo(repo)
    proc = subprocess.run(
        [EO, "ingest", repo, src, "--run", "../../outside", "-t", "copy", "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2  # click's usage-error status, not a traceback
    assert "Invalid value for --run" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "outside")


def test_copy_stays_in_repository_and_symlinked_directories_are_not_followed(template, tmp_path, caplog):
    tree = tmp_path / "src" / "tree"
    elsewhere = tmp_path / "elsewhere"
    plain = _copy(template, str(tree / "a..b.fits"), 1)
    target = _copy(template, str(elsewhere / "linked.fits"), 2)
    os.symlink(os.path.abspath(target), tree / "abs_link.fits")  # absolute link to a file: followed
    _copy(template, str(elsewhere / "dir" / "hidden_away.fits"), 3)
    os.symlink(os.path.abspath(elsewhere / "dir"), tree / "linkdir")  # link to a directory: not followed
    # Header values that look like paths cannot steer the copy either.
    sneaky = _copy(
        template, str(tree / "sneaky.fits"), 4, {"OBSID": "../../../../../escaped", "FILTER": "../../up"}
    )
    repo = str(tmp_path / "repo")
    butler = create_repo(repo)
    before = _snapshot(str(tmp_path), repo)
    dotted = os.path.join(str(tree), "..", "tree", "a..b.fits")
    with caplog.at_level(logging.WARNING, logger="lsst.eo.baseline.ingest"):
        files, _ = find_raw_files([str(tree)])
        report = ingest_raws(butler, [str(tree), dotted], transfer="copy", progress=False)
    assert sorted(files) == sorted([plain, str(tree / "abs_link.fits"), sneaky])
    assert report.ok, report.bad
    assert report.ingested == 3 and report.n_files == 3
    assert f"Not following symbolic link to a directory: {tree / 'linkdir'}" in caplog.text
    assert _snapshot(str(tmp_path), repo) == before  # nothing written outside the repository
    root = os.path.join(os.path.realpath(repo), "")
    sources = {_exposure(1): plain, _exposure(2): target, _exposure(4): sneaky}
    for ref in _raw_refs(butler):
        uri = butler.getURI(ref).ospath
        assert os.path.realpath(uri).startswith(root) and not os.path.islink(uri), uri
        assert filecmp.cmp(uri, sources[ref.dataId["exposure"]], shallow=False)
    assert sorted(r.dataId["exposure"] for r in _raw_refs(butler)) == sorted(sources)
