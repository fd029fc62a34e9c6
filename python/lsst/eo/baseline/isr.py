"""Instrument signature removal (ISR) as pure numpy functions on raw amplifier arrays.

The algorithms follow cp_pipe/ip_isr's calibration ISR (``cp_pipe_algorithms.md`` section 1) so
that our numbers are comparable with the field's, with these deliberate differences:

* everything is done per amplifier in the raw readout orientation (output node at [0, 0]) and
  flipped only when assembled, which removes cp_pipe's readout-corner bookkeeping;
* no integer dither is added (ip_isr adds U(-0.5, 0.5) adu, i.e. 1/12 adu^2 of variance, which
  cannot be reproduced without afw exposure ids and only blurs the statistics);
* the variance plane is ``max(signal, 0)/g + (rn/g)^2`` (ip_isr starts it from 1 and then adds to
  it, leaving a spurious +1 adu^2).

Images are ``float32`` (exact for raw counts, as afw images), small per-row/column vectors ``float64``;
masks are boolean arrays, True where a pixel is bad.
"""

from __future__ import annotations

__all__ = [
    "OVERSCAN_IQR_FACTOR",
    "OverscanResult",
    "apply_parallel_overscan",
    "apply_serial_overscan",
    "assemble_ccd",
    "fill_nan_runs",
    "parallel_overscan_columns",
    "serial_overscan_noise",
    "serial_overscan_rows",
    "split_ccd",
]

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, generate_binary_structure
from scipy.signal import medfilt

from .afwstats import clipped_stats, quantiles_along
from .camera import AmpLayout, CcdType

OVERSCAN_IQR_FACTOR = 0.74
"""IQR-to-sigma factor of ip_isr's per-row overscan outlier mask (``overscan.py::maskOutliers``
writes ``0.74 * (uq - lq)``), not afw's 0.741301109252802 used by the clipped statistics."""


@dataclass(frozen=True)
class OverscanResult:
    """Correction vector and statistics of one overscan fit.

    Attributes
    ----------
    values : `numpy.ndarray`
        Correction per row (serial) or per column (parallel), in the image units.
    median, mean, stdev : `float`
        MEDIAN, MEAN and 3-sigma clipped STDEV of ``values`` (cp_pipe's
        ``LSST ISR OVERSCAN SERIAL MEDIAN/MEAN/STDEV``).
    residual_median, residual_mean, residual_stdev : `float`
        Median, 3-sigma clipped mean and clipped stdev of the whole corrected overscan region
        (serial: all columns, all rows, including the leading columns); ``residual_stdev`` is
        cp_pipe's read-noise estimate.
    skipped : `bool`
        True if no correction was applied (e.g. a flooded parallel overscan).
    """

    values: np.ndarray
    median: float
    mean: float
    stdev: float
    residual_median: float = np.nan
    residual_mean: float = np.nan
    residual_stdev: float = np.nan
    skipped: bool = False


def fill_nan_runs(values: np.ndarray, n_neighbours: int = 5) -> np.ndarray:
    """Replace each run of NaN entries by the median of its valid neighbours.

    ip_isr's ``fillMaskedPixels`` rule: a run is replaced by the nanmedian of up to ``n_neighbours``
    valid values before and after it (neighbours on one side are used only if the run starts more
    than ``n_neighbours`` entries from the start, or ends more than ``n_neighbours`` before the end);
    without usable neighbours, by the median of all valid values.
    """
    out = np.array(values, dtype=np.float64)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    if bad.all():
        return out
    n = out.size
    edges = np.diff(np.concatenate(([0], bad.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    global_median = float(np.median(out[~bad]))
    for start, stop in zip(starts, stops, strict=True):
        pieces = []
        if start > n_neighbours:
            pieces.append(out[start - n_neighbours : start])
        if stop < n - n_neighbours:
            pieces.append(out[stop : stop + n_neighbours])
        neighbours = np.concatenate(pieces) if pieces else np.empty(0)
        neighbours = neighbours[np.isfinite(neighbours)]
        out[start:stop] = np.median(neighbours) if neighbours.size else global_median
    return out


def _masked_median_rows(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of the unmasked values of each row (NaN for a fully masked row).

    Vectorised: masked values are sorted to the end of each row as +inf and the median is read at
    the middle index of each row's valid count (numpy's nanmedian loops over rows in Python).
    """
    if not mask.any():
        return np.median(values, axis=1)
    ordered = np.sort(np.where(mask, np.inf, values), axis=1)
    n = (~mask).sum(axis=1)
    rows = np.arange(values.shape[0])
    lo = ordered[rows, np.maximum(n - 1, 0) // 2]
    hi = ordered[rows, np.maximum(n, 1) // 2 - (n == 0)]
    with np.errstate(invalid="ignore"):
        out = 0.5 * (lo + hi)
    out[n == 0] = np.nan
    return out


def _robust_row_mask(values: np.ndarray, nsig: float) -> np.ndarray:
    """ip_isr's per-row outlier mask (``maskOutliers``), True where a pixel is an outlier.

    Quartiles of each row (all pixels); sigma_row = 0.74 IQR, capped at twice its median over rows
    (rows with a large spread would otherwise mask nothing); outliers deviate from the row median
    by more than ``nsig`` sigma_row.
    """
    q1, med, q3 = quantiles_along(values, (0.25, 0.5, 0.75), axis=1)
    sigma = OVERSCAN_IQR_FACTOR * (q3 - q1)
    typical = np.median(sigma)
    sigma = np.where(sigma > 2.0 * typical, typical, sigma)
    return np.abs(values - med[:, None]) > nsig * sigma[:, None]


def _stats(values: np.ndarray) -> tuple[float, float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.nan, np.nan, np.nan
    return float(np.median(finite)), float(np.mean(finite)), clipped_stats(finite).stdev


def _sorted_row_levels(region: np.ndarray, max_deviation: float, nsig: float) -> np.ndarray:
    """The masked per-row medians of `serial_overscan_rows` for an all-finite overscan.

    Same rules, one sort: both masks (``|x - level| > max_deviation`` and the robust per-row
    outlier cut of `_robust_row_mask`) reject values outside an interval, so in each sorted row the
    kept values are a contiguous run whose median is read off directly.  Raw counts and float32
    values are sorted as float32 (exact), other floats as float64 (as the general path computes).
    """
    exact_in_float32 = np.issubdtype(region.dtype, np.integer) or region.dtype == np.float32
    ordered = np.sort(region.astype(np.float32 if exact_in_float32 else np.float64), axis=1)
    n_rows, n_cols = ordered.shape
    level = float(np.median(ordered[::4]))
    (q1, med, q3) = (_sorted_quantile(ordered, q) for q in (0.25, 0.5, 0.75))
    sigma = OVERSCAN_IQR_FACTOR * (q3 - q1)
    typical = np.median(sigma)
    sigma = np.where(sigma > 2.0 * typical, typical, sigma)
    # Kept: level - max_dev <= x <= level + max_dev and med - nsig sigma <= x <= med + nsig sigma.
    low = np.maximum(level - max_deviation, med - nsig * sigma)
    high = np.minimum(level + max_deviation, med + nsig * sigma)
    start = (ordered < low[:, None]).sum(axis=1)
    count = (ordered <= high[:, None]).sum(axis=1) - start
    rows = np.arange(n_rows)
    a = ordered[rows, np.clip(start + (count - 1) // 2, 0, n_cols - 1)].astype(np.float64)
    b = ordered[rows, np.clip(start + count // 2, 0, n_cols - 1)].astype(np.float64)
    out = 0.5 * (a + b)
    out[count <= 0] = np.nan
    return out


def _sorted_quantile(ordered: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation quantile of each row of a row-sorted, NaN-free array (float64)."""
    pos = q * (ordered.shape[1] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, ordered.shape[1] - 1)
    a = ordered[:, lo].astype(np.float64)
    return a + (ordered[:, hi] - a) * (pos - lo)


def serial_overscan_rows(
    overscan: np.ndarray,
    leading: int = 3,
    trailing: int = 3,
    max_deviation: float = 1000.0,
    nsig: float = 3.0,
) -> np.ndarray:
    """Per-row bias level from the serial overscan (ip_isr MEDIAN_PER_ROW).

    Parameters
    ----------
    overscan : `numpy.ndarray`
        Serial overscan columns over *all* rows of the raw amplifier (data and parallel-overscan
        rows), shape ``(n_rows, n_columns)``.
    leading, trailing : `int`
        Columns dropped next to the imaging area (deferred charge) and at the far end.
    max_deviation : `float`
        Pixels further than this from the median of the fit region are masked first (same units
        as ``overscan``; ip_isr: 1000 adu).
    nsig : `float`
        Per-row outlier threshold in units of the row's robust sigma.

    Returns
    -------
    values : `numpy.ndarray`
        One value per row, NaN-free (masked rows filled from their neighbours).
    """
    stop = overscan.shape[1] - trailing if trailing > 0 else overscan.shape[1]
    region = overscan[:, leading:stop]
    if region.size and (np.issubdtype(region.dtype, np.integer) or np.isfinite(region).all()):
        # Every value finite (raw counts, or their float copy in run_amp): the masked values of
        # each row are its two tails.
        return fill_nan_runs(_sorted_row_levels(region, max_deviation, nsig))
    fit = np.asarray(region, dtype=np.float64)
    finite = np.isfinite(fit)
    if not finite.any():
        return np.zeros(fit.shape[0])
    # A coarse level is enough for the +-max_deviation cut: the median of a regular subsample.
    sample = fit[::4][finite[::4]]
    level = np.median(sample if sample.size else fit[finite])
    mask = ~finite | (np.abs(fit - level) > max_deviation)
    mask |= _robust_row_mask(np.where(finite, fit, level), nsig)
    return fill_nan_runs(_masked_median_rows(fit, mask))


def apply_serial_overscan(
    amp: np.ndarray,
    layout: AmpLayout,
    leading: int = 3,
    trailing: int = 3,
    max_deviation: float = 1000.0,
    nsig: float = 3.0,
) -> OverscanResult:
    """Subtract the per-row serial overscan level, in place.

    The correction is subtracted from the data and parallel-overscan columns and from the whole
    serial overscan, over all rows; the serial prescan is left alone (as ip_isr does).

    Parameters
    ----------
    amp : `numpy.ndarray`
        Whole raw amplifier (float), modified in place.
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Amplifier geometry.
    leading, trailing, max_deviation, nsig
        See `serial_overscan_rows`.

    Returns
    -------
    result : `OverscanResult`
        Row values and statistics; ``residual_stdev`` (3-sigma clipped stdev of the whole corrected
        serial overscan) is the read-noise estimate.
    """
    geom = layout.raw
    so = geom.serial_overscan_bbox
    x0 = geom.data_bbox.x.start
    overscan = amp[:, so.x.start : so.x.stop]
    rows = serial_overscan_rows(overscan, leading, trailing, max_deviation, nsig)
    # In the amplifier's precision (float32 for ISR): the same arithmetic as EoIsrTask.image_into.
    amp[:, x0:] -= rows.astype(amp.dtype)[:, None]
    median, mean, stdev = _stats(rows)
    res_stats = clipped_stats(amp[:, so.x.start : so.x.stop])
    return OverscanResult(
        values=rows,
        median=median,
        mean=mean,
        stdev=stdev,
        residual_median=res_stats.median,
        residual_mean=res_stats.mean,
        residual_stdev=res_stats.stdev,
    )


def serial_overscan_noise(
    amp: np.ndarray,
    layout: AmpLayout,
    leading: int = 3,
    trailing: int = 3,
    max_deviation: float = 1000.0,
    nsig: float = 3.0,
    rows: np.ndarray | None = None,
) -> float:
    """cp_pipe's read-noise estimate without correcting the rest of the amplifier.

    Same value as ``apply_serial_overscan(...).residual_stdev``: 3-sigma clipped stdev of the whole
    serial overscan after subtracting the per-row overscan level, but only the overscan columns are
    touched (a tenth of the pixels).  ``rows``, the per-row levels if already computed with the
    same parameters, saves fitting them again.
    """
    so = layout.raw.serial_overscan_bbox
    box = np.asarray(amp[:, so.x.start : so.x.stop], dtype=np.float32)
    if rows is None:
        rows = serial_overscan_rows(box, leading, trailing, max_deviation, nsig)
    return clipped_stats(box - rows[:, None].astype(np.float32)).stdev


def parallel_overscan_columns(
    overscan: np.ndarray,
    data: np.ndarray,
    leading: int = 3,
    trailing: int = 3,
    max_deviation: float = 100.0,
    saturation: float = 20000.0,
    nsig: float = 3.0,
    bad_column_threshold: float = 5.0,
) -> tuple[np.ndarray, bool]:
    """Per-column level from the parallel overscan (ip_isr parallel MEDIAN_PER_ROW, transposed).

    Parameters
    ----------
    overscan : `numpy.ndarray`
        Parallel overscan rows over the data columns (serial-overscan corrected),
        shape ``(n_rows, n_columns)``.
    data : `numpy.ndarray`
        Imaging section (serial-overscan corrected), for the flooding test.
    leading, trailing : `int`
        Rows dropped next to the imaging area and at the top.
    max_deviation : `float`
        One-sided threshold above the median (ip_isr: 100 adu).
    saturation : `float`
        Pixels at or above this, grown by 7 pixels, are masked (ip_isr calibration default 20000 adu).
    nsig : `float`
        Per-column outlier threshold in robust sigma.
    bad_column_threshold : `float`
        Columns whose median exceeds a 5-column running median of column medians by this much
        (not within 5 columns of an edge), grown by 2 columns, are masked entirely.

    Returns
    -------
    values : `numpy.ndarray`
        One value per column (zeros if skipped).
    skipped : `bool`
        True if the overscan is flooded (median(overscan)/median(data) > 0.5 with
        median(data) > 10000) and no correction applies.
    """
    n_rows, n_cols = overscan.shape
    # The flooding test only needs a coarse level: a strided subsample of the data is enough.
    med_data = float(np.nanmedian(data[::8, ::8]))
    med_os = float(np.nanmedian(overscan))
    if med_data > 10000.0 and med_os / med_data > 0.5:
        return np.zeros(n_cols), True
    ov = np.asarray(overscan, dtype=np.float64)
    sat = ov >= saturation
    if sat.any():
        diamond = generate_binary_structure(2, 1)
        sat = binary_dilation(sat, structure=diamond, iterations=7)
    stop = n_rows - trailing if trailing > 0 else n_rows
    fit = ov[leading:stop, :].T  # one row per column
    mask = sat[leading:stop, :].T | ~np.isfinite(fit)
    level = np.median(fit[~mask]) if (~mask).any() else 0.0
    mask |= (fit - level) > max_deviation
    col_bad = mask.all(axis=1)
    col_median = np.median(fit, axis=1)
    smooth = medfilt(col_median, kernel_size=5)
    jump = (col_median - smooth) >= bad_column_threshold
    jump[:5] = False
    jump[-5:] = False
    col_bad |= jump
    if col_bad.any():
        col_bad = binary_dilation(col_bad, iterations=2)
        mask[col_bad, :] = True
    mask |= _robust_row_mask(np.where(mask, level, fit), nsig)
    return fill_nan_runs(_masked_median_rows(fit, mask)), False


def apply_parallel_overscan(
    amp: np.ndarray,
    layout: AmpLayout,
    leading: int = 3,
    trailing: int = 3,
    max_deviation: float = 100.0,
    saturation: float = 20000.0,
) -> OverscanResult:
    """Subtract the per-column parallel overscan level from the data and parallel overscan, in place.

    Run after `apply_serial_overscan`.  The serial-overscan corner is not corrected (as ip_isr).
    """
    geom = layout.raw
    d = geom.data_bbox
    po = geom.parallel_overscan_bbox
    values, skipped = parallel_overscan_columns(
        amp[po.y.start : po.y.stop, d.x.start : d.x.stop],
        amp[d.y.start : d.y.stop, d.x.start : d.x.stop],
        leading=leading,
        trailing=trailing,
        max_deviation=max_deviation,
        saturation=saturation,
    )
    if not skipped:
        amp[d.y.start : po.y.stop, d.x.start : d.x.stop] -= values[None, :]
    median, mean, stdev = _stats(values)
    res_stats = clipped_stats(amp[po.y.start : po.y.stop, d.x.start : d.x.stop])
    return OverscanResult(
        values=values,
        median=median,
        mean=mean,
        stdev=stdev,
        residual_median=res_stats.median,
        residual_mean=res_stats.mean,
        residual_stdev=res_stats.stdev,
        skipped=skipped,
    )


def _oriented(data: np.ndarray, layout: AmpLayout) -> np.ndarray:
    """Flip an amplifier's data from readout orientation into detector orientation (view)."""
    sx = slice(None, None, -1) if layout.flip_x else slice(None)
    sy = slice(None, None, -1) if layout.flip_y else slice(None)
    return data[sy, sx]


def assemble_ccd(
    amps: dict[str, np.ndarray], ccd_type: CcdType, dtype: np.dtype | type = np.float32, fill: float = np.nan
) -> np.ndarray:
    """Assemble trimmed amplifier arrays (readout orientation) into the detector image.

    Parameters
    ----------
    amps : `dict` [`str`, `numpy.ndarray`]
        Data section of each amplifier, in readout orientation (as `split_ccd` returns).  Missing
        amplifiers are left at ``fill``.
    ccd_type : `~lsst.eo.baseline.camera.CcdType`
        Geometry.
    dtype : `numpy.dtype`, optional
        Output type.
    fill : `float`, optional
        Value of pixels of missing amplifiers.

    Returns
    -------
    image : `numpy.ndarray`
        Detector image ``[y, x]`` (e.g. 4000 x 4072 for ITL).
    """
    complete = all(layout.name in amps for layout in ccd_type.amps)
    # Every pixel belongs to one amplifier: with all amplifiers present nothing needs filling.
    out = np.empty(ccd_type.shape, dtype=dtype) if complete else np.full(ccd_type.shape, fill, dtype=dtype)
    for layout in ccd_type.amps:
        if layout.name in amps:
            b = layout.bbox
            out[b.y.start : b.y.stop, b.x.start : b.x.stop] = _oriented(amps[layout.name], layout)
    return out


def split_ccd(image: np.ndarray, ccd_type: CcdType) -> dict[str, np.ndarray]:
    """Cut a detector image into per-amplifier views in readout orientation (inverse of assembly)."""
    out = {}
    for layout in ccd_type.amps:
        b = layout.bbox
        out[layout.name] = _oriented(image[b.y.start : b.y.stop, b.x.start : b.x.stop], layout)
    return out
