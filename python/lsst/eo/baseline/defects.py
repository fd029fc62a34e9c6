"""Defects: hot pixels and bright columns from combined darks, dark pixels and columns from flats.

Detection follows cp_pipe's ``MeasureDefectsCombinedTask`` with ``thresholdType=VALUE``
(``cp_pipe_algorithms.md`` section 5): per amplifier, the reference is the 3-sigma clipped mean m of
the whole amplifier (no mask); a pixel of a combined dark is hot if ``value - m >= threshold``
(LSSTCam: 3 e-/s); a pixel of a flat is dark if ``value <= fraction * m`` (LSSTCam: 0.9).

Tabulation follows eo_pipe's ``tabulate_defects``: each amplifier's defect pixels are split into
vertical runs per column; a column holding a run taller than ``column_threshold`` (bright: 20,
dark: 100 pixels) is a defective column; the defect pixels of the other columns are counted as
pixels.  Defect lists are stored as boxes (one per vertical run) in assembled-detector
coordinates, 0-based: ``x0, y0, width, height`` as cp_pipe's defects tables.

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
    "column_runs",
    "defect_table",
    "find_bright_pixels",
    "find_dark_pixels",
    "tabulate_amp_defects",
]

import numpy as np
from astropy.table import Table
from lsst.images import MaskedImage
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, metadata_amp_flags
from .camera import DetectorInfo, get_camera


def find_bright_pixels(image: np.ndarray, threshold: float, nsig: float = 3.0) -> np.ndarray:
    """Pixels at least ``threshold`` above the amplifier's clipped mean (True = defect)."""
    m = clipped_stats(image, nsig=nsig).mean
    return np.asarray(image) - m >= threshold


def find_dark_pixels(image: np.ndarray, fraction: float, nsig: float = 3.0) -> np.ndarray:
    """Pixels at or below ``fraction`` of the amplifier's clipped mean (True = defect)."""
    m = clipped_stats(image, nsig=nsig).mean
    return np.asarray(image) <= fraction * m


def column_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical runs of True pixels in a 2-d mask.

    Returns
    -------
    x, y0, length : `numpy.ndarray`
        Column, first row and length of every run, ordered by column then row.
    """
    m = np.asarray(mask, dtype=bool)
    padded = np.zeros((m.shape[0] + 2, m.shape[1]), dtype=np.int8)
    padded[1:-1] = m
    # Transposed so that nonzero() walks column by column.
    diff = np.diff(padded, axis=0).T
    cs, ys = np.nonzero(diff == 1)
    ce, ye = np.nonzero(diff == -1)
    return cs, ys, ye - ys


def tabulate_amp_defects(mask: np.ndarray, column_threshold: int) -> tuple[int, int]:
    """Count defective columns and pixels of one amplifier.

    Parameters
    ----------
    mask : `numpy.ndarray`
        Defect mask of the amplifier's data section (any orientation: columns are columns).
    column_threshold : `int`
        A column with a vertical run longer than this is a defective column.

    Returns
    -------
    n_columns, n_pixels : `int`
        Defective columns, and defect pixels outside them.
    """
    x, _, length = column_runs(mask)
    bad_columns = np.unique(x[length > column_threshold])
    outside = ~np.isin(x, bad_columns)
    return int(bad_columns.size), int(length[outside].sum())


def defect_table(mask: np.ndarray, detector: DetectorInfo) -> Table:
    """Defect boxes (one per vertical run) of a detector mask in assembled coordinates."""
    x, y0, length = column_runs(mask)
    amp_of = np.full(mask.shape, "", dtype="U3")
    for layout in detector.ccd_type.amps:
        b = layout.bbox
        amp_of[b.y.start : b.y.stop, b.x.start : b.x.stop] = layout.name
    table = Table(
        {
            "x0": x.astype(np.int32),
            "y0": y0.astype(np.int32),
            "width": np.ones(x.size, dtype=np.int32),
            "height": length.astype(np.int32),
            "amp": amp_of[y0, x] if x.size else np.array([], dtype="U3"),
        }
    )
    table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name, "COORDS": "assembled, 0-based"})
    return table


class EoBrightDefectsConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoBrightDefectsTask`."""

    dark = cT.Input(
        name="eoDark",
        doc="Combined dark (e-/s).",
        storageClass="MaskedImageV2",
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
        doc="Bright-defect boxes (x0, y0, width, height; assembled detector pixels).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoBrightDefectsConfig(PipelineTaskConfig, pipelineConnections=EoBrightDefectsConnections):
    """Configuration of `EoBrightDefectsTask`."""

    darkCurrentThreshold = Field[float](
        doc="A pixel is hot if it exceeds the amplifier's clipped mean by this much (e-/s; LSSTCam 3).",
        default=3.0,
    )
    columnThreshold = Field[int](
        doc="A column with a vertical run of more defect pixels than this is a bright column.", default=20
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the reference level.", default=3.0)


class EoBrightDefectsTask(PipelineTask):
    """Find hot pixels and bright columns in a combined dark."""

    ConfigClass = EoBrightDefectsConfig
    _DefaultName = "eoBrightDefects"
    config: EoBrightDefectsConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        dark = butlerQC.get(inputRefs.dark)
        detector = get_camera()[outputRefs.counts.dataId["detector"]]
        butlerQC.put(self.run(dark, detector), outputRefs)

    def run(self, dark: MaskedImage, detector: DetectorInfo) -> Struct:
        """Detect bright defects.

        Parameters
        ----------
        dark : `lsst.images.MaskedImage`
            Combined dark in e-/s.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``counts`` (per amplifier) and ``defects`` (boxes) tables.
        """
        cfg = self.config
        counts, defects = _defect_products(
            dark.image.array,
            detector,
            lambda img: find_bright_pixels(img, cfg.darkCurrentThreshold, cfg.nSigmaClip),
            cfg.columnThreshold,
            "bright",
            {"THRESHOLD_E_PER_S": cfg.darkCurrentThreshold},
            metadata_amp_flags(dark.metadata),
        )
        self.log.info(
            "%s: %d bright columns, %d bright pixels",
            detector.name,
            int(counts["bright_columns"].sum()),
            int(counts["bright_pixels"].sum()),
        )
        return Struct(counts=counts, defects=defects)


def _defect_products(
    image: np.ndarray,
    detector: DetectorInfo,
    find,
    column_threshold: int,
    kind: str,
    meta: dict,
    flags: dict[str, int] | None = None,
) -> tuple[Table, Table]:
    """Per-amplifier defect counts and the defect list of a detector image.

    Amplifiers flagged in ``flags`` (bad in the calibration's inputs) are not searched: they have
    no defect boxes, zero counts and their flags in the ``flags`` column.
    """
    flags = flags or {}
    mask = np.zeros(image.shape, dtype=bool)
    rows = []
    for layout in detector.ccd_type.amps:
        b = layout.bbox
        if flags.get(layout.name):
            rows.append((layout.name, 0, 0))
            continue
        amp_mask = find(image[b.y.start : b.y.stop, b.x.start : b.x.stop])
        mask[b.y.start : b.y.stop, b.x.start : b.x.stop] = amp_mask
        rows.append((layout.name, *tabulate_amp_defects(amp_mask, column_threshold)))
    counts = Table(
        rows=rows, names=("amp", f"{kind}_columns", f"{kind}_pixels"), dtype=(str, np.int32, np.int32)
    )
    apply_amp_flags(counts, flags)
    meta = {"DETECTOR": detector.id, "DET_NAME": detector.name, **meta}
    counts.meta.update(meta)
    defects = defect_table(mask, detector)
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
        doc="Dark-defect boxes (x0, y0, width, height; assembled detector pixels).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoDarkDefectsConfig(PipelineTaskConfig, pipelineConnections=EoDarkDefectsConnections):
    """Configuration of `EoDarkDefectsTask`."""

    fracThresholdFlat = Field[float](
        doc="A pixel is dark if at or below this fraction of the amplifier's clipped mean (LSSTCam 0.9).",
        default=0.9,
    )
    columnThreshold = Field[int](
        doc="A column with a vertical run of more dark pixels than this is a dark column (eo_pipe 100).",
        default=100,
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the reference level.", default=3.0)


class EoDarkDefectsTask(PipelineTask):
    """Find dark pixels and dark columns in a combined flat."""

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
        counts, defects = _defect_products(
            flat.image.array,
            detector,
            lambda img: find_dark_pixels(img, cfg.fracThresholdFlat, cfg.nSigmaClip),
            cfg.columnThreshold,
            "dark",
            {"FRACTION": cfg.fracThresholdFlat},
            metadata_amp_flags(flat.metadata),
        )
        self.log.info(
            "%s: %d dark columns, %d dark pixels",
            detector.name,
            int(counts["dark_columns"].sum()),
            int(counts["dark_pixels"].sum()),
        )
        return Struct(counts=counts, defects=defects)
