"""Primary and segment headers of simulated raw files, modelled on real LSSTCam raws.

Every keyword of the real headers in ``shared/reference/headers`` is written, with values derived
from the plan, the truth and the camera geometry.  Constant, installation-specific values (DAQ
versions, firmware...) are copied from the real headers.  ``SIMULATE = True`` marks the file as
simulated (ingest sets ``has_simulated`` from it).
"""

from __future__ import annotations

__all__ = ["primary_header", "segment_header", "segment_headers"]

import datetime
import hashlib
from typing import Any

from ..camera import AmpLayout, CcdType, DetectorInfo
from .plans import ExposureSpec, mjd
from .truth import ExposureTruth

_SEQFILE = {
    "ITL": ("FP_ITL_2s_ir2_v26_no_RG.seq", "1477162166"),
    "E2V": ("FP_E2V_2s_ir2_v26.seq", "1010041586"),
}
_LED_CURRENT_PER_FLUX = {
    "uv": 1.1e-5,
    "blue": 6.0e-6,
    "red": 5.0e-6,
    "nm750": 5.5e-6,
    "nm850": 7.0e-6,
    "nm960": 9.0e-6,
}
"""CCOBCURR (A) per unit nominal flux (e-/s/pixel): plausible LED currents (0.01-0.5 A)."""


def _iso(date: datetime.datetime) -> str:
    return date.isoformat(timespec="milliseconds")


def _hash(*parts: Any, n: int = 8) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:n]


def _ccd_serial(lsst_num: str, vendor: str) -> str:
    h = int(_hash(lsst_num), 16)
    if vendor == "ITL":
        return str(20000 + h % 10000)
    return f"{16000 + h % 100:05d}-{h % 30:02d}-{h % 7:02d}"


def primary_header(
    detector: DetectorInfo,
    exposure: ExposureSpec,
    etruth: ExposureTruth,
    run: str,
    lsst_num: str,
) -> dict[str, Any]:
    """Primary header of one simulated raw file.

    Parameters
    ----------
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        The detector.
    exposure : `~lsst.eo.baseline.simulator.plans.ExposureSpec`
        The exposure.
    etruth : `~lsst.eo.baseline.simulator.truth.ExposureTruth`
        Its detector-independent truth (flux jitter, photodiode, temperatures).
    run : `str`
        RUNNUM.
    lsst_num : `str`
        LSST_NUM of the CCD.

    Returns
    -------
    header : `dict`
        Keyword -> value, in the order of a real header.
    """
    vendor = detector.vendor
    ccd = detector.ccd_type
    beg = exposure.date(0.0)
    end = exposure.date(exposure.darktime)
    trg = exposure.date(max(exposure.darktime - 0.007, 0.0))
    written = exposure.date(exposure.darktime + 0.05)
    seqfile, seqck = _SEQFILE[vendor]
    obsid = exposure.obs_id
    raft_serial = 1 + int(_hash(detector.raft), 16) % 25
    light = exposure.has_light
    ccob: dict[str, Any]
    if light:
        led = exposure.led
        assert led is not None
        proj = exposure.darktime - 0.11
        ccob = {
            "TEMPLED1": etruth.temp_led1,
            "TEMPLED2": etruth.temp_led2,
            "TEMPBRD": etruth.temp_board,
            "CCOBLED": led,
            "CCOBCURR": round(exposure.flux * _LED_CURRENT_PER_FLUX[led], 4),
            "CCOBADC": round(etruth.ccobflux / 8573.0, 4) if etruth.ccobflux else None,
            "CCOBFLST": round(exposure.exptime * 0.9447, 4),
            "PROJTIME": round(proj, 4),
            "CCOBFLUX": etruth.ccobflux,
            "DATEPBEG": _iso(exposure.date(0.074)),
            "MJDPBEG": mjd(exposure.date(0.074)),
            "DATEPEND": _iso(exposure.date(exposure.darktime - 0.039)),
            "MJDPEND": mjd(exposure.date(exposure.darktime - 0.039)),
        }
    else:
        ccob = {
            k: None
            for k in (
                "TEMPLED1", "TEMPLED2", "TEMPBRD", "CCOBLED", "CCOBCURR", "CCOBADC", "CCOBFLST",
                "PROJTIME", "CCOBFLUX", "DATEPBEG", "MJDPBEG", "DATEPEND", "MJDPEND",
            )
        }  # fmt: skip
    header: dict[str, Any] = {
        "DATE": _iso(written),
        "MJD": mjd(written),
        "RUNNUM": str(run),
        "CCD_MANU": vendor,
        "CCD_TYPE": ccd.model,
        "TESTTYPE": exposure.testtype,
        "IMGTYPE": exposure.imgtype,
        "DETSIZE": ccd.detsize(),
        "EXPTIME": float(exposure.exptime),
        "FILENAME": f"{obsid}_{detector.name}.fits",
        "BINX": 1,
        "BINY": 1,
        "CCDGAIN": 1.0,
        "CCDNOISE": 10.0,
        "DATE-OBS": _iso(beg),
        "MJD-OBS": mjd(beg),
        "DATE-TRG": _iso(trg),
        "MJD-TRG": mjd(trg),
        "IMAGETAG": _hash(obsid, n=16),
        "CCDSLOT": detector.slot,
        "RAFTBAY": detector.raft,
        "FIRMWARE": "3139500e",
        "PLATFORM": "ir2-camera",
        "CONTNUM": _hash(detector.raft, "REB", n=8),
        "DAQVERS": "R5-V6.9 2023-09-11T17:05:01Z (9eb7c3ed)",
        "DAQPART": "camera",
        "DAQFOLD": "raw",
        "OBSANNOT": "",
        "OBSID": obsid,
        "CAMCODE": "MC",
        "CONTRLLR": "C",
        "DAYOBS": str(exposure.day_obs),
        "SEQNUM": exposure.seq_num,
        "HEADVER": 2,
        "INSTRUME": "lsstCam",
        "TELESCOP": "LSST",
        "TSTAND": "BOT",
        "SEQFILE": seqfile,
        "SEQCKSUM": seqck,
        "LSST_NUM": lsst_num,
        "CCD_SERN": _ccd_serial(lsst_num, vendor),
        "REBNAME": f"LCA-13574-{1 + int(_hash(detector.name), 16) % 200:03d}",
        "RAFTNAME": f"LCA-11021_RTM-{raft_serial:03d}",
        "DARKTIME": float(exposure.darktime),
        "TSEQNUM": exposure.tseqnum,
        "FPVERS": "1.2.5",
        "IHVERS": "1.1.5",
        "DATE-BEG": _iso(beg),
        "MJD-BEG": mjd(beg),
        "DATE-END": _iso(end),
        "MJD-END": mjd(end),
        "TIMESYS": "TAI",
        "FILTER": exposure.filter,
        "FILTER1": None,
        "FILTER2": None,
        **ccob,
        "SIMULATE": True,
    }
    return header


def segment_header(layout: AmpLayout, ccd: CcdType) -> dict[str, Any]:
    """Header of one amplifier HDU (EXTNAME, CHANNEL, DATASEC, DETSEC, DTV/DTM...).

    DETSEC and DTV/DTM are written as the real camera writes them, in its own header layout (the
    vertical mirror of cameraGeom, obs_lsst DM-36115), not from the placement our assembly uses:
    ``x = DTM1_1 * x_raw + DTV1``, ``y = DTM2_2 * y_raw + DTV2`` (1-based) map DATASEC onto DETSEC.
    """
    dtv1, dtv2, dtm1, dtm2 = layout.raw_header_dtv_dtm()
    return {
        "EXTNAME": layout.extname,
        "CHANNEL": layout.hdu,
        "CCDSUM": "1 1",
        "DATASEC": layout.datasec(),
        "DETSEC": layout.raw_header_detsec(),
        "DETSIZE": ccd.detsize(),
        "DTV1": dtv1,
        "DTV2": dtv2,
        "DTM1_1": dtm1,
        "DTM2_2": dtm2,
        "DTM1_2": 0.0,
        "DTM2_1": 0.0,
    }


def segment_headers(ccd: CcdType) -> list[dict[str, Any]]:
    """Segment headers of all amplifiers of a CCD type, in HDU order."""
    return [segment_header(a, ccd) for a in ccd.amps]
