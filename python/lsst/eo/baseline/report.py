"""The baseline-characterization report: HTML page and reStructuredText, with run-to-run differences.

`build_report` reads a run's ``eoRunSummary`` (or builds it from the per-detector metric tables if
the summary step did not run), the plots written as butler ``Plot`` datasets (drawing any that are
missing), and writes ``OUT/index.html`` and ``OUT/report.rst`` with the images beside them in
``OUT/images``.  Sections follow the baseline-characterization technote: bias, dark, stability
flat, flat pair, wavelength flats, persistence, and the differences from previous runs.  Each
section has, per metric, the per-vendor median and 5th/95th percentiles, the requirement with its
source, the number and the list of amplifiers outside it, and the plots.  The differences from
previous runs (any number, from collections, other repositories or summary files) are computed by
`lsst.eo.baseline.runCompare.compare_runs` and only rendered here.

A "Missing / incomplete" section comes first: the steps of ``eo-baseline run`` that were skipped
(no exposures), failed or were partial (as recorded by the runner in the documentation of the
run's collection, see `lsst.eo.baseline.runState`), the metrics without any value, and the flagged
amplifiers (`lsst.eo.baseline.ampFlags`) with their flags and the tables that set them.  NaN
values never enter the statistics.
"""

from __future__ import annotations

__all__ = [
    "ReportResult",
    "build_report",
    "compare_summaries",
    "flagged_amplifiers",
    "load_run_summary",
    "load_step_record",
    "metric_statistics",
]

import html
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.daf.butler import Butler
from lsst.utils.logging import getLogger

from .ampFlags import FLAGS_COLUMN, flag_names
from .camera import get_camera
from .metrics import MetricSpec, load_metrics, load_sections, out_of_spec
from .plotTasks import mosaic_dataset_name
from .runCompare import compare_runs, condense_amp_list, load_runs
from .runGains import camera_gain_amplifiers
from .runState import parse_step_record
from .runSummary import SUMMARY_DATASETS, build_run_summary

_LOG = getLogger(__name__)

VENDORS = ("ITL", "E2V")
_DETECTOR_PLOTS = {
    "bias": [("eoBiasStabilityPlot", "Bias level versus time")],
    "stability": [("eoGainStabilityPlot", "Normalised flat signal versus time")],
    "flat": [("eoPtcPlot", "Photon transfer curves"), ("eoLinearityPlot", "Linearity residuals")],
    "persistence": [("eoPersistencePlot", "Persistence decay")],
}
_MAX_LISTED = 40


@dataclass
class ReportResult:
    """What `build_report` wrote.

    Attributes
    ----------
    html : `str`
        Path of the HTML page.
    rst : `str`
        Path of the reStructuredText version.
    n_images : `int`
        Images written beside them.
    missing : `list` [`str`]
        Metrics without any value in the run.
    flagged : `list` [`str`]
        Flagged amplifiers (``"R22_S11 C10"``).
    incomplete_steps : `dict` [`str`, `str`]
        Steps that were not ``done`` (status and reason), when the runner recorded them.
    comparison : `dict` or `None`
        The multi-run comparison shown (`lsst.eo.baseline.runCompare.compare_runs`), if any.
    """

    html: str
    rst: str
    n_images: int = 0
    missing: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    incomplete_steps: dict[str, str] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None


def load_run_summary(butler: Butler, collections: str | Sequence[str]) -> Table:
    """The run's ``eoRunSummary``, or one built from the per-detector metric tables."""
    try:
        return butler.get("eoRunSummary", instrument="LSSTCam", collections=collections)
    except Exception:  # noqa: BLE001 - any failure: fall back to building it
        _LOG.info("No eoRunSummary in %s: building it from the per-detector tables", collections)
    tables: dict[str, dict[int, Table]] = {}
    for name in SUMMARY_DATASETS:
        try:
            refs = butler.query_datasets(name, collections=collections, limit=None, explain=False)
        except Exception:  # noqa: BLE001 - dataset type never registered
            refs = []
        tables[name] = {ref.dataId["detector"]: butler.get(ref) for ref in refs}
    return build_run_summary(tables)


def load_step_record(butler: Butler, collections: str | Sequence[str]) -> dict[str, dict[str, str]]:
    """Step statuses that ``eo-baseline run`` recorded on the run's collection(s).

    Returns
    -------
    steps : `dict` [`str`, `dict`]
        ``{step: {"status": ..., "message": ...}}`` in run order (empty if none was recorded).
    """
    steps: dict[str, dict[str, str]] = {}
    for name in [collections] if isinstance(collections, str) else list(collections):
        try:
            doc = butler.registry.getCollectionDocumentation(name)
        except Exception:  # noqa: BLE001 - a missing collection has no record
            continue
        for step, info in parse_step_record(doc).items():
            steps.setdefault(step, info)
    return steps


def flagged_amplifiers(summary: Table) -> list[dict[str, Any]]:
    """Flagged amplifiers of a run summary, grouped by detector, flags and source tables.

    Returns
    -------
    groups : `list` [`dict`]
        ``det_name``, ``amps`` (list), ``flags`` (names joined with ``|``) and ``sources``.
    """
    if FLAGS_COLUMN not in summary.colnames or not len(summary):
        return []
    groups: dict[tuple[str, int, str], list[str]] = {}
    sources = summary["flag_sources"] if "flag_sources" in summary.colnames else [""] * len(summary)
    for row, source in zip(summary, sources, strict=True):
        value = int(row[FLAGS_COLUMN])
        if value:
            groups.setdefault((str(row["det_name"]), value, str(source)), []).append(str(row["amp"]))
    return [
        {"det_name": det, "amps": amps, "flags": "|".join(flag_names(value)), "sources": source}
        for (det, value, source), amps in groups.items()
    ]


def metric_statistics(summary: Table, metric: MetricSpec) -> dict[str, Any]:
    """Per-vendor median and 5th/95th percentiles, and the amplifiers out of spec."""
    values = np.asarray(summary[metric.name], dtype=np.float64) if metric.name in summary.colnames else None
    out: dict[str, Any] = {"vendors": {}, "out_of_spec": [], "n_measured": 0}
    if values is None:
        return out
    vendors = np.asarray(summary["vendor"]).astype(str)
    finite = np.isfinite(values)
    out["n_measured"] = int(finite.sum())
    for vendor in VENDORS:
        sel = finite & (vendors == vendor)
        if sel.any():
            p5, med, p95 = np.percentile(values[sel], [5, 50, 95])
            out["vendors"][vendor] = {
                "n": int(sel.sum()),
                "median": med,
                "p5": p5,
                "p95": p95,
                "n_out": int(out_of_spec(metric, values[sel]).sum()),
            }
    bad = out_of_spec(metric, values)
    out["out_of_spec"] = [f"{r['det_name']} {r['amp']}" for r in summary[bad]]
    return out


def compare_summaries(current: Table, previous: Table, metric: MetricSpec) -> dict[str, Any]:
    """Differences of one metric between two runs.

    Returns
    -------
    comparison : `dict`
        ``vendors`` (medians before/after and median difference per vendor), ``changed`` (amps whose
        change exceeds the metric's tolerance, with values), ``only_current`` / ``only_previous``
        (amps measured in one run only), ``diff`` (table detector, amp, difference).
    """

    def values(table: Table) -> dict[tuple[int, str], float]:
        if metric.name not in table.colnames:
            return {}
        return {
            (int(r["detector"]), str(r["amp"])): float(r[metric.name])
            for r in table
            if np.isfinite(r[metric.name])
        }

    now, before = values(current), values(previous)
    common = sorted(set(now) & set(before))
    camera = get_camera()
    out: dict[str, Any] = {"vendors": {}, "changed": [], "only_current": [], "only_previous": []}
    rows = []
    for vendor in VENDORS:
        keys = [k for k in common if camera[k[0]].vendor == vendor]
        if keys:
            a = np.array([before[k] for k in keys])
            b = np.array([now[k] for k in keys])
            out["vendors"][vendor] = {
                "n": len(keys),
                "previous": float(np.median(a)),
                "current": float(np.median(b)),
                "median_diff": float(np.median(b - a)),
            }
    if common:
        a = np.array([before[k] for k in common])
        b = np.array([now[k] for k in common])
        flags = metric.changed(a, b)
        for k, x, y, flag in zip(common, a, b, flags, strict=True):
            rows.append((k[0], camera[k[0]].name, k[1], camera[k[0]].vendor, y - x))
            if flag:
                out["changed"].append((f"{camera[k[0]].name} {k[1]}", x, y))
    out["only_current"] = [f"{camera[k[0]].name} {k[1]}" for k in sorted(set(now) - set(before))]
    out["only_previous"] = [f"{camera[k[0]].name} {k[1]}" for k in sorted(set(before) - set(now))]
    out["diff"] = (
        Table(rows=rows, names=("detector", "det_name", "amp", "vendor", metric.name)) if rows else None
    )
    return out


def _fmt(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "--"
    a = abs(value)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


class _Writer:
    """Accumulates the same content as HTML and reStructuredText."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.rst: list[str] = []

    def heading(self, text: str, level: int) -> None:
        self.html.append(
            f'<h{level} id="{html.escape(text.lower().replace(" ", "-"))}">{html.escape(text)}</h{level}>'
        )
        marks = {1: "#", 2: "=", 3: "-", 4: "~"}[level]
        if level == 1:
            self.rst.append(marks * len(text))
        self.rst += [text, marks * len(text), ""]

    def paragraph(self, text: str) -> None:
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.rst += [text, ""]

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.html.append(f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        self.rst += [".. list-table::", "   :header-rows: 1", ""]
        for row in [header, *rows]:
            self.rst.append(f"   * - {row[0] or ' '}")
            self.rst += [f"     - {c or ' '}" for c in row[1:]]
        self.rst.append("")

    def images(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        figs = "".join(
            f'<figure><a href="{html.escape(path)}"><img src="{html.escape(path)}" alt="{html.escape(cap)}" '
            f'loading="lazy"></a><figcaption>{html.escape(cap)}</figcaption></figure>'
            for path, cap in items
        )
        self.html.append(f'<div class="gallery">{figs}</div>')
        for path, cap in items:
            self.rst += [f".. figure:: {path}", "   :width: 45%", "", f"   {cap}", ""]

    def details(self, summary: str, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        self.html.append(f"<details><summary>{html.escape(summary)} ({len(items)})</summary>")
        self.images(items)
        self.html.append("</details>")

    def raw_html(self, text: str) -> None:
        self.html.append(text)


_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 31%; } figure img { width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 0.8em; color: #555; }
.bad { color: #b00; } .note { color: #555; font-size: 0.9em; }
#broken-images { display: none; background: #fdd; padding: 0.5em; border: 1px solid #b00; }
"""

# Marks the document with the number of images that failed to load (a self-check for readers
# and for the headless-browser test), and shows a warning if any did.
_IMAGE_CHECK = """
<script>
window.addEventListener('load', function () {
  var broken = 0;
  document.querySelectorAll('img').forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) { broken += 1; }
  });
  document.body.setAttribute('data-images', document.querySelectorAll('img').length);
  document.body.setAttribute('data-broken-images', broken);
  if (broken > 0) {
    var div = document.getElementById('broken-images');
    div.textContent = broken + ' image(s) failed to load.';
    div.style.display = 'block';
  }
});
</script>
"""


class _Images:
    """Copies butler plots (or draws missing ones) into OUT/images (or another ``subdir``)."""

    def __init__(self, butler: Butler | None, collections, out_dir: str, subdir: str = "images"):
        self.butler = butler
        self.collections = collections
        self.subdir = subdir
        self.dir = os.path.join(out_dir, subdir)
        os.makedirs(self.dir, exist_ok=True)
        self.count = 0

    def from_butler(self, dataset_type: str, name: str, **data_id: Any) -> str | None:
        if self.butler is None:
            return None
        try:
            uri = self.butler.getURI(
                dataset_type, collections=self.collections, instrument="LSSTCam", **data_id
            )
        except Exception:  # noqa: BLE001 - absent plot
            return None
        dest = os.path.join(self.dir, name)
        shutil.copyfile(uri.ospath, dest)
        self.count += 1
        return f"{self.subdir}/{name}"

    def draw(self, figure, name: str) -> str:
        figure.savefig(os.path.join(self.dir, name), dpi=80)
        self.count += 1
        return f"{self.subdir}/{name}"


def build_report(
    repo: str | None,
    collections: str | Sequence[str],
    out_dir: str,
    compare: str | Sequence[str] | Mapping[str, str | Table] | None = None,
    specs: str | None = None,
    title: str | None = None,
    summary: Table | None = None,
    reference: str | None = None,
    label: str | None = None,
) -> ReportResult:
    """Write the report of a run.

    Parameters
    ----------
    repo : `str` or `None`
        Butler repository (`None`: only with ``summary``; plots are then drawn from it).
    collections : `str` or sequence
        Collection(s) of the run's outputs (e.g. ``u/eo/13600``).
    out_dir : `str`
        Output directory (created).
    compare : `str`, sequence or mapping, optional
        Previous runs to compare with: ``{label: source}`` where a source is a collection of
        ``repo``, ``REPO_PATH:COLLECTION`` of another repository, an exported summary file or a
        summary table; or ``LABEL=SOURCE`` strings; or, as before, the collection(s) of one
        previous run (see `lsst.eo.baseline.runCompare.load_runs`).
    specs : `str`, optional
        YAML overriding specifications/tolerances (see `lsst.eo.baseline.metrics.load_metrics`).
    title : `str`, optional
        Page title.
    summary : `astropy.table.Table`, optional
        Run summary to report instead of the one in the repository.
    reference : `str`, optional
        Label of the reference run of the comparison (default: the first previous run).
    label : `str`, optional
        Label of this run in the comparison (default: its collection).

    Returns
    -------
    result : `ReportResult`
    """
    from .plotting import focal_plane_mosaic, vendor_histograms

    os.makedirs(out_dir, exist_ok=True)
    butler = Butler.from_config(repo) if repo is not None else None
    if summary is None:
        if butler is None:
            raise ValueError("build_report needs a repository or a summary table")
        summary = load_run_summary(butler, collections)
    previous_runs, where = load_runs(compare, repo)
    metrics = load_metrics(specs)
    images = _Images(butler, collections, out_dir)
    run_label = collections if isinstance(collections, str) else ",".join(collections)
    title = title or f"LSSTCam EO baseline characterization: {run_label}"
    w = _Writer()
    w.heading(title, 1)
    detectors = sorted(set(int(d) for d in summary["detector"])) if len(summary) else []
    n_itl = sum(get_camera()[d].vendor == "ITL" for d in detectors)
    w.paragraph(
        f"Repository {repo}, collection {run_label}: {len(detectors)} detectors ({n_itl} ITL, "
        f"{len(detectors) - n_itl} e2v), {len(summary)} amplifiers."
        + (f" Compared with {', '.join(previous_runs)}." if previous_runs else "")
    )
    w.raw_html('<div id="broken-images"></div>')
    missing = [
        m.name
        for m in metrics
        if m.name not in summary.colnames
        or not np.isfinite(np.asarray(summary[m.name], dtype=np.float64)).any()
    ]
    steps = load_step_record(butler, collections) if butler is not None else {}
    incomplete = {
        name: f"{info.get('status', '?')}: {info.get('message', '')}".rstrip(": ")
        for name, info in steps.items()
        if info.get("status") != "done"
    }
    flagged = flagged_amplifiers(summary)
    _missing_section(w, metrics, missing, incomplete, flagged, camera_gain_amplifiers(summary))
    for section in load_sections():
        section_metrics = [m for m in metrics if m.section == section.key]
        w.heading(section.title, 2)
        rows = []
        for m in section_metrics:
            st = metric_statistics(summary, m)
            requirement = m.spec_text() if m.has_requirement else "none"
            for vendor in VENDORS:
                v = st["vendors"].get(vendor)
                if v is None:
                    rows.append([m.title, vendor, "0", "--", "--", "--", requirement, m.spec_source, "--"])
                else:
                    rows.append(
                        [
                            m.title,
                            vendor,
                            str(v["n"]),
                            _fmt(v["median"]),
                            _fmt(v["p5"]),
                            _fmt(v["p95"]),
                            requirement,
                            m.spec_source,
                            str(v["n_out"]) if m.has_requirement else "--",
                        ]
                    )
        w.table(
            [
                "metric",
                "vendor",
                "amps",
                "median",
                "5th pct",
                "95th pct",
                "requirement",
                "source",
                "out of spec",
            ],
            rows,
        )
        for m in section_metrics:
            bad = metric_statistics(summary, m)["out_of_spec"]
            if bad:
                listed = ", ".join(bad[:_MAX_LISTED]) + (
                    f" ... ({len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
                )
                w.paragraph(
                    f"{m.label}: {len(bad)} amplifier(s) out of spec ({m.requirement_text()}): {listed}."
                )
        gallery = []
        for m in section_metrics:
            if m.name in missing:
                continue
            for kind in ("Mosaic", "Hist"):
                name = f"{mosaic_dataset_name(m.name, kind)}.png"
                path = images.from_butler(mosaic_dataset_name(m.name, kind), name)
                if path is None:
                    fig = (
                        focal_plane_mosaic(summary, m.name, m.title, m.value_range, m.log)
                        if kind == "Mosaic"
                        else vendor_histograms(summary, m)
                    )
                    path = images.draw(fig, name)
                gallery.append((path, f"{m.label}: {'focal plane' if kind == 'Mosaic' else 'per vendor'}"))
        w.images(gallery)
        for dataset_type, caption in _DETECTOR_PLOTS.get(section.key, []):
            items = []
            for det in detectors:
                det_name = get_camera()[det].name
                path = images.from_butler(dataset_type, f"{dataset_type}_{det_name}.png", detector=det)
                if path:
                    items.append((path, f"{caption}: {det_name}"))
            w.details(f"{caption}, per detector", items)
    comparison = None
    if previous_runs:
        this = label or run_label
        while this in previous_runs:
            this = f"{this} (this run)"
        runs = {**previous_runs, this: summary}
        where[this] = f"{repo}:{run_label}" if repo else "this report's summary"
        comparison = compare_runs(runs, metrics, reference=reference, provenance=where)
        _comparison_section(w, comparison, images)
    w.raw_html(_IMAGE_CHECK)
    html_path = os.path.join(out_dir, "index.html")
    with open(html_path, "w") as f:
        f.write(
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
            + html.escape(title)
            + f"</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(w.html)
            + "\n</body></html>\n"
        )
    rst_path = os.path.join(out_dir, "report.rst")
    with open(rst_path, "w") as f:
        f.write("\n".join(w.rst) + "\n")
    summary.write(os.path.join(out_dir, "run_summary.ecsv"), format="ascii.ecsv", overwrite=True)
    _LOG.info("Report written to %s (%d images)", html_path, images.count)
    return ReportResult(
        html=html_path,
        rst=rst_path,
        n_images=images.count,
        missing=missing,
        flagged=[f"{g['det_name']} {amp}" for g in flagged for amp in g["amps"]],
        incomplete_steps=incomplete,
        comparison=comparison,
    )


def _missing_section(
    w: _Writer,
    metrics: Sequence[MetricSpec],
    missing: Sequence[str],
    incomplete: dict[str, str],
    flagged: Sequence[dict[str, Any]],
    camera_gains: Sequence[dict[str, Any]] = (),
) -> None:
    """The "Missing / incomplete" section: steps not done, metrics without data, flagged amps.

    Also the amps whose values in electrons use camera-model gains (no usable PTC gain).
    """
    w.heading("Missing / incomplete", 2)
    if not (missing or incomplete or flagged or camera_gains):
        w.paragraph("Nothing is missing: every step ran, every metric has values, no amplifier is flagged.")
        return
    if incomplete:
        w.paragraph("Steps of the run that were skipped, failed or are incomplete:")
        w.table(["step", "status"], [[name, text] for name, text in incomplete.items()], css="missing")
    if missing:
        titles = {s.key: s.title for s in load_sections()}
        by_section: dict[str, list[str]] = {}
        for m in metrics:
            if m.name in missing:
                by_section.setdefault(m.section, []).append(m.label)
        w.paragraph("Metrics with no data (no exposures, the step did not run, or every amplifier flagged):")
        w.table(
            ["section", "metrics"],
            [[titles.get(key, key), ", ".join(labels)] for key, labels in by_section.items()],
            css="missing",
        )
    if flagged:
        n = sum(len(g["amps"]) for g in flagged)
        w.paragraph(
            f"{n} flagged amplifier(s): their values are NaN in the tables listed and left out of every "
            "statistic below (flags: ZERO = all-zero raw data, SATURATED = at the ADC maximum, DEAD = no "
            "signal and no noise, NONFINITE = NaN in processing, FIT_FAILED = fit failed or too few points)."
        )
        w.table(
            ["detector", "amplifiers", "flags", "tables"],
            [
                [g["det_name"], ", ".join(g["amps"]), g["flags"], g["sources"].replace(",", ", ")]
                for g in flagged
            ],
            css="missing",
        )
    if camera_gains:
        n = sum(len(g["amps"]) for g in camera_gains)
        w.paragraph(
            f"{n} amplifier(s) without a usable PTC gain (no eoPtc, or a gain that is not finite and "
            "positive): their values in electrons use the camera-model gains (gain_source CAMERA)."
        )
        w.table(
            ["detector", "amplifiers", "tables"],
            [[g["det_name"], ", ".join(g["amps"]), g["sources"].replace(",", ", ")] for g in camera_gains],
            css="missing",
        )


def _listed(names: Sequence[str]) -> str:
    text = condense_amp_list(names[:_MAX_LISTED])
    return text + (f" ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _comparison_section(w: _Writer, comparison: dict[str, Any], images: _Images) -> None:
    """The "Differences from previous runs" section from `compare_runs`' result."""
    from .plotting import change_histograms, focal_plane_mosaic, trend_figure

    labels, ref = comparison["labels"], comparison["reference"]
    w.heading("Differences from previous runs", 2)
    w.paragraph(
        "Runs: "
        + "; ".join(f"{lb} ({comparison['provenance'].get(lb, '?')})" for lb in labels)
        + f".  Reference run: {ref}; changes are each run minus {ref}.  An amplifier is flagged when its "
        "change exceeds the metric's tolerance (data/metrics.yaml), and listed when it is newly out of "
        "requirement or back in.  Amplifiers are matched by detector and amplifier name."
        + (
            "  One source is per CCD: runs are compared per detector, on the defect metrics only."
            if comparison["level"] == "detector"
            else ""
        )
    )
    stat_rows = []
    change_rows = []
    notes: list[str] = []
    gallery = []
    for name, entry in comparison["metrics"].items():
        m = entry["metric"]
        if len(entry["not_measured"]) == len(labels):
            continue
        for vendor in VENDORS:
            row = [m.title, vendor]
            for lb in labels:
                r = [x for x in entry["stats"] if x["vendor"] == vendor and x["run"] == lb][0]
                row.append(
                    f"{_fmt(r['median'])} [{_fmt(r['p5'])}, {_fmt(r['p95'])}] ({r['n']})" if r["n"] else "--"
                )
            row.append(m.requirement_text())
            stat_rows.append(row)
        for lb, table in entry["changes"].items():
            finite = np.isfinite(np.asarray(table["change"], dtype=np.float64))
            change_rows.append(
                [
                    m.title,
                    lb,
                    str(len(table)),
                    _fmt(float(np.median(table["change"][finite]))) if finite.any() else "--",
                    m.tolerance_text(),
                    str(len(entry["exceeds"][lb])),
                    str(len(entry["newly_out"][lb])),
                    str(len(entry["back_in"][lb])),
                    str(len(entry["missing"].get(lb, []))),
                ]
            )
            for key, what in (
                ("exceeds", "changed beyond tolerance"),
                ("newly_out", "newly out of requirement"),
                ("back_in", "back within requirement"),
            ):
                amps = entry[key][lb]
                if amps:
                    notes.append(f"{m.label}, {lb}: {len(amps)} amplifier(s) {what}: {_listed(amps)}.")
            if len(table):
                # With one previous run the names are those of the single-comparison report.
                safe = "".join(c if c.isalnum() else "_" for c in lb) if len(labels) > 2 else ""
                safe = f"_{safe}" if safe else ""
                if comparison["level"] == "amp":
                    fig = focal_plane_mosaic(table, "change", f"{m.title}: {lb} - {ref}", diverging=True)
                    gallery.append((images.draw(fig, f"{mosaic_dataset_name(name, 'Diff')}{safe}.png"),
                                    f"{m.label}: {lb} - {ref}"))  # fmt: skip
                fig = change_histograms(table, m, f"{m.label}: {lb} - {ref}")
                gallery.append((images.draw(fig, f"{mosaic_dataset_name(name, 'DiffHist')}{safe}.png"),
                                f"{m.label}: change per vendor, {lb} - {ref}"))  # fmt: skip
        for lb, missing in entry["missing"].items():
            if missing:
                notes.append(f"{m.label}: {len(missing)} amplifier(s) missing from {lb}: {_listed(missing)}.")
        if entry["not_measured"]:
            notes.append(f"{m.label}: not measured in {', '.join(entry['not_measured'])}.")
        notes += [f"{m.label}: {note} (shown side by side, not differenced)." for note in entry["notes"]]
        if len(labels) - len(entry["not_measured"]) >= 3:
            fig = trend_figure(entry["stats"], m, labels)
            gallery.append(
                (images.draw(fig, f"{mosaic_dataset_name(name, 'Trend')}.png"), f"{m.label}: trend")
            )
    w.paragraph("Per vendor: median [5th, 95th percentile] (amplifiers) of each run.")
    w.table(["metric", "vendor", *labels, "requirement (source)"], stat_rows, css="compare")
    if change_rows:
        w.table(
            ["metric", "run", "amps in both", "median change", "tolerance", "beyond tolerance",
             "newly out", "back in", "missing"],
            change_rows,
            css="changes",
        )  # fmt: skip
    for note in notes:
        w.paragraph(note)
    w.images(gallery)
