"""Calibration metadata as FITS header cards, the way ip_isr's ``IsrCalib.writeFits`` stores them."""

from __future__ import annotations

__all__ = ["calib_header_cards"]

import re
from collections.abc import Mapping
from typing import Any


def calib_header_cards(meta: Mapping[str, Any], *, drop_none: bool) -> dict[str, Any]:
    """Header keys and values for a calibration table's metadata.

    Keys are upper-cased with characters FITS does not allow replaced by ``_`` (at most 68
    characters: longer keys than 8 become HIERARCH cards); scalars are kept, anything else is
    written as its string.

    Parameters
    ----------
    meta : mapping
        Metadata of the calibration.
    drop_none : `bool`
        Leave out keys whose value is `None` (our defect lists); otherwise write them as ``""``
        (ip_isr's PTC files).

    Returns
    -------
    cards : `dict`
        Key -> value, ready for an astropy table's ``meta``.
    """
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None and drop_none:
            continue
        k = re.sub(r"[^A-Z0-9_-]", "_", str(key).upper())[:68]
        if value is None:
            out[k] = ""
        else:
            out[k] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out
