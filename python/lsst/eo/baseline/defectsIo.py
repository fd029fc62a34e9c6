"""Defect lists on disk in ip_isr's ``Defects`` FITS layout.

ip_isr writes a ``Defects`` calibration (``IsrCalib.writeFits`` with ``Defects.toTable``) as an empty
primary HDU followed by one binary table with the integer columns ``x0, y0, width, height`` (0-based
lower-left corner and size of each box, detector pixels) and the calibration metadata in the table
header: ``OBSTYPE = 'defects'``, ``DEFECTS_SCHEMA`` (empty string), ``DEFECTS_VERSION = 2.0``,
``CALIBCLS = 'lsst.ip.isr.defects.Defects'`` and the detector keys (``DETECTOR``, ``DET_NAME``,
``RAFTNAME``, ``SLOTNAME``, ...); keys without a value are left out.  ``Defects.readFits`` imports
the class named by ``CALIBCLS``, so our files name ip_isr's class: a stack user reads them with
``lsst.ip.isr.Defects.readFits`` without eo_baseline.  In memory a defect list is an astropy
`~astropy.table.Table` with those four int64 columns (`lsst.eo.baseline.defects.defect_table`).
"""

from __future__ import annotations

__all__ = ["DEFECTS_CALIBCLS", "DEFECTS_VERSION", "read_defects_fits", "write_defects_fits"]

import warnings

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .calibHeader import calib_header_cards
from .defectBoxes import DEFECT_COLUMNS

DEFECTS_VERSION = 2.0
"""ip_isr ``Defects._VERSION`` (ip_isr d2a69bf)."""
DEFECTS_CALIBCLS = "lsst.ip.isr.defects.Defects"
"""Class a stack reader instantiates (``IsrCalib.determineCalibClass``)."""


def write_defects_fits(table: Table, path: str) -> None:
    """Write a defect list as ip_isr's ``Defects.writeFits`` does.

    Parameters
    ----------
    table : `astropy.table.Table`
        Columns ``x0, y0, width, height`` (any further column is not written); metadata is written
        to the table header.
    path : `str`
        Output file.
    """
    missing = [c for c in DEFECT_COLUMNS if c not in table.colnames]
    if missing:
        raise ValueError(f"Defect list to write to {path} lacks column(s) {missing}; has {table.colnames}")
    out = Table({c: np.asarray(table[c], dtype=np.int64) for c in DEFECT_COLUMNS})
    meta = calib_header_cards(table.meta, drop_none=True)
    meta.update({"OBSTYPE": "defects", "DEFECTS_SCHEMA": "", "DEFECTS_VERSION": DEFECTS_VERSION,
                 "CALIBCLS": DEFECTS_CALIBCLS})  # fmt: skip
    out.meta = meta
    with warnings.catch_warnings():
        # Keys longer than 8 characters become HIERARCH cards, as in ip_isr's files.
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdu = fits.table_to_hdu(out)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def read_defects_fits(path: str) -> Table:
    """Read a defect list written by ip_isr (``Defects.writeFits``) or by `write_defects_fits`.

    Parameters
    ----------
    path : `str`
        FITS file; the table is in HDU 1.

    Returns
    -------
    table : `astropy.table.Table`
        Columns ``x0, y0, width, height`` (int64) and the header keys as ``meta``.  The boxes are
        returned as stored (ip_isr would re-normalise them; ours are written normalised).

    Raises
    ------
    ValueError
        If HDU 1 is not a table, ``OBSTYPE`` is not ``defects``, or the box columns are missing
        (FITS-region defect tables, also accepted by ip_isr, are not supported).
    """
    with fits.open(path, memmap=False) as hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise ValueError(f"{path}: HDU 1 is not a binary table; not a defects file")
    # Read by path as ip_isr does: astropy 8 fails on a zero-length column (BAD_AMPS of a PTC
    # without bad amplifiers) when given the HDU object.
    table = Table.read(path, hdu=1, mask_invalid=False)
    obstype = str(table.meta.get("OBSTYPE", "")).strip()
    if obstype.lower() != "defects":
        raise ValueError(f"{path} HDU 1: OBSTYPE is {obstype!r}, expected 'defects'")
    missing = [c for c in DEFECT_COLUMNS if c not in table.colnames]
    if missing:
        raise ValueError(
            f"{path} HDU 1: no column(s) {missing} (has {table.colnames}); only x0/y0/width/height "
            "defect tables are supported"
        )
    out = Table({c: np.asarray(table[c], dtype=np.int64) for c in DEFECT_COLUMNS})
    out.meta.update(table.meta)
    return out
