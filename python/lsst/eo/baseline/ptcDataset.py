"""The ``eoPtc`` dataset: a photon transfer curve per amplifier, in cp_pipe's on-disk layout.

`EoPtcDataset` holds the same quantities as ip_isr's ``PhotonTransferCurveDataset``
(``cp_pipe_algorithms.md`` section 2.8) with the same names, and `EoPtcFitsFormatter` writes it the
way ip_isr does: an empty primary HDU and one binary table with a row per amplifier, columns named
in upper case with underscores (``RAW_MEANS``, ``EXP_ID_MASK``, ``COVARIANCES`` raveled to
N x r x r, ...), and the calibration metadata (``OBSTYPE = 'PTC'``, ``PTC_VERSION``, ``DETECTOR``,
``DET_NAME``, ``PTC_FIT_TYPE``, ...) in the table header.  Tools that read cp_pipe PTC files with
astropy therefore read ours; ``EoPtcDataset.from_table`` reads both.

``RAW_MEANS``/``RAW_VARS``/``COVARIANCES`` hold the statistics the fit used -- linearised and
corrected for first-order CTI, as cp_pipe's come from linearised, CTI-corrected images -- and
``MEASURED_MEANS``/``MEASURED_VARS`` (eo_baseline additions) the pair statistics as measured, for
the linearity analysis.

Units: means in adu, variances and covariances in adu^2 (per image), gain e-/adu, noise e-, a and b
matrices 1/e-, noise matrix e^2, exposure times s.
"""

from __future__ import annotations

__all__ = ["PTC_COLUMNS", "EoPtcDataset", "EoPtcFitsFormatter"]

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath

PTC_VERSION = 2.6
"""ip_isr PhotonTransferCurveDataset version whose layout this follows."""

# Per-amplifier array attributes (one value per flat pair) -> FITS column names.
_PER_PAIR = {
    "inputExpIdPairs": "INPUT_EXP_ID_PAIRS",
    "inputExpPairMjdStartList": "INPUT_EXP_PAIR_MJD_START_LIST",
    "expIdMask": "EXP_ID_MASK",
    "expIdRolloffMask": "EXP_ID_ROLLOFF_MASK",
    "rawExpTimes": "RAW_EXP_TIMES",
    "rawMeans": "RAW_MEANS",
    "rawVars": "RAW_VARS",
    "rawDeltas": "RAW_DELTAS",
    "rowMeanVariance": "ROW_MEAN_VARIANCE",
    "rowMeanNCols": "ROW_MEAN_N_COLS",
    "photoCharges": "PHOTO_CHARGE",
    "photoChargeDeltas": "PHOTO_CHARGE_DELTA",
    "gainList": "GAIN_LIST",
    "noiseList": "NOISE_LIST",
    "overscanMedianLevelList": "OVERSCAN_MEDIAN_LEVEL_LIST",
    "kspValues": "KS_PVALUES",
    "nPixelCovariances": "N_PIXEL_COVARIANCES",
    "finalVars": "FINAL_VARS",
    "finalModelVars": "FINAL_MODEL_VARS",
    "finalMeans": "FINAL_MEANS",
    "measuredMeans": "MEASURED_MEANS",
    "measuredVars": "MEASURED_VARS",
    "covariances": "COVARIANCES",
    "covariancesModel": "COVARIANCES_MODEL",
    "covariancesSqrtWeights": "COVARIANCES_SQRT_WEIGHTS",
}
# Per-amplifier scalars and small arrays.
_PER_AMP = {
    "gain": "GAIN",
    "gainErr": "GAIN_ERR",
    "gainUnadjusted": "GAIN_UNADJUSTED",
    "noise": "NOISE",
    "noiseErr": "NOISE_ERR",
    "ptcFitPars": "PTC_FIT_PARS",
    "ptcFitParsError": "PTC_FIT_PARS_ERROR",
    "ptcFitChiSq": "PTC_FIT_CHI_SQ",
    "ptcTurnoff": "PTC_TURNOFF",
    "ptcTurnoffSamplingError": "PTC_TURNOFF_SAMPLING_ERROR",
    "ptcRolloff": "PTC_ROLLOFF",
    "overscanMedian": "OVERSCAN_MEDIAN",
    "overscanMedianSigma": "OVERSCAN_MEDIAN_SIGMA",
    "aMatrix": "A_MATRIX",
    "bMatrix": "B_MATRIX",
    "noiseMatrix": "NOISE_MATRIX",
}
PTC_COLUMNS = {**_PER_PAIR, **_PER_AMP}
"""Attribute name -> FITS column name, as ip_isr's ``PhotonTransferCurveDataset.toTable``."""

_MATRICES = ("covariances", "covariancesModel", "covariancesSqrtWeights")
_SQUARE = ("aMatrix", "bMatrix", "noiseMatrix")


@dataclass
class EoPtcDataset:
    """Photon transfer curves of the amplifiers of one detector.

    Attributes use ip_isr's names; every per-amplifier quantity is a `dict` keyed by amplifier
    name.  Per-pair arrays have one entry per flat pair in ``inputExpIdPairs`` order; covariances
    are ``(N, covMatrixSide, covMatrixSide)`` indexed ``[pair, dx (serial), dy (parallel)]``.
    """

    ampNames: list[str] = field(default_factory=list)
    ptcFitType: str = "EXPAPPROXIMATION"
    covMatrixSide: int = 8
    covMatrixSideFullCovFit: int = 8
    badAmps: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

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

    def to_table(self) -> Table:
        """One row per amplifier, ip_isr column names, metadata in ``table.meta``."""
        rows = []
        for amp in self.ampNames:
            row: dict[str, Any] = {
                "AMPLIFIER_NAME": amp,
                "PTC_FIT_TYPE": self.ptcFitType,
                "COV_MATRIX_SIDE": self.covMatrixSide,
                "COV_MATRIX_SIDE_FULL_COV_FIT": self.covMatrixSideFullCovFit,
                "BAD_AMPS": np.array(self.badAmps if self.badAmps else [""], dtype="U8"),
            }
            for attr, col in PTC_COLUMNS.items():
                value = self.values.get(attr, {}).get(amp)
                if value is None:
                    continue
                arr = np.asarray(value)
                row[col] = arr.ravel() if arr.ndim > 1 else arr
            rows.append(row)
        table = Table(rows=rows) if rows else Table()
        table.meta.update(self.metadata)
        table.meta.update(
            {"OBSTYPE": "PTC", "PTC_SCHEMA": "Gen3 Photon Transfer Curve", "PTC_VERSION": PTC_VERSION,
             "PTC_FIT_TYPE": self.ptcFitType, "CALIBCLS": "lsst.eo.baseline.ptcDataset.EoPtcDataset"}
        )  # fmt: skip
        return table

    @classmethod
    def from_table(cls, table: Table) -> EoPtcDataset:
        """Rebuild from `to_table` output or from a cp_pipe PTC FITS table."""
        meta = {k: v for k, v in table.meta.items()}
        first = table[0] if len(table) else None
        side = int(first["COV_MATRIX_SIDE"]) if first is not None else 8
        side_fit = int(first["COV_MATRIX_SIDE_FULL_COV_FIT"]) if first is not None and (
            "COV_MATRIX_SIDE_FULL_COV_FIT" in table.colnames
        ) else side  # fmt: skip
        ds = cls(
            ptcFitType=str(meta.get("PTC_FIT_TYPE", first["PTC_FIT_TYPE"] if first is not None else "")),
            covMatrixSide=side,
            covMatrixSideFullCovFit=side_fit,
            metadata={k: v for k, v in meta.items() if k not in ("OBSTYPE", "PTC_SCHEMA", "CALIBCLS")},
        )
        if first is not None and "BAD_AMPS" in table.colnames:
            ds.badAmps = [str(a) for a in np.atleast_1d(first["BAD_AMPS"]) if str(a).strip()]
        for row in table:
            amp = str(row["AMPLIFIER_NAME"]).strip()
            ds.ampNames.append(amp)
            for attr, col in PTC_COLUMNS.items():
                if col not in table.colnames:
                    continue
                value = row[col]
                if np.ma.isMaskedArray(value) or isinstance(value, np.ma.core.MaskedConstant):
                    # astropy masks NaN when reading FITS: restore the NaN.
                    value = np.ma.filled(np.ma.asarray(value, dtype=np.float64), np.nan)
                value = np.array(value)
                if attr in _MATRICES:
                    value = value.reshape(-1, side if attr != "covariancesModel" else side_fit,
                                          side if attr != "covariancesModel" else side_fit)  # fmt: skip
                elif attr in _SQUARE and value.size:
                    n = int(round(np.sqrt(value.size)))
                    value = value.reshape(n, n)
                elif attr == "inputExpIdPairs":
                    value = value.reshape(-1, 2)
                elif value.ndim == 0:
                    value = value.item()
                ds.set(attr, amp, value)
        return ds


def _fits_safe_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in meta.items():
        k = re.sub(r"[^A-Z0-9_-]", "_", str(key).upper())[:68]
        if isinstance(value, (bool, int, float, str)):
            out[k] = value
        elif value is None:
            out[k] = ""
        else:
            out[k] = str(value)
    return out


class EoPtcFitsFormatter(FormatterV2):
    """Read and write `EoPtcDataset` as ip_isr does: empty primary HDU + one binary table."""

    default_extension = ".fits"
    can_read_from_local_file = True
    unsupported_parameters = None

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        with fits.open(path, memmap=False) as hdul:
            table = Table.read(hdul[1], mask_invalid=False)
        return EoPtcDataset.from_table(table)

    def write_local_file(self, in_memory_dataset: EoPtcDataset, uri: ResourcePath) -> None:
        # Docstring inherited.
        table = in_memory_dataset.to_table()
        table.meta = _fits_safe_meta(table.meta)
        with warnings.catch_warnings():
            # Long keywords become HIERARCH cards, exactly as ip_isr's files have them.
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            hdu = fits.table_to_hdu(table)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(uri.ospath, overwrite=True)
