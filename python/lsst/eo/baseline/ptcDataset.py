"""The ``eoPtc`` dataset: a photon transfer curve per amplifier, in ip_isr's on-disk layout.

`EoPtcDataset` holds the quantities of ip_isr's ``PhotonTransferCurveDataset`` (version 2.6,
``cp_pipe_algorithms.md`` section 2.8, checked against ip_isr d2a69bf ``ptcDataset.py``) under the
same attribute names, and `EoPtcFitsFormatter` writes it as ip_isr's ``writeFits`` does: an empty
primary HDU and one binary table with a row per amplifier holding all 49 columns of
``PhotonTransferCurveDataset.toTable`` in its order, names and shapes (per-pair arrays of length N,
covariances raveled to N r^2, matrices to rf^2, ``NPIXEL_COVARIANCES`` one int per amplifier,
``BAD_AMPS`` the detector's list in every row), ``PTCAUX_<key>`` auxiliary columns, and the
calibration metadata in the table header (``OBSTYPE = 'PTC'``, ``PTC_SCHEMA``, ``PTC_VERSION = 2.6``,
``CALIBCLS = 'lsst.ip.isr.ptcDataset.PhotonTransferCurveDataset'``, ``PTC_FIT_TYPE``, ``INSTRUME``,
``DETECTOR``, ``DET_NAME``, ... with ``""`` for no value).  A stack user therefore reads our file with
``lsst.ip.isr.PhotonTransferCurveDataset.readFits``.  Quantities we do not compute are written as
ip_isr's defaults would be for a measured dataset: NaN (floats), False (masks), -1 (ints).

Four eo_baseline columns follow ip_isr's: ``MEASURED_MEANS``/``MEASURED_VARS`` (pair statistics as
measured, before linearisation and CTI correction, for the linearity analysis), ``ROW_MEAN_N_COLS``
and ``NPIXEL_COVARIANCES_LIST`` (the per-pair pixel counts; ``NPIXEL_COVARIANCES`` holds their
common value, or -1 if they differ).  ip_isr's ``fromTable`` reads its columns by exact name and
ignores any other (except ``PTCAUX_*``), so these extras do not disturb a stack reader.

``RAW_MEANS``/``RAW_VARS``/``COVARIANCES`` hold the statistics the fit used -- linearised and
corrected for first-order CTI, as cp_pipe's come from linearised, CTI-corrected images.

Units: means in adu, variances and covariances in adu^2 (per image), gain e-/adu, noise e-, a and b
matrices 1/e-, noise matrix e^2, exposure times s.

`EoPtcDataset.from_table` reads ip_isr-written files of any version (columns a version lacks are
left unset) and eo_baseline files written before the names were aligned (aliases below).
"""

from __future__ import annotations

__all__ = [
    "PTC_CALIBCLS",
    "PTC_COLUMNS",
    "PTC_VERSION",
    "EoPtcDataset",
    "EoPtcFitsFormatter",
    "read_ptc_fits",
    "write_ptc_fits",
]

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath

from .calibHeader import calib_header_cards

PTC_VERSION = 2.6
"""ip_isr PhotonTransferCurveDataset version whose layout this follows."""
PTC_SCHEMA = "Gen3 Photon Transfer Curve"
PTC_CALIBCLS = "lsst.ip.isr.ptcDataset.PhotonTransferCurveDataset"
"""Class ip_isr's ``readFits`` instantiates (it imports the class named by ``CALIBCLS``)."""

# (attribute, FITS column, kind) in ip_isr's toTable order after the four header columns
# AMPLIFIER_NAME, PTC_FIT_TYPE, COV_MATRIX_SIDE, COV_MATRIX_SIDE_FULL_COV_FIT and BAD_AMPS (39).
# kinds: pair (N floats), mask (N bools), ids (N x 2 ints), scalar (float), int, vector (fit
# parameters, any length), square (rf x rf), cov (N x r x r), covfit (N x rf x rf).
_LAYOUT = [
    ("inputExpIdPairs", "INPUT_EXP_ID_PAIRS", "ids"),
    ("inputExpPairMjdStartList", "INPUT_EXP_PAIR_MJD_START", "pair"),
    ("expIdMask", "EXP_ID_MASK", "mask"),
    ("expIdRolloffMask", "EXP_ID_ROLLOFF_MASK", "mask"),
    ("rawExpTimes", "RAW_EXP_TIMES", "pair"),
    ("rawMeans", "RAW_MEANS", "pair"),
    ("rawVars", "RAW_VARS", "pair"),
    ("rawDeltas", "RAW_DELTAS", "pair"),
    ("rowMeanVariance", "ROW_MEAN_VARIANCE", "pair"),
    ("gain", "GAIN", "scalar"),
    ("gainErr", "GAIN_ERR", "scalar"),
    ("gainUnadjusted", "GAIN_UNADJUSTED", "scalar"),
    ("gainList", "GAIN_LIST", "pair"),
    ("overscanMedianLevelList", "OVERSCAN_MEDIAN_LIST", "pair"),
    ("overscanMedian", "OVERSCAN_MEDIAN", "scalar"),
    ("overscanMedianSigma", "OVERSCAN_MEDIAN_SIGMA", "scalar"),
    ("noiseList", "NOISE_LIST", "pair"),
    ("noise", "NOISE", "scalar"),
    ("noiseErr", "NOISE_ERR", "scalar"),
    ("histVars", "HIST_VARS", "pair"),
    ("histChi2Dofs", "HIST_CHI2_DOFS", "pair"),
    ("kspValues", "KS_PVALUES", "pair"),
    ("ptcFitPars", "PTC_FIT_PARS", "vector"),
    ("ptcFitParsError", "PTC_FIT_PARS_ERROR", "vector"),
    ("ptcFitChiSq", "PTC_FIT_CHI_SQ", "scalar"),
    ("ptcTurnoff", "PTC_TURNOFF", "scalar"),
    ("ptcTurnoffSamplingError", "PTC_TURNOFF_SAMPLING_ERROR", "scalar"),
    ("ptcRolloff", "PTC_ROLLOFF", "scalar"),
    ("ptcRolloffError", "PTC_ROLLOFF_ERROR", "scalar"),
    ("ptcRolloffTau", "PTC_ROLLOFF_TAU", "scalar"),
    ("ptcRolloffTauError", "PTC_ROLLOFF_TAU_ERROR", "scalar"),
    ("aMatrix", "A_MATRIX", "square"),
    ("bMatrix", "B_MATRIX", "square"),
    ("noiseMatrix", "NOISE_MATRIX", "square"),
    ("photoCharges", "PHOTO_CHARGE", "pair"),
    ("photoChargeDeltas", "PHOTO_CHARGE_DELTAS", "pair"),
    ("ampOffsets", "AMP_OFFSETS", "pair"),
    ("nPixelCovariances", "NPIXEL_COVARIANCES", "int"),
    ("covariances", "COVARIANCES", "cov"),
    ("covariancesModel", "COVARIANCES_MODEL", "covfit"),
    ("covariancesSqrtWeights", "COVARIANCES_SQRT_WEIGHTS", "cov"),
    ("finalVars", "FINAL_VARS", "pair"),
    ("finalModelVars", "FINAL_MODEL_VARS", "pair"),
    ("finalMeans", "FINAL_MEANS", "pair"),
]
# eo_baseline additions, written after ip_isr's columns (ignored by ip_isr's reader).
_EXTRA = [
    ("measuredMeans", "MEASURED_MEANS", "pair"),
    ("measuredVars", "MEASURED_VARS", "pair"),
    ("rowMeanNCols", "ROW_MEAN_N_COLS", "pair"),
]
_NPIX_LIST = "NPIXEL_COVARIANCES_LIST"
# Column names of eo_baseline files written before the names followed ip_isr.
_ALIASES = {
    "INPUT_EXP_PAIR_MJD_START_LIST": "inputExpPairMjdStartList",
    "OVERSCAN_MEDIAN_LEVEL_LIST": "overscanMedianLevelList",
    "PHOTO_CHARGE_DELTA": "photoChargeDeltas",
    "N_PIXEL_COVARIANCES": "nPixelCovariances",
}
_KIND = {attr: kind for attr, _, kind in _LAYOUT + _EXTRA}
PTC_COLUMNS = {attr: col for attr, col, _ in _LAYOUT + _EXTRA}
"""Attribute name -> FITS column name, as ip_isr's ``PhotonTransferCurveDataset.toTable`` (+ extras)."""
_ATTR_OF = {col: attr for attr, col in PTC_COLUMNS.items()}
# Calibration keys ip_isr always writes ("" when unset).
_CALIB_KEYS = ("INSTRUME", "RAFTNAME", "SLOTNAME", "DETECTOR", "DET_NAME", "DET_SER", "FILTER", "CALIB_ID",
               "SEQFILE", "SEQNAME", "SEQCKSUM")  # fmt: skip


@dataclass
class EoPtcDataset:
    """Photon transfer curves of the amplifiers of one detector.

    Attributes use ip_isr's names; every per-amplifier quantity is a `dict` keyed by amplifier
    name.  Per-pair arrays have one entry per flat pair in ``inputExpIdPairs`` order; covariances
    are ``(N, covMatrixSide, covMatrixSide)`` indexed ``[pair, dx (serial), dy (parallel)]``.
    ``auxValues`` holds ip_isr's per-pair auxiliary header values (``PTCAUX_<key>`` columns).
    """

    ampNames: list[str] = field(default_factory=list)
    ptcFitType: str = "EXPAPPROXIMATION"
    covMatrixSide: int = 8
    covMatrixSideFullCovFit: int = 8
    badAmps: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    auxValues: dict[str, np.ndarray] = field(default_factory=dict)

    def __getattr__(self, name: str) -> dict[str, Any]:
        # Attribute-style access to the per-amplifier quantities (ptc.gain["C10"]).
        if name in PTC_COLUMNS:
            return self.__dict__.setdefault("values", {}).setdefault(name, {})
        raise AttributeError(name)

    def set(self, name: str, amp: str, value: Any) -> None:
        """Set quantity ``name`` of amplifier ``amp``."""
        if name not in PTC_COLUMNS:
            raise KeyError(f"Unknown PTC quantity {name!r}")
        self.values.setdefault(name, {})[amp] = value

    # --- table conversion ------------------------------------------------------------------

    def _n_pairs(self) -> int:
        n = 0
        for attr in ("rawMeans", "inputExpIdPairs", "expIdMask"):
            for value in self.values.get(attr, {}).values():
                n = max(n, len(np.asarray(value)))
        return n

    def _column_value(self, attr: str, amp: str, n: int) -> np.ndarray | float | int:
        # The value written for one amplifier: padded to n pairs, or ip_isr's empty default.
        kind = _KIND[attr]
        r, rf = self.covMatrixSide, self.covMatrixSideFullCovFit
        value = self.values.get(attr, {}).get(amp)
        if kind == "int":
            arr = np.atleast_1d(np.asarray(value if value is not None else -1, dtype=np.int64))
            # ip_isr keeps one count per amplifier (it refuses partial PTCs that differ).
            return int(arr[0]) if arr.size and np.all(arr == arr[0]) else -1
        if kind == "scalar":
            return float(value) if value is not None else np.nan
        if kind == "vector":
            return np.asarray(value, dtype=np.float64).ravel() if value is not None else np.array([np.nan])
        shape = {"pair": (n,), "mask": (n,), "ids": (n, 2), "square": (rf, rf), "cov": (n, r, r),
                 "covfit": (n, rf, rf)}[kind]  # fmt: skip
        dtype = {"mask": bool, "ids": np.int64}.get(kind, np.float64)
        fill = {"mask": False, "ids": -1}.get(kind, np.nan)
        out = np.full(shape, fill, dtype=dtype)
        arr = np.asarray(value if value is not None else [], dtype=dtype)
        if arr.size:  # empty (e.g. a fit that never ran) stays at the fill value
            if kind == "square":
                arr = arr.reshape(-1)
                if arr.size != rf * rf:
                    raise ValueError(f"PTC {attr}[{amp}] has {arr.size} values; expected {rf}x{rf}")
                out = arr.reshape(rf, rf)
            else:
                k = arr.shape[0] if arr.ndim else 0
                if arr.ndim and arr.shape[1:] != shape[1:]:
                    raise ValueError(f"PTC {attr}[{amp}] has shape {arr.shape}; expected (N,) + {shape[1:]}")
                out[:k] = arr
        return out.ravel() if kind in ("square", "cov", "covfit") else out

    def to_table(self) -> Table:
        """One row per amplifier in ip_isr's column order and names, metadata in ``table.meta``.

        Per-pair arrays shorter than the longest are padded (NaN, False, pair ids -1): FITS
        table columns have one length for all rows, as ip_isr requires.
        """
        n = self._n_pairs()
        bad = np.array(self.badAmps, dtype="U3") if self.badAmps else np.array([], dtype="U3")
        rows = []
        for amp in self.ampNames:
            row: dict[str, Any] = {
                "AMPLIFIER_NAME": amp,
                "PTC_FIT_TYPE": self.ptcFitType,
                "COV_MATRIX_SIDE": int(self.covMatrixSide),
                "COV_MATRIX_SIDE_FULL_COV_FIT": int(self.covMatrixSideFullCovFit),
            }
            for attr, col, _ in _LAYOUT:
                if col == "PHOTO_CHARGE":
                    row["BAD_AMPS"] = bad  # ip_isr's position: after NOISE_MATRIX
                row[col] = self._column_value(attr, amp, n)
            for attr, col, _ in _EXTRA:
                row[col] = self._column_value(attr, amp, n)
            npix = self.values.get("nPixelCovariances", {}).get(amp)
            npix_list = np.full(n, -1, dtype=np.int64)
            if npix is not None:
                arr = np.atleast_1d(np.asarray(npix, dtype=np.int64))[:n]
                npix_list[:] = arr[0] if arr.size == 1 else -1
                npix_list[: arr.size] = arr
            row[_NPIX_LIST] = npix_list
            for key, value in self.auxValues.items():
                row[f"PTCAUX_{key}"] = np.asarray(value)
            rows.append(row)
        table = Table(rows=rows) if rows else Table()
        meta: dict[str, Any] = {k: "" for k in _CALIB_KEYS}
        meta.update({k: ("" if v is None else v) for k, v in self.metadata.items()})
        meta.update({"OBSTYPE": "PTC", "PTC_SCHEMA": PTC_SCHEMA, "PTC_VERSION": PTC_VERSION,
                     "PTC_FIT_TYPE": self.ptcFitType, "CALIBCLS": PTC_CALIBCLS})  # fmt: skip
        table.meta.update(meta)
        return table

    @classmethod
    def from_table(cls, table: Table) -> EoPtcDataset:
        """Rebuild from `to_table` output or from an ip_isr PTC table (any version).

        Raises
        ------
        ValueError
            If ``OBSTYPE`` is present and not ``PTC``, or a required column is missing.
        """
        meta = {k: v for k, v in table.meta.items()}
        obstype = str(meta.get("OBSTYPE", "PTC")).strip()
        if obstype.upper() != "PTC":
            raise ValueError(f"PTC table has OBSTYPE {obstype!r}, expected 'PTC'")
        for col in ("AMPLIFIER_NAME", "COV_MATRIX_SIDE"):
            if col not in table.colnames:
                raise ValueError(f"PTC table lacks column {col}; has {table.colnames}")
        last = table[-1] if len(table) else None
        # ip_isr takes the matrix sides from the last row; they are the same in every row.
        side = int(last["COV_MATRIX_SIDE"]) if last is not None else 8
        side_fit = int(last["COV_MATRIX_SIDE_FULL_COV_FIT"]) if last is not None and (
            "COV_MATRIX_SIDE_FULL_COV_FIT" in table.colnames
        ) else side  # fmt: skip
        fit_type = meta.get("PTC_FIT_TYPE", last["PTC_FIT_TYPE"] if last is not None else "")
        ds = cls(
            ptcFitType=str(fit_type).strip(),
            covMatrixSide=side,
            covMatrixSideFullCovFit=side_fit,
            metadata={k: v for k, v in meta.items() if k not in ("OBSTYPE", "PTC_SCHEMA", "CALIBCLS")},
        )
        if last is not None and "BAD_AMPS" in table.colnames:
            ds.badAmps = [_text(a) for a in np.atleast_1d(table[0]["BAD_AMPS"]) if _text(a)]
        columns = {col: attr for col, attr in _ATTR_OF.items() if col in table.colnames}
        columns.update({col: attr for col, attr in _ALIASES.items() if col in table.colnames})
        for row in table:
            amp = _text(row["AMPLIFIER_NAME"])
            ds.ampNames.append(amp)
            for col, attr in columns.items():
                ds.set(attr, amp, _shape(attr, _unmask(row[col]), side, side_fit))
            if _NPIX_LIST in table.colnames:
                ds.set("nPixelCovariances", amp, np.asarray(row[_NPIX_LIST], dtype=np.int64))
        if len(table):
            for col in table.colnames:
                if col.startswith("PTCAUX_"):
                    value = np.asarray(table[0][col])
                    ds.auxValues[col[len("PTCAUX_") :]] = (
                        value.astype(str) if value.dtype.kind == "S" else value
                    )
        return ds


def _text(value: Any) -> str:
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


def _unmask(value: Any) -> np.ndarray:
    if np.ma.isMaskedArray(value) or isinstance(value, np.ma.core.MaskedConstant):
        # astropy masks NaN when reading FITS without mask_invalid=False: restore the NaN.
        value = np.ma.filled(np.ma.asarray(value, dtype=np.float64), np.nan)
    return np.array(value)


def _shape(attr: str, value: np.ndarray, side: int, side_fit: int) -> Any:
    kind = _KIND[attr]
    if kind in ("cov", "covfit"):
        r = side if kind == "cov" else side_fit
        return value.reshape(-1, r, r)
    if kind == "square":
        n = int(round(np.sqrt(value.size)))
        return value.reshape(n, n) if value.size else value
    if kind == "ids":
        return value.reshape(-1, 2)
    if kind == "mask":
        return value.astype(bool)
    if value.ndim == 0:
        return value.item()
    return value


def write_ptc_fits(ptc: EoPtcDataset, path: str) -> None:
    """Write a PTC as ip_isr's ``IsrCalib.writeFits``: empty primary HDU + one binary table."""
    table = ptc.to_table()
    table.meta = calib_header_cards(table.meta, drop_none=False)
    with warnings.catch_warnings():
        # Long keywords become HIERARCH cards, exactly as ip_isr's files have them.
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdu = fits.table_to_hdu(table)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def read_ptc_fits(path: str) -> EoPtcDataset:
    """Read a PTC FITS file written by ip_isr or by `write_ptc_fits` (table in HDU 1)."""
    with fits.open(path, memmap=False) as hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise ValueError(f"{path}: HDU 1 is not a binary table; not a PTC file")
    # Read by path as ip_isr does: astropy 8 fails on a zero-length column (BAD_AMPS of a PTC
    # without bad amplifiers) when given the HDU object.
    table = Table.read(path, hdu=1, mask_invalid=False)
    try:
        return EoPtcDataset.from_table(table)
    except ValueError as err:
        raise ValueError(f"{path} HDU 1: {err}") from err


class EoPtcFitsFormatter(FormatterV2):
    """Read and write `EoPtcDataset` as ip_isr does: empty primary HDU + one binary table."""

    default_extension = ".fits"
    can_read_from_local_file = True
    unsupported_parameters = None

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        return read_ptc_fits(path)

    def write_local_file(self, in_memory_dataset: EoPtcDataset, uri: ResourcePath) -> None:
        # Docstring inherited.
        write_ptc_fits(in_memory_dataset, uri.ospath)
