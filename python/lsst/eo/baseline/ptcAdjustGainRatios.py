"""PTC gain-ratio adjustment: the certified ``eoPtc`` with cp_pipe's rescaled amplifier gains.

cp_pipe's LSSTCam PTC does not certify the solver's gains as they are:
``PhotonTransferCurveAdjustGainRatiosTask`` (``ptc/cpPtcAdjustGainRatios.py``, cp_pipe f029a3f)
rescales them so that flats in electrons are smooth across amplifier boundaries, and eo_pipe
reports that adjusted ``ptc.gain`` as the PTC gain.  `EoPtcAdjustGainRatiosTask` does the same
on our PTC: it reads the solver's ``eoPtcUnadjusted`` and ``eoPtcSummaryUnadjusted`` and the raw
flats of the detector, and writes

* ``eoPtc``: a copy of the unadjusted PTC in which only ``gain`` changes, to
  ``gainUnadjusted / correction`` (``gainUnadjusted`` keeps the fit value);
* ``eoPtcSummary``: the solver's summary with ``ptc_gain_e_per_adu`` (eo_pipe's ``ptc_gain``)
  and ``ptc_turnoff_e`` from the adjusted gain, ``ptc_gain_unadjusted_e_per_adu`` the fit value,
  and ``ptc_gain_correction``;
* ``eoPtcAdjustmentSummary`` (cp_pipe's ``ptc_adjustment_summary``): one row per flat used,
  ``exp_id``, ``mean_adu`` and ``<amp>_gain_ratio``; the reference amplifier and the median
  correction in its metadata.

The numerics are `lsst.eo.baseline.gainRatios`.  Flats: only the first exposure of each selected
pair is read, and processed with the ISR of the PTC extraction (serial overscan, optional bias;
adu), assembled into the detector.  cp_pipe's input is its PTC ISR image (crosstalk, CTI,
linearity, defects applied; the binning ignores the mask).  With ``do_adjust_gain_ratios`` False,
no usable reference amplifier or no flat in the signal window, ``gain`` stays ``gainUnadjusted``
(cp_pipe: the same for a missing reference; it has no guard for an empty flat list).
"""

from __future__ import annotations

__all__ = [
    "EoPtcAdjustGainRatiosConfig",
    "EoPtcAdjustGainRatiosConnections",
    "EoPtcAdjustGainRatiosTask",
    "adjustment_table",
]

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT

from .calibCombine import amp_views
from .calibInputs import SwitchedCalibConnections, bias_prerequisite, raw_exposures
from .camera import DetectorInfo, get_camera
from .focalPlane import pixel_focal_plane_mm
from .gainRatios import (
    bin_flat,
    choose_reference_amp,
    clip_bins,
    flat_gain_ratios,
    gain_corrections,
    select_flats,
)
from .isr import assemble_ccd
from .isrTask import EoIsrTask
from .ptcDataset import EoPtcDataset

_DETECTOR = ("instrument", "detector")


class EoPtcAdjustGainRatiosConnections(SwitchedCalibConnections, dimensions=_DETECTOR):
    """Connections of `EoPtcAdjustGainRatiosTask`."""

    switches = {"bias": "isr.doBias"}

    inputPtc = cT.Input(
        name="eoPtcUnadjusted",
        doc="PTC of the solve (gain = gainUnadjusted).",
        storageClass="EoPtcDataset",
        dimensions=_DETECTOR,
        isCalibration=True,
    )
    inputSummary = cT.Input(
        name="eoPtcSummaryUnadjusted",
        doc="Per-amplifier summary of the solve.",
        storageClass="ArrowAstropy",
        dimensions=_DETECTOR,
    )
    raws = raw_exposures("Raw flats of the PTC pairs (only the selected first exposures are read).")
    bias = bias_prerequisite("Certified combined bias (adu), if isr.doBias.")
    ptc = cT.Output(
        name="eoPtc",
        doc="PTC with the gain-ratio adjusted gains (cp_pipe ptc).",
        storageClass="EoPtcDataset",
        dimensions=_DETECTOR,
        isCalibration=True,
    )
    summary = cT.Output(
        name="eoPtcSummary",
        doc="PTC gain (adjusted and unadjusted), noise, a00, turnoff and maximum signal per amplifier.",
        storageClass="ArrowAstropy",
        dimensions=_DETECTOR,
    )
    adjustment = cT.Output(
        name="eoPtcAdjustmentSummary",
        doc="Gain ratio of every amplifier in every flat used (cp_pipe ptc_adjustment_summary).",
        storageClass="ArrowAstropy",
        dimensions=_DETECTOR,
    )


class EoPtcAdjustGainRatiosConfig(PipelineTaskConfig, pipelineConnections=EoPtcAdjustGainRatiosConnections):
    """Configuration of `EoPtcAdjustGainRatiosTask` (cp_pipe's field names and LSSTCam values)."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR of each flat (as the PTC extraction's).")
    do_adjust_gain_ratios = Field[bool](
        doc="Adjust the gains (False: gain = gainUnadjusted, no flat is read).", default=True
    )
    do_remove_radial_gradient = Field[bool](
        doc="Divide the binned flat by a radial spline in focal-plane radius before the ratio fit.",
        default=True,
    )
    radial_gradient_n_spline_nodes = Field[int](doc="Nodes of the radial spline.", default=20)
    chebyshev_gradient_order = Field[int](doc="Order in x and y of the Chebyshev field.", default=1)
    min_adu = Field[float](doc="Flats need a detector-average PTC mean above this (adu).", default=1000.0)
    max_adu = Field[float](doc="Flats need a detector-average PTC mean below this (adu).", default=20000.0)
    max_noise_reference = Field[float](
        doc="Largest PTC noise (e-) of a reference-amplifier candidate.", default=12.0
    )
    turnoff_percentile_reference = Field[float](
        doc="Candidates need a PTC turnoff at or above this percentile of the detector's.", default=25.0
    )
    n_flat = Field[int](doc="Most flats used (a random subset above this).", default=50)
    random_seed = Field[int](doc="Seed of the flat subsampling (numpy RandomState).", default=12345)
    bin_factor = Field[int](doc="Bin size (pixels).", default=8)
    amp_boundary = Field[int](doc="Pixels ignored at each amplifier edge.", default=20)
    max_fractional_gain_ratio = Field[float](
        doc="An amplifier whose ratio is further than this from 1 is removed from the flat's fit.",
        default=0.05,
    )
    nsig_clip = Field[float](
        doc="Amplifiers this many normal-scaled MADs off are left out of the next field fit (cp_pipe 5).",
        default=5.0,
    )

    def setDefaults(self):
        super().setDefaults()
        # The PTC extraction's ISR (EoPtcExtractConfig.setDefaults).
        self.isr.doParallelOverscan = False


def adjustment_table(
    exp_ids: np.ndarray, mean_adu: np.ndarray, amp_names: Sequence[str], ratios: np.ndarray
) -> Table:
    """cp_pipe's ``ptc_adjustment_summary``: ``exp_id``, ``mean_adu``, ``<amp>_gain_ratio``."""
    table = Table()
    table["exp_id"] = np.asarray(exp_ids, dtype=np.int64)
    table["mean_adu"] = np.asarray(mean_adu, dtype=np.float64)
    table["mean_adu"].unit = "adu"
    ratios = np.asarray(ratios, dtype=np.float64).reshape(len(exp_ids), len(amp_names))
    for k, amp in enumerate(amp_names):
        table[f"{amp}_gain_ratio"] = ratios[:, k]
    return table


class EoPtcAdjustGainRatiosTask(PipelineTask):
    """Rescale the PTC gains of a detector by their ratios measured on flats (cp_pipe)."""

    ConfigClass = EoPtcAdjustGainRatiosConfig
    _DefaultName = "eoPtcAdjustGainRatios"
    config: EoPtcAdjustGainRatiosConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        ptc = butlerQC.get(inputRefs.inputPtc)
        summary = butlerQC.get(inputRefs.inputSummary)
        raws = {int(h.dataId["exposure"]): h for h in butlerQC.get(inputRefs.raws)}
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        detector = get_camera()[outputRefs.ptc.dataId["detector"]]
        butlerQC.put(self.run(ptc, summary, raws, detector, bias=bias), outputRefs)

    def run(
        self,
        ptc: EoPtcDataset,
        summary: Table,
        raws: Mapping[int, Any],
        detector: DetectorInfo,
        bias: Any = None,
    ) -> Struct:
        """Adjust the gains.

        Parameters
        ----------
        ptc : `~lsst.eo.baseline.ptcDataset.EoPtcDataset`
            Unadjusted PTC.
        summary : `astropy.table.Table`
            Unadjusted ``eoPtcSummary``.
        raws : mapping [`int`, handle]
            Raw handles by exposure id (deferred; only the selected flats are read).
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias (if ``isr.doBias``).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``ptc``, ``summary`` and ``adjustment`` (see the module docstring).
        """
        cfg = self.config
        amp_names = list(ptc.ampNames)
        exp_ids, average = self._select(ptc)
        ratios = np.zeros((0, len(amp_names)))
        corrections = np.ones(len(amp_names))
        reference = -1
        if cfg.do_adjust_gain_ratios:
            reference = choose_reference_amp(
                [ptc.gain.get(a, np.nan) for a in amp_names],
                [ptc.noise.get(a, np.nan) for a in amp_names],
                [ptc.ptcTurnoff.get(a, np.nan) for a in amp_names],
                max_noise=cfg.max_noise_reference,
                turnoff_percentile=cfg.turnoff_percentile_reference,
            )
            if reference < 0:
                self.log.warning(
                    "%s: fewer than 2 usable reference amplifiers: gains not adjusted", detector.name
                )
            missing = [e for e in exp_ids if int(e) not in raws]
            if missing:
                self.log.warning(
                    "%s: selected flat(s) %s not among the inputs: skipped", detector.name, missing
                )
                exp_ids = np.array([e for e in exp_ids if int(e) in raws], dtype=exp_ids.dtype)
            if reference >= 0 and len(exp_ids) == 0:
                self.log.warning(
                    "%s: no flat with a mean in (%g, %g) adu: gains not adjusted",
                    detector.name,
                    cfg.min_adu,
                    cfg.max_adu,
                )
        if cfg.do_adjust_gain_ratios and reference >= 0 and len(exp_ids):
            self.log.info("%s: reference amplifier %s", detector.name, amp_names[reference])
            ratios = np.array(
                [self._flat_ratios(raws[int(e)], ptc, detector, reference, bias, int(e)) for e in exp_ids]
            )
            corrections = gain_corrections(ratios)
        else:
            exp_ids = exp_ids[:0]
        out = copy.deepcopy(ptc)
        unadjusted = {a: float(ptc.gainUnadjusted.get(a, np.nan)) for a in amp_names}
        for k, amp in enumerate(amp_names):
            out.set("gain", amp, unadjusted[amp] / corrections[k])
        if len(exp_ids):
            self.log.info(
                "%s: gain corrections %s",
                detector.name,
                ", ".join(f"{a} {c:.4f}" for a, c in zip(amp_names, corrections, strict=True)),
            )
        first = self._first_ids(ptc)
        mean_adu = np.array([average[np.flatnonzero(first == e)[0]] for e in exp_ids])
        table = adjustment_table(exp_ids, mean_adu, amp_names, ratios)
        table.meta.update(
            {
                "DETECTOR": detector.id,
                "DET_NAME": detector.name,
                "fixed_amp_index": int(reference),
                "fixed_amp_name": amp_names[reference] if reference >= 0 else "",
                "median_correction": float(np.median(np.median(ratios, axis=0))) if len(exp_ids) else 1.0,
            }
        )
        return Struct(ptc=out, summary=self._summary(summary, out, corrections), adjustment=table)

    @staticmethod
    def _first_ids(ptc: EoPtcDataset) -> np.ndarray:
        pairs = np.asarray(ptc.inputExpIdPairs.get(ptc.ampNames[0], np.zeros((0, 2))), dtype=np.int64)
        return pairs.reshape(-1, 2)[:, 0]

    def _select(self, ptc: EoPtcDataset) -> tuple[np.ndarray, np.ndarray]:
        """Selected first exposures and every pair's detector-average final mean."""
        cfg = self.config
        first = self._first_ids(ptc)
        rows = []
        for amp in ptc.ampNames:
            if amp in ptc.badAmps:
                continue
            # Align each amplifier's means with the first amplifier's pair order by exposure id
            # (cp_pipe's amplifiers share one order; ours are each sorted by their own mean).
            ids = np.asarray(ptc.inputExpIdPairs.get(amp, np.zeros((0, 2))), dtype=np.int64).reshape(-1, 2)
            values = dict(
                zip(ids[:, 0], np.asarray(ptc.finalMeans.get(amp, []), dtype=np.float64), strict=False)
            )
            rows.append([values.get(int(e), np.nan) for e in first])
        means = np.array(rows, dtype=np.float64).reshape(len(rows), len(first))
        return select_flats(
            first, means, min_adu=cfg.min_adu, max_adu=cfg.max_adu, n_flat=cfg.n_flat, seed=cfg.random_seed
        )

    def _flat_ratios(
        self, handle: Any, ptc: EoPtcDataset, detector: DetectorInfo, reference: int, bias: Any, exp_id: int
    ) -> np.ndarray:
        """Gain ratios of one raw flat."""
        cfg = self.config
        ccd = detector.ccd_type
        raw = handle.get()
        bias_amps = amp_views(bias, detector)
        images = {}
        for layout in ccd.amps:
            amp = raw[layout.name]
            out = np.empty(tuple(layout.raw.data_bbox.shape), dtype=np.float32)
            images[layout.name] = self.isr.image_into(
                amp, out, bias=None if bias_amps is None else bias_amps[layout.name]
            )
        image = assemble_ccd(images, ccd)
        del raw, images
        names = list(ptc.ampNames)
        layouts = [ccd.amp(a) for a in names]
        boxes = [
            (slice(lay.bbox.y.start, lay.bbox.y.stop), slice(lay.bbox.x.start, lay.bbox.x.stop))
            for lay in layouts
        ]
        gains = [float(ptc.gainUnadjusted.get(a, np.nan)) for a in names]
        bad = [a in ptc.badAmps for a in names]
        binned = clip_bins(
            bin_flat(image, boxes, gains, bad, bin_factor=cfg.bin_factor, border=cfg.amp_boundary)
        )
        radius = None
        if cfg.do_remove_radial_gradient:
            fx, fy = pixel_focal_plane_mm(detector, binned.x, binned.y)
            radius = np.hypot(fx, fy)
        self.log.info("%s: fitting gain ratios on exposure %d (%d bins)", detector.name, exp_id, len(binned))
        return flat_gain_ratios(
            binned,
            radius,
            len(names),
            reference,
            ccd.shape,
            n_nodes=cfg.radial_gradient_n_spline_nodes,
            order=cfg.chebyshev_gradient_order,
            max_fractional_ratio=cfg.max_fractional_gain_ratio,
            nsig_clip=cfg.nsig_clip,
            amp_names=names,
        )

    @staticmethod
    def _summary(summary: Table, ptc: EoPtcDataset, corrections: np.ndarray) -> Table:
        """The solver's summary with the adjusted gain (and turnoff in e-) and the correction."""
        out = summary.copy()
        correction = dict(zip(ptc.ampNames, corrections, strict=True))
        amps = [str(a) for a in out["amp"]]
        gain = np.array([ptc.gain.get(a, np.nan) for a in amps], dtype=np.float64)
        unadjusted = np.array([ptc.gainUnadjusted.get(a, np.nan) for a in amps], dtype=np.float64)
        # Flagged rows keep their NaN values.
        finite = np.isfinite(np.asarray(out["ptc_gain_e_per_adu"], dtype=np.float64))
        out["ptc_gain_e_per_adu"] = np.where(finite, gain, np.nan)
        out["ptc_gain_e_per_adu"].unit = "electron/adu"
        out["ptc_gain_unadjusted_e_per_adu"] = np.where(finite, unadjusted, np.nan)
        out["ptc_gain_unadjusted_e_per_adu"].unit = "electron/adu"
        if "ptc_turnoff_e" in out.colnames:
            turnoff = np.asarray(out["ptc_turnoff_adu"], dtype=np.float64)
            out["ptc_turnoff_e"] = turnoff * np.asarray(out["ptc_gain_e_per_adu"], dtype=np.float64)
            out["ptc_turnoff_e"].unit = "electron"
        index = out.colnames.index("ptc_gain_unadjusted_e_per_adu") + 1
        out.add_column(
            np.array([correction.get(a, 1.0) for a in amps]), name="ptc_gain_correction", index=index
        )
        return out
