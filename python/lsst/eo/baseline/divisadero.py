"""Divisadero tearing: response deviations of the columns next to amplifier boundaries.

eo_pipe's definition (``eo_pipe.md`` section 3.12), on the combined flat (``eoFlat``):

1. per amplifier of the assembled CCD, rows ``rowMin`` to ``rowMax - 1`` (10 .. 209) counted from
   the serial register (the image is flipped in y for amplifiers read out at the top), the clipped
   mean of each column with astropy's ``sigma_clipped_stats`` defaults (3 sigma about the median,
   population std, up to 5 passes) -> a column profile, divided by its median, then by a
   straight line fitted over columns ``[nEdge, W - nEdge)``;
2. the profiles of the amplifiers of each half of the CCD (amplifiers sharing a grid row ``iy``)
   are laid side by side in detector x order (by the x of their bounding boxes);
3. at each internal amplifier boundary, with x_b the last column of the left amplifier in that
   concatenation, D = nanmax |p - 1| over ``p[x_b - nPix : x_b + 2 nPix]``: the ``nPix + 1`` last
   columns of the left amplifier and the ``2 nPix - 1`` first of the right one (3 and 3 for eo_pipe's
   ``npix = 2``; eo_pipe ``DivisaderoTearingTask.normed_mean_response_vs_col``); all NaN -> 0;
4. each amplifier's value is the larger D of its two boundaries (a CCD edge counts 0).

Deliberate difference: the median normalisation and the line fit skip non-finite column means
(eo_pipe's ``np.median`` would turn a single NaN column into an all-NaN profile); on finite data
the numbers are the same.

ITL sensors tear; e2v sensors show none.

Bad amplifiers (`lsst.eo.baseline.ampFlags`): an amplifier flagged in the flat's metadata
(``AMP_FLAGS``: all zero, saturated or dead in the flat's inputs or the bias used) is not measured:
its row has NaN values and a non-zero ``flags`` column, and a warning names it.  Its profile counts
as NaN, so the boundary it shares with a good neighbour is measured from the neighbour's columns
only (step 3).  An amplifier without enough finite columns for its profile is flagged
``NONFINITE``.
"""

from __future__ import annotations

__all__ = [
    "EoDivisaderoConfig",
    "EoDivisaderoConnections",
    "EoDivisaderoTask",
    "boundary_deviations",
    "column_profile",
]

import warnings

import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from lsst.images import MaskedImage
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .ampFlags import AmpFlag, apply_amp_flags, describe_flagged, metadata_amp_flags, nan_median
from .camera import DetectorInfo, get_camera


def column_profile(
    amp_image: np.ndarray, row_min: int = 10, row_max: int = 210, n_edge: int = 25
) -> np.ndarray:
    """Normalised column profile of one amplifier (rows counted from the serial register).

    Parameters
    ----------
    amp_image : `numpy.ndarray`
        The amplifier's data in detector orientation, already flipped so that row 0 is next to the
        serial register.
    row_min, row_max : `int`
        Rows averaged: ``row_min .. row_max - 1`` (eo_pipe 10 and 210).
    n_edge : `int`
        Columns at each end left out of the straight-line fit.

    Returns
    -------
    profile : `numpy.ndarray`
        One value per column, ~1 away from the edges; all NaN if fewer than two columns of the
        fitted range have a finite, non-zero mean (e.g. an amplifier without signal).
    """
    block = np.asarray(amp_image[row_min:row_max], dtype=np.float64)
    # eo_pipe: astropy defaults (sigma 3 both sides, maxiters 5, median centre, std ddof 0).  A
    # column without a finite pixel (an amplifier without data) has a NaN mean: numpy's "empty
    # slice" warnings say nothing more.
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means, _, _ = sigma_clipped_stats(block, axis=0)
    means = np.ma.filled(np.asarray(means, dtype=np.float64), np.nan)
    nan_profile = np.full(means.shape, np.nan)
    level = nan_median(means)
    if not np.isfinite(level) or level == 0:
        return nan_profile
    profile = means / level
    x = np.arange(profile.size)
    core = (x >= n_edge) & (x < profile.size - n_edge) & np.isfinite(profile)
    if np.count_nonzero(core) < 2:
        return nan_profile
    line = np.polyval(np.polyfit(x[core], profile[core], 1), x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return profile / line


def boundary_deviations(profiles: list[np.ndarray], n_pix: int = 2) -> list[float]:
    """Max |profile - 1| around each internal boundary of side-by-side amplifier profiles.

    Parameters
    ----------
    profiles : `list` [`numpy.ndarray`]
        Column profiles of the amplifiers of one CCD half, left to right.
    n_pix : `int`
        eo_pipe's ``npix``: the window is ``p[x_b - n_pix : x_b + 2 n_pix]`` of the concatenated
        profile, x_b being the last column of the left amplifier, i.e. its last ``n_pix + 1``
        columns and the first ``2 n_pix - 1`` columns of the right amplifier (3 and 3 for 2).

    Returns
    -------
    deviations : `list` [`float`]
        One per internal boundary (``len(profiles) - 1`` values); an all-NaN window counts as 0.
    """
    out = []
    for left, right in zip(profiles[:-1], profiles[1:], strict=True):
        window = np.concatenate([left[-(n_pix + 1) :], right[: 2 * n_pix - 1]])
        dev = np.abs(window - 1.0)
        out.append(float(np.nanmax(dev)) if np.isfinite(dev).any() else 0.0)
    return out


class EoDivisaderoConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoDivisaderoTask`."""

    flat = cT.Input(
        name="eoFlat",
        doc="Combined flat.",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    tearing = cT.Output(
        name="eoDivisaderoTearing",
        doc="Divisadero tearing per amplifier (max deviation at its boundaries) and per boundary side.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoDivisaderoConfig(PipelineTaskConfig, pipelineConnections=EoDivisaderoConnections):
    """Configuration of `EoDivisaderoTask` (eo_pipe's values)."""

    rowMin = Field[int](doc="First row (from the serial register) averaged.", default=10)
    rowMax = Field[int](doc="Row after the last one averaged.", default=210)
    nEdge = Field[int](doc="Columns at each amplifier edge left out of the line fit.", default=25)
    nPix = Field[int](
        doc="eo_pipe npix: columns p[x_b - nPix : x_b + 2 nPix] around a boundary x_b (3 each side for 2).",
        default=2,
    )


class EoDivisaderoTask(PipelineTask):
    """Measure divisadero tearing at every amplifier boundary of a combined flat."""

    ConfigClass = EoDivisaderoConfig
    _DefaultName = "eoDivisadero"
    config: EoDivisaderoConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        flat = butlerQC.get(inputRefs.flat)
        detector = get_camera()[outputRefs.tearing.dataId["detector"]]
        butlerQC.put(self.run(flat, detector), outputRefs)

    def run(self, flat: MaskedImage, detector: DetectorInfo) -> Struct:
        """Measure the tearing.

        Parameters
        ----------
        flat : `lsst.images.MaskedImage`
            Combined flat.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``tearing``: one row per amplifier.
        """
        cfg = self.config
        image = flat.image.array
        flags = {a: 0 for a in detector.amp_names}
        for amp, value in metadata_amp_flags(flat.metadata).items():
            if amp in flags:
                flags[amp] |= value
        profiles: dict[str, np.ndarray] = {}
        for layout in detector.ccd_type.amps:
            b = layout.bbox
            if flags[layout.name]:
                # Masked BAD and filled with the flat's median: no profile to measure.
                profiles[layout.name] = np.full(b.x.stop - b.x.start, np.nan)
                continue
            amp = image[b.y.start : b.y.stop, b.x.start : b.x.stop]
            if layout.flip_y:  # read out at the top: count rows from the serial register
                amp = amp[::-1]
            profiles[layout.name] = column_profile(amp, cfg.rowMin, cfg.rowMax, cfg.nEdge)
            if not np.isfinite(profiles[layout.name]).any():
                flags[layout.name] |= int(AmpFlag.NONFINITE)
        left = {a.name: 0.0 for a in detector.ccd_type.amps}
        right = dict(left)
        # CCD halves = amplifiers sharing a grid row, in detector x order (from the layout, not
        # from amplifier names, so that it holds whichever half C1x is placed in).
        for iy in sorted({a.iy for a in detector.ccd_type.amps}):
            row = sorted((a for a in detector.ccd_type.amps if a.iy == iy), key=lambda a: a.bbox.x.start)
            devs = boundary_deviations([profiles[a.name] for a in row], cfg.nPix)
            for k, dev in enumerate(devs):
                right[row[k].name] = dev
                left[row[k + 1].name] = dev
        rows = [(a, max(left[a], right[a]), left[a], right[a]) for a in detector.amp_names]
        table = Table(rows=rows, names=("amp", "divisadero_tearing", "divisadero_left", "divisadero_right"))
        table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name})
        apply_amp_flags(table, flags, required=["divisadero_tearing"])
        flagged = dict(zip(table["amp"], table["flags"], strict=True))
        if any(flagged.values()):
            self.log.warning("%s: divisadero tearing not measured for flagged amplifier(s) %s",
                             detector.name, describe_flagged(flagged))  # fmt: skip
        return Struct(tearing=table)
