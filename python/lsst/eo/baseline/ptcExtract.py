"""PTC extraction: one quantum per detector and flat pair, measuring every amplifier.

Flats are matched into pairs at quantum-graph generation (`EoPtcExtractConnections.adjust_all_quanta`,
cp_pipe's approach): the quantum of the first exposure of a pair receives the second exposure's raw
as well, the second exposure's quantum is dropped, and unpaired flats produce nothing (a warning
names each one, e.g. a flat whose partner is missing from the run).  Each pair
quantum runs the ISR (serial overscan, optional bias; adu -- see `EoPtcExtractConfig.setDefaults`) and
`lsst.eo.baseline.covariance.measure_pair` on every amplifier, and writes ``eoPtcPair``: one row per
amplifier with the pair's mean, variance, covariances, per-pair gain, row-means variance, read
noise and EPER.  `lsst.eo.baseline.ptcSolve.EoPtcSolveTask` gathers the pairs of a detector.

Each row also has eo_pipe's row-means quantities (``eo_*`` columns,
`lsst.eo.baseline.flatPairStats.eo_row_means_pair`), measured on eo_pipe's pixels: the whole trimmed
amplifier with only the defects masked (eo_pipe reads cp_pipe's PTC ISR images, whose defects are
BAD; the edge and vignetting masks below exist only inside cp_pipe's extraction).

The pixels measured are cp_pipe's LSSTCam PTC selection: a 20-pixel border of each amplifier is
ignored, only the pixels that the vignetting model selects (`lsst.eo.baseline.ptcRegion`) are used,
and the boxes of the detector's defect lists (``eoBrightDefectsList``, ``eoDarkDefectsList``, when
they exist) are masked; each is a config switch, on by default.

Amplifiers all zero, saturated or dead in either flat, or flagged in the bias, are not measured:
their row is invalid (``valid`` False, ``reason`` names the flags) with NaN statistics and a
non-zero ``flags`` column (`lsst.eo.baseline.ampFlags`).
"""

from __future__ import annotations

__all__ = ["EoPtcExtractConfig", "EoPtcExtractConnections", "EoPtcExtractTask", "pair_table"]

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, ConfigurableField, Field, ListField
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.logging import getLogger

from .ampFlags import (
    FLAGS_COLUMN,
    describe_flagged,
    flag_names,
    metadata_amp_flags,
    nan_median,
    raw_amp_flags,
)
from .ampStream import amp_groups, exposure_id_of, read_amp_group
from .calibCombine import amp_views
from .calibInputs import SwitchedCalibConnections, bias_prerequisite, raw_exposures
from .camera import DetectorInfo, get_camera
from .covariance import PairMeasurement, measure_pair
from .cti import eper
from .defectBoxes import defect_mask
from .flatPairStats import EoRowMeansPair, eo_row_means_pair
from .headerValues import exposure_mjd
from .isr import split_ccd
from .isrTask import EoIsrTask
from .pairing import pair_exposures
from .ptcRegion import VIGNETTE_COEFFS, amp_use_masks

_LOG = getLogger(__name__)


class EoPtcExtractConnections(SwitchedCalibConnections, dimensions=("instrument", "exposure", "detector")):
    """Connections of `EoPtcExtractTask`; quanta are paired in `adjust_all_quanta`."""

    switches = {"bias": "isr.doBias", "brightDefects": "doDefectMask", "darkDefects": "doDefectMask"}

    raws = raw_exposures("The two raw flats of a pair (one per quantum before pairing).")
    bias = bias_prerequisite("Certified combined bias (adu), if isr.doBias.")
    brightDefects = cT.PrerequisiteInput(
        name="eoBrightDefectsList",
        doc="Bright-defect boxes masked in the pair statistics, if present (doDefectMask).",
        storageClass="EoDefects",
        dimensions=("instrument", "detector"),
        minimum=0,
    )
    darkDefects = cT.PrerequisiteInput(
        name="eoDarkDefectsList",
        doc="Dark-defect boxes masked in the pair statistics, if present (doDefectMask).",
        storageClass="EoDefects",
        dimensions=("instrument", "detector"),
        minimum=0,
    )
    pair = cT.Output(
        name="eoPtcPair",
        doc="PTC measurements of one flat pair, one row per amplifier (keyed by the first exposure).",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "exposure", "detector"),
    )

    def adjust_all_quanta(self, adjuster) -> None:
        """Merge the quanta of the two exposures of each flat pair; drop unpaired flats."""
        by_detector: dict[int, list] = defaultdict(list)
        data_ids = {}
        for data_id in adjuster.iter_data_ids():
            expanded = adjuster.expand_quantum_data_id(data_id)
            record = expanded.records["exposure"]
            key = record.exposure_time if self.config.matchExposuresType == "TIME" else 0.0
            by_detector[data_id["detector"]].append((data_id["exposure"], key))
            data_ids[(data_id["detector"], data_id["exposure"])] = data_id
        for detector, exposures in by_detector.items():
            pairs, unpaired = pair_exposures(exposures, mode=self.config.matchExposuresType)
            for first, second in pairs:
                target = data_ids[(detector, first)]
                for raw_id in adjuster.get_inputs(data_ids[(detector, second)])["raws"]:
                    adjuster.add_input(target, "raws", raw_id)
                adjuster.remove_quantum(data_ids[(detector, second)])
            for exposure in unpaired:
                _LOG.warning(
                    "Flat exposure %d of detector %d has no partner (pairing by %s): left out of the PTC",
                    exposure,
                    detector,
                    self.config.matchExposuresType,
                )
                adjuster.remove_quantum(data_ids[(detector, exposure)])


class EoPtcExtractConfig(PipelineTaskConfig, pipelineConnections=EoPtcExtractConnections):
    """Configuration of `EoPtcExtractTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR of each flat (overscan; optional bias).")
    matchExposuresType = ChoiceField[str](
        doc="How flats are paired.",
        allowed={"TIME": "consecutive flats of equal exposure time", "EXPID": "exposures 2k, 2k+1"},
        default="TIME",
    )
    maximumRangeCovariances = Field[int](
        doc="Covariance lags per axis (lags 0 .. n-1; cp_pipe LSSTCam 10).", default=10
    )
    nSigmaClip = Field[float](doc="Clipping threshold of the pair statistics (cp_pipe 5.5).", default=5.5)
    numEdgeSuspect = Field[int](
        doc="Pixels ignored at each amplifier edge (cp_pipe LSSTCam 20, edgeMaskLevel AMP).", default=20
    )
    doVignetteFunctionRegionSelection = Field[bool](
        doc="Use only the pixels cp_pipe's LSSTCam vignetting model selects (lsst.eo.baseline.ptcRegion).",
        default=True,
    )
    vignetteFunctionPolynomialCoeffs = ListField[float](
        doc="Vignetting polynomial of the focal-plane radius (m), highest power first (cp_pipe LSSTCam).",
        default=list(VIGNETTE_COEFFS),
    )
    vignetteFunctionRegionSelectionPercent = Field[float](
        doc="Starting percentage below the amplifier's maximum of the vignetting model.", default=2.0
    )
    vignetteFunctionRegionSelectionMinimumPixels = Field[int](
        doc="Fewest selected pixels per amplifier (the percentage is raised by 1 until reached).",
        default=250000,
    )
    doDefectMask = Field[bool](
        doc="Mask the pixels of the detector's defect lists (eoBrightDefectsList, eoDarkDefectsList) "
        "when they exist (cp_pipe's PTC ISR masks defects as BAD).",
        default=True,
    )
    minNumberGoodPixelsForCovariance = Field[int](doc="Fewest pixels for a valid point.", default=10000)
    eperPixels = Field[int](doc="Overscan columns/rows summed for the per-pair EPER.", default=2)
    ampsPerRead = Field[int](doc="Amplifiers read from both raws at once.", default=8)
    amps = ListField[str](doc="Amplifiers to measure (empty: all).", default=[])

    def setDefaults(self):
        super().setDefaults()
        # Fixed column structure cancels in the pair difference; the parallel-overscan correction
        # would only add the noise of its per-column medians (~4% of the read-noise variance).
        self.isr.doParallelOverscan = False


def pair_table(rows: list[dict[str, Any]], max_lag: int) -> Table:
    """Build the ``eoPtcPair`` table from per-amplifier row dicts (fixes column order and units)."""
    names = [
        "amp",
        "exposure_1",
        "exposure_2",
        "exptime_s",
        "mjd_start",
        "photo_charge",
        "photo_charge_delta",
        "raw_mean_adu",
        "raw_delta_adu",
        "raw_var_adu2",
        "row_mean_variance_adu2",
        "row_mean_n_cols",
        "eo_mean_1_adu",
        "eo_mean_2_adu",
        "eo_row_means_variance_adu2",
        "eo_row_means_variance_all_rows_adu2",
        "eo_row_means_n_cols",
        "covariances_adu2",
        "covariance_sqrt_weights",
        "n_pixels",
        "gain_e_per_adu",
        "noise_adu",
        "overscan_median_adu",
        "serial_eper",
        "parallel_eper",
        "valid",
        "reason",
        FLAGS_COLUMN,
    ]
    if not rows:
        return Table(names=names)
    table = Table({name: [r[name] for r in rows] for name in names})
    units = {
        "exptime_s": "s",
        "raw_mean_adu": "adu",
        "raw_delta_adu": "adu",
        "raw_var_adu2": "adu2",
        "row_mean_variance_adu2": "adu2",
        "eo_mean_1_adu": "adu",
        "eo_mean_2_adu": "adu",
        "eo_row_means_variance_adu2": "adu2",
        "eo_row_means_variance_all_rows_adu2": "adu2",
        "covariances_adu2": "adu2",
        "noise_adu": "adu",
        "overscan_median_adu": "adu",
        "gain_e_per_adu": "electron/adu",
        "mjd_start": "d",
    }
    for name, unit in units.items():
        table[name].unit = unit
    table.meta["MAX_LAG"] = max_lag
    return table


class EoPtcExtractTask(PipelineTask):
    """Measure one flat pair on every amplifier of a detector."""

    ConfigClass = EoPtcExtractConfig
    _DefaultName = "eoPtcExtract"
    config: EoPtcExtractConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        if len(handles) != 2:
            raise NoWorkFound(f"Expected a pair of flats, got {len(handles)} exposure(s)")
        bias = butlerQC.get(inputRefs.bias) if self.config.isr.doBias else None
        detector = get_camera()[outputRefs.pair.dataId["detector"]]
        defects = None
        if self.config.doDefectMask:
            refs = [getattr(inputRefs, n, None) for n in ("brightDefects", "darkDefects")]
            defects = [butlerQC.get(r) for r in refs if r is not None]
        butlerQC.put(self.run(handles, detector, bias=bias, defects=defects), outputRefs)

    def _crosstalk_corrected(
        self, first: Any, second: Any, bias_amps: Any, inherited: dict[str, int]
    ) -> list[dict[str, Any]]:
        """ISR of every amplifier of both flats, then the CCD-level crosstalk correction.

        Flagged amplifiers are not crosstalk sources (ip_isr zeroes their rows and columns of the
        matrix); the gains converting the images to the matrix's electron ratios are the ISR's
        default gains, as cp_pipe's bootstrap PTC uses the gains stored with its crosstalk calib.
        """
        out = []
        for raw in (first, second):
            results = {
                a: self.isr.run_amp(raw[a], bias=None if bias_amps is None else bias_amps[a]) for a in raw
            }
            sources = {
                a: (np.zeros_like(r.image) if inherited.get(a, 0) | raw_amp_flags(raw[a]) else r.image)
                for a, r in results.items()
            }
            images = {a: r.image for a, r in results.items()}
            self.isr.correct_crosstalk(images, raw.detector, self.isr.crosstalk_gains(raw), sources=sources)
            out.append(results)
        return out

    def run(
        self,
        raws: Sequence[Any],
        detector: DetectorInfo,
        bias: Any = None,
        defects: Sequence[Table] | None = None,
    ) -> Struct:
        """Measure a flat pair.

        Parameters
        ----------
        raws : sequence
            Handles of the two raw flats, first exposure first.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        bias : `lsst.images.MaskedImage`, optional
            Combined bias (if ``isr.doBias``).
        defects : sequence of `astropy.table.Table`, optional
            Defect lists (``x0, y0, width, height`` boxes, assembled pixels) masked in the pair
            statistics if ``doDefectMask``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``pair``: `astropy.table.Table`, one row per amplifier.
        """
        cfg = self.config
        excluded, defect_amps = self._excluded_pixels(detector, defects)
        layouts = {a.name: a for a in detector.ccd_type.amps}
        bias_amps = amp_views(bias, detector)
        inherited = metadata_amp_flags(bias.metadata) if bias is not None else {}
        rows: list[dict[str, Any]] = []
        amp_names = [a for a in detector.amp_names if not cfg.amps or a in cfg.amps]
        # Crosstalk correction needs every amplifier of each flat: then one read of the whole CCD.
        groups = [detector.amp_names] if cfg.isr.doCrosstalk else amp_groups(amp_names, cfg.ampsPerRead)
        for read in groups:
            first, second = read_amp_group(raws, read)
            group = [a for a in read if a in amp_names]
            by_ccd = (
                self._crosstalk_corrected(first, second, bias_amps, inherited)
                if cfg.isr.doCrosstalk
                else None
            )
            ids = [exposure_id_of(h, r) for h, r in zip(raws, (first, second), strict=True)]
            exptime = first.exposure_time
            flux = [r.header.get("CCOBFLUX") for r in (first, second)]
            charges = [
                f * r.exposure_time if isinstance(f, (int, float)) else np.nan
                for f, r in zip(flux, (first, second), strict=True)
            ]
            for amp in group:
                bad = inherited.get(amp, 0) | raw_amp_flags(first[amp]) | raw_amp_flags(second[amp])
                if bad:
                    # Not measured: NaN statistics, an invalid pair with the reason, the flags.
                    m = PairMeasurement(reason=f"flagged amplifier ({'|'.join(flag_names(bad))})")
                    isr = []
                    epers = [{"serial_eper": np.nan, "parallel_eper": np.nan}]
                    eo = EoRowMeansPair(np.nan, np.nan, np.nan, np.nan, layouts[amp].bbox.x.size)
                else:
                    isr = (
                        [
                            self.isr.run_amp(r[amp], bias=None if bias_amps is None else bias_amps[amp])
                            for r in (first, second)
                        ]
                        if by_ccd is None
                        else [e[amp] for e in by_ccd]
                    )
                    rn = tuple(i.read_noise_adu for i in isr)
                    m = measure_pair(
                        isr[0].image,
                        isr[1].image,
                        isr[0].mask | isr[1].mask | (False if excluded is None else excluded[amp]),
                        nsig=cfg.nSigmaClip,
                        max_lag=cfg.maximumRangeCovariances,
                        edge=cfg.numEdgeSuspect,
                        min_pixels=cfg.minNumberGoodPixelsForCovariance,
                        read_noise_adu=rn,
                    )
                    epers = [eper(i.corrected, i.layout, cfg.eperPixels) for i in isr]
                    eo = _eo_row_means(isr, None if defect_amps is None else defect_amps[amp])
                rows.append(
                    {
                        "amp": amp,
                        "exposure_1": ids[0],
                        "exposure_2": ids[1],
                        "exptime_s": exptime,
                        "mjd_start": min(exposure_mjd(first.header), exposure_mjd(second.header)),
                        "photo_charge": float(np.mean(charges)),
                        "photo_charge_delta": float(charges[1] - charges[0]),
                        "raw_mean_adu": m.raw_mean,
                        "raw_delta_adu": m.raw_delta,
                        "raw_var_adu2": m.raw_var,
                        "row_mean_variance_adu2": m.row_mean_variance,
                        "row_mean_n_cols": m.row_mean_n_cols,
                        "eo_mean_1_adu": eo.mean_1_adu,
                        "eo_mean_2_adu": eo.mean_2_adu,
                        "eo_row_means_variance_adu2": eo.row_means_variance_adu2,
                        "eo_row_means_variance_all_rows_adu2": eo.row_means_variance_all_rows_adu2,
                        "eo_row_means_n_cols": eo.n_cols,
                        "covariances_adu2": _square(m.covariances, cfg.maximumRangeCovariances),
                        "covariance_sqrt_weights": _square(
                            m.covariance_sqrt_weights, cfg.maximumRangeCovariances
                        ),
                        "n_pixels": m.n_pixels,
                        "gain_e_per_adu": m.gain,
                        "noise_adu": m.noise,
                        "overscan_median_adu": _mean_or_nan([i.serial.median for i in isr if i.serial]),
                        "serial_eper": float(np.mean([e["serial_eper"] for e in epers])),
                        "parallel_eper": float(np.mean([e["parallel_eper"] for e in epers])),
                        "valid": m.valid,
                        "reason": m.reason,
                        "flags": bad,
                    }
                )
        order = {a: i for i, a in enumerate(detector.amp_names)}
        rows.sort(key=lambda r: order[r["amp"]])
        table = pair_table(rows, cfg.maximumRangeCovariances)
        table.meta.update({"DETECTOR": detector.id, "DET_NAME": detector.name})
        n_bad = sum(not r["valid"] for r in rows)
        flagged = {r["amp"]: r["flags"] for r in rows}
        if any(flagged.values()):
            self.log.warning(
                "%s pair %d/%d: flagged amplifier(s) %s not measured",
                detector.name,
                rows[0]["exposure_1"],
                rows[0]["exposure_2"],
                describe_flagged(flagged),
            )
        self.log.info(
            "%s pair %d/%d: mean %.0f adu, %d amp(s) failed",
            detector.name,
            rows[0]["exposure_1"],
            rows[0]["exposure_2"],
            nan_median([r["raw_mean_adu"] for r in rows]),
            n_bad,
        )
        return Struct(pair=table)

    def _excluded_pixels(
        self, detector: DetectorInfo, defects: Sequence[Table] | None
    ) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None]:
        """Pixels left out of the amplifiers' statistics (readout orientation, True = excluded).

        Returns the mask of the PTC statistics (outside the vignetting selection, defects) and
        that of eo_pipe's row means (defects only; None when there is none).
        """
        cfg = self.config
        defect_pixels = None
        if cfg.doDefectMask and defects:
            defect_pixels = defect_mask(defects, detector.ccd_type.shape, label=f"of {detector.name}")
            self.log.info(
                "%s: %d defect pixel(s) masked from %d defect list(s)",
                detector.name,
                int(np.count_nonzero(defect_pixels)),
                len(defects),
            )
        masks, used = amp_use_masks(
            detector,
            vignette=cfg.doVignetteFunctionRegionSelection,
            coeffs=tuple(cfg.vignetteFunctionPolynomialCoeffs),
            percent=cfg.vignetteFunctionRegionSelectionPercent,
            min_pixels=cfg.vignetteFunctionRegionSelectionMinimumPixels,
            defects=defect_pixels,
        )
        raised = {a: p for a, p in used.items() if p > cfg.vignetteFunctionRegionSelectionPercent + 1.0}
        if raised:
            self.log.info(
                "%s: vignetting selection raised to reach %d pixels: %s",
                detector.name,
                cfg.vignetteFunctionRegionSelectionMinimumPixels,
                ", ".join(f"{a} {p:.0f}%" for a, p in raised.items()),
            )
        defect_amps = None if defect_pixels is None else split_ccd(defect_pixels, detector.ccd_type)
        return masks, defect_amps


def _eo_row_means(isr: Sequence[Any], defects: np.ndarray | None) -> EoRowMeansPair:
    """eo_pipe's row-means quantities of one amplifier from the ISR results of a pair.

    The pixels are the whole trimmed amplifier with the defects and the ISR's non-finite pixels
    masked.  The images are in readout orientation; eo_pipe's loop leaves out the amplifier box's
    maxY row in detector orientation, so amplifiers flipped in y are turned over first (the row
    left out is then the first one read out).
    """
    layout = isr[0].layout
    rows = slice(None, None, -1) if layout.flip_y else slice(None)
    bad = [i.mask if defects is None else i.mask | defects for i in isr]
    return eo_row_means_pair(isr[0].image[rows], isr[1].image[rows], bad[0][rows], bad[1][rows])


def _mean_or_nan(values: Sequence[float]) -> float:
    """Mean of a possibly empty list (NaN if empty)."""
    return float(np.mean(values)) if len(values) else np.nan


def _square(values: np.ndarray, side: int) -> np.ndarray:
    """A ``side x side`` array (NaN-filled if the measurement failed before computing it)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (side, side):
        return np.full((side, side), np.nan)
    return arr
