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

`EoEperTask` computes eo_pipe's EPER (``eo_pipe.md`` 9.3, ``eperTask.py``) on the stability
(``gain_stability``) flats into ``eoEper`` (``scti``, ``pcti``): minimal ISR of each of the first
``maxRaws`` (10) flats by exposure id (`eo_pipe_minimal_isr`: per-row ``np.median`` of the serial
overscan without ``nxSkip`` (4) columns at each end, optional per-column median of the parallel
overscan, combined bias subtracted in adu), a per-pixel median of the segments, then
`eo_pipe_eper`: ``scti = (T / S) / (W + 1)`` with ``S`` the robust sum (`robust_sum`, MEANCLIP x
pixels) of the last data column over the data rows, ``T`` that of the first ``nPixels`` (2)
serial-overscan columns, ``W`` the data width; ``pcti`` likewise with the last data row, the first
parallel-overscan rows and the data height.  The normalisation (W + 1 instead of cp_pipe's
data + prescan width), the last-column signal (instead of the image mean) and the median stack
differ from `eper`, which is kept as ``eoCti``.
"""

from __future__ import annotations

__all__ = [
    "EoCtiConfig",
    "EoCtiConnections",
    "EoCtiTask",
    "EoEperConfig",
    "EoEperConnections",
    "EoEperTask",
    "eo_pipe_eper",
    "eo_pipe_minimal_isr",
    "eper",
    "robust_sum",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats, clipped_stats_rows
from .ampFlags import apply_amp_flags, describe_flagged, metadata_amp_flags, raw_amp_flags
from .ampStream import amp_groups, exposure_id_of, read_amp_group
from .calibCombine import amp_views, check_bias_parallel_overscan
from .calibInputs import SwitchedCalibConnections, bias_prerequisite, raw_exposures
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


def robust_sum(values: np.ndarray) -> float:
    """eo_pipe's ``signal_estimate``: afw MEANCLIP (3 sigma, 3 passes) times the number of pixels."""
    return clipped_stats(values).mean * values.size


def eo_pipe_minimal_isr(
    amp: np.ndarray,
    layout: AmpLayout,
    nx_skip: int = 4,
    do_parallel: bool = True,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """eo_pipe's ``apply_minimal_isr`` of one raw amplifier (``median_per_row``, no dark).

    Parameters
    ----------
    amp : `numpy.ndarray`
        Whole raw amplifier (readout orientation).
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Geometry.
    nx_skip : `int`, optional
        Overscan columns (rows) left out at each end of the serial (parallel) overscan.
    do_parallel : `bool`, optional
        Also subtract the per-column median of the parallel overscan.
    bias : `numpy.ndarray`, optional
        Combined bias of the data section (adu, readout orientation), subtracted from the data.

    Returns
    -------
    segment : `numpy.ndarray`
        The corrected whole segment (float64): the per-row median of serial-overscan columns
        [start + nx_skip, stop - nx_skip) over all rows is subtracted from every column, then (if
        ``do_parallel``) the per-column median of parallel-overscan rows [start + nx_skip,
        stop - nx_skip) over the full width from every row.
    """
    g = layout.raw
    so, po, d = g.serial_overscan_bbox, g.parallel_overscan_bbox, g.data_bbox
    seg = np.array(amp, dtype=np.float64)
    seg -= np.median(seg[:, so.x.start + nx_skip : so.x.stop - nx_skip], axis=1)[:, None]
    if do_parallel:
        seg -= np.median(seg[po.y.start + nx_skip : po.y.stop - nx_skip, :], axis=0)[None, :]
    if bias is not None:
        seg[d.y.start : d.y.stop, d.x.start : d.x.stop] -= bias
    return seg


def eo_pipe_eper(segment: np.ndarray, layout: AmpLayout, n_pixels: int = 2) -> tuple[float, float]:
    """eo_pipe's serial and parallel EPER CTI (``compute_ctis``) of a corrected raw segment.

    Parameters
    ----------
    segment : `numpy.ndarray`
        Whole corrected raw amplifier in readout orientation (eo_pipe flips the assembled raw back
        to this orientation before measuring).
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Geometry (raw data box: ITL x 3..511, y 0..1999; e2v x 10..521, y 0..2001).
    n_pixels : `int`, optional
        Overscan columns / rows holding the trail.

    Returns
    -------
    scti, pcti : `float`
        ``(T / S) / (W + 1)`` and ``(T / S) / (H + 1)``, with `robust_sum` signals S of the last
        data column (row) and trails T of the next ``n_pixels`` columns (rows), over the data rows
        (columns); W, H the data width and height.
    """
    d = layout.raw.data_bbox
    last_col, last_row = d.x.stop - 1, d.y.stop - 1
    rows, cols = slice(d.y.start, d.y.stop), slice(d.x.start, d.x.stop)
    s_signal = robust_sum(segment[rows, last_col : last_col + 1])
    s_trail = robust_sum(segment[rows, last_col + 1 : last_col + 1 + n_pixels])
    p_signal = robust_sum(segment[last_row : last_row + 1, cols])
    p_trail = robust_sum(segment[last_row + 1 : last_row + 1 + n_pixels, cols])
    width, height = d.x.stop - d.x.start, d.y.stop - d.y.start
    with np.errstate(divide="ignore", invalid="ignore"):
        scti = float(np.float64(s_trail) / s_signal / (width + 1))
        pcti = float(np.float64(p_trail) / p_signal / (height + 1))
    return scti, pcti


class EoCtiConnections(SwitchedCalibConnections):
    """Connections of `EoCtiTask`."""

    switches = {"bias": "isr.doBias"}

    raws = raw_exposures("Raw flat exposures of one detector, at one or more signal levels.")
    bias = bias_prerequisite()
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
        # As eoBias is built (no parallel overscan): see check_bias_parallel_overscan.
        self.isr.doParallelOverscan = False


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
        check_bias_parallel_overscan(bias, self.config.isr.doParallelOverscan, "eoCti")
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


class EoEperConnections(SwitchedCalibConnections):
    """Connections of `EoEperTask`."""

    switches = {"bias": "doBias"}

    raws = raw_exposures("Raw stability flats (observation_reason 'gain_stability') of one detector.")
    bias = bias_prerequisite()
    eper = cT.Output(
        name="eoEper",
        doc="eo_pipe's serial and parallel EPER CTI (scti, pcti) per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoEperConfig(PipelineTaskConfig, pipelineConnections=EoEperConnections):
    """Configuration of `EoEperTask` (eo_pipe ``EperTask`` defaults)."""

    maxRaws = Field[int](doc="Use the first this many flats by exposure id (eo_pipe max_raws).", default=10)
    nxSkip = Field[int](doc="Overscan columns/rows skipped at each end (eo_pipe dx).", default=4)
    nPixels = Field[int](doc="Overscan columns/rows of the trail (eo_pipe npix).", default=2)
    doParallelOverscan = Field[bool](
        doc="Subtract the per-column parallel-overscan median (eo_pipe do_parallel_oscan); must match "
        "how the bias was built (eoBias metadata PARALLEL_OSCAN).",
        default=False,
    )
    doBias = Field[bool](doc="Subtract the combined bias (adu).", default=True)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)


class EoEperTask(PipelineTask):
    """eo_pipe's EPER CTI of every amplifier from a median stack of stability flats."""

    ConfigClass = EoEperConfig
    _DefaultName = "eoEper"
    config: EoEperConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        bias = butlerQC.get(inputRefs.bias) if self.config.doBias else None
        detector = get_camera()[outputRefs.eper.dataId["detector"]]
        butlerQC.put(self.run(handles, detector, bias=bias), outputRefs)

    def run(self, raws: Sequence[Any], detector: DetectorInfo, bias: Any = None) -> Struct:
        """Median-stack the first flats and measure EPER.

        Parameters
        ----------
        raws : sequence
            Handles of raw stability flats, sorted by exposure id.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias (if ``doBias``).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``eper``: `astropy.table.Table` (amp, scti, pcti, n_exposures, flags); the exposure ids
            used are in the metadata (``EXPOSURES``).
        """
        cfg = self.config
        raws = list(raws)[: cfg.maxRaws]
        if not raws:
            raise NoWorkFound(f"No stability flat for {detector.name}")
        if cfg.doBias and bias is None:
            raise ValueError(f"{detector.name}: doBias is set but no eoBias was given")
        check_bias_parallel_overscan(bias, cfg.doParallelOverscan, "eoEper")
        bias_amps = amp_views(bias, detector)
        flags = metadata_amp_flags(bias.metadata) if bias is not None else {}
        rows = []
        ids: list[int] = []
        for group in amp_groups(detector.amp_names, cfg.ampsPerRead):
            exposures = read_amp_group(raws, group)
            ids = [exposure_id_of(h, r) for h, r in zip(raws, exposures, strict=True)]
            for amp in group:
                for r in exposures:
                    flags[amp] = flags.get(amp, 0) | raw_amp_flags(r[amp])
                if flags[amp]:
                    rows.append((amp, np.nan, np.nan, len(exposures)))
                    continue
                layout = exposures[0][amp].layout
                b = None if bias_amps is None else np.asarray(bias_amps[amp], dtype=np.float64)
                stacked = np.median(
                    [eo_pipe_minimal_isr(r[amp].array, layout, cfg.nxSkip, cfg.doParallelOverscan, b)
                     for r in exposures],
                    axis=0,
                )  # fmt: skip
                rows.append((amp, *eo_pipe_eper(stacked, layout, cfg.nPixels), len(exposures)))
        order = {a: i for i, a in enumerate(detector.amp_names)}
        rows.sort(key=lambda r: order[r[0]])
        table = Table(rows=rows, names=("amp", "scti", "pcti", "n_exposures"))
        apply_amp_flags(table, flags, required=["scti", "pcti"])
        table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name, "NPIXELS": cfg.nPixels,
                           "NX_SKIP": cfg.nxSkip, "PARALLEL_OSCAN": cfg.doParallelOverscan,
                           "EXPOSURES": ids})  # fmt: skip
        if any(flags.values()):
            self.log.warning("%s: EPER not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flags))  # fmt: skip
        self.log.info("%s: eo_pipe EPER from the median of %d flats", detector.name, len(raws))
        return Struct(eper=table)
