"""Charge transfer inefficiency (CTI) from extended pixel edge response (EPER) in flats.

Definitions follow cp_pipe's ``calcEper`` (``cp_pipe_algorithms.md`` section 6):

* serial: ``CTI_s = (OS_0 + OS_1) / (N_s * IMAGE_MEAN)`` with ``OS_k`` the 3-sigma clipped mean of
  serial-overscan column k (k = 0 is the first column read after the last data pixel) over the data
  rows, ``N_s`` = data width + serial prescan width (the transfers of the last data column: 512
  ITL, 522 e2v), and ``IMAGE_MEAN`` the clipped mean of the imaging area;
* parallel: ``CTI_p = (P_0 + P_1) / (N_p * IMAGE_MEAN)`` with ``P_k`` the clipped mean of
  parallel-overscan row k over the data columns and ``N_p`` the data height.

Deliberate deviation: cp_pipe's ``measureCti`` takes its "parallel overscan" rows from the
*serial* overscan box, a documented bug; here the parallel overscan rows are used.

Overscan levels come from the usual per-row (serial) and per-column (parallel) corrections, which
skip the leading overscan columns/rows that carry the deferred charge.

Amplifiers all zero, saturated or dead in any flat, or flagged in the bias, have NaN values and a
non-zero ``flags`` column in ``eoCti`` (`lsst.eo.baseline.ampFlags`).
"""

from __future__ import annotations

__all__ = ["EoCtiConfig", "EoCtiConnections", "EoCtiTask", "eper"]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats, clipped_stats_rows
from .ampFlags import apply_amp_flags, describe_flagged, metadata_amp_flags, raw_amp_flags
from .ampStream import amp_groups, exposure_id_of, read_amp_group
from .calibCombine import amp_views
from .camera import AmpLayout, DetectorInfo, get_camera
from .isrTask import EoIsrTask


def eper(corrected: np.ndarray, layout: AmpLayout, n_pixels: int = 2) -> dict[str, float]:
    """Serial and parallel EPER of one overscan-corrected raw amplifier.

    Parameters
    ----------
    corrected : `numpy.ndarray`
        Whole raw amplifier after overscan (and optionally bias) correction, readout orientation.
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Geometry.
    n_pixels : `int`, optional
        Overscan columns/rows summed (cp_pipe: 2).

    Returns
    -------
    values : `dict`
        ``image_mean`` (same units as ``corrected``), ``serial_eper``, ``parallel_eper``,
        ``serial_trail`` and ``parallel_trail`` (the summed overscan signal).
    """
    g = layout.raw
    d = g.data_bbox
    so = g.serial_overscan_bbox
    po = g.parallel_overscan_bbox
    # Every 4th row is plenty for the normalisation (250k pixels: 1e-5 relative precision).
    image_mean = clipped_stats(corrected[d.y.start : d.y.stop : 4, d.x.start : d.x.stop]).mean
    serial_cols = corrected[d.y.start : d.y.stop, so.x.start : so.x.start + n_pixels]
    serial_trail = float(np.sum(clipped_stats_rows(serial_cols.T)[0]))
    parallel_rows = corrected[po.y.start : po.y.start + n_pixels, d.x.start : d.x.stop]
    parallel_trail = float(np.sum(clipped_stats_rows(parallel_rows)[0]))
    n_serial = d.x.stop  # data width + prescan width: transfers of the last data column
    n_parallel = d.y.stop
    # numpy division: a zero or NaN image mean (a dead amplifier) gives NaN or inf, not an exception.
    mean = np.float64(image_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "image_mean": float(image_mean),
            "serial_eper": float(np.float64(serial_trail) / (n_serial * mean)),
            "parallel_eper": float(np.float64(parallel_trail) / (n_parallel * mean)),
            "serial_trail": serial_trail,
            "parallel_trail": parallel_trail,
        }


class EoCtiConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoCtiTask`."""

    raws = cT.Input(
        name="raw",
        doc="Raw flat exposures of one detector, at one or more signal levels.",
        storageClass="EoRawCcd",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
        deferLoad=True,
    )
    bias = cT.PrerequisiteInput(
        name="eoBias",
        doc="Certified combined bias (adu).",
        storageClass="MaskedImageV2",
        dimensions=("instrument", "detector"),
        isCalibration=True,
    )
    cti = cT.Output(
        name="eoCti",
        doc="Serial and parallel CTI (EPER) per amplifier at high and low signal.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )
    ctiVsSignal = cT.Output(
        name="eoCtiVsSignal",
        doc="Serial and parallel EPER per exposure and amplifier, versus signal.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is not None and not config.isr.doBias:
            del self.bias

    def getTemporalBoundsConnections(self):
        return ("raws",)


class EoCtiConfig(PipelineTaskConfig, pipelineConnections=EoCtiConnections):
    """Configuration of `EoCtiTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan, bias; adu).")
    nPixels = Field[int](doc="Overscan columns/rows summed into the trail (cp_pipe: 2).", default=2)
    highSignalMin = Field[float](doc="Lower edge (adu) of the high-signal window.", default=10000.0)
    highSignalMax = Field[float](
        doc="Upper edge (adu) of the high-signal window (below the turnoff).", default=60000.0
    )
    lowSignalMin = Field[float](doc="Lower edge (adu) of the low-signal window.", default=300.0)
    lowSignalMax = Field[float](doc="Upper edge (adu) of the low-signal window.", default=3000.0)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)

    def setDefaults(self):
        super().setDefaults()
        self.isr.doBias = True


class EoCtiTask(PipelineTask):
    """Measure serial and parallel EPER of every amplifier from flats."""

    ConfigClass = EoCtiConfig
    _DefaultName = "eoCti"
    config: EoCtiConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        detector = get_camera()[outputRefs.cti.dataId["detector"]]
        butlerQC.put(self.run(handles, detector, bias=bias), outputRefs)

    def run(self, raws: Sequence[Any], detector: DetectorInfo, bias: Any = None) -> Struct:
        """Measure EPER on every flat and summarise per amplifier.

        Parameters
        ----------
        raws : sequence
            Handles of raw flats.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias (if ``isr.doBias``).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``cti`` (per amplifier) and ``ctiVsSignal`` (per exposure and amplifier) tables.
        """
        if not raws:
            raise NoWorkFound(f"No flat for {detector.name}")
        bias_amps = amp_views(bias, detector)
        flags = metadata_amp_flags(bias.metadata) if bias is not None else {}
        rows = []
        for group in amp_groups(detector.amp_names, self.config.ampsPerRead):
            exposures = read_amp_group(raws, group)
            ids = [exposure_id_of(h, r) for h, r in zip(raws, exposures, strict=True)]
            for amp in group:
                for r in exposures:
                    flags[amp] = flags.get(amp, 0) | raw_amp_flags(r[amp])
                for exp_id, r in zip(ids, exposures, strict=True):
                    if flags[amp]:
                        rows.append((exp_id, amp, np.nan, np.nan, np.nan, np.nan, np.nan))
                        continue
                    isr = self.isr.run_amp(r[amp], bias=None if bias_amps is None else bias_amps[amp])
                    work = isr.corrected
                    if bias_amps is not None:
                        d = r[amp].layout.raw.data_bbox
                        work[d.y.start : d.y.stop, d.x.start : d.x.stop] = isr.image
                    e = eper(work, r[amp].layout, self.config.nPixels)
                    rows.append((exp_id, amp, e["image_mean"], e["serial_eper"], e["parallel_eper"],
                                 e["serial_trail"], e["parallel_trail"]))  # fmt: skip
        per_exposure = Table(
            rows=rows,
            names=("exposure", "amp", "signal_adu", "serial_eper", "parallel_eper", "serial_trail_adu",
                   "parallel_trail_adu"),
        )  # fmt: skip
        for name in ("signal_adu", "serial_trail_adu", "parallel_trail_adu"):
            per_exposure[name].unit = "adu"
        cfg = self.config
        summary_rows = []
        for amp in detector.amp_names:
            sel = per_exposure[per_exposure["amp"] == amp]
            signal = np.asarray(sel["signal_adu"])
            hi = (signal >= cfg.highSignalMin) & (signal <= cfg.highSignalMax)
            lo = (signal >= cfg.lowSignalMin) & (signal <= cfg.lowSignalMax)

            def med(values, sel_mask):
                return float(np.median(values[sel_mask])) if sel_mask.any() else np.nan

            summary_rows.append(
                (amp, med(np.asarray(sel["serial_eper"]), hi), med(np.asarray(sel["parallel_eper"]), hi),
                 med(signal, hi), int(hi.sum()), med(np.asarray(sel["serial_eper"]), lo),
                 med(np.asarray(sel["parallel_eper"]), lo), med(signal, lo), int(lo.sum()))
            )  # fmt: skip
        summary = Table(
            rows=summary_rows,
            names=("amp", "serial_cti", "parallel_cti", "high_signal_adu", "n_high", "serial_cti_low",
                   "parallel_cti_low", "low_signal_adu", "n_low"),
        )  # fmt: skip
        summary["high_signal_adu"].unit = "adu"
        summary["low_signal_adu"].unit = "adu"
        apply_amp_flags(summary, flags)
        if any(flags.values()):
            self.log.warning("%s: CTI not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flags))  # fmt: skip
        meta = {"DETECTOR": detector.id, "DET_NAME": detector.name, "NPIXELS": cfg.nPixels}
        summary.meta.update(meta)
        per_exposure.meta.update(meta)
        if not np.isfinite(summary["serial_cti"]).any():
            self.log.warning(
                "%s: no flat with a signal in [%g, %g] adu: serial_cti is NaN",
                detector.name, cfg.highSignalMin, cfg.highSignalMax,
            )  # fmt: skip
        return Struct(cti=summary, ctiVsSignal=per_exposure)
