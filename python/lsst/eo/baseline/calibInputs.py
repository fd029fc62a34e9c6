"""Connections that several tasks share: their raw inputs and the optional certified calibrations.

Most per-detector tasks take every raw exposure of a detector in one quantum and, depending on
their configuration, the certified ``eoBias`` and ``eoDark``; the tasks with values in electrons
also take the run's certified ``eoPtc`` for its gains (`lsst.eo.baseline.runGains`).
`raw_exposures`, `bias_prerequisite`, `dark_prerequisite` and `ptc_prerequisite` build those
connections (each task keeps its own ``doc``), and `SwitchedCalibConnections` removes the optional
ones whose configuration switch is off and bounds the calibration lookup by the raws' time span.
"""

from __future__ import annotations

__all__ = [
    "SwitchedCalibConnections",
    "bias_prerequisite",
    "dark_prerequisite",
    "ptc_prerequisite",
    "raw_exposures",
]

from operator import attrgetter
from typing import ClassVar

from lsst.pipe.base import PipelineTaskConnections
from lsst.pipe.base import connectionTypes as cT

_DETECTOR = ("instrument", "detector")


def raw_exposures(doc: str) -> cT.Input:
    """All raw exposures of a detector in one quantum, loaded on demand (one file at a time)."""
    return cT.Input(
        name="raw",
        doc=doc,
        storageClass="EoRawCcd",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
        deferLoad=True,
    )


def bias_prerequisite(doc: str = "Certified combined bias (adu).") -> cT.PrerequisiteInput:
    """The certified ``eoBias`` of the detector, looked up over the raws' time span."""
    return cT.PrerequisiteInput(
        name="eoBias", doc=doc, storageClass="MaskedImageV2", dimensions=_DETECTOR, isCalibration=True
    )


def dark_prerequisite(doc: str = "Certified combined dark (adu/s).") -> cT.PrerequisiteInput:
    """The certified ``eoDark`` of the detector, looked up over the raws' time span."""
    return cT.PrerequisiteInput(
        name="eoDark", doc=doc, storageClass="MaskedImageV2", dimensions=_DETECTOR, isCalibration=True
    )


def ptc_prerequisite(
    doc: str = "The run's certified photon transfer curves, for the gains (camera-model gains without it).",
) -> cT.PrerequisiteInput:
    """The certified ``eoPtc`` of the detector, if any, looked up over the raws' time span.

    Optional (``minimum=0``): a run without flat pairs has no PTC, and its values in electrons use
    the camera-model gains, as `lsst.eo.baseline.runGains.run_gains` records per amplifier.
    """
    return cT.PrerequisiteInput(
        name="eoPtc",
        doc=doc,
        storageClass="EoPtcDataset",
        dimensions=_DETECTOR,
        isCalibration=True,
        minimum=0,
    )


class SwitchedCalibConnections(PipelineTaskConnections, dimensions=_DETECTOR):
    """Connections whose optional inputs follow configuration switches.

    Subclasses declare their connections (a ``raws`` input among them) and, in ``switches``, the
    connection names that exist only when a boolean configuration field is true, given by its
    dotted path in the task's config (e.g. ``{"bias": "isr.doBias"}``).
    """

    switches: ClassVar[dict[str, str]] = {}
    """Connection name -> dotted path of the config field that enables it."""

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is None:
            return
        for name, switch in self.switches.items():
            if name in self.allConnections and not attrgetter(switch)(config):
                delattr(self, name)

    def getTemporalBoundsConnections(self):
        # The calibration lookups use the time span of the raws.
        return ("raws",)
