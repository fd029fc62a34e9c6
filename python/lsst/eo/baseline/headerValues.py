"""Values read from raw FITS primary headers: numbers, start and end times of an exposure.

One home for the header readers that several metric tasks need (bias stability, gain stability,
persistence, wavelength flats, PTC extraction), so that every task reads a keyword the same way.
Headers are plain mappings (`lsst.eo.baseline.rawio.read_primary_header`,
``RawCcd.header``); the times are TAI, as the LSSTCam headers write them.
"""

from __future__ import annotations

__all__ = ["exposure_end_mjd", "exposure_mjd", "header_float"]

from collections.abc import Mapping
from typing import Any

import astropy.time
import numpy as np

_SECONDS_PER_DAY = 86400.0


def header_float(header: Mapping[str, Any], key: str) -> float:
    """A numeric header value as a float.

    Parameters
    ----------
    header : `~collections.abc.Mapping`
        Header keywords and values.
    key : `str`
        Keyword, e.g. ``EXPTIME``, ``DARKTIME``, ``CCOBFLUX``.

    Returns
    -------
    value : `float`
        NaN when the keyword is missing, not a number, or not finite.
    """
    value = header.get(key)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return np.nan
    return out if np.isfinite(out) else np.nan


def exposure_mjd(header: Mapping[str, Any]) -> float:
    """Start of an exposure (MJD, TAI).

    Parameters
    ----------
    header : `~collections.abc.Mapping`
        Header keywords and values.

    Returns
    -------
    mjd : `float`
        The first finite number of MJD-BEG, MJD-OBS; else DATE-BEG or DATE-OBS (ISOT, TAI)
        converted; NaN if none is there.
    """
    for key in ("MJD-BEG", "MJD-OBS"):
        value = header.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            return float(value)
    for key in ("DATE-BEG", "DATE-OBS"):
        if header.get(key):
            return float(astropy.time.Time(str(header[key]), format="isot", scale="tai").mjd)
    return np.nan


def exposure_end_mjd(header: Mapping[str, Any]) -> float:
    """End of an exposure's integration (MJD, TAI).

    Parameters
    ----------
    header : `~collections.abc.Mapping`
        Header keywords and values.

    Returns
    -------
    mjd : `float`
        MJD-END if finite; else DATE-END converted; else the start (`exposure_mjd`) plus DARKTIME
        (EXPTIME when DARKTIME is missing); NaN if neither is there.
    """
    value = header_float(header, "MJD-END")
    if np.isfinite(value):
        return value
    if header.get("DATE-END"):
        return exposure_mjd({"DATE-BEG": header["DATE-END"]})
    begin = exposure_mjd(header)
    dark_time = header_float(header, "DARKTIME")
    if not np.isfinite(dark_time):
        dark_time = header_float(header, "EXPTIME")
    return begin + dark_time / _SECONDS_PER_DAY
