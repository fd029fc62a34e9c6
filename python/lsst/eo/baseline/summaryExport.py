"""Run summaries as files, with their provenance: ``eo-baseline export-summary``.

A run summary file is the ``eoRunSummary`` table (one row per detector and amplifier; see
`lsst.eo.baseline.runSummary`) written as parquet and as ECSV, whose table metadata hold:

* ``FORMAT`` = `SUMMARY_FORMAT`;
* provenance: ``ACQUISITION_RUN``, ``REPOSITORY``, ``COLLECTION``, ``PACKAGE`` and
  ``PACKAGE_VERSION`` (the package that wrote it), ``CONFIG_DIGEST`` (SHA-256 over the task
  configurations stored in the collections, ``none`` if there are none), ``DATE`` (UTC, ISO 8601);
* ``SUMMARY_SOURCE``: ``eo_baseline`` or ``eo_pipe`` (`lsst.eo.baseline.eoPipeImport`);
* ``LEVEL``: ``amp`` (one row per amplifier) or ``detector`` (one row per CCD, ``amp`` empty);
* ``UNITS``: {metric column: unit} as in ``data/metrics.yaml``;
* ``DEFINITION_NOTES``: {metric: why the source's definition differs from ours} (eo_pipe imports).

`read_summary_file` checks a file before it is compared: the identity columns must be there and
every metric column's unit must be the one of ``data/metrics.yaml``; a problem is an error naming
the file and the columns.
"""

from __future__ import annotations

__all__ = [
    "IDENTITY_COLUMNS",
    "SUMMARY_FORMAT",
    "SummaryFileError",
    "config_digest",
    "export_summary",
    "provenance",
    "read_summary_file",
    "summary_paths",
    "write_summary",
]

import datetime
import hashlib
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
from astropy.table import Table

from .metrics import load_metrics
from .version import __version__

SUMMARY_FORMAT = "eo_baseline run summary 1"
IDENTITY_COLUMNS = ("detector", "det_name", "vendor", "amp")


class SummaryFileError(ValueError):
    """A summary file that cannot be compared (missing columns, wrong units, unknown format)."""


def summary_paths(out: str) -> tuple[str, str]:
    """The parquet and ECSV paths written for ``--out FILE`` (its suffix, if any, replaced)."""
    stem, ext = os.path.splitext(out)
    if ext.lower() not in (".parquet", ".ecsv"):
        stem = out
    return f"{stem}.parquet", f"{stem}.ecsv"


def config_digest(texts: Sequence[str | bytes]) -> str:
    """SHA-256 of configuration texts, order-independent (``none`` for no configuration)."""
    if not texts:
        return "none"
    h = hashlib.sha256()
    for text in sorted(t.encode() if isinstance(t, str) else t for t in texts):
        h.update(hashlib.sha256(text).digest())
    return h.hexdigest()


def _acquisition_run(collections: Sequence[str]) -> str:
    # Our output collections end with the acquisition run (u/eo/13600, see runner.py).
    for name in collections:
        last = name.rstrip("/").split("/")[-1]
        if re.fullmatch(r"E?\d+", last):
            return last
    return ""


def provenance(
    repo: str,
    collections: Sequence[str],
    acquisition_run: str | None = None,
    digest: str = "none",
    source: str = "eo_baseline",
    date: str | None = None,
) -> dict[str, str]:
    """The provenance metadata of a summary file (see the module docstring)."""
    return {
        "FORMAT": SUMMARY_FORMAT,
        "ACQUISITION_RUN": acquisition_run if acquisition_run is not None else _acquisition_run(collections),
        "REPOSITORY": str(repo),
        "COLLECTION": ",".join(collections),
        "PACKAGE": "lsst-eo-baseline",
        "PACKAGE_VERSION": __version__,
        "CONFIG_DIGEST": digest,
        "DATE": date or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "SUMMARY_SOURCE": source,
    }


def write_summary(summary: Table, out: str, meta: Mapping[str, object]) -> tuple[str, str]:
    """Write a summary as parquet and ECSV with ``meta`` and the metric units.

    Returns
    -------
    paths : `tuple` [`str`, `str`]
        The parquet and ECSV files.
    """
    table = summary.copy(copy_data=False)
    table.meta = dict(summary.meta)
    table.meta.update(meta)
    table.meta.setdefault("LEVEL", "amp")
    table.meta.setdefault("SUMMARY_SOURCE", "eo_baseline")
    table.meta["UNITS"] = {m.name: m.unit for m in load_metrics() if m.name in table.colnames}
    table.meta.setdefault("DEFINITION_NOTES", {})
    parquet, ecsv = summary_paths(out)
    os.makedirs(os.path.dirname(os.path.abspath(parquet)), exist_ok=True)
    table.write(parquet, format="parquet", overwrite=True)
    table.write(ecsv, format="ascii.ecsv", overwrite=True)
    return parquet, ecsv


def read_summary_file(path: str) -> Table:
    """Read a summary file (parquet or ECSV) and check it.

    Raises
    ------
    SummaryFileError
        Unknown format, missing identity columns, or a metric column whose unit differs from
        ``data/metrics.yaml``, naming the file and the columns.
    """
    fmt = "parquet" if path.lower().endswith(".parquet") else None
    table = Table.read(path, format=fmt) if fmt else Table.read(path)
    if not str(table.meta.get("FORMAT", "")).startswith("eo_baseline run summary"):
        raise SummaryFileError(
            f"{path}: not an eo_baseline run summary (FORMAT = {table.meta.get('FORMAT')!r})"
        )
    missing = [c for c in IDENTITY_COLUMNS if c not in table.colnames]
    if missing:
        raise SummaryFileError(f"{path}: missing column(s) {', '.join(missing)}")
    units = table.meta.get("UNITS") or {}
    wrong = [
        f"{m.name} in {units[m.name]!r}, expected {m.unit!r}"
        for m in load_metrics()
        if m.name in units and str(units[m.name]) != m.unit
    ]
    if wrong:
        raise SummaryFileError(f"{path}: wrong unit(s): {'; '.join(wrong)}")
    for name in ("det_name", "vendor", "amp"):
        # ECSV reads an empty string (the amp of a per-CCD row) back as masked.
        if getattr(table[name], "mask", None) is not None:
            table[name] = np.asarray(table[name].filled("")).astype(str)
    table.meta.setdefault("SOURCE_FILE", path)
    return table


def _config_texts(butler, collections: Sequence[str]) -> list[bytes]:
    """The stored task configurations (``*_config`` datasets) of the collections."""
    texts = []
    try:
        types = [t.name for t in butler.registry.queryDatasetTypes("*_config")]
    except Exception:  # noqa: BLE001 - a registry without them
        return texts
    for name in types:
        try:
            refs = butler.query_datasets(name, collections=list(collections), limit=None, explain=False)
        except Exception:  # noqa: BLE001 - none in these collections
            continue
        for ref in refs:
            try:
                texts.append(butler.getURI(ref).read())
            except Exception:  # noqa: BLE001 - unreadable artifact: left out of the digest
                continue
    return texts


def export_summary(
    repo: str, collections: Sequence[str], out: str, acquisition_run: str | None = None
) -> tuple[str, str]:
    """Write the run summary of ``collections`` in ``repo`` as parquet and ECSV with provenance."""
    from lsst.daf.butler import Butler

    from .report import load_run_summary

    butler = Butler.from_config(repo)
    summary = load_run_summary(butler, list(collections))
    digest = config_digest(_config_texts(butler, collections))
    return write_summary(summary, out, provenance(repo, collections, acquisition_run, digest))
