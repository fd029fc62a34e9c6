"""The baseline-characterization technote: a Rubin technote directory generated from a run.

`build_technote` writes ``OUT/technote.toml``, ``OUT/conf.py``, ``OUT/index.rst`` and the figures in
``OUT/figures``, the layout of a documenteer technote (``sphinx-build`` run in ``OUT`` builds it).
The headings are exactly those of the skeleton written by the technote's authors (`TITLE`,
`SECTIONS`; the test suite compares them with a copy of the skeleton).  Every metric subsection
holds, per metric of `data/metrics.yaml` placed there, a generated paragraph with the per-vendor
medians and the amplifiers that fail the requirement, one table of per-vendor statistics, and the
focal-plane mosaic and histogram of each metric.  Metrics that the skeleton has no subsection for
(read noise, the wavelength flats) go into the body of their section under a rubric, so that the
headings stay the skeleton's.

The Background section counts the exposures of each kind in each acquisition run from the run's
exposure records in the butler registry, and how densely the flat pairs sample the illumination.
The "Differences from previous runs" section renders `lsst.eo.baseline.runCompare.compare_runs`
over every ``--compare`` run and this one, as the HTML report does: per metric, the per-vendor
median and 5th/95th percentiles of each run side by side (the SITCOMTN-148 layout), the amplifiers
beyond the tolerance, newly out of requirement, back within it or missing from a run, definition
differences as notes, the difference maps and histograms and, with three runs or more, the trend.
Requirements are stated with their source (``spec.source`` of data/metrics.yaml).

The prose and table builders are pure functions of tables (`metric_paragraph`, `metric_table`,
`exposure_census`, `flat_pair_density`, `background_table`, `comparison_table`,
`comparison_sentences`).
"""

from __future__ import annotations

__all__ = [
    "KIND_LABELS",
    "METRIC_TABLE_HEADER",
    "SECTIONS",
    "TITLE",
    "TechnoteResult",
    "acquisition_runs_of",
    "background_table",
    "build_technote",
    "comparison_sentences",
    "comparison_table",
    "exposure_census",
    "exposure_kind",
    "flat_pair_density",
    "metric_paragraph",
    "metric_table",
    "query_exposures",
    "rst_headings",
]

import datetime
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.daf.butler import Butler
from lsst.utils.logging import getLogger

from .metrics import MetricSpec, load_metrics, load_sections
from .pairing import pair_exposures
from .plotTasks import mosaic_dataset_name
from .report import (
    VENDORS,
    _fmt,
    _Images,
    flagged_amplifiers,
    load_run_summary,
    load_step_record,
    metric_statistics,
)
from .runCompare import compare_runs, load_runs

_LOG = getLogger(__name__)

TITLE = "Baseline characterization"
"""The document title, as in the skeleton."""

SECTIONS: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("Background", ()),
    (
        "Bias metrics",
        (
            ("CTI", ("serial_cti", "parallel_cti", "serial_cti_cp", "parallel_cti_cp")),
            ("Bias stability", ("bias_drift", "bias_scatter")),
        ),
    ),
    (
        "Dark metrics",
        (
            ("Dark current", ("dark_current_95", "dark_current_median")),
            ("Bright defects", ("bright_pixels", "bright_columns", "bright_defect_fraction")),
        ),
    ),
    ("Stability flat metrics", (("Gain stability", ("gain_drift", "gain_scatter")),)),
    (
        "Flat pair metrics",
        (
            ("Row means variance", ("row_means_variance", "row_means_variance_with_read_noise")),
            ("Brighter-fatter correlation", ("bf_slope_x", "bf_slope_y")),
            ("Brighter fatter a_00 coefficient", ("ptc_a00",)),
            ("Linearity turnoff", ("linearity_turnoff", "linearity_turnoff_cp_pipe", "max_frac_dev")),
            ("PTC turnoff", ("ptc_turnoff",)),
            ("Maximum observed signal", ("max_observed_signal",)),
            ("PTC Gain", ("ptc_gain",)),
            ("PTC Noise", ("ptc_noise", "ptc_noise_overscan_corrected")),
            # The skeleton's spelling, kept so that the headings are exactly the skeleton's.
            ("Divisidero Tearing", ("divisadero",)),
            ("Dark defects", ("dark_pixels", "dark_columns", "dark_defect_fraction")),
        ),
    ),
    ("Persistence", ()),
    ("Differences from previous runs", ()),
)
"""Sections of the technote in order: (heading, ((subsection heading, metric names), ...))."""

# Which technote section holds a metric of a data/metrics.yaml section that no subsection names.
_BODY_SECTION = {
    "bias": "Bias metrics",
    "dark": "Dark metrics",
    "stability": "Stability flat metrics",
    "flat": "Flat pair metrics",
    "wavelength": "Stability flat metrics",
    "persistence": "Persistence",
}
_RUBRIC = {"read_noise": "Read noise", "read_noise_cp_overscan": "Read noise"}

# Adornment characters of the skeleton: title, section, subsection.
_UNDERLINE = ("#", "^", '"')

_VENDOR_NAMES = {"ITL": "ITL", "E2V": "e2v"}
_MAX_LISTED = 40

KIND_LABELS = {
    "bias": "Bias images",
    "dark": "Dark images",
    "flat_pair": "Flat-pair exposures",
    "stability_flat": "Stability flats",
    "wavelength_flat": "Wavelength flats",
    "persistence": "Persistence exposures",
    "other": "Other exposures",
}
"""Exposure kinds of the Background table, in order, with their row labels."""


@dataclass
class TechnoteResult:
    """What `build_technote` wrote.

    Attributes
    ----------
    directory : `str`
        The technote directory.
    index : `str`
        Path of ``index.rst``.
    n_figures : `int`
        Figures written into ``figures/``.
    figure_bytes : `int`
        Their total size.
    missing : `list` [`str`]
        Metrics without any value in the run.
    runs : `list` [`str`]
        Acquisition runs of the Background table.
    comparison : `dict` or `None`
        The multi-run comparison of "Differences from previous runs"
        (`lsst.eo.baseline.runCompare.compare_runs`), if any.
    """

    directory: str
    index: str
    n_figures: int = 0
    figure_bytes: int = 0
    missing: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    comparison: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# reStructuredText helpers


_RST_SPECIAL = re.compile(r"([*`|\\])")
_TRAILING_UNDERSCORE = re.compile(r"(\w)_(?=\W|$)")


def _esc(text: str) -> str:
    """Text safe as reStructuredText inline content (no accidental markup or references)."""
    return _TRAILING_UNDERSCORE.sub(r"\1\\_", _RST_SPECIAL.sub(r"\\\1", str(text)))


def rst_headings(text: str) -> list[tuple[int, str]]:
    """Section titles of a reStructuredText document with their levels.

    Levels follow the reStructuredText rule: each new adornment style (underline character, with
    or without overline) met in the document is the next level down.  Titles are stripped of
    surrounding white space.

    Parameters
    ----------
    text : `str`
        The document.

    Returns
    -------
    headings : `list` [(`int`, `str`)]
        ``(level, title)`` in document order, level 0 being the document title.
    """
    lines = text.splitlines()

    def adornment(line: str) -> str | None:
        s = line.rstrip()
        if len(s) >= 2 and len(set(s)) == 1 and not s[0].isalnum() and not s[0].isspace():
            return s[0]
        return None

    styles: list[tuple[str, bool]] = []
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines) - 1:
        title, under = lines[i], adornment(lines[i + 1])
        long_enough = len(lines[i + 1].rstrip()) >= len(title.strip())
        if title.strip() and adornment(title) is None and under and long_enough and not title[0].isspace():
            over = i > 0 and adornment(lines[i - 1]) == under and not (i > 1 and lines[i - 2].strip())
            style = (under, bool(over))
            if style not in styles:
                styles.append(style)
            out.append((styles.index(style), title.strip()))
            i += 2
            continue
        i += 1
    return out


class _Rst:
    """Accumulates the lines of index.rst."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def heading(self, text: str, level: int) -> None:
        self.lines += [text, _UNDERLINE[level] * max(len(text), 3), ""]

    def paragraph(self, text: str) -> None:
        self.lines += [text, ""]

    def rubric(self, text: str) -> None:
        self.lines += [f".. rubric:: {text}", ""]

    def comment(self, text: str) -> None:
        self.lines += [".."] + [f"   {line}" for line in text.splitlines()] + [""]

    def table(self, caption: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if not rows:
            return
        self.lines += [f".. list-table:: {caption}", "   :header-rows: 1", ""]
        for row in [header, *rows]:
            cells = [_esc(c) if c else " " for c in row]
            self.lines.append(f"   * - {cells[0]}")
            self.lines += [f"     - {c}" for c in cells[1:]]
        self.lines.append("")

    def note(self, text: str) -> None:
        self.lines += [".. note::", "", f"   {text}", ""]

    def figure(self, path: str, caption: str) -> None:
        self.lines += [
            f".. figure:: {path}",
            "   :width: 48%",
            f"   :alt: {caption}",
            "",
            f"   {_esc(caption)}",
            "",
        ]

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Metric prose and tables (pure functions of the run summary)


def _with_unit(value: str, metric: MetricSpec) -> str:
    return f"{value} {metric.unit}" if metric.unit else value


def metric_paragraph(metric: MetricSpec, stats: Mapping[str, Any], max_listed: int = _MAX_LISTED) -> str:
    """The sentence(s) stating a metric's numbers.

    Parameters
    ----------
    metric : `~lsst.eo.baseline.metrics.MetricSpec`
        The metric.
    stats : `dict`
        Its `lsst.eo.baseline.report.metric_statistics`.
    max_listed : `int`
        At most this many failing amplifiers are named (the count is always given).

    Returns
    -------
    text : `str`
        reStructuredText paragraph: per-vendor median with the number of amplifiers and the
        5th-95th percentile range, then how many amplifiers fail the requirement and which, or that
        the metric has no requirement.
    """
    label = _esc(metric.label)
    if not stats.get("n_measured"):
        return (
            f"{label}: no amplifier has a value in this run (the step did not run, had no exposures, "
            "or every amplifier is flagged)."
        )
    parts = []
    for vendor in VENDORS:
        v = stats["vendors"].get(vendor)
        if v is not None:
            parts.append(
                f"{_esc(_with_unit(_fmt(v['median']), metric))} for the {v['n']} {_VENDOR_NAMES[vendor]} "
                f"amplifiers (5th to 95th percentile {_esc(_fmt(v['p5']))} to {_esc(_fmt(v['p95']))})"
            )
    text = f"{label}: the median is " + " and ".join(parts) + "."
    if not metric.has_requirement:
        return text + " " + _no_requirement(metric) + "."
    requirement = _requirement(metric)
    bad = list(stats["out_of_spec"])
    if not bad:
        return text + f" All {stats['n_measured']} measured amplifiers meet the requirement ({requirement})."
    listed = ", ".join(bad[:max_listed])
    if len(bad) > max_listed:
        listed += f" and {len(bad) - max_listed} more"
    return (
        text + f" {len(bad)} of the {stats['n_measured']} measured amplifiers fail the requirement "
        f"({requirement}): {_esc(listed)}."
    )


def _requirement(metric: MetricSpec) -> str:
    """The threshold with its unit and source, as inline reStructuredText."""
    source = metric.spec_source or "source not given"
    return _esc(f"{_with_unit(metric.spec_text(), metric)}; source: {source}")


def _no_requirement(metric: MetricSpec) -> str:
    """The statement that a metric has no requirement, with what data/metrics.yaml says of it."""
    source = metric.spec_source.strip()
    if source.lower().startswith("no requirement"):
        # The source already says so, often with why (e.g. which quantity the requirement bounds).
        return _esc(source[0].upper() + source[1:])
    return "No requirement is set for this metric" + (f" ({_esc(source)})" if source else "")


METRIC_TABLE_HEADER = (
    "Metric",
    "Vendor",
    "Amplifiers",
    "Median",
    "5th pct",
    "95th pct",
    "Requirement",
    "Source",
    "Failing",
)


def metric_table(summary: Table, metrics: Sequence[MetricSpec]) -> list[list[str]]:
    """Rows of the per-vendor statistics table of some metrics (columns `METRIC_TABLE_HEADER`).

    Vendors without a measured amplifier are left out; a metric without any value has one row
    of dashes.
    """
    rows = []
    for m in metrics:
        st = metric_statistics(summary, m)
        spec = m.spec_text() if m.has_requirement else "none"
        source = m.spec_source or ("source not given" if m.has_requirement else "no requirement")
        if not st["vendors"]:
            rows.append([m.title, "--", "0", "--", "--", "--", spec, source, "--"])
        for vendor in VENDORS:
            v = st["vendors"].get(vendor)
            if v is None:
                continue
            rows.append(
                [
                    m.title,
                    _VENDOR_NAMES[vendor],
                    str(v["n"]),
                    _fmt(v["median"]),
                    _fmt(v["p5"]),
                    _fmt(v["p95"]),
                    spec,
                    source,
                    str(v["n_out"]) if m.has_requirement else "--",
                ]
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Background: exposures of each acquisition run


def exposure_kind(observation_type: str, observation_reason: str) -> str:
    """The kind of an exposure (a key of `KIND_LABELS`), by the rules of ``config/runs/*.yaml``."""
    obs_type = str(observation_type).strip().lower()
    reason = str(observation_reason).strip().lower()
    if reason == "persistence":
        return "persistence"
    if obs_type == "bias":
        return "bias"
    if obs_type == "dark" and reason == "dark":
        return "dark"
    if obs_type == "flat":
        return {"ptc": "flat_pair", "gain_stability": "stability_flat", "lambda": "wavelength_flat"}.get(
            reason, "other"
        )
    return "other"


def exposure_census(records: Table) -> dict[str, dict[str, int]]:
    """Number of exposures of each kind per acquisition run.

    Parameters
    ----------
    records : `astropy.table.Table`
        One row per exposure with ``science_program``, ``observation_type`` and
        ``observation_reason`` (as the registry's exposure records).

    Returns
    -------
    census : `dict` [`str`, `dict` [`str`, `int`]]
        ``{run: {kind: count}}`` with every kind of `KIND_LABELS` present (0 if none).
    """
    out: dict[str, dict[str, int]] = {}
    for row in records:
        counts = out.setdefault(str(row["science_program"]), dict.fromkeys(KIND_LABELS, 0))
        counts[exposure_kind(row["observation_type"], row["observation_reason"])] += 1
    return out


def flat_pair_density(records: Table) -> dict[str, Any]:
    """How densely the flat pairs of one acquisition run sample the illumination.

    Flat-pair exposures (`exposure_kind` ``flat_pair``) are paired as the PTC extraction pairs
    them (`lsst.eo.baseline.pairing.pair_exposures`, by exposure time).  The illumination of a
    pair is the source flux recorded with the exposure (``flux``, the CCOBFLUX header keyword)
    times its exposure time; when the flux is unknown for any pair, the exposure time stands in.

    Parameters
    ----------
    records : `astropy.table.Table`
        Exposure records of the run: ``exposure`` (id), ``observation_type``,
        ``observation_reason``, ``exposure_time`` (s) and optionally ``flux``.

    Returns
    -------
    density : `dict`
        ``n_pairs``; ``exptime_min``/``exptime_max`` (s); ``level_min``/``level_max`` and
        ``basis`` (``"illumination"`` or ``"exposure time"``); ``per_decade``: pairs per decade
        of the basis, ``n_pairs / log10(max / min)`` (NaN for fewer than 2 pairs or one level).
    """
    flats = [
        row
        for row in records
        if exposure_kind(row["observation_type"], row["observation_reason"]) == "flat_pair"
    ]
    pairs, _ = pair_exposures([(int(r["exposure"]), float(r["exposure_time"])) for r in flats], mode="TIME")
    by_id = {int(r["exposure"]): r for r in flats}
    times = np.array([float(by_id[a]["exposure_time"]) for a, _ in pairs])
    has_flux = "flux" in records.colnames
    flux = np.array([float(by_id[a]["flux"]) if has_flux else np.nan for a, _ in pairs])
    out: dict[str, Any] = {"n_pairs": len(pairs), "exptime_min": np.nan, "exptime_max": np.nan}
    if pairs:
        out["exptime_min"], out["exptime_max"] = float(times.min()), float(times.max())
    if pairs and np.isfinite(flux).all():
        levels, out["basis"] = flux * times, "illumination"
    else:
        levels, out["basis"] = times, "exposure time"
    levels = levels[levels > 0]
    out["level_min"] = float(levels.min()) if levels.size else np.nan
    out["level_max"] = float(levels.max()) if levels.size else np.nan
    out["per_decade"] = np.nan
    if len(pairs) >= 2 and levels.size and out["level_max"] > out["level_min"]:
        out["per_decade"] = len(pairs) / math.log10(out["level_max"] / out["level_min"])
    return out


def _run_kind(counts: Mapping[str, int]) -> str:
    """``B protocol`` when the run has more than biases and flat pairs, ``dense PTC`` if only those."""
    b_only = ("dark", "stability_flat", "wavelength_flat", "persistence")
    if any(counts.get(k, 0) for k in b_only):
        return "B protocol"
    if counts.get("flat_pair", 0):
        return "dense PTC"
    return "run"


def background_table(records: Table) -> tuple[list[str], list[list[str]]]:
    """The Background table: exposures of each kind and flat-pair density, one column per run.

    Runs are ordered B protocols first, then dense PTC runs, then by run number.

    Returns
    -------
    header, rows : `list` [`str`], `list` [`list` [`str`]]
    """
    census = exposure_census(records)
    runs = sorted(census, key=lambda r: (["B protocol", "dense PTC", "run"].index(_run_kind(census[r])), r))
    header = ["", *[f"{_run_kind(census[r])} (run {r})" for r in runs]]
    rows = [
        [label, *[str(census[r][kind]) for r in runs]]
        for kind, label in KIND_LABELS.items()
        if kind != "other" or any(census[r]["other"] for r in runs)
    ]
    density = {
        r: flat_pair_density(records[np.asarray(records["science_program"]).astype(str) == r]) for r in runs
    }
    rows.append(["Flat pairs", *[str(density[r]["n_pairs"]) for r in runs]])
    rows.append(
        [
            "Flat-pair exposure times (s)",
            *[
                f"{_fmt(d['exptime_min'])} to {_fmt(d['exptime_max'])}" if d["n_pairs"] else "--"
                for d in density.values()
            ],
        ]
    )
    rows.append(
        [
            "Flat-pair illumination (CCOBFLUX x EXPTIME)",
            *[
                f"{_fmt(d['level_min'])} to {_fmt(d['level_max'])}"
                if d["n_pairs"] and d["basis"] == "illumination"
                else "--"
                for d in density.values()
            ],
        ]
    )
    rows.append(
        [
            "Flat pairs per decade of illumination",
            *[
                (_fmt(d["per_decade"]) + (" (of exposure time)" if d["basis"] != "illumination" else ""))
                if np.isfinite(d["per_decade"])
                else "--"
                for d in density.values()
            ],
        ]
    )
    return header, rows


def acquisition_runs_of(butler: Butler, collections: str | Sequence[str]) -> list[str]:
    """Acquisition runs named by the reported collections (``u/eo/13600`` names run ``13600``).

    A component of a collection name is taken as a run number when exposures of the repository
    carry it as ``science_program``.
    """
    names = [collections] if isinstance(collections, str) else list(collections)
    candidates = sorted({part for name in names for part in name.split("/") if part})
    if not candidates:
        return []
    records = butler.query_dimension_records(
        "exposure",
        where="instrument = 'LSSTCam' AND exposure.science_program IN (runs)",
        bind={"runs": candidates},
        limit=None,
        explain=False,
    )
    return sorted({str(r.science_program) for r in records})


def query_exposures(
    butler: Butler, runs: Sequence[str], info_collections: Sequence[str] = ("LSSTCam/raw/all",)
) -> Table:
    """Exposure records of acquisition runs from the registry, with the source flux of the flats.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler of the repository.
    runs : sequence of `str`
        Run numbers (``exposure.science_program``).
    info_collections : sequence of `str`
        Collections searched for the ``eoExposureInfo`` datasets written at ingest, whose
        ``CCOBFLUX`` gives the ``flux`` column (NaN where absent).

    Returns
    -------
    records : `astropy.table.Table`
        ``exposure``, ``science_program``, ``observation_type``, ``observation_reason``,
        ``exposure_time`` (s), ``flux``; sorted by exposure id.
    """
    names = ("exposure", "science_program", "observation_type", "observation_reason", "exposure_time", "flux")
    if not runs:
        return Table(names=names, dtype=(np.int64, str, str, str, np.float64, np.float64))
    records = sorted(
        butler.query_dimension_records(
            "exposure",
            where="instrument = 'LSSTCam' AND exposure.science_program IN (runs)",
            bind={"runs": list(runs)},
            limit=None,
            explain=False,
        ),
        key=lambda r: r.id,
    )
    flats = [r.id for r in records if exposure_kind(r.observation_type, r.observation_reason) == "flat_pair"]
    flux = _exposure_fluxes(butler, flats, info_collections)
    rows = [
        (
            int(r.id),
            str(r.science_program),
            str(r.observation_type),
            str(r.observation_reason),
            float(r.exposure_time),
            flux.get(int(r.id), np.nan),
        )
        for r in records
    ]
    if not rows:
        return Table(names=names, dtype=(np.int64, str, str, str, np.float64, np.float64))
    return Table(rows=rows, names=names)


def _exposure_fluxes(
    butler: Butler, exposures: Sequence[int], collections: Sequence[str]
) -> dict[int, float]:
    """CCOBFLUX of each exposure from its ``eoExposureInfo`` (missing ones are left out)."""
    found: dict[int, float] = {}
    usable = []
    for name in collections:
        try:
            if butler.collections.query(name):
                usable.append(name)
        except Exception:  # noqa: BLE001 - a missing collection holds nothing
            continue
    if not exposures or not usable:
        return found
    for start in range(0, len(exposures), 500):
        try:
            refs = butler.query_datasets(
                "eoExposureInfo",
                collections=usable,
                where="instrument = 'LSSTCam' AND exposure IN (ids)",
                bind={"ids": list(exposures[start : start + 500])},
                limit=None,
                explain=False,
            )
        except Exception:  # noqa: BLE001 - dataset type never registered
            return found
        for ref in refs:
            value = butler.get(ref).get("CCOBFLUX")
            if isinstance(value, (int, float)) and math.isfinite(value):
                found[int(ref.dataId["exposure"])] = float(value)
    return found


# ---------------------------------------------------------------------------------------------
# Differences from previous runs


def comparison_table(entry: Mapping[str, Any], labels: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table of one metric over the runs (the SITCOMTN-148 layout).

    Parameters
    ----------
    entry : `dict`
        One metric of `lsst.eo.baseline.runCompare.compare_runs` (its ``stats`` table).
    labels : sequence [`str`]
        The runs, in the order of the columns.

    Returns
    -------
    header, rows : `list` [`str`], `list` [`list` [`str`]]
        Columns ``Vendor``, ``Statistic`` and one per run; per vendor measured in any run, the rows
        Amplifiers, Median, 5th pct, 95th pct, and Out of requirement when the metric has one
        (``--`` where a run has no value).
    """
    metric = entry["metric"]
    by_key = {(str(r["vendor"]), str(r["run"])): r for r in entry["stats"]}
    stats = [("Amplifiers", "n"), ("Median", "median"), ("5th pct", "p5"), ("95th pct", "p95")]
    if metric.has_requirement:
        stats.append(("Out of requirement", "n_out"))
    rows = []
    for vendor in VENDORS:
        found = [by_key.get((vendor, lb)) for lb in labels]
        if not any(r is not None and r["n"] for r in found):
            continue
        for name, column in stats:
            cells = []
            for r in found:
                if r is None or not r["n"]:
                    cells.append("--")
                elif column in ("n", "n_out"):
                    cells.append(str(int(r[column])))
                else:
                    cells.append(_fmt(float(r[column])))
            rows.append([_VENDOR_NAMES[vendor], name, *cells])
    return ["Vendor", "Statistic", *labels], rows


_AMP_LISTS = (
    ("exceeds", "changed beyond the tolerance"),
    ("newly_out", "newly out of requirement"),
    ("back_in", "back within requirement"),
)


def _amp_list(names: Sequence[str], max_listed: int = _MAX_LISTED) -> str:
    listed = ", ".join(names[:max_listed])
    return listed + (f" and {len(names) - max_listed} more" if len(names) > max_listed else "")


def comparison_sentences(
    entry: Mapping[str, Any], reference: str, max_listed: int = _MAX_LISTED
) -> tuple[list[str], list[str]]:
    """What changed in one metric, as sentences, and the notes that are not differences.

    Parameters
    ----------
    entry : `dict`
        One metric of `lsst.eo.baseline.runCompare.compare_runs`.
    reference : `str`
        Label of the reference run.
    max_listed : `int`
        At most this many amplifiers are named per list (the count is always given).

    Returns
    -------
    differences : `list` [`str`]
        Per run compared with the reference: the number of amplifiers in both and their median
        change, then the amplifiers beyond the tolerance, newly out of requirement and back
        within it (named), and per run the amplifiers missing from it.
    notes : `list` [`str`]
        Runs without any value, and definition differences (runs shown side by side only).
    """
    m = entry["metric"]
    label = m.label
    out = []
    for run, table in entry["changes"].items():
        change = np.asarray(table["change"], dtype=np.float64)
        finite = np.isfinite(change)
        median = _fmt(float(np.median(change[finite]))) if finite.any() else "--"
        text = (
            f"{label}, {run} against {reference}: {len(table)} amplifiers measured in both, median "
            f"change {_with_unit(median, m)} (tolerance: {m.tolerance_text()})."
        )
        for key, what in _AMP_LISTS:
            amps = entry[key].get(run, [])
            if key != "exceeds" and not m.has_requirement:
                continue
            text += f" {len(amps)} amplifier(s) {what}" + (
                f": {_amp_list(amps, max_listed)}." if amps else "."
            )
        out.append(text)
    for run, amps in entry["missing"].items():
        if amps:
            out.append(
                f"{label}: {len(amps)} amplifier(s) measured in another run are missing from {run}: "
                f"{_amp_list(amps, max_listed)}."
            )
    notes = []
    if entry["not_measured"]:
        notes.append(f"{label}: not measured in {', '.join(entry['not_measured'])}.")
    notes += [f"{label}: {note} (shown side by side, not differenced)." for note in entry["notes"]]
    return out, notes


# ---------------------------------------------------------------------------------------------
# The document


def _technote_toml(label: str, today: datetime.date) -> str:
    return (
        "# Metadata of the generated technote (documenteer / technote format).\n"
        "# Fill in id, series_id, authors and canonical_url before publishing.\n"
        "[technote]\n"
        f"title = {json.dumps(TITLE)}\n"
        f"date_created = {today.isoformat()}\n"
        f"date_updated = {today.isoformat()}\n"
        f"version = {json.dumps(label)}\n"
        "\n"
        "[technote.status]\n"
        'state = "draft"\n'
        'note = "Generated by eo-baseline report --format technote."\n'
    )


_CONF_PY = '''\
"""Sphinx configuration of the generated technote: documenteer's technote configuration."""

from documenteer.conf.technote import *  # noqa: F403

# Build offline: the note cites nothing from the lsst-texmf bibliographies that documenteer would
# otherwise download at every build.
documenteer_bibfile_github_repos = []

# The sitemap needs the published address (technote.toml canonical_url) and the git history.
if not html_baseurl:  # noqa: F405
    extensions.remove("sphinx_sitemap")  # noqa: F405
'''


def _metric_block(
    doc: _Rst,
    caption: str,
    metrics: Sequence[MetricSpec],
    summary: Table,
    images: _Images,
    missing: Sequence[str],
) -> None:
    """Paragraph per metric, the table, and the mosaic and histogram of each metric."""
    from .plotting import focal_plane_mosaic, vendor_histograms

    for m in metrics:
        doc.paragraph(metric_paragraph(m, metric_statistics(summary, m)))
    doc.table(f"{caption}: per-vendor statistics", METRIC_TABLE_HEADER, metric_table(summary, metrics))
    for m in metrics:
        if m.name in missing:
            continue
        for kind, what in (("Mosaic", "focal plane"), ("Hist", "per vendor")):
            dataset_type = mosaic_dataset_name(m.name, kind)
            path = images.from_butler(dataset_type, f"{dataset_type}.png")
            if path is None:
                fig = (
                    focal_plane_mosaic(summary, m.name, m.title, m.value_range, m.log)
                    if kind == "Mosaic"
                    else vendor_histograms(summary, m)
                )
                path = images.draw(fig, f"{dataset_type}.png")
            doc.figure(path, f"{m.label}: {what}.")


def _background(
    doc: _Rst,
    butler: Butler | None,
    runs: Sequence[str],
    info_collections: Sequence[str],
    summary: Table,
    metrics: Sequence[MetricSpec],
    missing: Sequence[str],
    incomplete: Mapping[str, str],
) -> None:
    doc.paragraph(
        "Initial characterization studies of LSSTCam used two acquisition sequences. A B protocol is "
        "the minimal set of camera acquisitions: bias images, dark images, flat pairs, stability flats, "
        "wavelength flats and a persistence dataset. A PTC (photon transfer curve) run is a sequence of "
        "flat pairs at different flux levels, sampling them more densely than the B protocol, for a "
        "more precise estimate of the flat pair metrics."
    )
    records = query_exposures(butler, runs, info_collections) if butler is not None and runs else None
    if records is None or not len(records):
        doc.paragraph(
            "No exposure records were found for the acquisition runs of this report "
            f"({', '.join(runs) if runs else 'none given'}), so the exposure table is left out."
        )
    else:
        header, rows = background_table(records)
        doc.paragraph(
            "The exposures of each kind in the acquisition runs, from their exposure records in the "
            "butler registry, and how densely the flat pairs sample the illumination (flat pairs "
            "matched by exposure time as in the PTC extraction; illumination is the source flux "
            "CCOBFLUX times the exposure time; pairs per decade is the number of pairs divided by "
            "the decades between the lowest and highest illumination):"
        )
        doc.table("Exposures of the acquisition runs", header, rows)
    detectors = sorted(set(int(d) for d in summary["detector"])) if len(summary) else []
    vendors = np.asarray(summary["vendor"]).astype(str) if len(summary) else np.array([])
    doc.paragraph(
        f"This report covers {len(detectors)} detectors and {len(summary)} amplifiers "
        f"({int((vendors == 'ITL').sum())} ITL, {int((vendors == 'E2V').sum())} e2v)."
    )
    if incomplete:
        doc.paragraph(
            "Steps of the analysis that were skipped, failed or are incomplete: "
            + "; ".join(f"{_esc(k)} ({_esc(v)})" for k, v in incomplete.items())
            + "."
        )
    if missing:
        labels = [m.label for m in metrics if m.name in missing]
        doc.paragraph("Metrics without any value in this run: " + _esc(", ".join(labels)) + ".")
    flagged = flagged_amplifiers(summary)
    if flagged:
        n = sum(len(g["amps"]) for g in flagged)
        doc.paragraph(
            f"{n} amplifier(s) are flagged (unusable data) and left out of every statistic: "
            + _esc("; ".join(f"{g['det_name']} {', '.join(g['amps'])} ({g['flags']})" for g in flagged))
            + "."
        )


def _differences(doc: _Rst, comparison: Mapping[str, Any] | None, images: _Images) -> None:
    """The "Differences from previous runs" section from `compare_runs`' result."""
    from .plotting import change_histograms, focal_plane_mosaic, trend_figure

    if comparison is None:
        doc.paragraph(
            "No previous run was given (``eo-baseline report --compare LABEL=SOURCE``), so there is "
            "nothing to compare."
        )
        return
    labels, ref = comparison["labels"], comparison["reference"]
    provenance = comparison["provenance"]
    doc.paragraph(
        "The runs compared, in order: "
        + _esc("; ".join(f"{lb} ({provenance.get(lb, 'summary table')})" for lb in labels))
        + f". The reference run is {_esc(ref)}: every change is a run minus {_esc(ref)}, for the "
        "amplifiers measured in both, matched by detector and amplifier name. For each metric, the "
        "table gives per vendor the number of amplifiers, the median and the 5th and 95th "
        "percentiles of each run side by side; then, per run, the amplifiers whose change exceeds "
        "the metric's tolerance (data/metrics.yaml), those newly out of requirement or back within "
        "it, and the amplifiers missing from a run."
        + (
            " One source is per CCD: the runs are compared per detector, on the defect metrics only."
            if comparison["level"] == "detector"
            else ""
        )
    )
    n_shown = 0
    for name, entry in comparison["metrics"].items():
        m = entry["metric"]
        if len(entry["not_measured"]) == len(labels):
            continue
        n_shown += 1
        doc.rubric(_esc(m.title))
        doc.paragraph(("Requirement: " + _requirement(m) if m.has_requirement else _no_requirement(m)) + ".")
        header, rows = comparison_table(entry, labels)
        doc.table(f"{_esc(m.title)}: per vendor, each run", header, rows)
        differences, notes = comparison_sentences(entry, ref)
        for text in differences:
            doc.paragraph(_esc(text))
        for text in notes:
            doc.note(_esc(text))
        for run, table in entry["changes"].items():
            if not len(table):
                continue
            safe = "".join(c if c.isalnum() else "_" for c in run)
            if comparison["level"] == "amp":
                fig = focal_plane_mosaic(table, "change", f"{m.title}: {run} - {ref}", diverging=True)
                path = images.draw(fig, f"{mosaic_dataset_name(name, 'Diff')}_{safe}.png")
                doc.figure(path, f"{m.label}: change per amplifier, {run} - {ref}.")
            fig = change_histograms(table, m, f"{m.label}: {run} - {ref}")
            path = images.draw(fig, f"{mosaic_dataset_name(name, 'DiffHist')}_{safe}.png")
            doc.figure(path, f"{m.label}: change per vendor, {run} - {ref}.")
        if len(labels) - len(entry["not_measured"]) >= 3:
            fig = trend_figure(entry["stats"], m, labels)
            path = images.draw(fig, f"{mosaic_dataset_name(name, 'Trend')}.png")
            doc.figure(path, f"{m.label}: per-vendor median and 5th-95th percentile band over the runs.")
    if not n_shown:
        doc.paragraph("No metric has a value in any of the runs.")


def build_technote(
    repo: str | None,
    collections: str | Sequence[str],
    out_dir: str,
    compare: str | Sequence[str] | Mapping[str, str | Table] | None = None,
    specs: str | None = None,
    summary: Table | None = None,
    previous: Table | None = None,
    acquisition_runs: Sequence[str] | None = None,
    raw_collections: Sequence[str] = ("LSSTCam/raw/all",),
    reference: str | None = None,
    label: str | None = None,
) -> TechnoteResult:
    """Write the baseline-characterization technote of a run as a technote directory.

    Parameters
    ----------
    repo : `str` or `None`
        Butler repository (`None`: only with ``summary``; no Background table then).
    collections : `str` or sequence
        Collection(s) of the run's outputs (e.g. ``u/eo/13600``).
    out_dir : `str`
        Technote directory (created): ``technote.toml``, ``conf.py``, ``index.rst``, ``figures/``.
    compare : `str`, sequence or mapping, optional
        Previous runs for "Differences from previous runs", as `lsst.eo.baseline.report.build_report`
        takes them: ``{label: source or summary table}`` (a source being a collection of ``repo``,
        ``REPO_PATH:COLLECTION`` of another repository or an exported summary file),
        ``LABEL=SOURCE`` strings, or the collection(s) of one previous run
        (`lsst.eo.baseline.runCompare.load_runs`).  Compared with this run by
        `lsst.eo.baseline.runCompare.compare_runs`.
    specs : `str`, optional
        YAML overriding specifications/tolerances.
    summary : `astropy.table.Table`, optional
        Run summary to report instead of the one in the repository.
    previous : `astropy.table.Table`, optional
        Summary of a single previous run instead of the one of ``compare`` (``compare``, a string,
        then only labels it).
    acquisition_runs : sequence of `str`, optional
        Acquisition runs (``exposure.science_program``) of the Background table; default the runs
        named by ``collections`` (`acquisition_runs_of`).
    raw_collections : sequence of `str`
        Where the ``eoExposureInfo`` datasets of the raws are searched (besides ``collections``).
    reference : `str`, optional
        Label of the reference run of the comparison (default: the first previous run).
    label : `str`, optional
        Label of this run in the comparison (default: its collection).

    Returns
    -------
    result : `TechnoteResult`
    """
    os.makedirs(out_dir, exist_ok=True)
    butler = Butler.from_config(repo) if repo is not None else None
    if summary is None:
        if butler is None:
            raise ValueError("build_technote needs a repository or a summary table")
        summary = load_run_summary(butler, collections)
    names = [collections] if isinstance(collections, str) else list(collections)
    run_label = ",".join(names)
    if previous is not None:
        previous_label = (compare if isinstance(compare, str) else ",".join(compare or [])) or "previous run"
        previous_runs, where = {previous_label: previous}, {previous_label: "summary table"}
    else:
        previous_runs, where = load_runs(compare, repo)
    if acquisition_runs is None:
        acquisition_runs = acquisition_runs_of(butler, names) if butler is not None else []
    metrics = load_metrics(specs)
    by_name = {m.name: m for m in metrics}
    comparison = None
    if previous_runs:
        this = label or run_label
        while this in previous_runs:
            this = f"{this} (this run)"
        runs = {**previous_runs, this: summary}
        where[this] = f"{repo}:{run_label}" if repo else "this report's summary"
        comparison = compare_runs(runs, metrics, reference=reference, provenance=where)
    missing = [
        m.name
        for m in metrics
        if m.name not in summary.colnames
        or not np.isfinite(np.asarray(summary[m.name], dtype=np.float64)).any()
    ]
    steps = load_step_record(butler, collections) if butler is not None else {}
    incomplete = {
        k: f"{v.get('status', '?')}: {v.get('message', '')}".rstrip(": ")
        for k, v in steps.items()
        if v.get("status") != "done"
    }
    images = _Images(butler, collections, out_dir, subdir="figures")

    # Metrics the skeleton has no subsection for go into their section's body, under a rubric.
    placed = {name for _, subs in SECTIONS for _, group in subs for name in group}
    yaml_titles = {s.key: s.title for s in load_sections()}
    body: dict[str, dict[str, list[MetricSpec]]] = {}
    for m in metrics:
        if m.name not in placed:
            section = _BODY_SECTION.get(m.section, "Flat pair metrics")
            rubric = _RUBRIC.get(
                m.name, yaml_titles.get(m.section, "") if yaml_titles.get(m.section) != section else ""
            )
            body.setdefault(section, {}).setdefault(rubric, []).append(m)

    today = datetime.date.today()
    doc = _Rst()
    doc.heading(TITLE, 0)
    # A plain paragraph, not technote's abstract directive: that adds an "Abstract" heading to the
    # page, and the headings are to be exactly the skeleton's.
    doc.paragraph(
        f"Electro-optical baseline characterization of LSSTCam from the outputs in {_esc(run_label)}"
        + (f" of repository {_esc(repo)}" if repo else "")
        + f", generated by eo-baseline on {today.isoformat()}: for each metric, the per-vendor medians, "
        "the amplifiers that fail the requirement, the focal-plane mosaic and histogram"
        + (f", and the comparison with {_esc(', '.join(previous_runs))}." if comparison is not None else ".")
    )
    for section, subsections in SECTIONS:
        doc.heading(section, 1)
        if section == "Background":
            _background(
                doc,
                butler,
                acquisition_runs,
                [*names, *raw_collections],
                summary,
                metrics,
                missing,
                incomplete,
            )
            continue
        if section == "Differences from previous runs":
            _differences(doc, comparison, images)
            continue
        for rubric, group in body.get(section, {}).items():
            if rubric:
                doc.rubric(rubric)
            _metric_block(doc, rubric or section, group, summary, images, missing)
        for subsection, group_names in subsections:
            doc.heading(subsection, 2)
            group = [by_name[n] for n in group_names if n in by_name]
            _metric_block(doc, subsection, group, summary, images, missing)
    index = os.path.join(out_dir, "index.rst")
    with open(index, "w") as f:
        f.write(doc.text())
    with open(os.path.join(out_dir, "technote.toml"), "w") as f:
        f.write(_technote_toml(run_label, today))
    with open(os.path.join(out_dir, "conf.py"), "w") as f:
        f.write(_CONF_PY)
    # Build products, if the directory becomes the technote's repository.
    with open(os.path.join(out_dir, ".gitignore"), "w") as f:
        f.write("_build/\n.technote/\n")
    summary.write(os.path.join(out_dir, "run_summary.ecsv"), format="ascii.ecsv", overwrite=True)
    figure_bytes = sum(
        os.path.getsize(os.path.join(images.dir, n)) for n in os.listdir(images.dir) if n.endswith(".png")
    )
    _LOG.info("Technote written to %s (%d figures, %.1f MB)", out_dir, images.count, figure_bytes / 1e6)
    return TechnoteResult(
        directory=out_dir,
        index=index,
        n_figures=images.count,
        figure_bytes=figure_bytes,
        missing=missing,
        runs=list(acquisition_runs),
        comparison=comparison,
    )
