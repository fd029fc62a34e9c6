"""Translation of LSSTCam raw primary headers into butler ``exposure`` dimension records.

The rules follow obs_lsst so that exposure ids and names match those of the Rubin data:

* exposure id = DAYOBS * 100000 + SEQNUM;
* ``obs_id`` and ``group`` = OBSID;
* ``observation_type`` = IMGTYPE lower-cased (the dimension schema allows 16 characters);
* ``observation_reason`` = TESTTYPE lower-cased;
* ``science_program`` = RUNNUM (the EO test run number);
* ``physical_filter`` = FILTER;
* ``exposure_time``/``dark_time`` = EXPTIME/DARKTIME; ``timespan`` = [DATE-BEG, DATE-END] in TAI.

Keywords that real files are known to lack get documented defaults, and each default applied is
reported as a warning (see `HEADER_DEFAULTS`).  Everything the exposure schema has no room for
(CCOBLED, CCOBFLUX, ...) is kept in `exposure_metadata`, which ingest stores as the per-exposure
``eoExposureInfo`` dataset.
"""

from __future__ import annotations

__all__ = [
    "EXPOSURE_METADATA_KEYS",
    "HEADER_DEFAULTS",
    "MAX_OBSERVATION_TYPE",
    "HeaderError",
    "HeaderTranslation",
    "exposure_id",
    "translate_header",
]

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import astropy.time
from lsst.daf.butler import Timespan

MAX_OBSERVATION_TYPE = 16
"""Length limit of ``exposure.observation_type`` in the default dimension universe."""

HEADER_DEFAULTS: dict[str, Any] = {
    "TESTTYPE": "unknown",
    "RUNNUM": "unknown",
    "FILTER": "UNKNOWN",
}
"""Values used when an optional keyword is missing or null (each use is reported)."""

EXPOSURE_METADATA_KEYS = (
    "OBSID", "DAYOBS", "SEQNUM", "IMGTYPE", "TESTTYPE", "RUNNUM", "FILTER", "FILTER1", "FILTER2",
    "EXPTIME", "DARKTIME", "DATE-BEG", "DATE-END", "MJD-BEG", "MJD-END", "DATE-TRG", "MJD-TRG",
    "CCOBLED", "CCOBFLUX", "CCOBCURR", "CCOBADC", "CCOBFLST", "PROJTIME", "TEMPLED1", "TEMPLED2",
    "TEMPBRD", "TSEQNUM", "SEQFILE", "SEQCKSUM", "HEADVER", "TSTAND", "INSTRUME",
)  # fmt: skip
"""Primary-header keywords copied into the per-exposure metadata dataset."""

_REQUIRED = ("OBSID", "DAYOBS", "SEQNUM", "IMGTYPE", "EXPTIME")


@dataclass
class HeaderTranslation:
    """Result of translating one raw primary header.

    Attributes
    ----------
    record : `dict`
        Fields of the ``exposure`` dimension record (``instrument`` included).
    metadata : `dict`
        Per-exposure keywords kept beside the record (JSON/YAML-serialisable values).
    warnings : `list` [`str`]
        Defaults applied or values adjusted, one sentence each.
    """

    record: dict[str, Any]
    metadata: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class HeaderError(ValueError):
    """A raw header that cannot be translated (missing or malformed required keyword)."""


def exposure_id(day_obs: int, seq_num: int) -> int:
    """obs_lsst exposure id: ``DAYOBS * 100000 + SEQNUM``."""
    return int(day_obs) * 100000 + int(seq_num)


def _is_null(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _as_int(header: Mapping[str, Any], key: str) -> int:
    value = header[key]
    try:
        return int(str(value).strip())
    except ValueError:
        raise HeaderError(f"{key} = {value!r} is not an integer") from None


def _as_float(header: Mapping[str, Any], key: str) -> float:
    value = header[key]
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise HeaderError(f"{key} = {value!r} is not a number") from None
    if not math.isfinite(result) or result < 0:
        raise HeaderError(f"{key} = {value!r} is not a finite non-negative number")
    return result


def _as_time(header: Mapping[str, Any], key: str) -> astropy.time.Time:
    value = header[key]
    try:
        return astropy.time.Time(str(value).strip(), format="isot", scale="tai")
    except ValueError:
        raise HeaderError(f"{key} = {value!r} is not an ISO-8601 date") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def translate_header(header: Mapping[str, Any], instrument: str = "LSSTCam") -> HeaderTranslation:
    """Translate a raw primary header into an ``exposure`` record.

    Parameters
    ----------
    header : mapping
        Primary header of a raw file.
    instrument : `str`, optional
        Instrument name for the record.

    Returns
    -------
    translation : `HeaderTranslation`
        Record, metadata and any warnings.

    Raises
    ------
    HeaderError
        If a required keyword (OBSID, DAYOBS, SEQNUM, IMGTYPE, EXPTIME, and DATE-BEG or DATE-OBS) is
        missing or malformed.
    """
    missing = [k for k in _REQUIRED if _is_null(header.get(k))]
    if _is_null(header.get("DATE-BEG")) and _is_null(header.get("DATE-OBS")):
        missing.append("DATE-BEG")
    if missing:
        raise HeaderError(f"missing required header keyword(s): {', '.join(missing)}")
    warnings: list[str] = []

    day_obs = _as_int(header, "DAYOBS")
    seq_num = _as_int(header, "SEQNUM")
    if not 19000101 <= day_obs <= 29991231:
        raise HeaderError(f"DAYOBS = {header['DAYOBS']!r} is not a YYYYMMDD date")
    obs_id = str(header["OBSID"]).strip()
    exposure_time = _as_float(header, "EXPTIME")
    if _is_null(header.get("DARKTIME")):
        dark_time = exposure_time
        warnings.append("DARKTIME missing: using EXPTIME")
    else:
        dark_time = _as_float(header, "DARKTIME")

    begin_key = "DATE-BEG" if not _is_null(header.get("DATE-BEG")) else "DATE-OBS"
    if begin_key != "DATE-BEG":
        warnings.append("DATE-BEG missing: using DATE-OBS")
    begin = _as_time(header, begin_key)
    if _is_null(header.get("DATE-END")):
        end = begin + astropy.time.TimeDelta(dark_time, format="sec")
        warnings.append("DATE-END missing: using the start time plus DARKTIME")
    else:
        end = _as_time(header, "DATE-END")
    if end < begin:
        raise HeaderError(f"DATE-END {header.get('DATE-END')!r} is before {begin_key} {header[begin_key]!r}")

    def optional(key: str) -> str:
        value = header.get(key)
        if _is_null(value):
            warnings.append(f"{key} missing or null: using {HEADER_DEFAULTS[key]!r}")
            return HEADER_DEFAULTS[key]
        return str(value).strip()

    obs_type = str(header["IMGTYPE"]).strip().lower()
    if len(obs_type) > MAX_OBSERVATION_TYPE:
        warnings.append(
            f"IMGTYPE {obs_type!r} is longer than the {MAX_OBSERVATION_TYPE} characters the exposure "
            "record allows: truncated (full value kept in eoExposureInfo)"
        )
        obs_type = obs_type[:MAX_OBSERVATION_TYPE]
    if obs_type == "unknown":
        warnings.append("IMGTYPE is UNKNOWN: the exposure will not be selected by type-based queries")
    reason = optional("TESTTYPE").lower()[:68]
    program = optional("RUNNUM")[:64]
    physical_filter = optional("FILTER")[:32]

    record = {
        "instrument": instrument,
        "id": exposure_id(day_obs, seq_num),
        "obs_id": obs_id,
        "day_obs": day_obs,
        "group": obs_id,
        "physical_filter": physical_filter,
        "exposure_time": exposure_time,
        "dark_time": dark_time,
        "observation_type": obs_type,
        "observation_reason": reason,
        "science_program": program,
        "seq_num": seq_num,
        "seq_start": seq_num,
        "seq_end": seq_num,
        "target_name": "UNKNOWN",
        "has_simulated": bool(header.get("SIMULATE", False)),
        "can_see_sky": False,
        "timespan": Timespan(begin, end),
    }
    metadata = {k: _jsonable(header[k]) for k in EXPOSURE_METADATA_KEYS if k in header}
    return HeaderTranslation(record=record, metadata=metadata, warnings=warnings)
