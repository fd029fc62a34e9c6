"""The gains (e-/adu) every value in electrons is converted with: the run's PTC gains.

As in cp_pipe's LSSTCam calibration chain and in eo_pipe, a quantity in electrons is a quantity in
adu times the gain the run's own photon transfer curve measured (``eoPtc``, ``ptc.gain[amp]``).
The camera-model gains (``data/lsstcam_amps.csv``, `lsst.eo.baseline.camera.nominal_amps`) are
used only for an amplifier without a usable PTC gain: no ``eoPtc`` for the detector (a run without
flat pairs), or a gain that is not finite and positive (a failed or too short PTC fit, e.g. the
NaN FULLCOVARIANCE gain of a PTC with too few pairs).  Each amplifier's choice is recorded: tables
in electrons carry ``gain_e_per_adu`` and ``gain_source`` (`GAIN_SOURCE_PTC` or
`GAIN_SOURCE_CAMERA`) columns, and the run report lists the amplifiers that fell back.

The one deliberate exception is eo_pipe's bright-defect count, whose threshold is defined with the
camera-model gains (`lsst.eo.baseline.defects`).
"""

from __future__ import annotations

__all__ = [
    "GAIN_SOURCE_CAMERA",
    "GAIN_SOURCE_PTC",
    "RunGains",
    "camera_gain_amplifiers",
    "choose_gains",
    "quantum_gains",
    "run_gains",
]

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from .camera import DetectorInfo, nominal_amps
from .ptcDataset import EoPtcDataset

GAIN_SOURCE_PTC = "PTC"
"""The gain is the run's PTC gain (``eoPtc``)."""
GAIN_SOURCE_CAMERA = "CAMERA"
"""No usable PTC gain: the camera-model gain (``data/lsstcam_amps.csv``)."""


def _usable(value: object) -> bool:
    try:
        g = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(g) and g > 0)


def choose_gains(
    amp_names: Iterable[str], ptc_gains: Mapping[str, float] | None, camera_gains: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """Per amplifier, the PTC gain if finite and positive, else the camera-model gain.

    Parameters
    ----------
    amp_names : iterable of `str`
        Amplifiers of the detector.
    ptc_gains : mapping [`str`, `float`] or `None`
        PTC gains (e-/adu); `None` when the run has no PTC for the detector.
    camera_gains : mapping [`str`, `float`]
        Camera-model gains (e-/adu).

    Returns
    -------
    gains : `dict` [`str`, `float`]
        Gain of every amplifier (e-/adu).
    sources : `dict` [`str`, `str`]
        `GAIN_SOURCE_PTC` or `GAIN_SOURCE_CAMERA` per amplifier.
    """
    gains: dict[str, float] = {}
    sources: dict[str, str] = {}
    for amp in amp_names:
        value = None if ptc_gains is None else ptc_gains.get(amp)
        if _usable(value):
            gains[amp], sources[amp] = float(value), GAIN_SOURCE_PTC  # type: ignore[arg-type]
        else:
            gains[amp], sources[amp] = float(camera_gains[amp]), GAIN_SOURCE_CAMERA
    return gains, sources


@dataclass(frozen=True)
class RunGains:
    """Gains of the amplifiers of one detector and where each comes from.

    Attributes
    ----------
    gains : `dict` [`str`, `float`]
        Gain per amplifier (e-/adu).
    sources : `dict` [`str`, `str`]
        `GAIN_SOURCE_PTC` or `GAIN_SOURCE_CAMERA` per amplifier.
    ptc_found : `bool`
        Whether the run had a PTC for the detector (False: every gain is a camera-model gain
        because there is no ``eoPtc``, not because its gains are unusable).
    """

    gains: dict[str, float]
    sources: dict[str, str]
    ptc_found: bool = False

    @property
    def camera_amps(self) -> list[str]:
        """Amplifiers without a usable PTC gain (camera-model gain used)."""
        return [a for a, s in self.sources.items() if s == GAIN_SOURCE_CAMERA]

    @property
    def summary(self) -> str:
        """One word for table metadata: ``PTC``, ``CAMERA`` or ``PTC+CAMERA`` (mixed)."""
        kinds = set(self.sources.values())
        if kinds == {GAIN_SOURCE_PTC}:
            return GAIN_SOURCE_PTC
        if kinds == {GAIN_SOURCE_CAMERA}:
            return GAIN_SOURCE_CAMERA
        return f"{GAIN_SOURCE_PTC}+{GAIN_SOURCE_CAMERA}"

    @property
    def metadata(self) -> dict[str, object]:
        """Table metadata: ``GAIN_SOURCE`` (`summary`) and ``PTC_FOUND`` (`ptc_found`)."""
        return {"GAIN_SOURCE": self.summary, "PTC_FOUND": self.ptc_found}

    def add_columns(self, table: Table) -> Table:
        """Add (or overwrite) ``gain_e_per_adu`` and ``gain_source`` by the table's ``amp`` column.

        Also sets the `metadata`.  Returns the table (modified in place).
        """
        amps = [str(a) for a in table["amp"]]
        table["gain_e_per_adu"] = np.array([self.gains[a] for a in amps], dtype=np.float64)
        table["gain_e_per_adu"].unit = "electron/adu"
        table["gain_source"] = np.array([self.sources[a] for a in amps], dtype="U6")
        table.meta.update(self.metadata)
        return table


def run_gains(detector: DetectorInfo, ptc: EoPtcDataset | None = None) -> RunGains:
    """The gains of a detector's amplifiers: the run's PTC gains, camera-model gains as fallback.

    Parameters
    ----------
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector.
    ptc : `~lsst.eo.baseline.ptcDataset.EoPtcDataset`, optional
        The run's certified ``eoPtc`` of the detector; `None` if there is none.

    Returns
    -------
    gains : `RunGains`
    """
    camera = {a: v.gain for a, v in nominal_amps(detector.name).items()}
    gains, sources = choose_gains(detector.amp_names, None if ptc is None else dict(ptc.gain), camera)
    return RunGains(gains=gains, sources=sources, ptc_found=ptc is not None)


def quantum_gains(butlerQC, inputRefs, detector: DetectorInfo, connection: str = "ptc") -> RunGains:
    """`run_gains` of a quantum whose optional ``eoPtc`` prerequisite is ``connection``.

    The prerequisite (`lsst.eo.baseline.calibInputs.ptc_prerequisite`) has ``minimum=0``: with no
    certified PTC for the detector its reference is absent and the camera-model gains are used.
    """
    ref = getattr(inputRefs, connection, None)
    if isinstance(ref, list | tuple):
        ref = ref[0] if ref else None
    ptc = butlerQC.get(ref) if ref is not None else None
    return run_gains(detector, ptc)


def camera_gain_amplifiers(summary: Table) -> list[dict[str, object]]:
    """Amplifiers of a run summary whose values in electrons use camera-model gains.

    Parameters
    ----------
    summary : `astropy.table.Table`
        Run summary (`lsst.eo.baseline.runSummary.build_run_summary`), with its
        ``camera_gain_sources`` column (absent in summaries written before it: nothing is listed).

    Returns
    -------
    groups : `list` [`dict`]
        Per detector and set of tables: ``det_name``, ``amps`` (list) and ``sources`` (the tables).
    """
    if "camera_gain_sources" not in summary.colnames or not len(summary):
        return []
    groups: dict[tuple[str, str], list[str]] = {}
    for row in summary:
        sources = str(row["camera_gain_sources"])
        if sources:
            groups.setdefault((str(row["det_name"]), sources), []).append(str(row["amp"]))
    return [{"det_name": det, "amps": amps, "sources": sources} for (det, sources), amps in groups.items()]
