"""Flags of bad amplifiers: one bitmask convention for every per-amplifier metric table.

An amplifier can be broken in an otherwise valid raw file (a readout channel writing zeros, stuck
at the ADC maximum, or returning a constant level with no noise), and NaN values can arise inside
processing (a NaN calibration, a fit with too few points).  Rather than failing the quantum of the
whole detector, or writing plausible-looking numbers (a read noise of 0 e-), the tasks measure the
other amplifiers as usual and mark the bad one.

Convention
----------
Every per-amplifier metric table that the tasks write has an integer column ``flags``, a bitmask of
`AmpFlag` bits.  ``flags == 0`` means the row was measured normally.  A row with ``flags != 0``
has NaN in all its floating-point metric columns (integer counts such as ``n_exposures`` are left
as they are); the run summary (``eoRunSummary``) ORs the flags of all tables into its own
``flags`` column, names the tables that set them in ``flag_sources``, and blanks every metric taken
from a flagged row.

======  ============  =====================================================================
bit     name          meaning
======  ============  =====================================================================
1       ZERO          every pixel of the raw amplifier (imaging area and overscans) is 0
2       SATURATED     every pixel of the raw amplifier is at the ADC maximum (``ADC_MAX``)
4       DEAD          no signal and no noise: the imaging area and the serial overscan each hold
                      one constant value
8       NONFINITE     NaN or infinite values arose in processing (a NaN calibration input,
                      no finite pixel left, a non-finite measurement)
16      FIT_FAILED    a fit of the amplifier failed (e.g. a PTC with fewer points than the
                      fit needs); the reason is in the table's ``failure`` column if it has one
======  ============  =====================================================================

Bits computed from raw data (ZERO, SATURATED, DEAD) are ORed over the inputs of a quantum: an
amplifier bad in any of its exposures is flagged.  Combined calibrations (``eoBias``, ``eoDark``,
``eoFlat``) and ``eoPtc`` carry the flags of their inputs in their metadata (key ``AMP_FLAGS``,
e.g. ``"C10:1 C12:4"``) with the flagged amplifiers' pixels masked ``BAD``, so the tables made
from them inherit the flags.
"""

from __future__ import annotations

__all__ = [
    "ADC_MAX",
    "FLAGS_COLUMN",
    "FLAGS_METADATA_KEY",
    "AmpFlag",
    "apply_amp_flags",
    "decode_amp_flags",
    "describe_flagged",
    "encode_amp_flags",
    "flag_names",
    "metadata_amp_flags",
    "calib_amp_flags",
    "nan_median",
    "raw_amp_flags",
]

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from astropy.table import Table

from .rawdata import RawAmp

ADC_MAX = 2**18 - 1
"""Largest value of the 18-bit ADC of the LSSTCam readout electronics (262143 adu)."""

FLAGS_COLUMN = "flags"
"""Name of the bitmask column of the per-amplifier tables."""

FLAGS_METADATA_KEY = "AMP_FLAGS"
"""Metadata key of the flags of a combined calibration or ``eoPtc`` (see `encode_amp_flags`)."""


class AmpFlag(enum.IntFlag):
    """Bits of the ``flags`` column (see the module documentation)."""

    ZERO = 1
    SATURATED = 2
    DEAD = 4
    NONFINITE = 8
    FIT_FAILED = 16


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in ``flags``, lowest bit first (``[]`` for 0).

    Bits that are not `AmpFlag` members are reported as ``BIT<n>``.
    """
    known = {int(member): str(member.name) for member in AmpFlag}
    value = int(flags)
    names = []
    bit = 0
    while value >> bit:
        if (value >> bit) & 1:
            names.append(known.get(1 << bit, f"BIT{bit}"))
        bit += 1
    return names


def describe_flagged(flags: Mapping[str, int]) -> str:
    """Flagged amplifiers as text for log messages, e.g. ``"C10 (ZERO), C12 (DEAD|NONFINITE)"``."""
    return ", ".join(f"{amp} ({'|'.join(flag_names(value))})" for amp, value in flags.items() if int(value))


def nan_median(values: Any) -> float:
    """Median of the finite values (NaN, without a warning, if there is none)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    return float(np.median(array)) if array.size else np.nan


def raw_amp_flags(amp: RawAmp, adc_max: int = ADC_MAX) -> int:
    """Flags of a raw amplifier that no measurement can use.

    Parameters
    ----------
    amp : `~lsst.eo.baseline.rawdata.RawAmp`
        Raw amplifier (whole segment, readout orientation).
    adc_max : `int`, optional
        ADC maximum (adu).

    Returns
    -------
    flags : `int`
        ``ZERO`` if every pixel is 0, ``SATURATED`` if every pixel is at ``adc_max`` or above,
        ``DEAD`` if the imaging area and the serial overscan are each constant, else 0.
    """
    data = amp.data
    overscan = amp.serial_overscan
    if not data.size or not overscan.size:
        return 0
    # Every flag needs a constant imaging area and a constant overscan: a strided sample with any
    # spread (read noise is enough) rules them all out at the cost of a few thousand pixels.
    if np.ptp(data[::8, ::8]) or np.ptp(overscan[::8]):
        return 0
    array = amp.array
    lo = int(array.min())
    hi = int(array.max())
    if hi == 0 and lo == 0:
        return int(AmpFlag.ZERO)
    if lo >= adc_max:
        return int(AmpFlag.SATURATED)
    if np.ptp(data) == 0 and np.ptp(overscan) == 0:
        return int(AmpFlag.DEAD)
    return 0


def encode_amp_flags(flags: Mapping[str, int]) -> str:
    """Flags of the flagged amplifiers as metadata text, e.g. ``"C10:1 C12:4"`` ('' if none)."""
    return " ".join(f"{amp}:{int(value)}" for amp, value in flags.items() if int(value))


def decode_amp_flags(text: Any) -> dict[str, int]:
    """Inverse of `encode_amp_flags` (anything else, e.g. `None`, gives ``{}``)."""
    out: dict[str, int] = {}
    if not isinstance(text, str):
        return out
    for item in text.split():
        amp, _, value = item.partition(":")
        try:
            out[amp] = int(value)
        except ValueError:
            continue
    return out


def metadata_amp_flags(metadata: Mapping[str, Any] | None) -> dict[str, int]:
    """Amplifier flags recorded in a dataset's metadata (``{}`` if none)."""
    if not metadata:
        return {}
    try:
        return decode_amp_flags(metadata.get(FLAGS_METADATA_KEY))
    except AttributeError:
        return {}


def calib_amp_flags(amp_names: Iterable[str], *calibs: Any) -> dict[str, int]:
    """Flags of every amplifier inherited from the calibrations used (``None`` entries ignored).

    Parameters
    ----------
    amp_names : iterable of `str`
        Amplifiers of the detector: every one gets an entry (0 if unflagged).
    *calibs
        Calibration images with ``metadata`` (e.g. ``eoBias``, ``eoDark``), or `None`.

    Returns
    -------
    flags : `dict` [`str`, `int`]
        OR of the ``AMP_FLAGS`` of the calibrations, per amplifier.
    """
    flags = {amp: 0 for amp in amp_names}
    for calib in calibs:
        if calib is None:
            continue
        for amp, value in metadata_amp_flags(calib.metadata).items():
            if amp in flags:
                flags[amp] |= value
    return flags


def apply_amp_flags(
    table: Table,
    flags: Mapping[str, int] | None = None,
    *,
    required: Iterable[str] = (),
    skip: Iterable[str] = (),
) -> Table:
    """Add the ``flags`` column to a per-amplifier table and blank the flagged rows, in place.

    Parameters
    ----------
    table : `astropy.table.Table`
        Table with an ``amp`` column, one row per amplifier (a ``flags`` column already present
        is ORed with the new flags).
    flags : mapping [`str`, `int`], optional
        Flags per amplifier name (missing amplifiers: 0).
    required : iterable of `str`
        Columns that must be finite for a measured amplifier: a non-finite value in a row not
        flagged otherwise sets ``NONFINITE``.
    skip : iterable of `str`
        Floating-point columns that are not blanked in flagged rows (e.g. inputs such as a gain).

    Returns
    -------
    table : `astropy.table.Table`
        The same table.
    """
    flags = flags or {}
    amps = [str(a) for a in table["amp"]] if len(table) else []
    values = np.array([int(flags.get(a, 0)) for a in amps], dtype=np.int32)
    if FLAGS_COLUMN in table.colnames:
        values |= np.asarray(table[FLAGS_COLUMN], dtype=np.int32)
    unflagged = values == 0
    for name in required:
        if name in table.colnames and len(table):
            bad = ~np.isfinite(np.asarray(table[name], dtype=np.float64))
            values[bad & unflagged] |= int(AmpFlag.NONFINITE)
    skip = set(skip)
    flagged = values != 0
    if flagged.any():
        for name in table.colnames:
            column = table[name]
            if name in skip or name == FLAGS_COLUMN or column.dtype.kind != "f":
                continue
            data = np.array(column)
            data[flagged] = np.nan
            column[:] = data
    table[FLAGS_COLUMN] = values
    table[FLAGS_COLUMN].description = "Bitmask of AmpFlag bits (lsst.eo.baseline.ampFlags); 0 = good"
    return table
