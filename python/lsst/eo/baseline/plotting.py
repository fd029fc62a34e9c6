"""Figures of the EO report, as plain functions returning `matplotlib.figure.Figure` objects.

No pyplot state is used (figures are built with `matplotlib.figure.Figure`), so they can be made in
pipeline tasks, written by the butler's ``Plot`` storage class, or shown in notebooks.

* `focal_plane_mosaic`: every amplifier of the focal plane coloured by a metric, CCD outlines by
  vendor, rafts outlined, amplifiers without data hatched;
* `vendor_histograms`: the metric's distribution per vendor with the specification drawn;
* `ptc_figure`, `linearity_figure`: per-amplifier photon transfer curves with fit and turnoff,
  linearity residuals;
* `time_series_figure`: per-amplifier values versus time (bias and gain stability);
* `gain_stability_figure`: normalised flat signal versus time and versus CCD temperature;
* `persistence_figure`: residual signal after saturation and the fitted decay;
* `change_histograms`, `trend_figure`: run-to-run changes per vendor and per-vendor medians over
  several runs (`lsst.eo.baseline.runCompare`).
"""

from __future__ import annotations

__all__ = [
    "VENDOR_COLORS",
    "change_histograms",
    "focal_plane_mosaic",
    "linearity_figure",
    "persistence_figure",
    "pixel_box_to_focal_plane",
    "ptc_figure",
    "gain_stability_figure",
    "time_series_figure",
    "trend_figure",
    "vendor_histograms",
]

import functools
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .camera import DetectorInfo, get_camera  # noqa: E402
from .focalPlane import pixel_focal_plane_mm  # noqa: E402
from .metrics import MetricSpec  # noqa: E402

VENDOR_COLORS = {"ITL": "tab:orange", "E2V": "tab:blue"}


def pixel_box_to_focal_plane(det: DetectorInfo, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners of a box of detector pixels in focal-plane mm, as cameraGeom places the detector.

    Parameters
    ----------
    det : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector (nominal centre and yaw).
    x0, y0, x1, y1 : `float`
        Box edges in assembled-detector pixel coordinates (pixel i spans [i, i + 1)).

    Returns
    -------
    corners : `numpy.ndarray`
        (4, 2) corners (x0, y0), (x1, y0), (x1, y1), (x0, y1) in focal-plane mm: the detector's
        transform of `lsst.eo.baseline.focalPlane.pixel_focal_plane_mm`.
    """
    # Box edges lie half a pixel before the first and after the last pixel centre.
    fx, fy = pixel_focal_plane_mm(det, np.array([x0, x1, x1, x0]) - 0.5, np.array([y0, y0, y1, y1]) - 0.5)
    return np.stack([fx, fy], axis=1)


@functools.cache
def _amp_geometry() -> tuple[list[tuple[int, str]], np.ndarray, np.ndarray, np.ndarray]:
    """Every amplifier's (detector, amp) key and corner vertices in focal-plane mm (cached).

    Amplifier boxes are the cameraGeom boxes (C1x in the top row of an unrotated CCD, as eo_pipe's
    focal-plane plots place amplifier Cji at row j, column i).  Returns the keys, the (N, 4, 2)
    amplifier vertices, the (D, 4, 2) CCD vertices and the CCD vendors.
    """
    keys, amps, ccds, vendors = [], [], [], []
    for det in get_camera():
        ny, nx = det.ccd_type.shape
        ccds.append(pixel_box_to_focal_plane(det, 0, 0, nx, ny))
        vendors.append(det.vendor)
        for layout in det.ccd_type.amps:
            b = layout.bbox
            keys.append((det.id, layout.name))
            amps.append(pixel_box_to_focal_plane(det, b.x.start, b.y.start, b.x.stop, b.y.stop))
    return keys, np.array(amps), np.array(ccds), np.array(vendors)


def focal_plane_mosaic(
    summary: Table,
    column: str,
    title: str,
    value_range: Sequence[float] | None = None,
    log: bool = False,
    cmap: str = "viridis",
    diverging: bool = False,
) -> Figure:
    """Focal-plane mosaic of one column of a run summary.

    Parameters
    ----------
    summary : `astropy.table.Table`
        Rows with ``detector``, ``amp`` and ``column``.
    column : `str`
        Column to show.
    title : `str`
        Figure title (with units).
    value_range : sequence, optional
        Colour range; default: the 1st-99th percentiles of the data.
    log : `bool`
        Log colour scale (non-positive values are shown as missing).
    cmap : `str`
        Colour map.
    diverging : `bool`
        Symmetric range about 0 (for differences), ``RdBu_r`` map.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
    """
    camera = get_camera()
    values = {(int(r["detector"]), str(r["amp"])): float(r[column]) for r in summary}
    keys, amp_vertices, ccd_vertices, vendors = _amp_geometry()
    fig = Figure(figsize=(11, 9.5))
    ax = fig.add_subplot(1, 1, 1)
    v = np.array([values.get(k, np.nan) for k in keys])
    shown = np.isfinite(v) & (v > 0 if log else True)
    data = v[shown]
    if diverging:
        bound = float(np.nanpercentile(np.abs(data), 99)) if data.size else 1.0
        vmin, vmax, cmap = -bound or -1.0, bound or 1.0, "RdBu_r"
    elif value_range is not None:
        vmin, vmax = value_range
    elif data.size:
        vmin, vmax = np.nanpercentile(data, [1, 99])
    else:
        vmin, vmax = 0.0, 1.0
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    if log:
        norm = LogNorm(vmin=max(vmin, data.min() if data.size else 0.1, 1e-12), vmax=max(vmax, 1.0))
    else:
        norm = Normalize(vmin=vmin, vmax=vmax)
    coll = PolyCollection(amp_vertices[shown], cmap=cmap, norm=norm, edgecolors="none")
    coll.set_array(data)
    ax.add_collection(coll)
    # Missing data is hatched per CCD where a whole CCD is missing (hatching thousands of amplifier
    # polygons is what would make the figure slow), per amplifier elsewhere.
    det_ids = np.array([k[0] for k in keys])
    ccd_ids = np.array([d.id for d in camera])
    measured = set(det_ids[shown].tolist())
    empty_ccd = np.array([d not in measured for d in ccd_ids])
    partial = ~shown & np.isin(det_ids, list(measured))
    hatched = np.concatenate([ccd_vertices[empty_ccd], amp_vertices[partial]])
    ax.add_collection(
        PolyCollection(hatched, facecolors="0.9", edgecolors="0.75", hatch="////", linewidths=0.1)
    )
    ax.add_collection(
        PolyCollection(
            ccd_vertices,
            facecolors="none",
            linewidths=0.8,
            edgecolors=[VENDOR_COLORS.get(x, "k") for x in vendors],
        )  # fmt: skip
    )
    for raft in camera.rafts:
        members = [d for d in camera if d.raft == raft]
        xs = [d.focal_plane_mm[0] for d in members]
        ys = [d.focal_plane_mm[1] for d in members]
        ax.add_patch(Rectangle((min(xs) - 22, min(ys) - 22), max(xs) - min(xs) + 44, max(ys) - min(ys) + 44,
                               fill=False, edgecolor="0.4", linewidth=0.6, linestyle=":"))  # fmt: skip
        ax.text(np.mean(xs), max(ys) + 24, raft, ha="center", va="bottom", fontsize=7, color="0.3")
    ax.set_xlim(-330, 330)
    ax.set_ylim(-330, 330)
    ax.set_aspect("equal")
    ax.set_xlabel("focal plane x (mm)")
    ax.set_ylabel("focal plane y (mm)")
    ax.set_title(title)
    cbar = fig.colorbar(coll, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label(title)
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=c, label=v) for v, c in VENDOR_COLORS.items()]
    handles.append(Rectangle((0, 0), 1, 1, facecolor="0.9", edgecolor="0.75", hatch="////", label="no data"))
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    return fig


def vendor_histograms(summary: Table, metric: MetricSpec, column: str | None = None) -> Figure:
    """Histograms of a metric per vendor, with the specification limits drawn."""
    column = column or metric.name
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    values = np.asarray(summary[column], dtype=np.float64)
    vendors = np.asarray(summary["vendor"]).astype(str)
    finite = np.isfinite(values)
    if finite.any():
        lo, hi = metric.value_range if metric.value_range else (np.nanmin(values), np.nanmax(values))
        lo = min(lo, np.nanmin(values[finite]))
        hi = max(hi, np.nanmax(values[finite]))
        if metric.log and lo > 0:
            bins = np.logspace(np.log10(lo), np.log10(hi if hi > lo else lo * 10), 40)
            ax.set_xscale("log")
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        for vendor, colour in VENDOR_COLORS.items():
            sel = finite & (vendors == vendor)
            if sel.any():
                ax.hist(
                    values[sel], bins=bins, histtype="step", color=colour, label=f"{vendor} ({sel.sum()})"
                )
    for limit in (metric.spec_max, metric.spec_min):
        if limit is not None:
            ax.axvline(limit, color="red", linestyle="--", label=f"spec {limit:g}")
    ax.set_xlabel(metric.title)
    ax.set_ylabel("amplifiers")
    ax.set_title(metric.label)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _amp_grid(n_amps: int, title: str) -> tuple[Figure, np.ndarray]:
    cols = 4
    rows = int(np.ceil(n_amps / cols))
    fig = Figure(figsize=(12, 2.6 * rows + 0.6))
    axes = np.array(fig.subplots(rows, cols, squeeze=False))
    fig.suptitle(title)
    return fig, axes.ravel()


def ptc_figure(ptc, det_name: str) -> Figure:
    """Photon transfer curves (variance vs mean) of every amplifier with the fit and the turnoff."""
    from .ptc import evaluate_exp_model

    fig, axes = _amp_grid(len(ptc.ampNames), f"{det_name}: photon transfer curves ({ptc.ptcFitType})")
    for ax, amp in zip(axes, ptc.ampNames, strict=False):
        mu = np.asarray(ptc.rawMeans.get(amp, []), dtype=np.float64)
        var = np.asarray(ptc.rawVars.get(amp, []), dtype=np.float64)
        mask = np.asarray(ptc.expIdMask.get(amp, np.zeros(mu.size, bool)), dtype=bool)
        good = np.isfinite(mu) & np.isfinite(var) & (mu > 0) & (var > 0)
        ax.loglog(mu[good & ~mask], var[good & ~mask], ".", color="0.6", ms=3, label="excluded")
        ax.loglog(mu[good & mask], var[good & mask], ".", color="tab:blue", ms=3, label="fitted")
        gain = float(ptc.gain.get(amp, np.nan))
        pars = np.asarray(ptc.ptcFitPars.get(amp, np.full(3, np.nan)))
        if good.any() and np.isfinite(gain):
            grid = np.logspace(np.log10(mu[good].min()), np.log10(mu[good].max()), 100)
            if pars.size == 3 and np.all(np.isfinite(pars)):
                ax.loglog(
                    grid, evaluate_exp_model(grid, pars[0], pars[1], pars[2]), "-", color="tab:red", lw=1
                )
            else:
                ax.loglog(grid, grid / gain, "--", color="tab:red", lw=1)
        turnoff = float(ptc.ptcTurnoff.get(amp, np.nan))
        if np.isfinite(turnoff):
            ax.axvline(turnoff, color="k", linestyle=":", lw=1)
        ax.set_title(f"{amp}  g={gain:.3f}  turnoff={turnoff:.0f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(ptc.ampNames) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6)
    fig.supxlabel("mean (adu)")
    fig.supylabel("variance (adu$^2$)")
    return fig


def linearity_figure(ptc, linearity: Table, det_name: str) -> Figure:
    """Fractional linearity residuals versus signal for every amplifier, with the turnoff."""
    fig, axes = _amp_grid(len(ptc.ampNames), f"{det_name}: linearity residuals")
    rows = {str(r["amp"]): r for r in linearity}
    for ax, amp in zip(axes, ptc.ampNames, strict=False):
        mu = np.asarray(ptc.measuredMeans.get(amp, ptc.rawMeans.get(amp, [])), dtype=np.float64)
        row = rows.get(amp)
        if row is not None and mu.size:
            resid = np.asarray(row["residuals"], dtype=np.float64)[: mu.size]
            good = np.isfinite(resid) & np.isfinite(mu) & (mu > 0)
            ax.semilogx(mu[good], 100 * resid[good], ".", ms=3)
            ax.axvline(float(row["linearity_turnoff_adu"]), color="k", linestyle=":", lw=1)
            ax.set_title(f"{amp}  turnoff={float(row['linearity_turnoff_adu']):.0f}", fontsize=8)
        ax.axhspan(-1, 1, color="0.9", zorder=0)
        ax.set_ylim(-3, 3)
        ax.tick_params(labelsize=7)
    for ax in axes[len(ptc.ampNames) :]:
        ax.set_visible(False)
    fig.supxlabel("mean signal (adu)")
    fig.supylabel("residual (%)")
    return fig


def time_series_figure(table: Table, value: str, title: str, ylabel: str, time: str = "mjd") -> Figure:
    """Per-amplifier values versus time (hours since the first exposure)."""
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot(1, 1, 1)
    t = np.asarray(table[time], dtype=np.float64)
    t0 = np.nanmin(t) if t.size else 0.0
    amps = list(dict.fromkeys(np.asarray(table["amp"]).astype(str)))
    cmap = matplotlib.colormaps["tab20"]
    for k, amp in enumerate(amps):
        sel = np.asarray(table["amp"]).astype(str) == amp
        order = np.argsort(t[sel])
        ax.plot(24 * (t[sel][order] - t0), np.asarray(table[value], dtype=np.float64)[sel][order], ".-",
                color=cmap(k % 20), ms=3, lw=0.7, label=amp)  # fmt: skip
    ax.set_xlabel("hours since the first exposure")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=8, loc="upper center")
    return fig


def persistence_figure(exposures: Table, fits: Table, det_name: str) -> Figure:
    """Residual signal of the post-saturation exposures versus time, with each amplifier's fit."""
    from .persistence import persistence_model

    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab20"]
    fit_rows = {str(r["amp"]): r for r in fits}
    for k, amp in enumerate(dict.fromkeys(np.asarray(exposures["amp"]).astype(str))):
        sel = np.asarray(exposures["amp"]).astype(str) == amp
        t0 = np.asarray(exposures["t_start_s"], dtype=np.float64)[sel]
        t1 = np.asarray(exposures["t_end_s"], dtype=np.float64)[sel]
        y = np.asarray(exposures["residual_e"], dtype=np.float64)[sel]
        colour = cmap(k % 20)
        ax.plot(0.5 * (t0 + t1), y, "o", color=colour, ms=3, label=amp)
        row = fit_rows.get(amp)
        if row is not None and np.isfinite(row["persistence_q0_e"]) and np.isfinite(row["persistence_tau_s"]):
            model = persistence_model(t0, t1, float(row["persistence_q0_e"]), float(row["persistence_tau_s"]))
            if "offset_e" in fits.colnames and np.isfinite(row["offset_e"]):
                model = model + float(row["offset_e"])
            order = np.argsort(t0)
            ax.plot(0.5 * (t0 + t1)[order], np.asarray(model)[order], "-", color=colour, lw=0.8)
    ax.set_xlabel("time since the end of the saturating flat (s)")
    ax.set_ylabel("residual signal (e-/pixel)")
    ax.set_title(f"{det_name}: persistence")
    ax.legend(fontsize=6, ncol=8)
    return fig


def _per_amp_lines(ax, table: Table, x: np.ndarray, value: str) -> None:
    amps_col = np.asarray(table["amp"]).astype(str)
    cmap = matplotlib.colormaps["tab20"]
    for k, amp in enumerate(dict.fromkeys(amps_col)):
        sel = amps_col == amp
        order = np.argsort(x[sel])
        ax.plot(x[sel][order], np.asarray(table[value], dtype=np.float64)[sel][order], ".-",
                color=cmap(k % 20), ms=3, lw=0.7, label=amp)  # fmt: skip


def gain_stability_figure(table: Table, det_name: str) -> Figure:
    """Normalised flat signal of every amplifier versus time and versus CCD temperature.

    Parameters
    ----------
    table : `astropy.table.Table`
        ``eoGainStabilityExposures`` (``mjd``, ``amp``, ``signal_norm``, ``ccd_temp_c``).
    det_name : `str`
        Detector name, for the titles.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        Two panels; the temperature panel says so when the raws recorded no CCD temperature.
    """
    fig = Figure(figsize=(13, 5))
    ax_t, ax_c = fig.subplots(1, 2, sharey=True)
    t = np.asarray(table["mjd"], dtype=np.float64)
    t0 = np.nanmin(t) if t.size else 0.0
    _per_amp_lines(ax_t, table, 24.0 * (t - t0), "signal_norm")
    ax_t.set_xlabel("hours since the first exposure")
    ax_t.set_ylabel("signal / median")
    ax_t.set_title(f"{det_name}: normalised flat signal")
    ax_t.legend(fontsize=6, ncol=8, loc="upper center")
    temp = (
        np.asarray(table["ccd_temp_c"], dtype=np.float64)
        if "ccd_temp_c" in table.colnames
        else np.full(len(table), np.nan)
    )
    if np.isfinite(temp).any():
        _per_amp_lines(ax_c, table, temp, "signal_norm")
    else:
        ax_c.text(0.5, 0.5, "no CCD temperature (CCDTEMP) in the raws' housekeeping", ha="center",
                  va="center", transform=ax_c.transAxes)  # fmt: skip
    ax_c.set_xlabel("CCD temperature, REB_COND CCDTEMP (C)")
    ax_c.set_title(f"{det_name}: flat signal versus CCD temperature")
    return fig


def change_histograms(changes: Table, metric: MetricSpec, title: str) -> Figure:
    """Histograms per vendor of the run-to-run change of a metric, with the tolerance drawn.

    Parameters
    ----------
    changes : `astropy.table.Table`
        ``vendor`` and ``change`` columns (a ``changes`` table of
        `lsst.eo.baseline.runCompare.compare_runs`).
    metric : `~lsst.eo.baseline.metrics.MetricSpec`
        The metric (label, unit, absolute tolerance).
    title : `str`
        Figure title.
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    change = np.asarray(changes["change"], dtype=np.float64)
    vendors = np.char.upper(np.asarray(changes["vendor"]).astype(str))
    finite = np.isfinite(change)
    if finite.any():
        lo, hi = float(change[finite].min()), float(change[finite].max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        for vendor, colour in VENDOR_COLORS.items():
            sel = finite & (vendors == vendor)
            if sel.any():
                ax.hist(
                    change[sel], bins=bins, histtype="step", color=colour, label=f"{vendor} ({sel.sum()})"
                )
    if metric.tolerance_abs is not None:
        for sign in (-1, 1):
            ax.axvline(sign * metric.tolerance_abs, color="red", linestyle="--")
    ax.set_xlabel(f"change of {metric.title}")
    ax.set_ylabel("amplifiers")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def trend_figure(stats: Table, metric: MetricSpec, labels: Sequence[str]) -> Figure:
    """Per-vendor medians of a metric over runs, with the 5th-95th percentile band.

    Parameters
    ----------
    stats : `astropy.table.Table`
        ``vendor``, ``run``, ``n``, ``median``, ``p5``, ``p95`` (a ``stats`` table of
        `lsst.eo.baseline.runCompare.compare_runs`).
    metric : `~lsst.eo.baseline.metrics.MetricSpec`
        The metric (requirement limits drawn).
    labels : sequence [`str`]
        Runs in plotting order.
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    for vendor, colour in VENDOR_COLORS.items():
        rows = {str(r["run"]): r for r in stats if str(r["vendor"]) == vendor}
        med = np.array([float(rows[lb]["median"]) if lb in rows else np.nan for lb in labels])
        p5 = np.array([float(rows[lb]["p5"]) if lb in rows else np.nan for lb in labels])
        p95 = np.array([float(rows[lb]["p95"]) if lb in rows else np.nan for lb in labels])
        if np.isfinite(med).any():
            ax.fill_between(x, p5, p95, color=colour, alpha=0.2)
            ax.plot(x, med, "o-", color=colour, label=f"{vendor} median (5-95%)")
    for limit in (metric.spec_max, metric.spec_min):
        if limit is not None:
            ax.axhline(limit, color="red", linestyle="--", label=f"requirement {limit:g}")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, fontsize=8)
    ax.set_ylabel(metric.title)
    ax.set_title(f"{metric.label}: trend over runs")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig
