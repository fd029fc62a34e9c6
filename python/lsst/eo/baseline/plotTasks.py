"""Plot tasks: figures written as butler ``Plot`` datasets (PNG files).

* `EoFocalPlanePlotsTask` (per instrument, from ``eoRunSummary``): for every metric of
  ``data/metrics.yaml`` a focal-plane mosaic ``eoFpMosaic<Metric>`` and per-vendor histograms
  ``eoFpHist<Metric>`` (e.g. ``eoFpMosaicReadNoise``);
* per detector: ``eoPtcPlot`` and ``eoLinearityPlot`` (from ``eoPtc``, ``eoLinearity``),
  ``eoBiasStabilityPlot``, ``eoGainStabilityPlot``, ``eoPersistencePlot``.

``Plot`` datasets are write-only in the butler: find them with ``butler.getURI`` (the report does).
"""

from __future__ import annotations

__all__ = [
    "EoBiasStabilityPlotsTask",
    "EoFocalPlanePlotsConnections",
    "EoFocalPlanePlotsTask",
    "EoGainStabilityPlotsTask",
    "EoPersistencePlotsTask",
    "EoPtcPlotsTask",
    "mosaic_dataset_name",
]

import types

from astropy.table import Table
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .camera import get_camera
from .metrics import load_metrics
from .plotting import (
    focal_plane_mosaic,
    gain_stability_figure,
    linearity_figure,
    persistence_figure,
    ptc_figure,
    time_series_figure,
    vendor_histograms,
)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def mosaic_dataset_name(metric: str, kind: str = "Mosaic") -> str:
    """Dataset type of a metric's focal-plane figure (``kind``: ``Mosaic`` or ``Hist``)."""
    return f"eoFp{kind}{_camel(metric)}"


def _focal_plane_connections(namespace: dict) -> None:
    """Connections namespace: the summary in, two figures per metric out."""
    namespace["__doc__"] = "Connections of `EoFocalPlanePlotsTask`."
    namespace["__module__"] = __name__
    namespace["summary"] = cT.Input(
        name="eoRunSummary",
        doc="Run summary.",
        storageClass="ArrowAstropy",
        dimensions=("instrument",),
    )
    for metric in load_metrics():
        for kind in ("Mosaic", "Hist"):
            namespace[f"{kind.lower()}_{metric.name}"] = cT.Output(
                name=mosaic_dataset_name(metric.name, kind),
                doc=f"Focal-plane {kind.lower()} of {metric.label}.",
                storageClass="Plot",
                dimensions=("instrument",),
            )


EoFocalPlanePlotsConnections = types.new_class(
    "EoFocalPlanePlotsConnections", (PipelineTaskConnections,), {"dimensions": ("instrument",)},
    _focal_plane_connections,
)  # fmt: skip


class EoFocalPlanePlotsConfig(PipelineTaskConfig, pipelineConnections=EoFocalPlanePlotsConnections):
    """Configuration of `EoFocalPlanePlotsTask` (no options)."""


class EoFocalPlanePlotsTask(PipelineTask):
    """Focal-plane mosaic and vendor histograms of every metric."""

    ConfigClass = EoFocalPlanePlotsConfig
    _DefaultName = "eoFocalPlanePlots"

    def run(self, summary: Table) -> Struct:
        """Draw the figures.

        Parameters
        ----------
        summary : `astropy.table.Table`
            ``eoRunSummary``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            One figure per output connection (``mosaic_<metric>``, ``hist_<metric>``).
        """
        out = {}
        for metric in load_metrics():
            out[f"mosaic_{metric.name}"] = focal_plane_mosaic(
                summary, metric.name, metric.title, metric.value_range, metric.log
            )
            out[f"hist_{metric.name}"] = vendor_histograms(summary, metric)
        return Struct(**out)


class _DetectorPlotConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Per-detector figure from one table."""

    table = cT.Input(
        name="eoTable", doc="Input table.", storageClass="ArrowAstropy", dimensions=("instrument", "detector")
    )
    plot = cT.Output(name="eoPlot", doc="Figure.", storageClass="Plot", dimensions=("instrument", "detector"))


class _DetectorPlotTask(PipelineTask):
    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        detector = get_camera()[outputRefs.plot.dataId["detector"]]
        butlerQC.put(self.run(butlerQC.get(inputRefs.table), detector.name), outputRefs)


class EoBiasStabilityPlotsConfig(PipelineTaskConfig, pipelineConnections=_DetectorPlotConnections):
    """Configuration of `EoBiasStabilityPlotsTask`."""

    def setDefaults(self):
        super().setDefaults()
        self.connections.table = "eoBiasStabilityExposures"
        self.connections.plot = "eoBiasStabilityPlot"


class EoBiasStabilityPlotsTask(_DetectorPlotTask):
    """Bias level of every amplifier versus time."""

    ConfigClass = EoBiasStabilityPlotsConfig
    _DefaultName = "eoBiasStabilityPlots"

    def run(self, table: Table, det_name: str) -> Struct:
        """Draw the bias level time series (``plot``)."""
        return Struct(plot=time_series_figure(table, "level_adu", f"{det_name}: bias level", "level (adu)"))


class EoGainStabilityPlotsConfig(PipelineTaskConfig, pipelineConnections=_DetectorPlotConnections):
    """Configuration of `EoGainStabilityPlotsTask`."""

    def setDefaults(self):
        super().setDefaults()
        self.connections.table = "eoGainStabilityExposures"
        self.connections.plot = "eoGainStabilityPlot"


class EoGainStabilityPlotsTask(_DetectorPlotTask):
    """Normalised flat signal of every amplifier versus time and versus CCD temperature."""

    ConfigClass = EoGainStabilityPlotsConfig
    _DefaultName = "eoGainStabilityPlots"

    def run(self, table: Table, det_name: str) -> Struct:
        """Draw the gain-stability time series and signal-temperature panels (``plot``)."""
        return Struct(plot=gain_stability_figure(table, det_name))


class _TwoTableConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Per-detector figure from two datasets."""

    first = cT.Input(
        name="eoFirst", doc="Input.", storageClass="ArrowAstropy", dimensions=("instrument", "detector")
    )
    second = cT.Input(
        name="eoSecond", doc="Input.", storageClass="ArrowAstropy", dimensions=("instrument", "detector")
    )
    plot = cT.Output(name="eoPlot", doc="Figure.", storageClass="Plot", dimensions=("instrument", "detector"))


class EoPersistencePlotsConfig(PipelineTaskConfig, pipelineConnections=_TwoTableConnections):
    """Configuration of `EoPersistencePlotsTask`."""

    def setDefaults(self):
        super().setDefaults()
        self.connections.first = "eoPersistenceExposures"
        self.connections.second = "eoPersistence"
        self.connections.plot = "eoPersistencePlot"


class EoPersistencePlotsTask(PipelineTask):
    """Residual signal after saturation with the fitted decay, every amplifier."""

    ConfigClass = EoPersistencePlotsConfig
    _DefaultName = "eoPersistencePlots"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        detector = get_camera()[outputRefs.plot.dataId["detector"]]
        butlerQC.put(
            self.run(butlerQC.get(inputRefs.first), butlerQC.get(inputRefs.second), detector.name), outputRefs
        )

    def run(self, exposures: Table, fits: Table, det_name: str) -> Struct:
        """Draw the persistence figure (``plot``)."""
        return Struct(plot=persistence_figure(exposures, fits, det_name))


class EoPtcPlotsConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoPtcPlotsTask`."""

    ptc = cT.Input(
        name="eoPtc",
        doc="Photon transfer curves.",
        storageClass="EoPtcDataset",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    linearity = cT.Input(
        name="eoLinearity",
        doc="Linearity table.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    ptcPlot = cT.Output(
        name="eoPtcPlot",
        doc="PTC of every amplifier.",
        storageClass="Plot",
        dimensions=("instrument", "detector"),
    )
    linearityPlot = cT.Output(
        name="eoLinearityPlot",
        doc="Linearity residuals of every amplifier.",
        storageClass="Plot",
        dimensions=("instrument", "detector"),
    )


class EoPtcPlotsConfig(PipelineTaskConfig, pipelineConnections=EoPtcPlotsConnections):
    """Configuration of `EoPtcPlotsTask` (no options)."""


class EoPtcPlotsTask(PipelineTask):
    """PTC curves with fit and turnoff, and linearity residuals, per amplifier."""

    ConfigClass = EoPtcPlotsConfig
    _DefaultName = "eoPtcPlots"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        detector = get_camera()[outputRefs.ptcPlot.dataId["detector"]]
        inputs = butlerQC.get(inputRefs)
        butlerQC.put(self.run(inputs["ptc"], inputs["linearity"], detector.name), outputRefs)

    def run(self, ptc, linearity: Table, det_name: str) -> Struct:
        """Draw both figures (``ptcPlot``, ``linearityPlot``)."""
        return Struct(
            ptcPlot=ptc_figure(ptc, det_name), linearityPlot=linearity_figure(ptc, linearity, det_name)
        )
