"""eo_pipe's per-amplifier results as a run summary: ``eo-baseline import-eo-pipe``.

An acquisition run processed with eo_pipe before this package existed can be a "previous run" of
``eo-baseline report --compare``.  eo_pipe's output tables (``../shared/reference/eo_pipe.md``
sections 3 and 9; pandas DataFrames in the butler, or exported as parquet/CSV/ECSV) are read,
checked and mapped onto our metric names, units and sign conventions (`EO_PIPE_METRICS`), and
written in the run summary format (`lsst.eo.baseline.summaryExport`) with ``SUMMARY_SOURCE =
eo_pipe``.

Checks: a table missing a documented column is an error naming the table and the columns; a
column that carries a unit (ECSV/astropy parquet) must be convertible to eo_pipe's documented unit
(converted if so), else an error naming it; a detector or amplifier unknown to the camera is an
error; two rows for one amplifier in a per-amplifier table (e.g. ``eper_stats`` of two filters) is
an error -- select one filter first.

Definitions (``doc/conformance.rst``): a metric that we compute exactly as eo_pipe does is mapped
as a value to difference.  A metric whose eo_pipe counterpart is defined differently still gets
eo_pipe's number (so the runs stand side by side), with a note in ``DEFINITION_NOTES``: the
comparison (`lsst.eo.baseline.runCompare.compare_runs`) shows the note instead of differences.

Per-CCD tables (`read_per_ccd_defects`): the public per-CCD defect counts of earlier LSSTCam runs
(columns ``<run>_bright_pixels`` ...) become one detector-level summary per run.
"""

from __future__ import annotations

__all__ = [
    "EO_PIPE_COLUMNS",
    "EO_PIPE_METRICS",
    "EoPipeImportError",
    "EoPipeMetric",
    "eo_pipe_summary",
    "read_eo_pipe_butler",
    "read_eo_pipe_files",
    "read_per_ccd_defects",
]

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import Table, vstack

from .biasStability import summarize_levels
from .camera import get_camera, nominal_amps
from .gainStability import stability_summary
from .metrics import load_metrics
from .runCompare import DETECTOR_SUMS, GeometryMismatchError

_PIX = u.dimensionless_unscaled

EO_PIPE_COLUMNS: dict[str, dict[str, u.UnitBase]] = {
    "eo_read_noise": {"det_name": None, "amp_name": None, "read_noise": u.adu},
    "dark_current_stats": {"det_name": None, "amp_name": None, "dark_current_95": u.electron / u.s,
                           "dark_current_median": u.electron / u.s},
    "bright_defects_results": {"det_name": None, "amp_name": None, "bright_columns": _PIX,
                               "bright_pixels": _PIX},
    "dark_defects_results": {"det_name": None, "amp_name": None, "dark_columns": _PIX, "dark_pixels": _PIX},
    "eper_stats": {"det_name": None, "amp_name": None, "scti": _PIX, "pcti": _PIX},
    "ptc_summary": {"det_name": None, "amp_name": None, "ptc_a00": 1 / u.electron,
                    "ptc_gain": u.electron / u.adu, "ptc_noise": u.electron, "ptc_turnoff": u.adu},
    "linearity_results": {"det_name": None, "amp_name": None, "max_frac_dev": _PIX,
                          "max_observed_signal": u.adu, "linearity_turnoff": u.adu},
    "bf_stats": {"det_name": None, "amp_name": None, "bf_slope_x": u.adu, "bf_slope_y": u.adu},
    "row_means_variance_stats": {"det_name": None, "amp_name": None, "slope": _PIX},
    "divisadero_stats": {"det_name": None, "amp_name": None, "divisadero_tearing": _PIX},
    "bias_stability_stats": {"det_name": None, "amp_name": None, "mjd": u.day, "mean": u.adu},
    "flat_gain_stability_stats": {"raft": None, "slot": None, "amp_name": None, "mjd": u.day,
                                  "median": u.adu},
    "persistence_data": {"det_name": None, "amp_name": None, "image_type": None, "mean_signal": u.adu,
                         "time": u.min},
}  # fmt: skip
"""eo_pipe's tables and the columns read, with eo_pipe's documented units (eo_pipe.md 3, 9).

``persistence_data`` is checked but gives no metric: eo_pipe stores no persistence scalar and our
``persistence_q0``/``persistence_tau`` (decay fit) have no eo_pipe counterpart.
"""


@dataclass(frozen=True)
class EoPipeMetric:
    """How one of our summary metrics is obtained from an eo_pipe table.

    Attributes
    ----------
    metric : `str`
        Our summary column.
    dataset, column : `str`
        eo_pipe table and column.
    factor : `float`
        Sign/scale applied (after unit conversion).
    note : `str`
        Empty if our definition is eo_pipe's; else why they differ (then not differenced).
    """

    metric: str
    dataset: str
    column: str
    factor: float = 1.0
    note: str = ""


EO_PIPE_METRICS: tuple[EoPipeMetric, ...] = (
    EoPipeMetric("read_noise", "eo_read_noise", "read_noise"),
    EoPipeMetric("dark_current_95", "dark_current_stats", "dark_current_95"),
    EoPipeMetric("dark_current_median", "dark_current_stats", "dark_current_median"),
    EoPipeMetric("bright_pixels", "bright_defects_results", "bright_pixels"),
    EoPipeMetric("bright_columns", "bright_defects_results", "bright_columns"),
    EoPipeMetric("dark_pixels", "dark_defects_results", "dark_pixels"),
    EoPipeMetric("dark_columns", "dark_defects_results", "dark_columns"),
    EoPipeMetric("serial_cti", "eper_stats", "scti"),
    EoPipeMetric("parallel_cti", "eper_stats", "pcti"),
    # Both ptc_a00 are -a00 (positive for normal devices): no sign change.
    EoPipeMetric("ptc_a00", "ptc_summary", "ptc_a00"),
    EoPipeMetric("ptc_gain", "ptc_summary", "ptc_gain"),
    EoPipeMetric("ptc_noise", "ptc_summary", "ptc_noise"),
    # adu, converted to e- below with eo_pipe's (ratio-adjusted) ptc_gain, as ours.
    EoPipeMetric("ptc_turnoff", "ptc_summary", "ptc_turnoff"),
    EoPipeMetric("linearity_turnoff", "linearity_results", "linearity_turnoff"),
    EoPipeMetric("max_frac_dev", "linearity_results", "max_frac_dev"),
    EoPipeMetric("max_observed_signal", "linearity_results", "max_observed_signal"),
    EoPipeMetric("bf_slope_x", "bf_stats", "bf_slope_x"),
    EoPipeMetric("bf_slope_y", "bf_stats", "bf_slope_y"),
    EoPipeMetric("row_means_variance", "row_means_variance_stats", "slope"),
    EoPipeMetric("divisadero", "divisadero_stats", "divisadero_tearing"),
)  # fmt: skip
"""The direct mappings (one eo_pipe column per metric)."""

_BIAS_NOTE = (
    "from eo_pipe's bias_stability_stats 'mean' (clipped mean of the overscan-corrected imaging area); "
    "ours is the drift of the raw overscan level"
)
_GAIN_STAB_NOTE = (
    "from eo_pipe's flat_gain_stability_stats 'median' (whole raw segment); ours uses the clipped mean "
    "of the imaging area normalised by CCOBFLUX x EXPTIME"
)


class EoPipeImportError(ValueError):
    """An eo_pipe table that cannot be imported (missing column, wrong unit, unknown amplifier)."""


def _check_table(
    name: str, table: Table, where: str, units: Mapping[tuple[str, str], u.UnitBase] | None = None
) -> Table:
    """Check the documented columns and units of an eo_pipe table; return it in those units.

    ``units`` overrides the documented unit of (table, column) pairs.
    """
    expected = {c: (units or {}).get((name, c), unit) for c, unit in EO_PIPE_COLUMNS[name].items()}
    missing = [c for c in expected if c not in table.colnames]
    if missing:
        raise EoPipeImportError(f"{where}: {name} lacks column(s) {', '.join(missing)}")
    out = Table(table, copy=True)
    for column, unit in expected.items():
        if unit is None:
            continue
        have = out[column].unit
        if have is None:
            continue
        if not u.Unit(have).is_equivalent(unit):
            raise EoPipeImportError(f"{where}: {name}.{column} is in {have}, expected {unit}")
        out[column] = np.asarray(out[column].quantity.to_value(unit), dtype=np.float64)
    return out


def _det(camera, value):
    # row_means_variance_stats writes the integer detector id as det_name (eo_pipe.md 3.8).
    text = str(value)
    try:
        return camera[int(text)] if re.fullmatch(r"\d+", text) else camera[text]
    except (KeyError, IndexError):
        raise EoPipeImportError(f"unknown detector {text!r}") from None


def _keys(name: str, table: Table, camera) -> list[tuple[int, str]]:
    if name == "flat_gain_stability_stats":
        dets = [_det(camera, f"{r}_{s}") for r, s in zip(table["raft"], table["slot"], strict=True)]
    else:
        dets = [_det(camera, d) for d in table["det_name"]]
    keys = []
    for det, amp in zip(dets, np.asarray(table["amp_name"]).astype(str), strict=True):
        if amp not in det.amp_names:
            raise GeometryMismatchError(f"{name}: detector {det.name} has no amplifier {amp}")
        keys.append((det.id, amp))
    return keys


def _per_amp(name: str, table: Table, column: str, camera) -> dict[tuple[int, str], float]:
    keys = _keys(name, table, camera)
    values = np.asarray(table[column], dtype=np.float64)
    out: dict[tuple[int, str], float] = {}
    dup = set()
    for key, value in zip(keys, values, strict=True):
        if key in out:
            dup.add(key)
        out[key] = float(value)
    if dup:
        names = ", ".join(f"{camera[d].name} {a}" for d, a in sorted(dup)[:10])
        raise EoPipeImportError(
            f"{name}: several rows for amplifier(s) {names} (several filters or runs?): select one first"
        )
    return out


def _grouped(name: str, table: Table, camera) -> dict[tuple[int, str], np.ndarray]:
    keys = _keys(name, table, camera)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}


def eo_pipe_summary(
    tables: Mapping[str, Table], read_noise_unit: str = "adu", where: str = "eo_pipe tables"
) -> Table:
    """Build a run summary from eo_pipe's tables.

    Parameters
    ----------
    tables : mapping [`str`, `astropy.table.Table`]
        eo_pipe tables by dataset type (any subset of `EO_PIPE_COLUMNS`).
    read_noise_unit : `str`
        Unit of ``eo_read_noise.read_noise``: ``adu`` (eo_pipe's default since January 2026,
        ``apply_gains=False``), converted to e- with the camera-model gains as ours is; or ``e-``
        (``apply_gains=True``, taken as is).  A column carrying a unit overrides it.
    where : `str`
        Name of the input, for messages.

    Returns
    -------
    summary : `astropy.table.Table`
        One row per amplifier of every detector found; our metric columns (NaN where eo_pipe has
        none), ``flags`` 0; metadata ``SUMMARY_SOURCE = eo_pipe``, ``LEVEL = amp``,
        ``DEFINITION_NOTES`` and ``EO_PIPE_TABLES``.
    """
    if read_noise_unit not in ("adu", "e-"):
        raise ValueError(f"read_noise_unit must be 'adu' or 'e-', not {read_noise_unit!r}")
    camera = get_camera()
    unknown = sorted(set(tables) - set(EO_PIPE_COLUMNS))
    if unknown:
        raise EoPipeImportError(f"{where}: not eo_pipe tables: {', '.join(unknown)}")
    rn = tables.get("eo_read_noise")
    if rn is not None and "read_noise" in rn.colnames and rn["read_noise"].unit is not None:
        # A column carrying its unit says which eo_pipe configuration wrote it.
        if u.Unit(rn["read_noise"].unit).is_equivalent(u.electron):
            read_noise_unit = "e-"
    units = {("eo_read_noise", "read_noise"): u.electron} if read_noise_unit == "e-" else {}
    checked = {name: _check_table(name, t, where, units) for name, t in tables.items()}
    values: dict[str, dict[tuple[int, str], float]] = {}
    notes: dict[str, str] = {}
    for m in EO_PIPE_METRICS:
        if m.dataset not in checked:
            continue
        t = checked[m.dataset]
        if m.dataset == "eo_read_noise":
            # eo_pipe's focal-plane value: per amplifier median over exposures.
            groups = _grouped(m.dataset, t, camera)
            col = np.asarray(t[m.column], dtype=np.float64)
            values[m.metric] = {k: float(np.nanmedian(col[idx])) for k, idx in groups.items()}
        else:
            values[m.metric] = {k: m.factor * v for k, v in _per_amp(m.dataset, t, m.column, camera).items()}
        if m.note:
            notes[m.metric] = m.note
    ptc_gain = values.get("ptc_gain", {})
    if "read_noise" in values and read_noise_unit == "adu":
        # Ours is eo_pipe's adu value x the run's PTC gain, the camera-model gain where the PTC has
        # none (lsst.eo.baseline.runGains); without a ptc_summary every amplifier falls back.
        def gain(k: tuple[int, str]) -> float:
            g = ptc_gain.get(k, np.nan)
            return g if np.isfinite(g) and g > 0 else nominal_amps(camera[k[0]].name)[k[1]].gain

        values["read_noise"] = {k: v * gain(k) for k, v in values["read_noise"].items()}
        if not ptc_gain:
            notes["read_noise"] = "no ptc_summary: eo_pipe's adu converted with the camera-model gains"
    # Dark current: eo_pipe's cpDark is in e- through the PTC gains, as ours (no conversion).
    if "ptc_turnoff" in values:
        values["ptc_turnoff"] = {k: v * ptc_gain.get(k, np.nan) for k, v in values["ptc_turnoff"].items()}
    if "bias_stability_stats" in checked:
        t = checked["bias_stability_stats"]
        mjd, mean = np.asarray(t["mjd"], dtype=np.float64), np.asarray(t["mean"], dtype=np.float64)
        drift, scatter = {}, {}
        for k, idx in _grouped("bias_stability_stats", t, camera).items():
            s = summarize_levels(mjd[idx], mean[idx])
            drift[k], scatter[k] = s["drift"], s["scatter"]
        values["bias_drift"], values["bias_scatter"] = drift, scatter
        notes["bias_drift"] = notes["bias_scatter"] = _BIAS_NOTE
    if "flat_gain_stability_stats" in checked:
        t = checked["flat_gain_stability_stats"]
        mjd, med = np.asarray(t["mjd"], dtype=np.float64), np.asarray(t["median"], dtype=np.float64)
        drift, scatter = {}, {}
        for k, idx in _grouped("flat_gain_stability_stats", t, camera).items():
            series = med[idx] / np.nanmean(med[idx])
            s = stability_summary(mjd[idx], series)
            drift[k], scatter[k] = s["gain_drift_ppt"], s["scatter_ppt"]
        values["gain_drift"], values["gain_scatter"] = drift, scatter
        notes["gain_drift"] = notes["gain_scatter"] = _GAIN_STAB_NOTE
    detectors = sorted({k[0] for per in values.values() for k in per})
    for name in checked:
        detectors = sorted(set(detectors) | {k[0] for k in _keys(name, checked[name], camera)})
    metrics = load_metrics()
    rows = []
    for det_id in detectors:
        det = camera[det_id]
        ny, nx = det.ccd_type.data_shape
        for amp in det.amp_names:
            row = {"detector": det.id, "det_name": det.name, "raft": det.raft, "slot": det.slot,
                   "vendor": det.vendor, "amp": amp}  # fmt: skip
            for m in metrics:
                row[m.name] = values.get(m.name, {}).get((det.id, amp), np.nan)
            for kind in ("bright", "dark"):
                row[f"{kind}_defect_fraction"] = (row[f"{kind}_pixels"] + row[f"{kind}_columns"] * ny) / (
                    nx * ny
                )
            row["total_defect_fraction"] = row["bright_defect_fraction"] + row["dark_defect_fraction"]
            row["flags"] = 0
            row["flag_sources"] = ""
            rows.append(row)
    names = ["detector", "det_name", "raft", "slot", "vendor", "amp"] + [m.name for m in metrics]
    names += ["flags", "flag_sources"]
    summary = Table(rows=[[r[n] for n in names] for r in rows], names=names) if rows else Table(names=names)
    summary.meta.update(
        {
            "SUMMARY_SOURCE": "eo_pipe",
            "LEVEL": "amp",
            "DEFINITION_NOTES": notes,
            "EO_PIPE_TABLES": ",".join(sorted(tables)),
            "READ_NOISE_UNIT": read_noise_unit,
        }
    )
    return summary


def _read_file(path: str) -> Table:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return Table.read(path, format="parquet")
    if lower.endswith(".ecsv"):
        return Table.read(path, format="ascii.ecsv")
    return Table.read(path, format="ascii.csv")


def read_eo_pipe_files(directory: str) -> dict[str, Table]:
    """eo_pipe tables exported as files ``<dataset type>[_anything].{parquet,csv,ecsv}``.

    Several files of one dataset type (e.g. one per detector) are stacked.  A pandas index
    column (unnamed, ``Unnamed: 0`` or ``__index_level_0__``) is dropped.
    """
    by_type: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        stem, _, ext = os.path.basename(path).rpartition(".")
        if ext.lower() not in ("parquet", "csv", "ecsv"):
            continue
        # The longest matching name: 'dark_defects_results' is not 'dark_current_stats'.
        names = [n for n in EO_PIPE_COLUMNS if stem == n or stem.startswith(n + "_")]
        if names:
            by_type.setdefault(max(names, key=len), []).append(path)
    tables: dict[str, Table] = {}
    for name, paths in by_type.items():
        parts = []
        for path in paths:
            t = _read_file(path)
            for col in ("", "Unnamed: 0", "__index_level_0__", "col0"):
                if col in t.colnames and col not in EO_PIPE_COLUMNS[name]:
                    t.remove_column(col)
            parts.append(t)
        tables[name] = vstack(parts) if len(parts) > 1 else parts[0]
    return tables


def read_eo_pipe_butler(repo: str, collections: Sequence[str]) -> dict[str, Table]:
    """eo_pipe tables (DataFrames) of ``collections`` in a butler repository, stacked per type."""
    from lsst.daf.butler import Butler

    butler = Butler.from_config(repo)
    tables: dict[str, Table] = {}
    for name in EO_PIPE_COLUMNS:
        try:
            refs = butler.query_datasets(name, collections=list(collections), limit=None, explain=False)
        except Exception:  # noqa: BLE001 - dataset type not registered or not in the collections
            continue
        parts = []
        for ref in refs:
            frame = butler.get(ref)
            parts.append(Table.from_pandas(frame) if not isinstance(frame, Table) else frame)
        if parts:
            tables[name] = vstack(parts) if len(parts) > 1 else parts[0]
    return tables


_RUN_COLUMN = re.compile(
    r"^(?P<run>[A-Za-z0-9]+)_(?P<metric>bright_pixels|bright_columns|dark_pixels|dark_columns)$"
)


def read_per_ccd_defects(path: str) -> dict[str, Table]:
    """Per-CCD defect counts of several runs (``<run>_bright_pixels`` ... columns) as summaries.

    The detector is named by the first column (or ``det_name``) and, if present, checked against
    ``DetectorNumber`` and ``Manufacturer``: a detector whose id or vendor differs from the
    camera's is a `GeometryMismatchError` naming it.

    Returns
    -------
    summaries : `dict` [`str`, `astropy.table.Table`]
        {run: detector-level summary} (``LEVEL = detector``, ``amp`` empty) with the four counts
        and the defect fractions of the CCD's pixels.
    """
    table = _read_file(path)
    name_col = "det_name" if "det_name" in table.colnames else table.colnames[0]
    camera = get_camera()
    runs: dict[str, list[str]] = {}
    for col in table.colnames:
        m = _RUN_COLUMN.match(col)
        if m:
            runs.setdefault(m["run"], []).append(m["metric"])
    if not runs:
        raise EoPipeImportError(f"{path}: no <run>_bright_pixels/... columns")
    for run, cols in runs.items():
        missing = sorted(set(DETECTOR_SUMS) - set(cols))
        if missing:
            raise EoPipeImportError(
                f"{path}: run {run} lacks column(s) {', '.join(f'{run}_{c}' for c in missing)}"
            )
    dets, problems = [], []
    for r in table:
        try:
            det = camera[str(r[name_col])]
        except (KeyError, IndexError):
            problems.append(f"{r[name_col]}: not a detector of the camera")
            continue
        if "DetectorNumber" in table.colnames and int(r["DetectorNumber"]) != det.id:
            problems.append(f"{det.name}: id {int(r['DetectorNumber'])} vs {det.id}")
        if "Manufacturer" in table.colnames and str(r["Manufacturer"]).upper() != det.vendor:
            problems.append(f"{det.name}: vendor {r['Manufacturer']} vs {det.vendor}")
        dets.append(det)
    if problems:
        raise GeometryMismatchError(f"{path}: camera geometry differs: {'; '.join(problems)}")
    out = {}
    for run in runs:
        counts = {c: np.asarray(table[f"{run}_{c}"], dtype=np.float64) for c in DETECTOR_SUMS}
        pixels = np.array([len(d.amp_names) * np.prod(d.ccd_type.data_shape) for d in dets], dtype=np.float64)
        height = np.array([d.ccd_type.data_shape[0] for d in dets], dtype=np.float64)
        s = Table(
            {
                "detector": np.array([d.id for d in dets], dtype=np.int64),
                "det_name": np.array([d.name for d in dets], dtype=str),
                "raft": np.array([d.raft for d in dets], dtype=str),
                "slot": np.array([d.slot for d in dets], dtype=str),
                "vendor": np.array([d.vendor for d in dets], dtype=str),
                "amp": np.full(len(dets), "", dtype="U4"),
                **counts,
            }
        )
        for kind in ("bright", "dark"):
            s[f"{kind}_defect_fraction"] = (
                counts[f"{kind}_pixels"] + counts[f"{kind}_columns"] * height
            ) / pixels
        s["total_defect_fraction"] = s["bright_defect_fraction"] + s["dark_defect_fraction"]
        s.meta.update({"SUMMARY_SOURCE": "eo_pipe", "LEVEL": "detector", "DEFINITION_NOTES": {},
                       "ACQUISITION_RUN": run, "SOURCE_FILE": path})  # fmt: skip
        out[run] = s
    return out
