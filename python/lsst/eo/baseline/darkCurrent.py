"""Dark current per amplifier from the combined dark (adu/s/pixel, and e-/s/pixel with the run's gains).

As eo_pipe's ``DarkCurrentTask``: over each amplifier's imaging area, all pixels (hot pixels and
defects included), the median and the 95th percentile of the combined dark; the 3-sigma clipped
mean is reported as well.

``eoDark`` is a bootstrap dark in adu/s (`lsst.eo.baseline.calibCombine`).  The statistics are
taken in adu/s and converted to e-/s with the run's PTC gain of the amplifier (camera-model gain
without a usable PTC gain, `lsst.eo.baseline.runGains`, recorded in ``gain_source``): a median, a
percentile and a clipped mean of ``g x`` are ``g`` times those of ``x`` for a positive ``g``, so
this is the statistic of a dark converted to electrons before measuring, as eo_pipe measures a
cp_pipe dark in electrons.  The task runs after the PTC step; its ``raws`` input (the darks) only
gives the time span over which the certified ``eoDark`` and ``eoPtc`` are looked up.

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
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .ampFlags import apply_amp_flags, describe_flagged, metadata_amp_flags, nan_median
from .calibInputs import SwitchedCalibConnections, dark_prerequisite, ptc_prerequisite, raw_exposures
from .camera import DetectorInfo, get_camera
from .runGains import RunGains, quantum_gains, run_gains

_STATISTICS = ("median", "{percentile}", "clipped_mean")


def dark_current_table(
    image: np.ndarray,
    detector: DetectorInfo,
    percentile: float = 95.0,
    *,
    gains: RunGains | None = None,
    bad: np.ndarray | None = None,
    flags: Mapping[str, int] | None = None,
) -> Table:
    """Median, percentile and clipped mean of a combined dark per amplifier, in adu/s and e-/s.

    Parameters
    ----------
    image : `numpy.ndarray`
        Combined dark (adu/s), detector orientation.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector.
    percentile : `float`, optional
        Percentile reported besides the median.
    gains : `~lsst.eo.baseline.runGains.RunGains`, optional
        Gains converting to e-/s; default `~lsst.eo.baseline.runGains.run_gains` without a PTC
        (camera-model gains).
    bad : `numpy.ndarray` of `bool`, optional
        Pixels to leave out (the dark's ``BAD`` mask plane).
    flags : mapping [`str`, `int`], optional
        Flags of amplifiers known to be bad (`lsst.eo.baseline.ampFlags`); their values are NaN.

    Returns
    -------
    table : `astropy.table.Table`
        One row per amplifier: ``dark_current_<stat>_adu_per_s`` and ``dark_current_<stat>_e_per_s``
        (``<stat>``: ``median``, the percentile, ``clipped_mean``), ``gain_e_per_adu``,
        ``gain_source`` and ``flags``; NaN where no finite pixel is left.
    """
    if gains is None:
        gains = run_gains(detector)
    stats = [name.format(percentile=f"{percentile:g}") for name in _STATISTICS]
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
    table = Table(rows=rows, names=("amp", *(f"dark_current_{s}_adu_per_s" for s in stats)))
    gains.add_columns(table)
    g = np.asarray(table["gain_e_per_adu"], dtype=np.float64)
    for s in stats:
        table[f"dark_current_{s}_adu_per_s"].unit = "adu/s"
        table[f"dark_current_{s}_e_per_s"] = np.asarray(table[f"dark_current_{s}_adu_per_s"]) * g
        table[f"dark_current_{s}_e_per_s"].unit = "electron/s"
    order = ["amp", *(f"dark_current_{s}_e_per_s" for s in stats),
             *(f"dark_current_{s}_adu_per_s" for s in stats), "gain_e_per_adu", "gain_source"]  # fmt: skip
    table = table[order]
    table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name, "PERCENTILE": percentile,
                       **gains.metadata})  # fmt: skip
    return apply_amp_flags(table, flags, required=["dark_current_median_e_per_s"], skip=["gain_e_per_adu"])


class EoDarkCurrentConnections(SwitchedCalibConnections):
    """Connections of `EoDarkCurrentTask`."""

    raws = raw_exposures("Raw darks of the detector: not read, they bound the calibration lookup in time.")
    dark = dark_prerequisite("Certified combined dark (adu/s).")
    ptc = ptc_prerequisite()
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
        butlerQC.put(self.run(dark, detector, quantum_gains(butlerQC, inputRefs, detector)), outputRefs)

    def run(self, dark: MaskedImage, detector: DetectorInfo, gains: RunGains | None = None) -> Struct:
        """Tabulate the dark current.

        Parameters
        ----------
        dark : `lsst.images.MaskedImage`
            Combined dark (adu/s).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        gains : `~lsst.eo.baseline.runGains.RunGains`, optional
            Gains converting to e-/s (default: camera-model gains, as without a PTC).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``darkCurrent``: one row per amplifier.
        """
        units = dark.metadata.get("UNITS") if dark.metadata else None
        if units != "adu/s":
            raise ValueError(f"eoDark of {detector.name} is in {units}; dark current needs adu/s")
        bad = dark.mask.get("BAD") if "BAD" in dark.mask.schema.names else None
        flags = metadata_amp_flags(dark.metadata)
        table = dark_current_table(
            dark.image.array, detector, self.config.percentile, gains=gains, bad=bad, flags=flags
        )
        flagged = dict(zip(table["amp"], table["flags"], strict=True))
        if any(flagged.values()):
            self.log.warning("%s: dark current not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flagged))  # fmt: skip
        self.log.info("%s: median dark current %.4f e-/s (%s gains)", detector.name,
                      nan_median(table["dark_current_median_e_per_s"]),
                      table.meta["GAIN_SOURCE"])  # fmt: skip
        return Struct(darkCurrent=table)
