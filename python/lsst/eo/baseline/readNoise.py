"""Read noise per amplifier from bias exposures: serial overscan and imaging area.

* Overscan read noise: cp_pipe's estimator, the 3-sigma clipped standard deviation of the whole
  serial overscan after per-row overscan subtraction (``LSST ISR OVERSCAN RESIDUAL SERIAL STDEV``),
  median over the exposures.
* Imaging-area read noise: clipped standard deviation of the difference of two consecutive raw
  biases, each row's mean removed, divided by sqrt(2).  The difference removes the fixed bias
  structure of the imaging area and the row means remove per-exposure row offsets and drifts,
  leaving the temporal pixel noise.

Amplifiers that are all zero, saturated or dead in any bias get NaN values and a non-zero
``flags`` column (`lsst.eo.baseline.ampFlags`).

Deliberate deviation from cp_pipe: a 3-sigma, 3-pass clipped standard deviation of Gaussian noise
is 1.5% below its sigma; both estimators are divided by that expected factor
(`~lsst.eo.baseline.afwstats.gaussian_clip_factor`), as cp_pipe itself corrects its PTC variances
for clipping.  Values are in adu and, with the gains used, in electrons.
"""

from __future__ import annotations

__all__ = [
    "EoReadNoiseConfig",
    "EoReadNoiseConnections",
    "EoReadNoiseTask",
    "pair_difference_noise",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT

from .afwstats import clipped_stats, gaussian_clip_factor
from .ampFlags import apply_amp_flags, describe_flagged, nan_median, raw_amp_flags
from .ampStream import amp_groups, read_amp_group
from .camera import DetectorInfo, get_camera
from .isr import serial_overscan_noise
from .isrTask import EoIsrTask


def pair_difference_noise(image1: np.ndarray, image2: np.ndarray, nsig: float = 3.0) -> float:
    """Temporal pixel noise of one image from the difference of two exposures.

    ``clipped stdev(D - row means of D) / sqrt(2) / clip factor`` with ``D = image1 - image2``.
    """
    diff = np.asarray(image1, dtype=np.float32) - np.asarray(image2, dtype=np.float32)
    # Row means (cheaper than medians; bias frames have no outliers that matter here) remove
    # per-exposure row offsets and any level difference.
    diff -= diff.mean(axis=1, dtype=np.float64)[:, None].astype(np.float32)
    return clipped_stats(diff, nsig=nsig).stdev / np.sqrt(2.0) / gaussian_clip_factor(nsig, 3)


class EoReadNoiseConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoReadNoiseTask`."""

    raws = cT.Input(
        name="raw",
        doc="Raw bias exposures of one detector.",
        storageClass="EoRawCcd",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
        deferLoad=True,
    )
    readNoise = cT.Output(
        name="eoReadNoise",
        doc="Read noise per amplifier (adu and e-), from the serial overscan and the imaging area.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoReadNoiseConfig(PipelineTaskConfig, pipelineConnections=EoReadNoiseConnections):
    """Configuration of `EoReadNoiseTask`."""

    isr = ConfigurableField(target=EoIsrTask, doc="ISR (overscan only, adu).")
    nSigmaClip = Field[float](doc="Clipping threshold of the imaging-area noise.", default=3.0)
    ampsPerRead = Field[int](doc="Amplifiers read from every input at once.", default=4)
    maxExposures = Field[int](doc="Use at most this many biases (0: all).", default=0)


class EoReadNoiseTask(PipelineTask):
    """Measure the read noise of every amplifier of a detector from its biases."""

    ConfigClass = EoReadNoiseConfig
    _DefaultName = "eoReadNoise"
    config: EoReadNoiseConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("isr")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        handles = sorted(butlerQC.get(inputRefs.raws), key=lambda h: h.dataId["exposure"])
        detector = get_camera()[outputRefs.readNoise.dataId["detector"]]
        butlerQC.put(self.run(handles, detector), outputRefs)

    def run(
        self, raws: Sequence[Any], detector: DetectorInfo, gains: dict[str, float] | None = None
    ) -> Struct:
        """Measure read noise.

        Parameters
        ----------
        raws : sequence
            Handles of raw biases, in acquisition order.
        detector : `~lsst.eo.baseline.camera.DetectorInfo`
            Detector.
        gains : `dict` [`str`, `float`], optional
            Gains (e-/adu); default per ``isr.gainSource``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``readNoise``: `astropy.table.Table`, one row per amplifier.
        """
        if self.config.maxExposures > 0:
            raws = raws[: self.config.maxExposures]
        if not raws:
            raise NoWorkFound(f"No bias for {detector.name}")
        rows = []
        flags: dict[str, int] = {}
        for group in amp_groups(detector.amp_names, self.config.ampsPerRead):
            exposures = read_amp_group(raws, group)
            if gains is None:
                gains = self.isr.default_gains(exposures[0])
            for amp in group:
                bad = 0
                for r in exposures:
                    bad |= raw_amp_flags(r[amp])
                if bad:
                    flags[amp] = bad
                    rows.append((amp, np.nan, np.nan, np.nan, np.nan, np.nan, gains[amp], len(exposures), 0))
                    continue
                cfg = self.config.isr
                # cp_pipe's estimator (clipped at 3 sigma, 3 passes), corrected for the clipping.
                overscan = np.array(
                    [
                        serial_overscan_noise(r[amp].array, r[amp].layout, cfg.serialLeadingToSkip,
                                              cfg.serialTrailingToSkip, cfg.serialMaxDeviation,
                                              cfg.serialNSigmaClip)
                        for r in exposures
                    ]
                ) / gaussian_clip_factor(3.0, 3)  # fmt: skip
                image = np.array(
                    [
                        pair_difference_noise(exposures[i][amp].data, exposures[i + 1][amp].data,
                                              self.config.nSigmaClip)
                        for i in range(0, len(exposures) - 1, 2)
                    ]
                )  # fmt: skip
                g = gains[amp]
                os_med = float(np.median(overscan))
                im_med = float(np.median(image)) if image.size else np.nan
                os_scatter = float(np.std(overscan, ddof=1)) if overscan.size > 1 else np.nan
                rows.append(
                    (amp, os_med, os_med * g, os_scatter, im_med, im_med * g, g, len(exposures), image.size)
                )
        order = {a: i for i, a in enumerate(detector.amp_names)}
        rows.sort(key=lambda r: order[r[0]])
        table = Table(
            rows=rows,
            names=(
                "amp", "read_noise_overscan_adu", "read_noise_overscan_e", "read_noise_overscan_scatter_adu",
                "read_noise_image_adu", "read_noise_image_e", "gain_e_per_adu", "n_exposures", "n_pairs",
            ),
        )  # fmt: skip
        for name in table.colnames:
            if name.endswith("_adu"):
                table[name].unit = "adu"
            elif name.endswith("_e"):
                table[name].unit = "electron"
        table["gain_e_per_adu"].unit = "electron/adu"
        table.meta.update(
            {"DETECTOR": detector.id, "DET_NAME": detector.name, "GAIN_SOURCE": self.config.isr.gainSource}
        )
        apply_amp_flags(table, flags, required=["read_noise_overscan_adu"], skip=["gain_e_per_adu"])
        flagged = dict(zip(table["amp"], table["flags"], strict=True))
        if any(flagged.values()):
            self.log.warning("%s: read noise not measured for flagged amplifier(s) %s", detector.name,
                             describe_flagged(flagged))  # fmt: skip
        self.log.info(
            "%s: median overscan read noise %.2f e- over %d biases",
            detector.name,
            nan_median(table["read_noise_overscan_e"]),
            len(raws),
        )
        return Struct(readNoise=table)
