"""``eoRunSummary``: every metric of a run in one table, one row per detector and amplifier.

The per-detector metric tables of all families (``data/metrics.yaml`` lists which column of which
dataset is each metric) are joined on detector and amplifier, with the detector's name, raft,
slot and vendor.  Families that did not run leave NaN columns: the summary of a partial run is
still complete in shape.  Derived metrics:

* ``bright_defect_fraction`` = (bright pixels + bright columns x data height) / data pixels;
* ``dark_defect_fraction`` likewise for dark defects;
* ``total_defect_fraction`` = their sum (the quantity LCA-57 CCD-012 bounds; a pixel found both bright
  in the darks and dark in the flats counts twice).

Amplifier flags (`lsst.eo.baseline.ampFlags`): ``flags`` is the OR of the ``flags`` columns of
all the tables of the amplifier and ``flag_sources`` names the tables that set them; every metric
taken from a flagged row of a table is NaN (integer counts included), so a bad amplifier never
contributes numbers to the statistics of the report.

Wavelength flats have a row per LED/filter: the summary keeps the worst value over LEDs (largest
non-uniformity, relative response farthest from 1) and one column per LED
(``nonuniformity_<led>``, ``relative_response_<led>``, NaN for a flagged row).

Every table of `SUMMARY_DATASETS` with a ``flags`` column contributes to ``flags``, the tables of
gain stability, divisadero tearing, wavelength flats and persistence included.

Gain source (`lsst.eo.baseline.runGains`): ``camera_gain_sources`` names the tables whose values
in electrons use the camera-model gain of the amplifier (``gain_source`` ``CAMERA``: no usable PTC
gain), ``""`` when every one used the run's PTC gain.
"""

from __future__ import annotations

__all__ = [
    "SUMMARY_DATASETS",
    "EoRunSummaryConfig",
    "EoRunSummaryConnections",
    "EoRunSummaryTask",
    "build_run_summary",
]

import types
from collections.abc import Mapping

import numpy as np
from astropy.table import Table
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .ampFlags import FLAGS_COLUMN
from .camera import get_camera
from .metrics import load_metrics
from .runGains import GAIN_SOURCE_CAMERA

SUMMARY_DATASETS = (
    "eoReadNoise", "eoCti", "eoEper", "eoBiasStability", "eoDarkCurrent", "eoBrightDefects",
    "eoGainStability", "eoRowMeansVariance", "eoBrighterFatter", "eoPtcSummary", "eoLinearity",
    "eoDivisaderoTearing", "eoDarkDefects", "eoWavelengthFlats", "eoPersistence",
)  # fmt: skip
"""Per-detector tables gathered into the summary (connection name = dataset type name)."""


def _reduce(values: np.ndarray, how: str) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan
    if how == "max":
        return float(values.max())
    if how == "extreme":
        return float(values[np.argmax(np.abs(values - 1.0))])
    return float(values[0])


def build_run_summary(tables: Mapping[str, Mapping[int, Table]], detectors: list[int] | None = None) -> Table:
    """Join per-detector metric tables into one row per detector and amplifier.

    Parameters
    ----------
    tables : mapping
        ``{dataset type: {detector id: table}}``; tables need an ``amp`` column.
    detectors : `list` [`int`], optional
        Detectors to include (default: every detector with any table).

    Returns
    -------
    summary : `astropy.table.Table`
        Columns ``detector, det_name, raft, slot, vendor, amp``, one per metric (NaN where
        missing or flagged), ``flags`` and ``flag_sources``, plus per-LED wavelength columns.
    """
    camera = get_camera()
    metrics = load_metrics()
    if detectors is None:
        detectors = sorted({d for per_det in tables.values() for d in per_det})
    rows: list[dict] = []
    index: dict[tuple[int, str], dict] = {}
    for det_id in detectors:
        det = camera[det_id]
        for amp in det.amp_names:
            row = {"detector": det.id, "det_name": det.name, "raft": det.raft, "slot": det.slot,
                   "vendor": det.vendor, "amp": amp}  # fmt: skip
            rows.append(row)
            index[(det.id, amp)] = row
    leds: set[str] = set()
    for row in rows:
        row[FLAGS_COLUMN] = 0
        row["flag_sources"] = ""
        row["camera_gain_sources"] = ""
    for dataset, per_det in tables.items():
        for det_id, table in per_det.items():
            if FLAGS_COLUMN not in table.colnames or "amp" not in table.colnames:
                continue
            for amp, value in zip(np.asarray(table["amp"]).astype(str), table[FLAGS_COLUMN], strict=True):
                row = index.get((det_id, amp))
                if row is None or not int(value):
                    continue
                row[FLAGS_COLUMN] |= int(value)
                if dataset not in row["flag_sources"].split(","):
                    row["flag_sources"] = ",".join(p for p in (row["flag_sources"], dataset) if p)
    for dataset, per_det in tables.items():
        for det_id, table in per_det.items():
            if "gain_source" not in table.colnames or "amp" not in table.colnames:
                continue
            amps = np.asarray(table["amp"]).astype(str)
            camera_amps = set(amps[np.asarray(table["gain_source"]).astype(str) == GAIN_SOURCE_CAMERA])
            for amp in sorted(camera_amps):
                row = index.get((det_id, amp))
                if row is not None and dataset not in row["camera_gain_sources"].split(","):
                    row["camera_gain_sources"] = ",".join(
                        p for p in (row["camera_gain_sources"], dataset) if p
                    )
    for metric in metrics:
        for row in rows:
            row[metric.name] = np.nan
        if metric.derived:
            continue
        for det_id, table in tables.get(metric.dataset, {}).items():
            if metric.column not in table.colnames:
                continue
            amps = np.asarray(table["amp"]).astype(str)
            flagged = (
                np.asarray(table[FLAGS_COLUMN], dtype=np.int64) != 0
                if FLAGS_COLUMN in table.colnames
                else np.zeros(len(table), dtype=bool)
            )
            for amp in np.unique(amps):
                key = (det_id, amp)
                if key in index and not flagged[amps == amp].any():
                    index[key][metric.name] = _reduce(
                        np.asarray(table[metric.column])[amps == amp], metric.reduce
                    )
    for det_id, table in tables.get("eoWavelengthFlats", {}).items():
        for r in table:
            led = str(r["led"]) if str(r["led"]) not in ("", "None", "--") else str(r["filter"])
            leds.add(led)
            key = (det_id, str(r["amp"]))
            if key in index:
                # A flagged row contributes no number (its values are NaN already when the table
                # follows the convention; older tables may not).
                bad = FLAGS_COLUMN in table.colnames and int(r[FLAGS_COLUMN]) != 0
                index[key][f"nonuniformity_{led}"] = np.nan if bad else float(r["nonuniformity"])
                index[key][f"relative_response_{led}"] = np.nan if bad else float(r["relative_response"])
    for row in rows:
        ny, nx = camera[row["detector"]].ccd_type.data_shape
        for kind in ("bright", "dark"):
            pixels = row.get(f"{kind}_pixels", np.nan)
            columns = row.get(f"{kind}_columns", np.nan)
            row[f"{kind}_defect_fraction"] = (pixels + columns * ny) / (nx * ny)
        row["total_defect_fraction"] = row["bright_defect_fraction"] + row["dark_defect_fraction"]
        for led in leds:
            row.setdefault(f"nonuniformity_{led}", np.nan)
            row.setdefault(f"relative_response_{led}", np.nan)
    names = ["detector", "det_name", "raft", "slot", "vendor", "amp"] + [m.name for m in metrics]
    names += [FLAGS_COLUMN, "flag_sources"]
    names += sorted(k for k in (rows[0] if rows else {}) if k not in names)
    summary = Table(rows=[[r[n] for n in names] for r in rows], names=names) if rows else Table(names=names)
    for metric in metrics:
        if metric.unit and metric.name in summary.colnames:
            summary[metric.name].description = metric.title
    if len(summary):
        summary[FLAGS_COLUMN] = np.asarray(summary[FLAGS_COLUMN], dtype=np.int32)
        summary["flag_sources"] = np.asarray(summary["flag_sources"]).astype(str)
        summary["camera_gain_sources"] = np.asarray(summary["camera_gain_sources"]).astype(str)
    return summary


def _summary_connections(namespace: dict) -> None:
    """Fill the connections namespace: the output and one optional prerequisite per metric dataset.

    The metric tables are products of the run's earlier steps, found in the input collections
    whatever the detector; minimum 0 makes each family optional.
    """
    namespace["__doc__"] = (
        "Connections of `EoRunSummaryTask`: every per-detector metric table, each optional."
    )
    namespace["__module__"] = __name__
    namespace["summary"] = cT.Output(
        name="eoRunSummary",
        doc="Every metric of the run, one row per detector and amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument",),
    )
    for name in SUMMARY_DATASETS:
        namespace[name] = cT.PrerequisiteInput(
            name=name,
            doc=f"{name} tables of every detector.",
            storageClass="ArrowAstropy",
            dimensions=("instrument", "detector"),
            multiple=True,
            minimum=0,
        )


EoRunSummaryConnections = types.new_class(
    "EoRunSummaryConnections",
    (PipelineTaskConnections,),
    {"dimensions": ("instrument",)},
    _summary_connections,
)


class EoRunSummaryConfig(PipelineTaskConfig, pipelineConnections=EoRunSummaryConnections):
    """Configuration of `EoRunSummaryTask` (no options)."""


class EoRunSummaryTask(PipelineTask):
    """Gather every metric of a run into ``eoRunSummary``."""

    ConfigClass = EoRunSummaryConfig
    _DefaultName = "eoRunSummary"
    config: EoRunSummaryConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        tables: dict[str, dict[int, Table]] = {}
        for name in SUMMARY_DATASETS:
            refs = getattr(inputRefs, name, [])
            tables[name] = {ref.dataId["detector"]: butlerQC.get(ref) for ref in refs}
        butlerQC.put(self.run(tables), outputRefs)

    def run(self, tables: Mapping[str, Mapping[int, Table]]) -> Struct:
        """Build the summary.

        Parameters
        ----------
        tables : mapping
            ``{dataset type: {detector id: table}}``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``summary``: the joined table.
        """
        summary = build_run_summary(tables)
        present = [name for name, per_det in tables.items() if per_det]
        summary.meta["DATASETS"] = ",".join(present)
        self.log.info("Run summary: %d detectors, %d amplifiers, from %s", len(set(summary["detector"])),
                      len(summary), ", ".join(present) or "nothing")  # fmt: skip
        flagged = summary[summary[FLAGS_COLUMN] != 0] if len(summary) else summary
        if len(flagged):
            self.log.warning("Run summary: %d flagged amplifier(s): %s", len(flagged),
                             ", ".join(f"{r['det_name']} {r['amp']}" for r in flagged))  # fmt: skip
        return Struct(summary=summary)
