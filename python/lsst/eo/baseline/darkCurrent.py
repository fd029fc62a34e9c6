"""Dark current per amplifier from the combined dark (e-/s/pixel).

As eo_pipe's ``DarkCurrentTask``: over each amplifier's imaging area, all pixels (hot pixels and
defects included), the median and the 95th percentile of the combined dark; the 3-sigma clipped
mean is reported as well.

Pixels masked ``BAD`` in the combined dark and non-finite pixels are left out.  An amplifier
flagged in the dark's metadata (all zero, saturated or dead in its inputs), or without a finite
pixel, gets NaN values and a non-zero ``flags`` column (`lsst.eo.baseline.ampFlags`).
"""

from __future__ import annotations

__all__ = ["EoDarkCurrentConfig", "EoDarkCurrentConnections", "EoDarkCurrentTask", "dark_current_table"]

from collections.abc import Mapping

import numpy as np
from astropy.table import Table
from lsst.images import MaskedImage
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, describe_flagged, metadata_amp_flags, nan_median
from .camera import DetectorInfo, get_camera


def dark_current_table(
    image: np.ndarray,
    detector: DetectorInfo,
    percentile: float = 95.0,
    *,
    bad: np.ndarray | None = None,
    flags: Mapping[str, int] | None = None,
) -> Table:
    """Median, percentile and clipped mean of a combined dark (e-/s) per amplifier.

    Parameters
    ----------
    image : `numpy.ndarray`
        Combined dark (e-/s), detector orientation.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector.
    percentile : `float`, optional
        Percentile reported besides the median.
    bad : `numpy.ndarray` of `bool`, optional
        Pixels to leave out (the dark's ``BAD`` mask plane).
    flags : mapping [`str`, `int`], optional
        Flags of amplifiers known to be bad (`lsst.eo.baseline.ampFlags`); their values are NaN.

    Returns
    -------
    table : `astropy.table.Table`
        One row per amplifier, with the ``flags`` column; NaN where no finite pixel is left.
    """
    rows = []
    for layout in detector.ccd_type.amps:
        b = layout.bbox
        amp = image[b.y.start : b.y.stop, b.x.start : b.x.stop]
        good = np.isfinite(amp)
        if bad is not None:
            good &= ~bad[b.y.start : b.y.stop, b.x.start : b.x.stop]
        finite = amp[good]
        if finite.size == 0:
            rows.append((layout.name, np.nan, np.nan, np.nan))
            continue
        rows.append(
            (layout.name, float(np.median(finite)), float(np.percentile(finite, percentile)),
             clipped_stats(finite).mean)
        )  # fmt: skip
    table = Table(
        rows=rows,
        names=("amp", "dark_current_median_e_per_s", f"dark_current_{percentile:g}_e_per_s",
               "dark_current_clipped_mean_e_per_s"),
    )  # fmt: skip
    for name in table.colnames[1:]:
        table[name].unit = "electron/s"
    table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name, "PERCENTILE": percentile})
    return apply_amp_flags(table, flags, required=["dark_current_median_e_per_s"])


class EoDarkCurrentConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoDarkCurrentTask`."""

    dark = cT.Input(
        name="eoDark",
        doc="Combined dark (e-/s).",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    darkCurrent = cT.Output(
        name="eoDarkCurrent",
        doc="Dark current per amplifier (median, percentile, clipped mean; e-/s/pixel).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoDarkCurrentConfig(PipelineTaskConfig, pipelineConnections=EoDarkCurrentConnections):
    """Configuration of `EoDarkCurrentTask`."""

    percentile = Field[float](doc="Percentile reported besides the median.", default=95.0)


class EoDarkCurrentTask(PipelineTask):
    """Measure the dark current of every amplifier from a combined dark."""

    ConfigClass = EoDarkCurrentConfig
    _DefaultName = "eoDarkCurrent"
    config: EoDarkCurrentConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        dark = butlerQC.get(inputRefs.dark)
        detector = get_camera()[outputRefs.darkCurrent.dataId["detector"]]
        butlerQC.put(self.run(dark, detector), outputRefs)

    def run(self, dark: MaskedImage, detector: DetectorInfo) -> Struct:
        """Tabulate the dark current.

        Parameters
        ----------
        dark : `lsst.images.MaskedImage`
            Combined dark (e-/s).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``darkCurrent``: one row per amplifier.
        """
        units = dark.metadata.get("UNITS", "electron/s") if dark.metadata else "electron/s"
        if units != "electron/s":
            raise ValueError(f"eoDark of {detector.name} is in {units}; dark current needs electron/s")
        bad = dark.mask.get("BAD") if "BAD" in dark.mask.schema.names else None
        flags = metadata_amp_flags(dark.metadata)
        table = dark_current_table(dark.image.array, detector, self.config.percentile, bad=bad, flags=flags)
        flagged = dict(zip(table["amp"], table["flags"], strict=True))
        if any(flagged.values()):
            self.log.warning("%s: dark current not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flagged))  # fmt: skip
        self.log.info("%s: median dark current %.4f e-/s", detector.name,
                      nan_median(table["dark_current_median_e_per_s"]))  # fmt: skip
        return Struct(darkCurrent=table)
