"""Raw ingest: LSSTCam raw files -> ``exposure`` records and ``raw`` datasets in a butler repo.

daf_butler has no raw ingest of its own (that lives in obs_base, which is not installable here), so
this module does the work: scan headers (in parallel), translate them into exposure records,
register the records, then ingest the files with deterministic dataset ids so that re-running is
a no-op.  Bad files never stop the others: each is reported with its path and the reason.
"""

from __future__ import annotations

__all__ = [
    "EXPOSURE_INFO_DATASET_TYPE",
    "IngestReport",
    "ScanResult",
    "find_raw_files",
    "ingest_raws",
    "scan_raw_file",
]

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
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
_BATCH = 500


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
    """

    n_files: int = 0
    ingested: int = 0
    already_present: int = 0
    new_exposures: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    run: str = ""

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
            for root, dirs, files in os.walk(p):
                dirs.sort()
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
        return ScanResult(path=path, error=f"bad header: {err}")
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
        Files and/or directories (searched recursively).
    transfer : `str`, optional
        ``direct`` (use files in place), ``symlink``, ``relsymlink``, ``hardlink``, ``copy`` or
        ``auto``.
    jobs : `int`, optional
        Processes used to read headers.
    run : `str`, optional
        RUN collection; default ``LSSTCam/raw/all``.
    progress : `bool`, optional
        Show progress.

    Returns
    -------
    report : `IngestReport`
        Counts, bad files with reasons, header warnings.
    """
    if transfer not in TRANSFER_MODES:
        raise ValueError(f"transfer must be one of {TRANSFER_MODES}, not {transfer!r}")
    instrument = LsstCam()
    run = run or instrument.makeDefaultRawIngestRunName()
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
        rec = dict(s.record)
        begin, end = rec.pop("timespan")
        rec["timespan"] = Timespan(
            astropy.time.Time(begin, format="isot", scale="tai"),
            astropy.time.Time(end, format="isot", scale="tai"),
        )
        try:
            with butler.registry.transaction():
                if rec["physical_filter"] not in known_filters:
                    butler.registry.syncDimensionData(
                        "physical_filter",
                        {"instrument": rec["instrument"], "name": rec["physical_filter"],
                         "band": rec["physical_filter"].lower()[:32]},
                    )  # fmt: skip
                    known_filters.add(rec["physical_filter"])
                butler.registry.syncDimensionData(
                    "day_obs", {"instrument": rec["instrument"], "id": rec["day_obs"]}
                )
                butler.registry.syncDimensionData(
                    "group", {"instrument": rec["instrument"], "name": rec["group"]}
                )
                inserted = butler.registry.syncDimensionData("exposure", rec)
        except Exception as err:  # noqa: BLE001 - report, keep going with other exposures
            rejected_exposures[eid] = f"exposure record {eid} conflicts with the repository: {err}"
            continue
        if inserted:
            report.new_exposures += 1

    to_ingest: list[ScanResult] = []
    for s in consistent:
        eid = s.record["id"]
        if eid in rejected_exposures:
            report.bad.append((s.path, rejected_exposures[eid]))
        else:
            to_ingest.append(s)

    existing = _existing_raw_keys(butler, run, {s.record["id"] for s in to_ingest})
    new = [s for s in to_ingest if (s.record["id"], s.detector) not in existing]
    report.already_present = len(to_ingest) - len(new)

    bar = _Progress(len(new), "Ingesting", progress and bool(new))
    for start in range(0, len(new), _BATCH):
        batch = new[start : start + _BATCH]
        datasets = []
        for s in batch:
            data_id = butler.registry.expandDataId(
                instrument=instrument.getName(), exposure=s.record["id"], detector=s.detector
            )
            ref = DatasetRef(raw_type, data_id, run=run, id_generation_mode=DatasetIdGenEnum.DATAID_TYPE_RUN)
            datasets.append(FileDataset(path=s.path, refs=[ref], formatter=RawCcdFormatter))
        try:
            butler.ingest(*datasets, transfer=transfer, skip_existing=True)
            report.ingested += len(batch)
        except Exception as err:  # noqa: BLE001 - retry one by one to isolate the culprit
            _LOG.warning("Batch ingest failed (%s); retrying file by file", err)
            for s, ds in zip(batch, datasets, strict=True):
                try:
                    butler.ingest(ds, transfer=transfer, skip_existing=True)
                    report.ingested += 1
                except Exception as err1:  # noqa: BLE001
                    report.bad.append((s.path, f"ingest failed: {err1}"))
        bar(len(batch))

    _put_exposure_info(butler, run, info_type, exposures, rejected_exposures)
    return report


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


def _put_exposure_info(
    butler: Butler,
    run: str,
    info_type: DatasetType,
    exposures: dict[int, ScanResult],
    rejected: dict[int, str],
) -> None:
    """Store the per-exposure metadata once per exposure (skipping those already stored)."""
    wanted = [eid for eid in exposures if eid not in rejected]
    if not wanted:
        return
    present = set()
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
    for eid in wanted:
        if eid in present:
            continue
        butler.put(dict(exposures[eid].metadata), info_type, instrument="LSSTCam", exposure=eid, run=run)


def log_report(report: IngestReport, log: logging.Logger | None = None) -> None:
    """Log every bad file, a digest of warnings, and the summary line."""
    log = log or _LOG
    for path, reason in report.bad:
        log.error("Not ingested: %s: %s", path, reason)
    if report.warnings:
        counts: dict[str, int] = {}
        for _, msg in report.warnings:
            counts[msg] = counts.get(msg, 0) + 1
        for msg, n in sorted(counts.items()):
            log.warning("%d file(s): %s", n, msg)
    if report.ingested == 0 and report.already_present and not report.bad:
        log.info("Nothing to do: all %d file(s) were already ingested", report.already_present)
