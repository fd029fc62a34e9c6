"""Overscan statistics per amplifier: the simplest EO task, and a quick-look health check.

For every amplifier of a raw exposure: median and clipped standard deviation of the serial
overscan, and median of the parallel overscan, in adu, straight from the raw counts.
"""

from __future__ import annotations

__all__ = [
    "EoOverscanConfig",
    "EoOverscanConnections",
    "EoOverscanTask",
    "overscan_stats_table",
    "serial_overscan_fit_region",
]

import numpy as np
from astropy.table import Table
from lsst.pex.config import Field
from lsst.pipe.base import (
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats
from .rawdata import RawAmp, RawCcd


def serial_overscan_fit_region(amp: RawAmp, leading: int, trailing: int) -> np.ndarray:
    """Serial overscan over the data rows without ``leading``/``trailing`` columns (view).

    The columns next to the imaging area carry deferred charge (EPER trails) and the last ones can
    show readout transients; cp_pipe skips 3 of each when fitting the bias level.
    """
    so = amp.serial_overscan
    stop = so.shape[1] - trailing if trailing > 0 else so.shape[1]
    return so[:, leading:stop]


def overscan_stats_table(raw: RawCcd, leading: int = 3, trailing: int = 3, nsig: float = 3.0) -> Table:
    """Per-amplifier overscan statistics of a raw exposure.

    Parameters
    ----------
    raw : `~lsst.eo.baseline.rawdata.RawCcd`
        Raw exposure (only the amplifiers it holds are measured).
    leading, trailing : `int`, optional
        Serial-overscan columns skipped next to the imaging area and at the far end.
    nsig : `float`, optional
        Clipping threshold for the standard deviation.

    Returns
    -------
    table : `astropy.table.Table`
        One row per amplifier: ``amp``, ``serial_overscan_median_adu``,
        ``serial_overscan_stdev_adu`` (3-sigma clipped), ``parallel_overscan_median_adu``.
    """
    rows = []
    for name, amp in raw.items():
        serial = serial_overscan_fit_region(amp, leading, trailing)
        parallel = amp.parallel_overscan[leading:, :]
        stats = clipped_stats(serial, nsig=nsig)
        rows.append((name, float(np.median(serial)), stats.stdev, float(np.median(parallel))))
    table = Table(
        rows=rows or None,
        names=(
            "amp",
            "serial_overscan_median_adu",
            "serial_overscan_stdev_adu",
            "parallel_overscan_median_adu",
        ),
        dtype=(str, float, float, float),
    )
    table["serial_overscan_median_adu"].unit = "adu"
    table["serial_overscan_stdev_adu"].unit = "adu"
    table["parallel_overscan_median_adu"].unit = "adu"
    return table


class EoOverscanConnections(PipelineTaskConnections, dimensions=("instrument", "exposure", "detector")):
    """Connections of `EoOverscanTask`."""

    raw = cT.Input(
        name="raw",
        doc="Raw CCD exposure.",
        storageClass="EoRawCcd",
        dimensions=("instrument", "exposure", "detector"),
        deferLoad=True,
    )
    stats = cT.Output(
        name="eoOverscanStats",
        doc="Per-amplifier overscan statistics (adu).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "exposure", "detector"),
    )


class EoOverscanConfig(PipelineTaskConfig, pipelineConnections=EoOverscanConnections):
    """Configuration of `EoOverscanTask`."""

    leadingColumnsToSkip = Field[int](
        doc="Serial-overscan columns skipped next to the imaging area (deferred charge).", default=3
    )
    trailingColumnsToSkip = Field[int](doc="Serial-overscan columns skipped at the far end.", default=3)
    nSigmaClip = Field[float](doc="Clipping threshold (sigma) of the standard deviation.", default=3.0)


class EoOverscanTask(PipelineTask):
    """Measure serial and parallel overscan levels and noise of every amplifier of a raw exposure."""

    ConfigClass = EoOverscanConfig
    _DefaultName = "eoOverscan"
    config: EoOverscanConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        raw = butlerQC.get(inputRefs.raw).get()
        outputs = self.run(raw)
        butlerQC.put(outputs, outputRefs)

    def run(self, raw: RawCcd) -> Struct:
        """Measure the overscan statistics.

        Parameters
        ----------
        raw : `~lsst.eo.baseline.rawdata.RawCcd`
            Raw exposure.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``stats``: the per-amplifier `astropy.table.Table`.
        """
        table = overscan_stats_table(
            raw,
            leading=self.config.leadingColumnsToSkip,
            trailing=self.config.trailingColumnsToSkip,
            nsig=self.config.nSigmaClip,
        )
        table.meta["DETECTOR"] = raw.detector.id
        table.meta["DET_NAME"] = raw.detector.name
        table.meta["OBSID"] = raw.header.get("OBSID")
        self.log.info(
            "%s %s: median serial overscan noise %.2f adu over %d amps",
            raw.header.get("OBSID"),
            raw.detector.name,
            float(np.median(table["serial_overscan_stdev_adu"])) if len(table) else float("nan"),
            len(table),
        )
        return Struct(stats=table)
