"""Defects: bright pixels and columns from combined darks, dark pixels and columns from flats.

The eo_pipe metrics (``eo_pipe.md`` 9.5, 9.6) are reproduced step by step:

* Detection, as cp_pipe's ``MeasureDefectsTask._findHotAndColdPixels`` with ``thresholdType=VALUE``
  (``cp_pipe_algorithms.md`` section 5): per amplifier, m = MEANCLIP and s = STDEVCLIP (3 sigma,
  3 passes, no mask) of the whole amplifier; a dark pixel is bright if ``value - m >= threshold``
  (eo_pipe: 5 e-/s converted to the image's units with the camera-model gain); a flat pixel is dark
  if ``value - m <= (fraction - 1) m s'/s`` (eo_pipe: fraction 0.8), where on e2v CCDs the amplifier
  row at the midline is first set to the median of the mean-subtracted amplifier and s' is the
  STDEVCLIP after that replacement (cp_pipe's ``_setE2VMidline``, NEVERMASK); s' = s otherwise.
* Boxes: the defect pixels of the whole detector, cut into rectangles exactly as afw's
  ``footprintToBBoxList`` cuts each 8-connected footprint (`footprint_boxes`).  That is also the
  normalised form ip_isr's ``Defects`` reader reproduces, so the boxes written are the boxes a
  stack user reads back.
* Tabulation, as eo_pipe's ``tabulate_defects``: each box overlapping an amplifier is clipped to it
  and cut into 1-pixel-wide column strips; a column is bad if one strip in it is *taller than* the
  column threshold (``height > colthresh``: bright 20, dark 100; strips of different boxes are not
  added); the other columns' strips are counted as pixels (`tabulate_defects`).

Amplifiers flagged in the metadata of the dark or flat (`lsst.eo.baseline.ampFlags`) are not
searched; the count tables carry their ``flags``.
"""

from __future__ import annotations

__all__ = [
    "EoDarkDefectsConfig",
    "EoDarkDefectsConnections",
    "EoDarkDefectsTask",
    "EoBrightDefectsConfig",
    "EoBrightDefectsConnections",
    "EoBrightDefectsTask",
    "bright_thresholds",
    "defect_table",
    "e2v_midline_row",
    "find_bright_pixels",
    "find_dark_pixels",
    "footprint_boxes",
    "tabulate_amp_defects",
    "tabulate_defects",
]

from collections.abc import Mapping

import numpy as np
from astropy.table import Table
from lsst.images import Box, MaskedImage
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, metadata_amp_flags
from .camera import AmpLayout, DetectorInfo, get_camera, nominal_amps


def find_bright_pixels(image: np.ndarray, threshold: float, nsig: float = 3.0) -> np.ndarray:
    """Pixels at least ``threshold`` above the amplifier's clipped mean (True = defect).

    cp_pipe turns the threshold into ``threshold / s`` standard deviations and afw multiplies it
    back by the same s, so the condition is ``value - MEANCLIP >= threshold`` exactly.
    """
    return _excess(image, nsig) >= threshold


def find_dark_pixels(
    image: np.ndarray, fraction: float, nsig: float = 3.0, midline_row: int | None = None
) -> np.ndarray:
    """Pixels at or below ``fraction`` of the amplifier's clipped mean (True = defect).

    Parameters
    ----------
    image : `numpy.ndarray`
        Data section of one amplifier of a combined flat.
    fraction : `float`
        Fraction of the clipped mean below which a pixel is dark (eo_pipe 0.8).
    nsig : `float`, optional
        Clipping threshold of MEANCLIP / STDEVCLIP.
    midline_row : `int`, optional
        Row (index into ``image``) of an e2v amplifier next to the CCD midline: set to the median
        of the mean-subtracted amplifier before detection, so it is never detected, and the
        threshold, expressed in standard deviations of the unmodified amplifier, is applied with
        the standard deviation of the modified one (as cp_pipe does).

    Returns
    -------
    mask : `numpy.ndarray` of `bool`
        True for dark pixels.  An amplifier with zero clipped standard deviation has none
        (cp_pipe masks it whole; such amplifiers are flagged and skipped before this).
    """
    d = np.array(image, dtype=np.float64)
    m = clipped_stats(d, nsig=nsig).mean
    d -= m
    s = clipped_stats(d, nsig=nsig).stdev
    s_detect = s
    if midline_row is not None:
        d[midline_row] = np.nanmedian(d)
        s_detect = clipped_stats(d, nsig=nsig).stdev
    if not s > 0:
        return np.zeros(d.shape, dtype=bool)
    return d <= (fraction - 1.0) * m * (s_detect / s)


def e2v_midline_row(layout: AmpLayout, detector: DetectorInfo) -> int | None:
    """Row of an e2v amplifier next to the other CCD half, as an index into its data section.

    The CCD halves meet where the top edge of one amplifier row is the bottom edge of the other;
    the row is found from the amplifier boxes, so it follows whatever assembled layout
    ``layout.bbox`` describes.  `None` for ITL CCDs (cp_pipe treats only e2v midlines).
    """
    if detector.vendor.upper() != "E2V":
        return None
    starts = {a.bbox.y.start for a in detector.ccd_type.amps}
    stops = {a.bbox.y.stop for a in detector.ccd_type.amps}
    interior = starts & stops
    b = layout.bbox
    if b.y.stop in interior:
        return b.y.stop - b.y.start - 1
    if b.y.start in interior:
        return 0
    return None


def footprint_boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut the True pixels of a mask into boxes as afw's ``footprintToBBoxList`` does.

    afw takes, in each footprint, the lowest row holding pixels, its leftmost run [x0, x1] of set
    pixels, extends it upwards while all of x0..x1 are set in the next row, clears the box and
    repeats.  A run and its upward extension are connected pixels, so doing this on the whole mask
    gives the same boxes as footprint by footprint.  Within one row, boxes started from different
    runs own disjoint columns, so all runs of a row are processed at once: in column x the pixels
    above row y are still untouched when the row is reached, and a box started at (x0..x1, y) is
    as tall as the shortest vertical run starting at row y in those columns.  The loop is over rows
    holding defects, vectorised along the row.

    Returns
    -------
    x0, y0, width, height : `numpy.ndarray` of `int`
        Boxes (0-based, in the mask's pixel coordinates), ordered by ``y0`` then ``x0``.
    """
    m = np.asarray(mask, dtype=bool)
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy(), empty.copy()
    sub = m[:, cols]
    ny = sub.shape[0]
    # run_up[y, j]: number of consecutive set pixels from row y upwards in column cols[j].
    run_up = np.zeros((ny + 1, cols.size), dtype=np.int64)
    for y in range(ny - 1, -1, -1):  # one vectorised step per row
        run_up[y] = np.where(sub[y], run_up[y + 1] + 1, 0)
    free_from = np.zeros(cols.size, dtype=np.int64)  # first row not yet inside a box, per column
    adjacent = np.diff(cols) == 1  # kept columns j and j + 1 are neighbours on the detector
    out: list[np.ndarray] = []
    for y in np.flatnonzero(sub.any(axis=1)):
        idx = np.flatnonzero(sub[y] & (free_from <= y))  # set pixels not yet in a box
        if idx.size == 0:
            continue
        # A run continues where the next live pixel is the next kept column and a neighbour.
        cont = (np.diff(idx) == 1) & adjacent[idx[:-1]]
        first = np.flatnonzero(np.concatenate(([True], ~cont)))
        last = np.concatenate((first[1:] - 1, [idx.size - 1]))
        height = np.minimum.reduceat(run_up[y, idx], first)
        free_from[idx] = y + np.repeat(height, last - first + 1)
        x0 = cols[idx[first]]
        out.append(np.stack([x0, np.full(first.size, y), cols[idx[last]] - x0 + 1, height], axis=1))
    boxes = np.concatenate(out).astype(np.int64)
    return boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]


def tabulate_defects(
    boxes: Table, amp_boxes: Mapping[str, Box], column_threshold: int
) -> dict[str, tuple[int, int]]:
    """Bad columns and bad pixels per amplifier from defect boxes, as eo_pipe's ``tabulate_defects``.

    Parameters
    ----------
    boxes : `astropy.table.Table`
        Defect boxes with columns ``x0, y0, width, height`` (detector pixels).
    amp_boxes : mapping [`str`, `lsst.images.Box`]
        Data box of every amplifier in the same coordinates.
    column_threshold : `int`
        A column is bad if one clipped box strip in it is *taller than* this (``>``, as eo_pipe's
        ``region.height > colthresh``).

    Returns
    -------
    counts : `dict` [`str`, `tuple` [`int`, `int`]]
        ``(n_columns, n_pixels)`` per amplifier: distinct bad columns, and the area of the strips
        in the other columns.
    """
    x0 = np.asarray(boxes["x0"], dtype=np.int64)
    y0 = np.asarray(boxes["y0"], dtype=np.int64)
    x1 = x0 + np.asarray(boxes["width"], dtype=np.int64)  # exclusive
    y1 = y0 + np.asarray(boxes["height"], dtype=np.int64)
    counts = {}
    for name, b in amp_boxes.items():
        cx0, cx1 = np.maximum(x0, b.x.start), np.minimum(x1, b.x.stop)
        cy0, cy1 = np.maximum(y0, b.y.start), np.minimum(y1, b.y.stop)
        keep = (cx1 > cx0) & (cy1 > cy0)
        cx0, cx1, h = cx0[keep] - b.x.start, cx1[keep] - b.x.start, (cy1 - cy0)[keep]
        # Every strip of a clipped box has the box's clipped height.
        tall = h > column_threshold
        bad = np.zeros(b.x.stop - b.x.start + 1, dtype=np.int64)
        np.add.at(bad, cx0[tall], 1)
        np.add.at(bad, cx1[tall], -1)
        bad_col = np.cumsum(bad)[:-1] > 0
        n_bad_in = np.concatenate(([0], np.cumsum(bad_col)))
        good_strips = (cx1 - cx0) - (n_bad_in[cx1] - n_bad_in[cx0])
        counts[name] = (int(bad_col.sum()), int(np.sum(good_strips * h)))
    return counts


def tabulate_amp_defects(mask: np.ndarray, column_threshold: int) -> tuple[int, int]:
    """Bad columns and bad pixels of one amplifier's defect mask (boxes by `footprint_boxes`).

    Parameters
    ----------
    mask : `numpy.ndarray`
        Defect mask of the amplifier's data section (rows = y, columns = x).
    column_threshold : `int`
        A column with a box strip taller than this is a bad column.

    Returns
    -------
    n_columns, n_pixels : `int`
        Bad columns, and defect pixels outside them.
    """
    boxes = defect_table(mask)
    ny, nx = np.shape(mask)
    return tabulate_defects(boxes, {"amp": Box.factory[0:ny, 0:nx]}, column_threshold)["amp"]


def defect_table(mask: np.ndarray, detector: DetectorInfo | None = None) -> Table:
    """Defect boxes of a detector mask, in ip_isr's ``Defects`` table layout.

    Parameters
    ----------
    mask : `numpy.ndarray` of `bool`
        Defect mask in assembled (trimmed) detector pixels.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`, optional
        Detector, recorded in the metadata (``DETECTOR``, ``DET_NAME``, ``RAFTNAME``, ``SLOTNAME``).

    Returns
    -------
    table : `astropy.table.Table`
        Columns ``x0, y0, width, height`` (int64, 0-based lower-left corner and size), one row per
        box of `footprint_boxes` (ip_isr's normalised form).
    """
    x0, y0, width, height = footprint_boxes(mask)
    table = Table({"x0": x0, "y0": y0, "width": width, "height": height})
    if detector is not None:
        table.meta.update(
            {"DETECTOR": detector.id, "DET_NAME": detector.name, "RAFTNAME": detector.raft,
             "SLOTNAME": detector.slot}
        )  # fmt: skip
    return table


def bright_thresholds(
    threshold_e_per_s: float,
    detector: DetectorInfo,
    image_gains: Mapping[str, float] | None,
    target_gains: Mapping[str, float],
) -> dict[str, float]:
    """Bright-pixel thresholds per amplifier in the units of the dark image.

    eo_pipe's threshold is ``threshold_e_per_s / g`` adu/s on a dark in adu/s.  On a dark
    converted to e-/s with gains ``g_img`` the same pixels are those at least
    ``threshold_e_per_s * g_img / g`` e-/s above the clipped mean (clipping is scale invariant).

    Parameters
    ----------
    threshold_e_per_s : `float`
        Threshold in e-/s (eo_pipe, LCA-128: 5).
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector.
    image_gains : mapping [`str`, `float`] or `None`
        Gains (e-/adu) the dark image was converted with; `None` if the image is in adu/s.
    target_gains : mapping [`str`, `float`]
        Gains defining the threshold (camera-model gains for the eo_pipe-named counts).

    Returns
    -------
    thresholds : `dict` [`str`, `float`]
        Per amplifier; NaN where a target gain is not finite and positive.
    """
    out = {}
    for amp in detector.amp_names:
        g = float(target_gains.get(amp, np.nan))
        scale = 1.0 if image_gains is None else float(image_gains[amp])
        out[amp] = threshold_e_per_s * scale / g if np.isfinite(g) and g > 0 else np.nan
    return out


class EoBrightDefectsConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoBrightDefectsTask`."""

    dark = cT.Input(
        name="eoDark",
        doc="Combined dark (adu/s; an electron/s dark is taken as converted with camera-model gains).",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    ptc = cT.Input(
        name="eoPtc",
        doc="Photon transfer curves, for the PTC-gain bright counts (only with usePtcGains).",
        storageClass="EoPtcDataset",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    counts = cT.Output(
        name="eoBrightDefects",
        doc="Bright columns and bright pixels per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    defects = cT.Output(
        name="eoBrightDefectsList",
        doc="Bright-defect boxes (ip_isr Defects layout: x0, y0, width, height; detector pixels).",
        storageClass="EoDefects",
        dimensions=("instrument", "detector"),
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is not None and not config.usePtcGains:
            del self.ptc


class EoBrightDefectsConfig(PipelineTaskConfig, pipelineConnections=EoBrightDefectsConnections):
    """Configuration of `EoBrightDefectsTask`."""

    darkCurrentThreshold = Field[float](
        doc="A pixel is bright if it exceeds the amplifier's clipped mean by this many e-/s (eo_pipe and "
        "LCA-128: 5; converted to adu/s with the camera-model gain as eo_pipe does).",
        default=5.0,
    )
    columnThreshold = Field[int](
        doc="A column is bright if one defect-box strip in it is taller than this (eo_pipe colthresh 20).",
        default=20,
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the reference level.", default=3.0)
    usePtcGains = Field[bool](
        doc="Read eoPtc and also count bright defects with the threshold converted by the PTC gains "
        "(columns *_ptc_gain; -1 without a PTC gain).",
        default=False,
    )


class EoBrightDefectsTask(PipelineTask):
    """Find bright pixels and bright columns in a combined dark, as eo_pipe's eoBrightDefects."""

    ConfigClass = EoBrightDefectsConfig
    _DefaultName = "eoBrightDefects"
    config: EoBrightDefectsConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        dark = butlerQC.get(inputRefs.dark)
        ptc_gains = None
        if self.config.usePtcGains:
            ptc_gains = dict(butlerQC.get(inputRefs.ptc).gain)
        detector = get_camera()[outputRefs.counts.dataId["detector"]]
        butlerQC.put(self.run(dark, detector, ptc_gains=ptc_gains), outputRefs)

    def run(
        self, dark: MaskedImage, detector: DetectorInfo, ptc_gains: Mapping[str, float] | None = None
    ) -> Struct:
        """Detect bright defects.

        Parameters
        ----------
        dark : `lsst.images.MaskedImage`
            Combined dark: ``UNITS`` ``adu/s`` (`~lsst.eo.baseline.calibCombine.EoDarkTask`) or
            ``electron/s`` (taken as converted with the camera-model gains).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        ptc_gains : mapping [`str`, `float`], optional
            PTC gains (e-/adu) for the ``*_ptc_gain`` counts.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``counts`` (per amplifier) and ``defects`` (boxes of the eo_pipe-threshold defects).
        """
        cfg = self.config
        units = dark.metadata.get("UNITS", "electron/s") if dark.metadata else "electron/s"
        camera_gains = {a: v.gain for a, v in nominal_amps(detector.name).items()}
        if units == "electron/s":
            image_gains: Mapping[str, float] | None = camera_gains
        elif units == "adu/s":
            image_gains = None
        else:
            raise ValueError(f"eoDark of {detector.name}: UNITS {units!r}; expected electron/s or adu/s")
        thr_cam = bright_thresholds(cfg.darkCurrentThreshold, detector, image_gains, camera_gains)
        thr_ptc = bright_thresholds(cfg.darkCurrentThreshold, detector, image_gains, ptc_gains or {})
        flags = metadata_amp_flags(dark.metadata)
        image = dark.image.array
        mask_cam = np.zeros(image.shape, dtype=bool)
        mask_ptc = np.zeros(image.shape, dtype=bool)
        for layout in detector.ccd_type.amps:
            b = layout.bbox
            if flags.get(layout.name):
                continue
            excess = _excess(image[b.y.start : b.y.stop, b.x.start : b.x.stop], cfg.nSigmaClip)
            mask_cam[b.y.start : b.y.stop, b.x.start : b.x.stop] = excess >= thr_cam[layout.name]
            mask_ptc[b.y.start : b.y.stop, b.x.start : b.x.stop] = excess >= thr_ptc[layout.name]
        meta = {"THRESHOLD_E_PER_S": cfg.darkCurrentThreshold, "GAIN_SOURCE": "camera-model",
                "COLUMN_THRESHOLD": cfg.columnThreshold, "DARK_UNITS": units}  # fmt: skip
        counts, defects = _defect_products(mask_cam, detector, cfg.columnThreshold, "bright", meta, flags)
        ptc_counts = tabulate_defects(defect_table(mask_ptc), _amp_boxes(detector), cfg.columnThreshold)
        has_ptc = [np.isfinite(thr_ptc[str(a)]) and not flags.get(str(a)) for a in counts["amp"]]
        counts["bright_columns_ptc_gain"] = np.array(
            [ptc_counts[str(a)][0] if ok else -1 for a, ok in zip(counts["amp"], has_ptc, strict=True)],
            dtype=np.int32,
        )
        counts["bright_pixels_ptc_gain"] = np.array(
            [ptc_counts[str(a)][1] if ok else -1 for a, ok in zip(counts["amp"], has_ptc, strict=True)],
            dtype=np.int32,
        )
        self.log.info(
            "%s: %d bright columns, %d bright pixels (%g e-/s, camera-model gains)",
            detector.name,
            int(counts["bright_columns"].sum()),
            int(counts["bright_pixels"].sum()),
            cfg.darkCurrentThreshold,
        )
        return Struct(counts=counts, defects=defects)


def _excess(image: np.ndarray, nsig: float) -> np.ndarray:
    # image - MEANCLIP, in float64 so that the threshold comparison is not rounded.
    img = np.asarray(image, dtype=np.float64)
    return img - clipped_stats(img, nsig=nsig).mean


def _amp_boxes(detector: DetectorInfo) -> dict[str, Box]:
    return {layout.name: layout.bbox for layout in detector.ccd_type.amps}


def _defect_products(
    mask: np.ndarray,
    detector: DetectorInfo,
    column_threshold: int,
    kind: str,
    meta: dict,
    flags: Mapping[str, int],
) -> tuple[Table, Table]:
    """Per-amplifier counts and the defect list of a detector defect mask.

    Amplifiers flagged in ``flags`` (bad in the calibration's inputs) were not searched: they have
    no defect boxes, zero counts and their flags in the ``flags`` column.
    """
    defects = defect_table(mask, detector)
    tab = tabulate_defects(defects, _amp_boxes(detector), column_threshold)
    names = detector.amp_names
    counts = Table(
        {
            "amp": names,
            f"{kind}_columns": np.array([tab[a][0] for a in names], dtype=np.int32),
            f"{kind}_pixels": np.array([tab[a][1] for a in names], dtype=np.int32),
        }
    )
    apply_amp_flags(counts, flags)
    meta = {"DETECTOR": detector.id, "DET_NAME": detector.name, **meta}
    counts.meta.update(meta)
    defects.meta.update(meta)
    return counts, defects


class EoDarkDefectsConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoDarkDefectsTask`."""

    flat = cT.Input(
        name="eoFlat",
        doc="Combined flat.",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    counts = cT.Output(
        name="eoDarkDefects",
        doc="Dark columns and dark pixels per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    defects = cT.Output(
        name="eoDarkDefectsList",
        doc="Dark-defect boxes (ip_isr Defects layout: x0, y0, width, height; detector pixels).",
        storageClass="EoDefects",
        dimensions=("instrument", "detector"),
    )


class EoDarkDefectsConfig(PipelineTaskConfig, pipelineConnections=EoDarkDefectsConnections):
    """Configuration of `EoDarkDefectsTask`."""

    fracThresholdFlat = Field[float](
        doc="A pixel is dark if at or below this fraction of the amplifier's clipped mean (eo_pipe 0.8; "
        "cp_pipe's LSSTCam defects use 0.9).",
        default=0.8,
    )
    columnThreshold = Field[int](
        doc="A column is dark if one defect-box strip in it is taller than this (eo_pipe colthresh 100).",
        default=100,
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the reference level.", default=3.0)
    doE2vMidline = Field[bool](
        doc="Set the e2v amplifier row next to the CCD midline to the amplifier median before detection "
        "(cp_pipe e2vMidlineBreakNRow=1, NEVERMASK).",
        default=True,
    )


class EoDarkDefectsTask(PipelineTask):
    """Find dark pixels and dark columns in a combined flat, as eo_pipe's eoDarkDefects."""

    ConfigClass = EoDarkDefectsConfig
    _DefaultName = "eoDarkDefects"
    config: EoDarkDefectsConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        flat = butlerQC.get(inputRefs.flat)
        detector = get_camera()[outputRefs.counts.dataId["detector"]]
        butlerQC.put(self.run(flat, detector), outputRefs)

    def run(self, flat: MaskedImage, detector: DetectorInfo) -> Struct:
        """Detect dark defects.

        Parameters
        ----------
        flat : `lsst.images.MaskedImage`
            Combined flat.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``counts`` (per amplifier) and ``defects`` (boxes) tables.
        """
        cfg = self.config
        flags = metadata_amp_flags(flat.metadata)
        image = flat.image.array
        mask = np.zeros(image.shape, dtype=bool)
        for layout in detector.ccd_type.amps:
            b = layout.bbox
            if flags.get(layout.name):
                continue
            midline = e2v_midline_row(layout, detector) if cfg.doE2vMidline else None
            mask[b.y.start : b.y.stop, b.x.start : b.x.stop] = find_dark_pixels(
                image[b.y.start : b.y.stop, b.x.start : b.x.stop], cfg.fracThresholdFlat, cfg.nSigmaClip,
                midline_row=midline,
            )  # fmt: skip
        meta = {"FRACTION": cfg.fracThresholdFlat, "COLUMN_THRESHOLD": cfg.columnThreshold,
                "E2V_MIDLINE": bool(cfg.doE2vMidline and detector.vendor.upper() == "E2V")}  # fmt: skip
        counts, defects = _defect_products(mask, detector, cfg.columnThreshold, "dark", meta, flags)
        self.log.info(
            "%s: %d dark columns, %d dark pixels",
            detector.name,
            int(counts["dark_columns"].sum()),
            int(counts["dark_pixels"].sum()),
        )
        return Struct(counts=counts, defects=defects)
