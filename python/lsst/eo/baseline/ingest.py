"""Raw ingest: LSSTCam raw files -> ``exposure`` records and ``raw`` datasets in a butler repo.

daf_butler has no raw ingest of its own (that lives in obs_base, which is not installable here), so
this module does the work: scan headers (in parallel), translate them into exposure records,
register the records, then ingest the files with deterministic dataset ids so that re-running is
a no-op.  Bad files never stop the others: each is reported with its path and the reason.

Reliability (see ``doc/reliability.rst``):

* an interrupted ingest (Ctrl-C, SIGKILL, node failure) is resumed by running it again: exposure
  records are synchronised, raws already present are skipped and counted, files a killed copy
  left behind are overwritten;
* concurrent ingests into one repository serialise their writes on an advisory lock file in the
  datastore root (`INGEST_LOCK_NAME`); header reading still runs in parallel.  Should a write race
  anyway (a lock-less file system, another tool), conflicts on exposure records and datasets are
  caught and re-checked against the repository instead of failing the ingest;
* the RUN collection name is checked so that no file is written outside the datastore root, and
  symbolic links to directories are not followed when searching directories.
"""

from __future__ import annotations

__all__ = [
    "EXPOSURE_INFO_DATASET_TYPE",
    "INGEST_LOCK_NAME",
    "IngestReport",
    "ScanResult",
    "find_raw_files",
    "ingest_raws",
    "scan_raw_file",
    "validate_run_name",
]

import contextlib
import fcntl
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import astropy.time
from lsst.daf.butler import (
    Butler,
    DatasetIdGenEnum,
    DatasetRef,
    DatasetType,
    FileDataset,
    Timespan,
)
from lsst.utils.logging import getLogger

from .formatters import RawCcdFormatter
from .instrument import RAW_DATASET_TYPE, LsstCam
from .rawio import RawFileError, check_raw_file
from .translate import HeaderError, translate_header

_LOG = getLogger(__name__)

EXPOSURE_INFO_DATASET_TYPE = ("eoExposureInfo", ("instrument", "exposure"), "StructuredDataDict")
"""Per-exposure header values that the exposure record has no room for (CCOBLED, CCOBFLUX, ...)."""

RAW_SUFFIXES = (".fits", ".fits.fz", ".fz", ".fit")
TRANSFER_MODES = ("direct", "symlink", "relsymlink", "hardlink", "copy", "auto")
INGEST_LOCK_NAME = ".eo_baseline_ingest.lock"
"""Advisory lock file, in the datastore root, that serialises the write phase of concurrent ingests."""
_BATCH = 500
_MAX_NAMED = 5


@dataclass
class ScanResult:
    """Outcome of scanning one file (picklable: it crosses process boundaries).

    Attributes
    ----------
    path : `str`
        Absolute path.
    error : `str` or `None`
        Why the file cannot be ingested, or `None`.
    record : `dict`
        Exposure record, with ``timespan`` as a pair of ISO TAI strings.
    metadata : `dict`
        Per-exposure metadata.
    detector : `int`
        Detector id.
    warnings : `list` [`str`]
        Defaults applied during translation.
    """

    path: str
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    detector: int = -1
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    """What an ingest did.

    Attributes
    ----------
    n_files : `int`
        Files considered.
    ingested : `int`
        Raw datasets added.
    already_present : `int`
        Files whose dataset was already in the repository (nothing done).
    new_exposures : `int`
        Exposure records added.
    bad : `list` [(`str`, `str`)]
        ``(path, reason)`` of every file not ingested.
    warnings : `list` [(`str`, `str`)]
        ``(path, message)`` for defaults applied to headers.
    run : `str`
        RUN collection the raws went into.
    skipped : `list` [`str`]
        Paths of the files counted in ``already_present``.
    """

    n_files: int = 0
    ingested: int = 0
    already_present: int = 0
    new_exposures: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    run: str = ""
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every file was ingested or already present."""
        return not self.bad

    def summary(self) -> str:
        """One line summarising the ingest."""
        parts = [
            f"{self.n_files} file(s) considered",
            f"{self.ingested} ingested",
            f"{self.already_present} already present",
            f"{len(self.bad)} bad",
            f"{self.new_exposures} new exposure(s)",
        ]
        if self.warnings:
            parts.append(f"{len(self.warnings)} header warning(s)")
        return f"Ingest into {self.run}: " + ", ".join(parts)


def find_raw_files(paths: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files and directories (recursively) into raw file paths.

    Parameters
    ----------
    paths : iterable of `str`
        Files or directories.  Directories are searched recursively for ``*.fits``,
        ``*.fits.fz`` and ``*.fz``; files given explicitly are taken whatever their name.
        Hidden files are skipped, and symbolic links to directories met during the search are not
        followed (each one is logged): a link could lead anywhere, into a loop or into another
        run's data.  A directory given explicitly is searched even if it is itself a link, and
        links to files are followed.

    Returns
    -------
    files : `list` [`str`]
        Absolute, de-duplicated, sorted paths.
    missing : `list` [(`str`, `str`)]
        ``(path, reason)`` for arguments that do not exist.
    """
    found: set[str] = set()
    missing: list[tuple[str, str]] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs.sort()
                for name in dirs:
                    full = os.path.join(root, name)
                    if os.path.islink(full):
                        _LOG.warning(
                            "Not following symbolic link to a directory: %s -> %s (give it as an argument "
                            "to ingest what it holds)",
                            full,
                            os.readlink(full),
                        )
                for name in files:
                    if name.endswith(RAW_SUFFIXES) and not name.startswith("."):
                        found.add(os.path.abspath(os.path.join(root, name)))
        elif os.path.isfile(p):
            found.add(os.path.abspath(p))
        else:
            missing.append((os.path.abspath(p), "no such file or directory"))
    return sorted(found), missing


def scan_raw_file(path: str) -> ScanResult:
    """Check a raw file and translate its header (safe to run in a worker process).

    Parameters
    ----------
    path : `str`
        Raw file.

    Returns
    -------
    result : `ScanResult`
        With ``error`` set if the file cannot be ingested.
    """
    try:
        summary = check_raw_file(path)
        translation = translate_header(summary.header)
    except RawFileError as err:
        where = f" (HDU {err.hdu})" if err.hdu is not None else ""
        return ScanResult(path=path, error=f"{err.reason}{where}")
    except HeaderError as err:
        return ScanResult(path=path, error=f"bad primary header (HDU 0): {err}")
    except Exception as err:  # noqa: BLE001 - one file must never stop an ingest
        return ScanResult(path=path, error=f"unexpected error: {type(err).__name__}: {err}")
    record = dict(translation.record)
    span = record.pop("timespan")
    record["timespan"] = (span.begin.tai.isot, span.end.tai.isot)
    return ScanResult(
        path=summary.path,
        record=record,
        metadata=translation.metadata,
        detector=summary.detector.id,
        warnings=translation.warnings,
    )


def _scan_all(files: Sequence[str], jobs: int, progress: Callable[[int], None]) -> list[ScanResult]:
    if jobs <= 1 or len(files) < 2 * jobs:
        results = []
        for f in files:
            results.append(scan_raw_file(f))
            progress(1)
        return results
    chunk = max(1, min(64, len(files) // (8 * jobs)))
    results = []
    # Workers come from a fork server that has imported this module once: forking the (possibly
    # multi-threaded) calling process could deadlock, spawning would re-import the stack per worker.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for res in pool.map(scan_raw_file, files, chunksize=chunk):
            results.append(res)
            progress(1)
    return results


class _Progress:
    """Progress shown as a bar on a terminal and as periodic log lines otherwise."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total = max(total, 1)
        self.done = 0
        self.label = label
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._next_log = 0.1

    def __call__(self, n: int) -> None:
        self.done += n
        frac = self.done / self.total
        if not self.enabled:
            return
        if self.tty:
            width = 30
            filled = int(width * frac)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif frac >= self._next_log or self.done >= self.total:
            _LOG.info("%s: %d/%d (%.0f%%)", self.label, self.done, self.total, 100 * frac)
            while self._next_log <= frac:
                self._next_log += 0.1


def _same_record(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = ("obs_id", "physical_filter", "exposure_time", "observation_type", "observation_reason",
            "science_program")  # fmt: skip
    return [k for k in keys if a.get(k) != b.get(k)]


def validate_run_name(run: str) -> None:
    """Refuse RUN collection names that would put files outside the datastore root.

    The datastore's file templates start with the RUN name and keep its slashes, so a name such as
    ``../../elsewhere`` would make ``--transfer copy`` (and the ``eoExposureInfo`` datasets) write
    outside the repository.

    Parameters
    ----------
    run : `str`
        RUN collection name.

    Raises
    ------
    ValueError
        If the name is empty, absolute, has an empty, ``.`` or ``..`` component, or holds a
        backslash or a control character.
    """
    parts = run.split("/")
    problem = None
    if not run.strip():
        problem = "it is empty"
    elif run.startswith("/"):
        problem = "it starts with '/'"
    elif any(p in (".", "..") for p in parts):
        problem = "it has a '.' or '..' component"
    elif any(not p for p in parts):
        problem = "it has an empty component ('//' or a trailing '/')"
    elif "\\" in run or any(ord(c) < 32 for c in run):
        problem = "it holds a backslash or a control character"
    if problem:
        raise ValueError(
            f"RUN collection name {run!r} is refused: {problem}; files would be written outside the "
            "repository's datastore root"
        )


def _lock_dir(butler: Butler) -> str | None:
    """Local directory holding the datastore's files (where the ingest lock lives), if any."""
    for root in (getattr(butler._datastore, "root", None), getattr(butler._config, "configDir", None)):
        if root is not None and getattr(root, "isLocal", False) and root.scheme in ("file", ""):
            return root.ospath
    return None


@contextlib.contextmanager
def _ingest_lock(butler: Butler) -> Iterator[None]:
    """Hold the repository's ingest lock (an advisory ``flock``, released when the process dies).

    Waits for another ingest that holds it, saying so in the log.  If the lock cannot be taken
    (remote datastore, read-only root, file system without locks) the ingest goes on without it:
    the conflict handling in `ingest_raws` still keeps the repository consistent.
    """
    directory = _lock_dir(butler)
    if directory is None:
        _LOG.debug("Datastore root is not a local directory: ingest runs without the lock")
        yield
        return
    path = os.path.join(directory, INGEST_LOCK_NAME)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    except OSError as err:
        _LOG.warning("Cannot open the ingest lock %s (%s): going on without it", path, err.strerror)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _LOG.info("Another ingest is writing to this repository; waiting for it to end (lock %s)", path)
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            _LOG.info("Ingest lock acquired after %.1f s", time.monotonic() - t0)
        except OSError as err:
            _LOG.warning("Cannot lock %s (%s): going on without the lock", path, err.strerror)
        yield
    finally:
        os.close(fd)


def _timespan(span: tuple[str, str]) -> Timespan:
    return Timespan(
        astropy.time.Time(span[0], format="isot", scale="tai"),
        astropy.time.Time(span[1], format="isot", scale="tai"),
    )


def _existing_exposure(butler: Butler, exposure: int) -> dict[str, Any] | None:
    """The repository's record of ``exposure`` as a dict, or `None`."""
    records = butler.query_dimension_records(
        "exposure", instrument="LSSTCam", where=f"exposure = {int(exposure)}", explain=False
    )
    return records[0].toDict() if records else None


def _register_exposure(butler: Butler, rec: dict[str, Any], known_filters: set[str]) -> bool:
    """Synchronise one exposure record (and its filter, day_obs, group); True if it was new."""
    with butler.registry.transaction():
        if rec["physical_filter"] not in known_filters:
            butler.registry.syncDimensionData(
                "physical_filter",
                {"instrument": rec["instrument"], "name": rec["physical_filter"],
                 "band": rec["physical_filter"].lower()[:32]},
            )  # fmt: skip
        butler.registry.syncDimensionData("day_obs", {"instrument": rec["instrument"], "id": rec["day_obs"]})
        butler.registry.syncDimensionData("group", {"instrument": rec["instrument"], "name": rec["group"]})
        inserted = butler.registry.syncDimensionData("exposure", rec)
    known_filters.add(rec["physical_filter"])
    return bool(inserted)


def _sync_exposure(butler: Butler, s: ScanResult, known_filters: set[str]) -> tuple[bool, str | None]:
    """Register the exposure of ``s``, surviving a concurrent insert of the same record.

    Returns
    -------
    inserted : `bool`
        True if this call added the record.
    error : `str` or `None`
        Why the exposure cannot be registered (its files are then reported as bad).
    """
    rec = dict(s.record)
    rec["timespan"] = _timespan(rec.pop("timespan"))
    error: Exception | None = None
    for attempt in range(2):
        try:
            return _register_exposure(butler, rec, known_filters), None
        except Exception as err:  # noqa: BLE001 - re-checked below
            error = err
        # The insert may have lost a race with a concurrent ingest of the same exposure: if the
        # repository now holds an identical record, all is well.
        try:
            existing = _existing_exposure(butler, rec["id"])
        except Exception:  # noqa: BLE001 - keep the original error
            existing = None
        if existing is not None:
            diff = [k for k in rec if k in existing and existing[k] != rec[k]]
            if not diff:
                _LOG.debug("Exposure %d was registered by a concurrent ingest", rec["id"])
                return False, None
            detail = ", ".join(f"{k} is {existing[k]!r} there, {rec[k]!r} here" for k in diff)
            return False, f"exposure record {rec['id']} conflicts with the repository: {detail}"
        _LOG.debug("Registering exposure %d failed (attempt %d): %s", rec["id"], attempt + 1, error)
    return False, f"exposure record {rec['id']} could not be registered: {error}"


def ingest_raws(
    butler: Butler,
    paths: Iterable[str],
    *,
    transfer: str = "direct",
    jobs: int = 1,
    run: str | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest LSSTCam raw files into a butler repository.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable butler.  The LSSTCam instrument is registered if it is not yet.
    paths : iterable of `str`
        Files and/or directories (searched recursively, see `find_raw_files`).
    transfer : `str`, optional
        ``direct`` (use files in place), ``symlink``, ``relsymlink``, ``hardlink``, ``copy`` or
        ``auto``.  Whatever the source paths, transferred files land under the datastore root, at
        names made from the data ID.
    jobs : `int`, optional
        Processes used to read headers.
    run : `str`, optional
        RUN collection; default ``LSSTCam/raw/all``.
    progress : `bool`, optional
        Show progress.

    Returns
    -------
    report : `IngestReport`
        Counts, bad files with reasons, header warnings, skipped files.

    Raises
    ------
    ValueError
        If ``transfer`` is unknown or ``run`` is a name that would write outside the repository.

    Notes
    -----
    Safe to re-run (files already present are skipped and counted), to interrupt (a re-run
    resumes) and to run concurrently with other ingests into the same repository (writes are
    serialised by a lock file in the datastore root; lost races are re-checked, not failed).
    """
    if transfer not in TRANSFER_MODES:
        raise ValueError(f"transfer must be one of {TRANSFER_MODES}, not {transfer!r}")
    instrument = LsstCam()
    run = run or instrument.makeDefaultRawIngestRunName()
    validate_run_name(run)
    report = IngestReport(run=run)
    files, missing = find_raw_files(paths)
    report.bad.extend(missing)
    report.n_files = len(files) + len(missing)
    if not files:
        return report

    scans = _scan_all(files, jobs, _Progress(len(files), "Reading headers", progress))
    good: list[ScanResult] = []
    for s in scans:
        if s.error:
            report.bad.append((s.path, s.error))
        else:
            report.warnings.extend((s.path, w) for w in s.warnings)
            good.append(s)

    # One record per exposure; files that disagree with the first file of their exposure are bad.
    exposures: dict[int, ScanResult] = {}
    seen: dict[tuple[int, int], str] = {}
    consistent: list[ScanResult] = []
    for s in good:
        eid = s.record["id"]
        ref = exposures.setdefault(eid, s)
        diff = _same_record(ref.record, s.record)
        key = (eid, s.detector)
        if diff:
            report.bad.append(
                (s.path, f"exposure {eid}: header values {diff} differ from those of {ref.path}")
            )
        elif key in seen:
            report.bad.append((s.path, f"duplicate of {seen[key]} (same exposure {eid} and detector)"))
        else:
            seen[key] = s.path
            consistent.append(s)

    with _ingest_lock(butler):
        _write(butler, instrument, run, transfer, progress, exposures, consistent, report)
    return report


def _write(
    butler: Butler,
    instrument: LsstCam,
    run: str,
    transfer: str,
    progress: bool,
    exposures: dict[int, ScanResult],
    consistent: list[ScanResult],
    report: IngestReport,
) -> None:
    """The write phase of `ingest_raws` (run under the ingest lock)."""
    instrument.register(butler.registry)
    universe = butler.dimensions
    raw_type = DatasetType(RAW_DATASET_TYPE[0], RAW_DATASET_TYPE[1], RAW_DATASET_TYPE[2], universe=universe)
    info_type = DatasetType(*EXPOSURE_INFO_DATASET_TYPE, universe=universe)
    butler.registry.registerDatasetType(raw_type)
    butler.registry.registerDatasetType(info_type)
    butler.registry.registerRun(run)

    known_filters = {
        r.name
        for r in butler.registry.queryDimensionRecords("physical_filter", instrument=instrument.getName())
    }
    rejected_exposures: dict[int, str] = {}
    for eid, s in exposures.items():
        inserted, error = _sync_exposure(butler, s, known_filters)
        if error:
            rejected_exposures[eid] = error
        elif inserted:
            report.new_exposures += 1

    to_ingest: list[ScanResult] = []
    for s in consistent:
        eid = s.record["id"]
        if eid in rejected_exposures:
            report.bad.append((s.path, rejected_exposures[eid]))
        else:
            to_ingest.append(s)

    existing = _existing_raw_keys(butler, run, {s.record["id"] for s in to_ingest})
    new: list[ScanResult] = []
    for s in to_ingest:
        if (s.record["id"], s.detector) in existing:
            report.skipped.append(s.path)
            _LOG.debug("Already ingested, skipped: %s", s.path)
        else:
            new.append(s)
    report.already_present = len(report.skipped)

    bar = _Progress(len(new), "Ingesting", progress and bool(new))
    for start in range(0, len(new), _BATCH):
        batch = new[start : start + _BATCH]
        _ingest_batch(butler, instrument, raw_type, run, transfer, batch, report)
        bar(len(batch))

    _put_exposure_info(butler, run, info_type, exposures, rejected_exposures)


def _make_dataset(
    butler: Butler, instrument: LsstCam, raw_type: DatasetType, run: str, s: ScanResult
) -> FileDataset:
    data_id = butler.registry.expandDataId(
        instrument=instrument.getName(), exposure=s.record["id"], detector=s.detector
    )
    ref = DatasetRef(raw_type, data_id, run=run, id_generation_mode=DatasetIdGenEnum.DATAID_TYPE_RUN)
    return FileDataset(path=s.path, refs=[ref], formatter=RawCcdFormatter)


def _ingest_batch(
    butler: Butler,
    instrument: LsstCam,
    raw_type: DatasetType,
    run: str,
    transfer: str,
    batch: list[ScanResult],
    report: IngestReport,
) -> None:
    """Ingest one batch; on failure, re-check what is now present and retry the rest one by one."""
    datasets = [_make_dataset(butler, instrument, raw_type, run, s) for s in batch]
    try:
        butler.ingest(*datasets, transfer=transfer, skip_existing=True)
        report.ingested += len(batch)
        return
    except Exception as err:  # noqa: BLE001 - re-check, then isolate the culprit
        _LOG.warning("Batch ingest failed (%s); re-checking the repository and retrying file by file", err)
    for s, ds in zip(batch, datasets, strict=True):
        if _now_present(butler, run, s, ds, report):
            continue
        try:
            butler.ingest(ds, transfer=transfer, skip_existing=True)
            report.ingested += 1
        except Exception as err1:  # noqa: BLE001
            if not _now_present(butler, run, s, ds, report):
                report.bad.append((s.path, f"ingest failed: {err1}"))


def _now_present(butler: Butler, run: str, s: ScanResult, ds: FileDataset, report: IngestReport) -> bool:
    """After a failed ingest: is the dataset of ``s`` present now (a concurrent ingest won)?

    If so it is counted as already present.  Should the registry have it but its file be gone (an
    ingest that lost the race and rolled back removes the file it had just copied over the
    winner's, which only happens without the ingest lock), the file is put back from ``s.path``.
    """
    ref = ds.refs[0]
    try:
        if (s.record["id"], s.detector) not in _existing_raw_keys(butler, run, {s.record["id"]}):
            return False
        stored = butler.stored(ref) or _restore_file(butler, ref, s.path)
    except Exception as err:  # noqa: BLE001
        _LOG.debug("Re-check of %s failed: %s", s.path, err)
        return False
    if stored:
        _LOG.info("%s was ingested by a concurrent ingest: counted as already present", s.path)
        report.already_present += 1
        report.skipped.append(s.path)
    else:
        report.bad.append(
            (s.path, "registered by a concurrent ingest but its file is missing from the datastore; "
             f"remove the dataset (butler prune-datasets --purge {run}) and ingest again")
        )  # fmt: skip
    return True


def _restore_file(butler: Butler, ref: DatasetRef, source: str) -> bool:
    """Copy ``source`` to the datastore location of ``ref`` if that is inside the local datastore root."""
    root = _lock_dir(butler)
    uri = butler.getURI(ref)
    if root is None or not uri.isLocal:
        return False
    target = os.path.abspath(uri.ospath)
    if not target.startswith(os.path.join(os.path.abspath(root), "")):
        return False
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.restore{os.getpid()}"
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _LOG.warning("Restored %s from %s after a concurrent-ingest conflict", target, source)
    return butler.stored(ref)


def _existing_raw_keys(butler: Butler, run: str, exposure_ids: set[int]) -> set[tuple[int, int]]:
    """(exposure, detector) of raws already in ``run`` for the given exposures."""
    keys: set[tuple[int, int]] = set()
    ids = sorted(exposure_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        refs = butler.query_datasets(
            RAW_DATASET_TYPE[0],
            collections=run,
            where="instrument = 'LSSTCam' AND exposure IN (ids)",
            bind={"ids": chunk},
            limit=None,
            explain=False,
        )
        keys.update((ref.dataId["exposure"], ref.dataId["detector"]) for ref in refs)
    return keys


def _present_info(butler: Butler, run: str, info_type: DatasetType, wanted: list[int]) -> set[int]:
    present: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        refs = butler.query_datasets(
            info_type.name,
            collections=run,
            where="instrument = 'LSSTCam' AND exposure IN (ids)",
            bind={"ids": chunk},
            limit=None,
            explain=False,
        )
        present.update(ref.dataId["exposure"] for ref in refs)
    return present


def _put_exposure_info(
    butler: Butler,
    run: str,
    info_type: DatasetType,
    exposures: dict[int, ScanResult],
    rejected: dict[int, str],
) -> None:
    """Store the per-exposure metadata once per exposure (skipping those already stored).

    A put that loses a race with a concurrent ingest of the same exposure is not an error.
    """
    wanted = [eid for eid in exposures if eid not in rejected]
    if not wanted:
        return
    present = _present_info(butler, run, info_type, wanted)
    for eid in wanted:
        if eid in present:
            continue
        try:
            butler.put(dict(exposures[eid].metadata), info_type, instrument="LSSTCam", exposure=eid, run=run)
        except Exception as err:
            if eid in _present_info(butler, run, info_type, [eid]):
                _LOG.debug("eoExposureInfo of %d was stored by a concurrent ingest", eid)
                continue
            raise RuntimeError(f"Cannot store eoExposureInfo of exposure {eid}: {err}") from err


def _named(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_MAX_NAMED])
    return shown + (f" and {len(paths) - _MAX_NAMED} more" if len(paths) > _MAX_NAMED else "")


def log_report(report: IngestReport, log: logging.Logger | None = None) -> None:
    """Log every bad file, header warnings with the files concerned, and what was skipped.

    Parameters
    ----------
    report : `IngestReport`
        What `ingest_raws` returned.
    log : `logging.Logger`, optional
        Logger to use (default: this module's).
    """
    log = log or _LOG
    for path, reason in report.bad:
        log.error("Not ingested: %s: %s", path, reason)
    if report.warnings:
        by_message: dict[str, list[str]] = {}
        for path, msg in report.warnings:
            by_message.setdefault(msg, []).append(path)
        for msg, paths in sorted(by_message.items()):
            log.warning("Header warning, %d file(s): %s: %s", len(paths), msg, _named(paths))
            for path in paths[_MAX_NAMED:]:
                log.debug("Header warning: %s: %s", path, msg)
    if report.already_present:
        log.info(
            "Skipped %d file(s) already ingested into %s: %s",
            report.already_present,
            report.run,
            _named(report.skipped),
        )
    if report.ingested == 0 and report.already_present and not report.bad:
        log.info("Nothing to do: all %d file(s) were already ingested", report.already_present)
