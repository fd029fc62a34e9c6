"""Several runs side by side: the "Differences from previous runs" of the baseline characterization.

Pure functions on run summaries (``eoRunSummary`` tables, one row per detector and amplifier, or
one row per detector for a per-CCD source; see `lsst.eo.baseline.summaryExport`):

* `parse_compare_option` / `resolve_source` / `load_source`: what ``eo-baseline report --compare
  LABEL=SOURCE`` means -- a collection of the report's repository, ``REPO_PATH:COLLECTION`` of
  another repository (its ``butler.yaml`` says whether the registry is SQLite or PostgreSQL), or an
  exported summary file (``.parquet``, ``.ecsv``);
* `check_geometry`: amplifiers are matched by detector and amplifier name; a detector whose name,
  vendor or amplifier names differ between runs is an error that names it;
* `compare_runs`: for every metric, the per-vendor median and 5th/95th percentiles of each run (the
  SITCOMTN-148 layout), the change of each amplifier against the reference run, the amplifiers
  whose change exceeds the metric's tolerance (``data/metrics.yaml``), those newly out of
  requirement or back in, and those missing from a run.  A metric whose definition differs
  between two sources (an eo_pipe import, `lsst.eo.baseline.eoPipeImport`) gets a note instead of
  differences.

The result is plain data (dicts, lists and astropy Tables) for any renderer: the HTML/rst report
(`lsst.eo.baseline.report`) and the technote use the same structure.
"""

from __future__ import annotations

__all__ = [
    "DETECTOR_MEANS",
    "DETECTOR_SUMS",
    "GeometryMismatchError",
    "RunSource",
    "check_geometry",
    "compare_runs",
    "condense_amp_list",
    "load_runs",
    "load_source",
    "parse_compare_option",
    "resolve_source",
    "to_detector_level",
    "vendor_statistics",
]

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table

from .metrics import MetricSpec, out_of_spec

VENDORS = ("ITL", "E2V")

DETECTOR_SUMS = ("bright_pixels", "bright_columns", "dark_pixels", "dark_columns")
"""Metrics that add up over the amplifiers of a detector (counts), compared per CCD."""

DETECTOR_MEANS = ("bright_defect_fraction", "dark_defect_fraction", "total_defect_fraction")
"""Fractions of pixels: the detector's value is the mean over its equally sized amplifiers."""

_SUMMARY_SUFFIXES = (".parquet", ".ecsv", ".fits")


class GeometryMismatchError(ValueError):
    """Runs whose camera geometry differs (detector name, vendor or amplifier names)."""


@dataclass(frozen=True)
class RunSource:
    """Where a run summary comes from.

    Attributes
    ----------
    label : `str`
        Name of the run in tables and plots.
    kind : `str`
        ``collection`` (of the report's repository), ``repository`` (another repository) or
        ``file`` (an exported summary).
    repo : `str` or `None`
        Repository path (``repository``).
    collections : `tuple` [`str`]
        Collections (``collection`` and ``repository``).
    path : `str` or `None`
        Summary file (``file``).
    """

    label: str
    kind: str
    repo: str | None = None
    collections: tuple[str, ...] = ()
    path: str | None = None

    def describe(self) -> str:
        """Where the run comes from, as text."""
        if self.kind == "file":
            return f"file {self.path}"
        where = ",".join(self.collections)
        return f"{self.repo}:{where}" if self.kind == "repository" else f"collection {where}"


def parse_compare_option(value: str) -> tuple[str, str]:
    """Split a ``--compare`` value into label and source.

    ``LABEL=SOURCE`` gives both; a value without ``=`` (the older ``--compare COLLECTION`` form,
    possibly comma-separated collections of one run) is its own label.
    """
    value = value.strip()
    if "=" in value:
        label, source = value.split("=", 1)
        if not label.strip() or not source.strip():
            raise ValueError(f"--compare {value!r}: expected LABEL=SOURCE")
        return label.strip(), source.strip()
    return value, value


def resolve_source(label: str, source: str) -> RunSource:
    """Decide what kind of source a ``--compare`` SOURCE is.

    An existing file with a summary suffix is a file; ``PATH:COLLECTION`` with an existing
    ``PATH`` (a directory or a butler config) is another repository; anything else is a
    collection (or comma-separated collections) of the report's own repository.
    """
    if os.path.isfile(source) and source.lower().endswith(_SUMMARY_SUFFIXES):
        return RunSource(label, "file", path=source)
    if source.lower().endswith(_SUMMARY_SUFFIXES):
        raise FileNotFoundError(f"--compare {label}={source}: no such summary file")
    if ":" in source:
        repo, collection = source.rsplit(":", 1)
        if repo and os.path.exists(repo):
            return RunSource(label, "repository", repo=repo, collections=tuple(collection.split(",")))
    return RunSource(label, "collection", collections=tuple(source.split(",")))


def load_source(source: RunSource, repo: str | None = None) -> Table:
    """Read the run summary of a source.

    Parameters
    ----------
    source : `RunSource`
        Where the run is.
    repo : `str`, optional
        The report's repository (for ``collection`` sources).
    """
    from .summaryExport import read_summary_file

    if source.kind == "file":
        return read_summary_file(source.path)
    from lsst.daf.butler import Butler

    from .report import load_run_summary

    where = source.repo if source.kind == "repository" else repo
    if where is None:
        raise ValueError(f"run {source.label}: a collection needs the report's repository")
    collections = list(source.collections)
    table = load_run_summary(Butler.from_config(where), collections)
    table.meta.setdefault("REPOSITORY", str(where))
    table.meta.setdefault("COLLECTION", ",".join(collections))
    return table


def _level(summary: Table) -> str:
    return str(summary.meta.get("LEVEL", "amp"))


def check_geometry(runs: Mapping[str, Table]) -> None:
    """Raise `GeometryMismatchError` if a detector differs between runs.

    For each detector id found in several runs its name, vendor and amplifier names (per-amp runs
    only) must agree.  The message names every such detector and the runs.
    """
    seen: dict[int, dict[str, tuple[str, str, frozenset[str] | None]]] = {}
    for label, table in runs.items():
        if not len(table):
            continue
        per_amp = _level(table) == "amp"
        det = np.asarray(table["detector"], dtype=np.int64)
        names = np.asarray(table["det_name"]).astype(str)
        vendors = np.char.upper(np.asarray(table["vendor"]).astype(str))
        amps = np.asarray(table["amp"]).astype(str)
        for d in np.unique(det):
            sel = det == d
            key = (
                ",".join(sorted(set(names[sel]))),
                ",".join(sorted(set(vendors[sel]))),
                frozenset(amps[sel]) if per_amp else None,
            )
            seen.setdefault(int(d), {})[label] = key
    problems = []
    for d, per_run in sorted(seen.items()):
        items = list(per_run.items())
        ref_label, (ref_name, ref_vendor, ref_amps) = items[0]
        for label, (name, vendor, amps) in items[1:]:
            what = []
            if name != ref_name:
                what.append(f"name {ref_name} vs {name}")
            if vendor != ref_vendor:
                what.append(f"vendor {ref_vendor} vs {vendor}")
            if ref_amps is not None and amps is not None and amps != ref_amps:
                what.append(f"amplifiers {','.join(sorted(ref_amps ^ amps))} in one run only")
            if what:
                problems.append(f"detector {d} {ref_name} ({ref_label} vs {label}): {'; '.join(what)}")
    if problems:
        raise GeometryMismatchError(
            f"camera geometry differs between runs for {len(problems)} detector(s): " + " | ".join(problems)
        )


def to_detector_level(summary: Table) -> Table:
    """One row per detector: the defect counts summed and the defect fractions averaged.

    A detector with any amplifier lacking a value gets NaN (a partial sum would read as fewer
    defects).  Other metrics are not carried: they have no per-CCD meaning here.
    """
    if _level(summary) == "detector":
        return summary
    det = np.asarray(summary["detector"], dtype=np.int64)
    rows = []
    for d in np.unique(det):
        sel = det == d
        first = summary[np.flatnonzero(sel)[0]]
        row = {
            "detector": int(d),
            "det_name": str(first["det_name"]),
            "vendor": str(first["vendor"]),
            "amp": "",
        }
        for name in DETECTOR_SUMS + DETECTOR_MEANS:
            if name not in summary.colnames:
                continue
            values = np.asarray(summary[name], dtype=np.float64)[sel]
            if not np.isfinite(values).all():
                row[name] = np.nan
            else:
                row[name] = float(values.sum() if name in DETECTOR_SUMS else values.mean())
        rows.append(row)
    names = ["detector", "det_name", "vendor", "amp"] + [
        n for n in DETECTOR_SUMS + DETECTOR_MEANS if n in summary.colnames
    ]
    out = Table(rows=[[r.get(n, np.nan) for n in names] for r in rows], names=names)
    out.meta.update(summary.meta)
    out.meta["LEVEL"] = "detector"
    return out


def vendor_statistics(values: np.ndarray, vendors: np.ndarray, metric: MetricSpec) -> dict[str, dict]:
    """Per-vendor number of values, median, 5th and 95th percentile and number out of requirement.

    NaN values are left out; a vendor without any value is absent.
    """
    values = np.asarray(values, dtype=np.float64)
    vendors = np.char.upper(np.asarray(vendors).astype(str))
    out = {}
    for vendor in VENDORS:
        sel = np.isfinite(values) & (vendors == vendor)
        if sel.any():
            p5, med, p95 = np.percentile(values[sel], [5, 50, 95])
            out[vendor] = {
                "n": int(sel.sum()),
                "median": float(med),
                "p5": float(p5),
                "p95": float(p95),
                "n_out": int(out_of_spec(metric, values[sel]).sum()),
            }
    return out


def condense_amp_list(names: Sequence[str], amps_per_detector: Mapping[str, int] | None = None) -> str:
    """``R22_S11 C10, R22_S11 C11`` as ``R22_S11 C10 C11``; a whole detector as ``R22_S11 (all)``."""
    by_det: dict[str, list[str]] = {}
    for name in names:
        det, _, amp = name.partition(" ")
        by_det.setdefault(det, []).append(amp)
    parts = []
    for det, amps in by_det.items():
        amps = [a for a in amps if a]
        if not amps:
            parts.append(det)
        elif amps_per_detector and len(amps) == amps_per_detector.get(det, -1):
            parts.append(f"{det} (all {len(amps)})")
        else:
            parts.append(f"{det} {' '.join(amps)}")
    return ", ".join(parts)


def _values(table: Table, name: str) -> dict[tuple[int, str], float]:
    if name not in table.colnames or not len(table):
        return {}
    det = np.asarray(table["detector"], dtype=np.int64)
    amps = np.asarray(table["amp"]).astype(str)
    vals = np.asarray(table[name], dtype=np.float64)
    return {(int(d), a): float(v) for d, a, v in zip(det, amps, vals, strict=True) if np.isfinite(v)}


def _definition_note(runs: Mapping[str, Table], a: str, b: str, metric: str) -> str | None:
    """Why runs ``a`` and ``b`` cannot be differenced for ``metric`` (None if they can)."""
    src_a = str(runs[a].meta.get("SUMMARY_SOURCE", "eo_baseline"))
    src_b = str(runs[b].meta.get("SUMMARY_SOURCE", "eo_baseline"))
    if src_a == src_b:
        return None
    for label in (a, b):
        note = (runs[label].meta.get("DEFINITION_NOTES") or {}).get(metric)
        if note:
            return f"{label} ({runs[label].meta.get('SUMMARY_SOURCE')}): {note}"
    return None


def compare_runs(
    runs: Mapping[str, Table],
    metrics: Sequence[MetricSpec],
    reference: str | None = None,
    provenance: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Compare the runs metric by metric.

    Parameters
    ----------
    runs : mapping [`str`, `astropy.table.Table`]
        Run summaries by label, in the order to show them (e.g. oldest first).
    metrics : sequence [`MetricSpec`]
        Metrics to compare (``load_metrics()``).
    reference : `str`, optional
        Label of the reference run (default: the first).
    provenance : mapping [`str`, `str`], optional
        Where each run comes from, as text, carried into the result.

    Returns
    -------
    comparison : `dict`
        ``labels`` (list, run order), ``reference`` (label), ``level`` (``amp`` or ``detector``:
        if any run is per CCD, every run is reduced with `to_detector_level` and only the defect
        metrics are compared), ``provenance`` ({label: text}), ``meta`` ({label: the summary's
        metadata}), and ``metrics``: {metric name: entry}, in ``metrics`` order, each entry a dict:

        * ``metric``: the `MetricSpec`;
        * ``stats``: Table, one row per vendor and run: ``vendor``, ``run``, ``n``, ``median``,
          ``p5``, ``p95``, ``n_out`` (out of requirement; 0 without requirement), NaN/0 where the
          run has no value;
        * ``not_measured``: labels of runs without any value of the metric;
        * ``notes``: [str], definition differences (those runs get no ``changes``);
        * ``changes``: {label: Table} for every measured, comparable run other than the
          reference: ``detector``, ``det_name``, ``amp``, ``vendor``, ``reference``, ``value``,
          ``change`` (value - reference), ``exceeds`` (beyond the tolerance), ``newly_out``,
          ``back_in`` (requirement status changed), for the amplifiers measured in both;
        * ``exceeds``, ``newly_out``, ``back_in``: {label: ["R22_S11 C10", ...]};
        * ``missing``: {label: [amps measured in another run but not in this one]} (measured runs).
    """
    labels = list(runs)
    if not labels:
        raise ValueError("compare_runs needs at least one run")
    reference = reference or labels[0]
    if reference not in runs:
        raise KeyError(f"reference run {reference!r} not among {labels}")
    check_geometry(runs)
    level = "detector" if any(_level(t) == "detector" for t in runs.values()) else "amp"
    if level == "detector":
        runs = {label: to_detector_level(t) for label, t in runs.items()}
        metrics = [m for m in metrics if m.name in DETECTOR_SUMS + DETECTOR_MEANS]
    info: dict[tuple[int, str], tuple[str, str]] = {}
    for table in runs.values():
        for r in table:
            info.setdefault(
                (int(r["detector"]), str(r["amp"])), (str(r["det_name"]), str(r["vendor"]).upper())
            )

    def amp_name(key: tuple[int, str]) -> str:
        return f"{info[key][0]} {key[1]}".rstrip()

    result: dict[str, Any] = {
        "labels": labels,
        "reference": reference,
        "level": level,
        "provenance": dict(provenance or {}),
        "meta": {label: dict(t.meta) for label, t in runs.items()},
        "metrics": {},
    }
    for metric in metrics:
        values = {label: _values(t, metric.name) for label, t in runs.items()}
        measured = [label for label in labels if values[label]]
        stat_rows = []
        for vendor in VENDORS:
            for label in labels:
                keys = list(values[label])
                v = vendor_statistics(
                    np.array([values[label][k] for k in keys]), np.array([info[k][1] for k in keys]), metric
                ).get(vendor)
                if v is None:
                    stat_rows.append((vendor, label, 0, np.nan, np.nan, np.nan, 0))
                else:
                    stat_rows.append((vendor, label, v["n"], v["median"], v["p5"], v["p95"], v["n_out"]))
        entry: dict[str, Any] = {
            "metric": metric,
            "stats": Table(rows=stat_rows, names=("vendor", "run", "n", "median", "p5", "p95", "n_out")),
            "not_measured": [label for label in labels if not values[label]],
            "notes": [],
            "changes": {},
            "exceeds": {},
            "newly_out": {},
            "back_in": {},
            "missing": {},
        }
        union = set().union(*(set(values[label]) for label in measured)) if measured else set()
        for label in measured:
            missing = sorted(union - set(values[label]))
            entry["missing"][label] = [amp_name(k) for k in missing]
        ref = values[reference]
        for label in measured:
            if label == reference or not ref:
                continue
            note = _definition_note(runs, reference, label, metric.name)
            if note:
                entry["notes"].append(f"{label} is not differenced against {reference}: {note}")
                continue
            common = sorted(set(ref) & set(values[label]))
            before = np.array([ref[k] for k in common], dtype=np.float64)
            after = np.array([values[label][k] for k in common], dtype=np.float64)
            exceeds = metric.changed(before, after)
            out_before = out_of_spec(metric, before)
            out_after = out_of_spec(metric, after)
            table = Table(
                {
                    "detector": np.array([k[0] for k in common], dtype=np.int64),
                    "det_name": np.array([info[k][0] for k in common], dtype=str),
                    "amp": np.array([k[1] for k in common], dtype=str),
                    "vendor": np.array([info[k][1] for k in common], dtype=str),
                    "reference": before,
                    "value": after,
                    "change": after - before,
                    "exceeds": exceeds,
                    "newly_out": out_after & ~out_before,
                    "back_in": out_before & ~out_after,
                }
            )
            entry["changes"][label] = table
            for key in ("exceeds", "newly_out", "back_in"):
                entry[key][label] = [amp_name(k) for k, flag in zip(common, table[key], strict=True) if flag]
        result["metrics"][metric.name] = entry
    return result


def load_runs(
    compare: str | Sequence[str] | Mapping[str, str | Table] | None, repo: str | None = None
) -> tuple[dict[str, Table], dict[str, str]]:
    """Read the previous runs of ``eo-baseline report --compare``.

    Parameters
    ----------
    compare : `str`, sequence or mapping, optional
        ``{label: source or summary table}``; a ``LABEL=SOURCE`` or ``COLLECTION`` string; or a
        sequence of such strings.  A sequence none of whose items has ``=`` is the older form:
        the collections of one previous run, labelled by them joined with commas.
    repo : `str`, optional
        The report's repository (for collection sources).

    Returns
    -------
    runs : `dict` [`str`, `astropy.table.Table`]
        Summaries by label, in the order given.
    provenance : `dict` [`str`, `str`]
        Where each comes from.
    """
    if compare is None:
        return {}, {}
    if isinstance(compare, str):
        items = [parse_compare_option(compare)]
    elif isinstance(compare, Mapping):
        items = list(compare.items())
    elif any("=" in c for c in compare):
        items = [parse_compare_option(c) for c in compare]
    else:
        joined = ",".join(compare)
        items = [(joined, joined)] if compare else []
    runs: dict[str, Table] = {}
    where: dict[str, str] = {}
    for label, source in items:
        if label in runs:
            raise ValueError(f"--compare: run label {label!r} given twice")
        if isinstance(source, Table):
            runs[label] = source
            where[label] = str(source.meta.get("SOURCE_FILE", "summary table"))
            continue
        resolved = resolve_source(label, source)
        runs[label] = load_source(resolved, repo)
        where[label] = resolved.describe()
    return runs, where
