"""Housekeeping HDUs of simulated raw files (``REB_COND``, ``CONFIG_COND``), as the camera writes them.

The camera control system appends to every raw file, after the 16 segments, header-only binary
tables (no column, no row) whose keywords record the state of the REB at readout: board, ASPIC,
CCD and RTD temperatures, power-supply voltages and currents, clock rails and bias voltages
(``REB_COND``), and the checksums of the focal-plane configuration categories (``CONFIG_COND``).
The keyword names, order, comments and nominal values are those of a real LSSTCam raw file
(``MC_C_20211212_000310_R22_S22``, public test data of lsst/obs_lsst,
``tests/data/input/lsstCam/raw/``); only the temperatures change with time.

Temperatures drift slowly and smoothly over a run: a sinusoid of `DRIFT_PERIOD_HOURS` with a phase
drawn from ``(seed, RUNNUM, raft)`` (the REB temperature control is per raft) plus a constant
offset per CCD, so they are deterministic per seed, the same for every detector of a raft up to the
offset, and independent of the order in which files are written.  They are metadata only: the
pixel truth does not depend on them.
"""

from __future__ import annotations

__all__ = [
    "CCD_TEMP_AMPLITUDE_C",
    "CCD_TEMP_NOMINAL_C",
    "DRIFT_PERIOD_HOURS",
    "HOUSEKEEPING_COMMENTS",
    "housekeeping_hdus",
    "simulated_temperatures",
]

import hashlib
import math
from typing import Any

CCD_TEMP_NOMINAL_C = -100.0
"""Set point of the CCD temperature control (C); the real file reads -99.98."""
CCD_TEMP_AMPLITUDE_C = 0.1
"""Half peak-to-peak of the simulated CCD temperature drift (C)."""
_CCD_OFFSET_C = 0.2
"""Largest constant offset of one CCD from the set point (C)."""
_REB_AMPLITUDE_C = 0.6
"""Half peak-to-peak of the REB board and ASPIC temperature drift (C): the boards follow the
electronics' power and the cryostat less tightly than the CCDs."""
_RTD_BELOW_CCD_C = 5.8
"""RTD reading below the CCD temperature (C), as in the real file (-105.80 vs -99.98)."""
DRIFT_PERIOD_HOURS = 10.0
"""Period of the simulated drift (h): slow against an EO sequence (minutes to an hour)."""

# (keyword, nominal value, comment) of REB_COND, in the real file's order.
_REB_COND: tuple[tuple[str, Any, str], ...] = (
    ("TEMP1", 9.875, "REB Board temperature 1"),
    ("TEMP2", 9.875, "REB Board temperature 2"),
    ("TEMP3", -4.3125, "REB Board temperature 3"),
    ("TEMP4", -0.4375, "REB Board temperature 4"),
    ("TEMP5", -1.5625, "REB Board temperature 5"),
    ("TEMP6", -0.5, "REB Board temperature 6"),
    ("TEMP7", -3.25, "REB Board temperature 7"),
    ("TEMP8", -0.1875, "REB Board temperature 8"),
    ("TEMP9", -1.5625, "REB Board temperature 9"),
    ("TEMP10", -0.25, "REB Board temperature 10"),
    ("ATEMPU", -11.5186, "ASPIC 0 upper temperature"),
    ("ATEMPL", -8.90276, "ASPIC 0 lower temperature"),
    ("CCDTEMP", CCD_TEMP_NOMINAL_C, "CCD temperature"),
    ("RTDTEMP", CCD_TEMP_NOMINAL_C - _RTD_BELOW_CCD_C, "RTD temperature"),
    ("DIGPS_V", 5.425, "REB Digital PS voltage"),
    ("DIGPS_I", 656.25, "REB Digital PS current"),
    ("ANAPS_V", 7.825, "REB Analog PS voltage"),
    ("ANAPS_I", 636.0, "REB Analog PS current"),
    ("CLKHPS_V", 15.325, "REB CLK_H PS voltage"),
    ("CLKHPS_I", 144.833, "REB CLK_H PS current"),
    ("CLKLPS_V", 13.575, "REB CLK_L PS voltage"),
    ("CLKLPS_I", 84.625, "REB CLK_L PS current"),
    ("ODPS_V", 38.675, "REB OD PS voltage"),
    ("ODPS_I", 73.0833, "REB OD PS current"),
    ("HTRPS_V", 2.99087, "REB Heater PS voltage"),
    ("HTRPS_W", 0.592162, "REB Heater PS power"),
    ("PCKU_V", 3.28938, "REB clock rails PCK_U Voltage"),
    ("PCKL_V", -6.0, "REB clock rails PCK_L Voltage"),
    ("SCKU_V", 3.90476, "REB clock rails SCK_U Voltage"),
    ("SCKL_V", -5.39927, "REB clock rails SCK_L Voltage"),
    ("RGU_V", 6.09524, "REB clock rails RG_U Voltage"),
    ("RGL_V", -4.0, "REB clock rails RG_L Voltage"),
    ("ODV", 23.3968, "REB bias OD voltage"),
    ("OGV", -3.42125, "REB bias OG voltage"),
    ("RDV", 11.6044, "REB bias RD voltage"),
    ("GDV", 26.0024, "REB bias GD voltage"),
    ("GDP", 26.0, "REB config bias GD (requested)"),
    ("RDP", 11.6, "REB config bias RD (requested)"),
    ("OGP", -3.4, "REB config bias OG (requested)"),
    ("ODP", 23.4, "REB config bias OD (requested)"),
    ("CSGATEP", 1.0, "REB config bias CS gate (requested)"),
    ("SCK_LOWP", -5.4, "REB DAC SCLK Low (requested)"),
    ("SCK_HIP", 3.9, "REB DAC SCLK High (requested)"),
    ("PCK_LOWP", -6.0, "REB DAC PCLK Low (requested)"),
    ("PCK_HIP", 3.3, "REB DAC PCLK High (requested)"),
    ("RG_LOWP", -4.0, "REB DAC RG Low (requested)"),
    ("RG_HIP", 6.1, "REB DAC RG High (requested)"),
    ("AP0_RC", 14, "CCD ASPIC 0 RC"),
    ("AP1_RC", 14, "CCD ASPIC 1 RC"),
    ("AP0_GAIN", 0, "CCD ASPIC 0 gain"),
    ("AP1_GAIN", 0, "CCD ASPIC 1 gain"),
    ("AP0_CLMP", 0, "CCD ASPIC 0 clamp"),
    ("AP1_CLMP", 0, "CCD ASPIC 1 clamp"),
    ("AP0_AF1", 0, "CCD ASPIC 0 af1"),
    ("AP1_AF1", 0, "CCD ASPIC 1 af1"),
    ("AP0_TM", 0, "CCD ASPIC 0 Transparent Mode"),
    ("AP1_TM", 0, "CCD ASPIC 1 Transparent Mode"),
    ("HVBIAS", "ON", "REB HVBias Switch state"),
    ("IDLEFLSH", 0, "IDLE FLUSH setting"),
    ("POWER", 17.7593, "Total REB PS power"),
    ("DIGVB", 6.3, "REB PS Digi Voltage before LDO"),
    ("DIGIB", 677.67, "REB PS Digi Current before LDO"),
    ("DIGVA", 6.02976, "REB PS Digi Voltage after LDO"),
    ("DIGIA", 604.368, "REB PS Digi Current after LDO"),
    ("DIGVS", 5.99935, "REB PS Digi Voltage after Switch"),
    ("ANAVB", 8.975, "REB PS Ana Voltage before LDO"),
    ("ANAIB", 628.86, "REB PS Ana Current before LDO"),
    ("ANAVA", 8.26848, "REB PS Ana Voltage after LDO"),
    ("ANAIA", 621.24, "REB PS Ana  Current after LDO"),
    ("ANAIS", 8.3387, "REB PS Ana Voltage after Switch"),
    ("ODVB", 40.5, "REB PS OD Voltage before LDO"),
    ("ODIB", 78.3014, "REB PS OD Current before LDO"),
    ("ODVA", 38.8722, "REB PS OD Voltage after LDO"),
    ("ODVA2", 38.875, "REB PS OD Voltage after LDO2"),
    ("ODIA", 75.1936, "REB PS OD Current after LDO"),
    ("ODVS", 38.3366, "REB PS OD Voltage after Switch"),
    ("CKHVB", 16.225, "REB PS Clk HI Voltage before LDO"),
    ("CKHIB", 136.512, "REB PS Clk HI Current before LDO"),
    ("CKHVA", 15.3991, "REB PS Clk HI Voltage after LDO"),
    ("CKHIA", 137.942, "REB PS Clk HI Current after LDO"),
    ("CKHVS", 15.402, "REB PS Clk HI Voltage after Switch"),
    ("CKLVB", 14.375, "REB PS Clk LO Voltage before LDO"),
    ("CKLIB", 93.0732, "REB PS Clk LO Current before LDO"),
    ("CKLVA", 0.72864, "REB PS Clk LO Voltage after LDO"),
    ("CKLV2", 13.6714, "REB PS Clk LO Voltage after LDO2"),
    ("CKLIA", 91.9194, "REB PS Clk LO Current after LDO"),
    ("CKLVS", 13.9234, "REB PS Clk LO Voltage after Switch"),
    ("HTRVB", 12.325, "REB PS Clk Heater Voltage before LDO"),
    ("HTRIB", 175.064, "REB PS Clk Heater Current before LDO"),
    ("HTRVA", 11.7524, "REB PS Clk Heater Voltage after LDO"),
    ("HTRIA", 390.698, "REB PS Clk Heater Current after LDO"),
    ("HTRVAS", 11.7, "REB PS Clk Heater Voltage after Switch"),
    ("BSSVBS", 50.0, "REB PS HV Bias Voltage before Switch"),
    ("BSSIBS", 0.077559, "REB PS HV Bias Current before Switch"),
)
# Configuration categories whose checksums CONFIG_COND records (the values are hashes of the run).
_CONFIG_COND: tuple[tuple[str, str], ...] = (
    ("FPDAQCS", "Focal Plane checksum for DAQ configuration category"),
    ("FPHIDCS", "Focal Plane checksum for HardwareId configuration categ"),
    ("FPINSCS", "Focal Plane checksum for Instrument configuration catego"),
    ("FPLIMCS", "Focal Plane checksum for Limits configuration category"),
    ("FPRTCCS", "Focal Plane checksum for RaftTempControl configuration"),
    ("FPRTCSCS", "Focal Plane checksum for RaftTempControlStatus configura"),
    ("FPRCS", "Focal Plane checksum for Rafts configuration category"),
    ("FPRLCS", "Focal Plane checksum for RaftsLimits configuration categ"),
    ("FPRPCS", "Focal Plane checksum for RaftsRaftsPowerLimits configura"),
    ("FPSEQCS", "Focal Plane checksum for Sequencer configuration catego"),
    ("FPTIMCS", "Focal Plane checksum for timers configuration category"),
    ("RPLIMCS", "REB Power checksum for Limits configuration category"),
    ("RPPOWCS", "REB Power checksum for Power configuration category"),
    ("RPTIMCS", "REB Power checksum for timers configuration category"),
)
_REB_TEMPS = frozenset({f"TEMP{i}" for i in range(1, 11)} | {"ATEMPU", "ATEMPL"})

HOUSEKEEPING_COMMENTS: dict[str, str] = {k: c for k, _, c in _REB_COND} | dict(_CONFIG_COND)
"""Keyword -> comment of the housekeeping keywords (for `lsst.eo.baseline.rawio.write_raw`)."""


def _unit(*parts: Any) -> float:
    """A number in [0, 1) fixed by ``parts`` (a hash: no random state to carry between processes)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def simulated_temperatures(mjd: float, detector: str, raft: str, run: str, seed: int) -> dict[str, float]:
    """Simulated CCD, RTD and REB temperatures (C) at a time.

    Parameters
    ----------
    mjd : `float`
        Time (MJD, TAI), e.g. MJD-BEG of the exposure.
    detector : `str`
        Detector name (``R22_S11``): sets the CCD's constant offset.
    raft : `str`
        Raft (``R22``): the drift phase is per raft.
    run : `str`
        RUNNUM.
    seed : `int`
        Simulation seed.

    Returns
    -------
    temperatures : `dict` [`str`, `float`]
        ``CCDTEMP``, ``RTDTEMP``, ``TEMP1`` ... ``TEMP10``, ``ATEMPU``, ``ATEMPL``.
    """
    phase = 2.0 * math.pi * _unit(seed, run, raft, "phase")
    drift = math.sin(2.0 * math.pi * mjd * 24.0 / DRIFT_PERIOD_HOURS + phase)
    ccd = CCD_TEMP_NOMINAL_C + _CCD_OFFSET_C * (2.0 * _unit(seed, detector, "offset") - 1.0)
    ccd += CCD_TEMP_AMPLITUDE_C * drift
    out = {"CCDTEMP": round(ccd, 4), "RTDTEMP": round(ccd - _RTD_BELOW_CCD_C, 4)}
    for key, nominal, _ in _REB_COND:
        if key in _REB_TEMPS:
            out[key] = round(nominal + _REB_AMPLITUDE_C * drift, 4)
    return out


def housekeeping_hdus(
    mjd: float, detector: str, raft: str, run: str, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """The housekeeping HDUs of one simulated raw file, in the camera's order.

    Parameters
    ----------
    mjd, detector, raft, run, seed
        As for `simulated_temperatures`.

    Returns
    -------
    hdus : `list` [(`str`, `dict`)]
        ``("REB_COND", keywords)`` and ``("CONFIG_COND", keywords)``.
    """
    temps = simulated_temperatures(mjd, detector, raft, run, seed)
    reb = {key: temps.get(key, nominal) for key, nominal, _ in _REB_COND}
    config = {key: str(int(_unit(run, key) * 2**32)) for key, _ in _CONFIG_COND}
    return [("REB_COND", reb), ("CONFIG_COND", config)]
