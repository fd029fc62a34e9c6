"""Render defect lists (boxes in assembled detector pixels) into a boolean pixel mask.

Our defect lists (``eoBrightDefectsList``, ``eoDarkDefectsList``, `lsst.eo.baseline.defects`) are
astropy tables with integer columns ``x0, y0, width, height`` (assembled detector pixels, 0-based,
``[x0, x0 + width) x [y0, y0 + height)``).
"""

from __future__ import annotations

__all__ = ["DEFECT_COLUMNS", "defect_mask"]

from collections.abc import Iterable

import numpy as np
from astropy.table import Table

DEFECT_COLUMNS = ("x0", "y0", "width", "height")
"""Columns a defect list must have."""


def defect_mask(tables: Iterable[Table | None], shape: tuple[int, int], label: str = "") -> np.ndarray:
    """Boolean ``[y, x]`` mask, True on every pixel of any box of the given defect lists.

    Parameters
    ----------
    tables : iterable of `astropy.table.Table` or `None`
        Defect lists; `None` entries are skipped.
    shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of the assembled detector.
    label : `str`, optional
        Names the detector/dataset in error messages.

    Returns
    -------
    mask : `numpy.ndarray` of `bool`

    Raises
    ------
    ValueError
        If a table lacks a column, or a box has a negative size or lies entirely off the detector
        (a list for another detector geometry).
    """
    ny, nx = shape
    mask = np.zeros((ny, nx), dtype=bool)
    for k, table in enumerate(tables):
        if table is None or len(table) == 0:
            continue
        missing = [c for c in DEFECT_COLUMNS if c not in table.colnames]
        if missing:
            raise ValueError(f"Defect list {k} {label}: missing column(s) {missing}; has {table.colnames}")
        x0, y0, w, h = (np.asarray(table[c], dtype=np.int64) for c in DEFECT_COLUMNS)
        bad = (w < 0) | (h < 0) | (x0 >= nx) | (y0 >= ny) | (x0 + w <= 0) | (y0 + h <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"Defect list {k} {label}: box {i} (x0={x0[i]}, y0={y0[i]}, width={w[i]}, height={h[i]}) "
                f"is empty or outside the {nx} x {ny} detector"
            )
        # One slice assignment per box (defect lists hold at most thousands of boxes).
        for a, b, c, d in zip(np.clip(x0, 0, nx), np.clip(y0, 0, ny), x0 + w, y0 + h, strict=True):
            mask[b : min(d, ny), a : min(c, nx)] = True
    return mask
