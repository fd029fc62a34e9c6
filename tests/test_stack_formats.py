"""Our eoPtc and defect-list files in the stack's (ip_isr's) FITS layouts.

ip_isr is not installable here, so the ip_isr side is written by hand from the documented layout
(``cp_pipe_algorithms.md`` 2.8 and ip_isr d2a69bf ``PhotonTransferCurveDataset.toTable`` /
``Defects.toTable`` + ``IsrCalib.writeFits``), not from our writer, and what ip_isr's readers demand
of a file (columns read by exact name, N from COVARIANCES, matrix sides from the last row, OBSTYPE,
CALIBCLS, version keys) is checked on ours.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lsst.eo.baseline.defects import defect_table
from lsst.eo.baseline.defectsIo import read_defects_fits, write_defects_fits
from lsst.eo.baseline.ptcDataset import EoPtcDataset, read_ptc_fits, write_ptc_fits

# The 49 columns of PhotonTransferCurveDataset.toTable (version 2.6), in order.
IP_ISR_PTC_COLUMNS = [
    "AMPLIFIER_NAME", "PTC_FIT_TYPE", "COV_MATRIX_SIDE", "COV_MATRIX_SIDE_FULL_COV_FIT",
    "INPUT_EXP_ID_PAIRS", "INPUT_EXP_PAIR_MJD_START", "EXP_ID_MASK", "EXP_ID_ROLLOFF_MASK",
    "RAW_EXP_TIMES", "RAW_MEANS", "RAW_VARS", "RAW_DELTAS", "ROW_MEAN_VARIANCE", "GAIN", "GAIN_ERR",
    "GAIN_UNADJUSTED", "GAIN_LIST", "OVERSCAN_MEDIAN_LIST", "OVERSCAN_MEDIAN", "OVERSCAN_MEDIAN_SIGMA",
    "NOISE_LIST", "NOISE", "NOISE_ERR", "HIST_VARS", "HIST_CHI2_DOFS", "KS_PVALUES", "PTC_FIT_PARS",
    "PTC_FIT_PARS_ERROR", "PTC_FIT_CHI_SQ", "PTC_TURNOFF", "PTC_TURNOFF_SAMPLING_ERROR", "PTC_ROLLOFF",
    "PTC_ROLLOFF_ERROR", "PTC_ROLLOFF_TAU", "PTC_ROLLOFF_TAU_ERROR", "A_MATRIX", "B_MATRIX",
    "NOISE_MATRIX", "BAD_AMPS", "PHOTO_CHARGE", "PHOTO_CHARGE_DELTAS", "AMP_OFFSETS",
    "NPIXEL_COVARIANCES", "COVARIANCES", "COVARIANCES_MODEL", "COVARIANCES_SQRT_WEIGHTS", "FINAL_VARS",
    "FINAL_MODEL_VARS", "FINAL_MEANS",
]  # fmt: skip
N, R, RF = 3, 3, 2  # pairs, measured lag range, fitted lag range


def _ip_isr_ptc_file(path):
    """Two amplifiers written the way ip_isr's toTable + writeFits lays them out."""
    rows = []
    for i, amp in enumerate(["C10", "C11"]):
        k = np.arange(N, dtype=np.float64)
        row = {
            "AMPLIFIER_NAME": amp, "PTC_FIT_TYPE": "FULLCOVARIANCE", "COV_MATRIX_SIDE": R,
            "COV_MATRIX_SIDE_FULL_COV_FIT": RF,
            "INPUT_EXP_ID_PAIRS": np.array([[10 + 2 * j, 11 + 2 * j] for j in range(N)], dtype=np.int64),
            "INPUT_EXP_PAIR_MJD_START": 60000.0 + k, "EXP_ID_MASK": np.array([True, True, False]),
            "EXP_ID_ROLLOFF_MASK": np.array([False, True, True]), "RAW_EXP_TIMES": 1.0 + k,
            "RAW_MEANS": 1000.0 * (1 + k) + i, "RAW_VARS": 700.0 * (1 + k), "RAW_DELTAS": 0.1 * k,
            "ROW_MEAN_VARIANCE": 0.01 * k, "GAIN": 1.5 + i, "GAIN_ERR": 0.01, "GAIN_UNADJUSTED": 1.49 + i,
            "GAIN_LIST": 1.5 + 0 * k, "OVERSCAN_MEDIAN_LIST": 20000.0 + k, "OVERSCAN_MEDIAN": 20001.0,
            "OVERSCAN_MEDIAN_SIGMA": 0.5, "NOISE_LIST": 4.0 + 0 * k, "NOISE": 6.0, "NOISE_ERR": 0.1,
            "HIST_VARS": np.full(N, np.nan), "HIST_CHI2_DOFS": np.full(N, np.nan), "KS_PVALUES": 0 * k,
            "PTC_FIT_PARS": np.array([np.nan]), "PTC_FIT_PARS_ERROR": np.array([np.nan]),
            "PTC_FIT_CHI_SQ": 1.1, "PTC_TURNOFF": 90000.0, "PTC_TURNOFF_SAMPLING_ERROR": 100.0,
            "PTC_ROLLOFF": 85000.0, "PTC_ROLLOFF_ERROR": 50.0, "PTC_ROLLOFF_TAU": -3000.0,
            "PTC_ROLLOFF_TAU_ERROR": 30.0, "A_MATRIX": np.arange(RF * RF) * 1e-7,
            "B_MATRIX": np.zeros(RF * RF), "NOISE_MATRIX": np.full(RF * RF, 2.0),
            "BAD_AMPS": np.array(["C11"]), "PHOTO_CHARGE": 1e-9 * (1 + k), "PHOTO_CHARGE_DELTAS": 0 * k,
            "AMP_OFFSETS": np.full(N, np.nan), "NPIXEL_COVARIANCES": 1000000,
            "COVARIANCES": np.arange(N * R * R, dtype=np.float64), "COVARIANCES_MODEL": np.ones(N * RF * RF),
            "COVARIANCES_SQRT_WEIGHTS": np.ones(N * R * R), "FINAL_VARS": np.array([700.0, 1400.0, np.nan]),
            "FINAL_MODEL_VARS": 700.0 * (1 + k), "FINAL_MEANS": np.array([1000.0, 2000.0, np.nan]),
            "PTCAUX_TEMP6": np.array([-100.0, -100.5, -101.0]),
        }  # fmt: skip
        rows.append(row)
    table = Table(rows)
    table.meta = {"OBSTYPE": "PTC", "PTC_SCHEMA": "Gen3 Photon Transfer Curve", "PTC_VERSION": 2.6,
                  "CALIBCLS": "lsst.ip.isr.ptcDataset.PhotonTransferCurveDataset",
                  "PTC_FIT_TYPE": "FULLCOVARIANCE", "INSTRUME": "LSSTCam", "DETECTOR": 94,
                  "DET_NAME": "R22_S11", "FILTER": ""}  # fmt: skip
    with pytest.warns(fits.verify.VerifyWarning):  # HIERARCH cards for long keys, as ip_isr's files
        hdu = fits.table_to_hdu(table)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def test_read_ip_isr_ptc_file(tmp_path):
    path = str(tmp_path / "ptc_ip_isr.fits")
    _ip_isr_ptc_file(path)
    ptc = read_ptc_fits(path)
    assert ptc.ampNames == ["C10", "C11"]
    assert ptc.ptcFitType == "FULLCOVARIANCE"
    assert (ptc.covMatrixSide, ptc.covMatrixSideFullCovFit) == (R, RF)
    assert ptc.badAmps == ["C11"]
    assert ptc.gain["C11"] == 2.5
    np.testing.assert_array_equal(ptc.rawMeans["C11"], [1001.0, 2001.0, 3001.0])
    np.testing.assert_array_equal(ptc.inputExpIdPairs["C10"], [[10, 11], [12, 13], [14, 15]])
    np.testing.assert_array_equal(ptc.expIdMask["C10"], [True, True, False])
    assert ptc.covariances["C10"].shape == (N, R, R)
    assert ptc.covariances["C10"][1, 2, 0] == 1 * R * R + 2 * R + 0  # C order [pair, dx, dy]
    assert ptc.covariancesModel["C10"].shape == (N, RF, RF)
    assert ptc.aMatrix["C10"].shape == (RF, RF) and ptc.aMatrix["C10"][1, 0] == 2e-7
    assert ptc.nPixelCovariances["C10"] == 1000000
    assert ptc.ptcRolloffTau["C10"] == -3000.0  # read directly, not via ip_isr's fromDict slip
    assert np.isnan(ptc.finalMeans["C10"][2])
    np.testing.assert_array_equal(ptc.auxValues["TEMP6"], [-100.0, -100.5, -101.0])
    assert ptc.metadata["DETECTOR"] == 94


def _check_ip_isr_reader_accepts(path):
    """What ip_isr's readFits -> fromTable -> fromDict needs of a version 2.6 PTC file."""
    with fits.open(path) as hdul:
        assert isinstance(hdul[0], fits.PrimaryHDU) and hdul[0].data is None
        header = hdul[1].header
    table = Table.read(path, hdu=1, mask_invalid=False)  # by path, as ip_isr's readFits
    assert header["OBSTYPE"] == "PTC"
    assert header["CALIBCLS"] == "lsst.ip.isr.ptcDataset.PhotonTransferCurveDataset"
    assert header["PTC_VERSION"] == 2.6 and header["PTC_SCHEMA"] == "Gen3 Photon Transfer Curve"
    assert table.colnames[: len(IP_ISR_PTC_COLUMNS)] == IP_ISR_PTC_COLUMNS
    r = int(table[-1]["COV_MATRIX_SIDE"])
    rf = int(table[-1]["COV_MATRIX_SIDE_FULL_COV_FIT"])
    n = len(table[0]["COVARIANCES"]) // (r * r)
    for row in table:
        assert len(row["RAW_MEANS"]) == n and row["INPUT_EXP_ID_PAIRS"].shape == (n, 2)
        assert len(row["COVARIANCES_MODEL"]) == n * rf * rf and len(row["A_MATRIX"]) == rf * rf
        assert np.ndim(row["NPIXEL_COVARIANCES"]) == 0
        assert np.ndim(row["GAIN"]) == 0 and np.ndim(row["PTC_ROLLOFF_TAU"]) == 0
    assert table["NPIXEL_COVARIANCES"].dtype.kind == "i"
    assert table["EXP_ID_MASK"].dtype == bool
    assert table["BAD_AMPS"].dtype.kind in "US"
    return table


def _our_ptc():
    meta = {"DETECTOR": 94, "DET_NAME": "R22_S11"}
    ptc = EoPtcDataset(
        ["C10", "C11"], "EXPAPPROXIMATION", covMatrixSide=R, covMatrixSideFullCovFit=RF, metadata=meta
    )
    for i, amp in enumerate(ptc.ampNames):
        ptc.set("inputExpIdPairs", amp, np.array([[1, 2], [3, 4], [5, 6]]))
        ptc.set("rawMeans", amp, np.array([1.0, 2.0, 3.0]) + i)
        ptc.set("expIdMask", amp, np.array([True, False, True]))
        ptc.set("gain", amp, 1.6)
        ptc.set("ptcFitPars", amp, np.array([2.5e-6, 1.6, 30.0]))
        ptc.set("covariances", amp, np.arange(N * R * R, dtype=float).reshape(N, R, R))
        ptc.set("aMatrix", amp, np.ones((RF, RF)))
        ptc.set("nPixelCovariances", amp, np.array([1000, 1000, 1000]))
        ptc.set("measuredMeans", amp, np.array([1.1, 2.1, 3.1]))
    ptc.set("nPixelCovariances", "C11", np.array([1000, 999, 1000]))
    # A failed fit leaves empty matrices: written as NaN of the right size, as ip_isr needs.
    ptc.set("aMatrix", "C11", np.full((0, 0), np.nan))
    ptc.set("covariancesModel", "C11", np.full((0, 0, 0), np.nan))
    return ptc


def test_our_ptc_file_in_ip_isr_layout_round_trips(tmp_path):
    path = str(tmp_path / "ptc_ours.fits")
    ptc = _our_ptc()
    write_ptc_fits(ptc, path)
    table = _check_ip_isr_reader_accepts(path)
    # One count per amplifier: the common value, or ip_isr's "unknown" -1 if the pairs differ.
    assert list(table["NPIXEL_COVARIANCES"]) == [1000, -1]
    assert len(table[0]["BAD_AMPS"]) == 0  # empty list: a zero-length string array, as ip_isr
    assert np.all(np.isnan(table[0]["PTC_ROLLOFF_TAU"]))  # not computed: NaN, as ip_isr's default
    assert not np.any(table[0]["EXP_ID_ROLLOFF_MASK"])
    back = read_ptc_fits(path)
    assert back.ampNames == ptc.ampNames and back.ptcFitType == "EXPAPPROXIMATION"
    for amp in ptc.ampNames:
        np.testing.assert_array_equal(back.rawMeans[amp], ptc.rawMeans[amp])
        np.testing.assert_array_equal(back.inputExpIdPairs[amp], ptc.inputExpIdPairs[amp])
        np.testing.assert_array_equal(back.expIdMask[amp], ptc.expIdMask[amp])
        np.testing.assert_array_equal(back.covariances[amp], ptc.covariances[amp])
        np.testing.assert_array_equal(back.ptcFitPars[amp], ptc.ptcFitPars[amp])
        np.testing.assert_array_equal(back.measuredMeans[amp], ptc.measuredMeans[amp])
        np.testing.assert_array_equal(back.nPixelCovariances[amp], ptc.nPixelCovariances[amp])
        assert back.gain[amp] == 1.6
    np.testing.assert_array_equal(back.aMatrix["C10"], np.ones((RF, RF)))
    assert back.aMatrix["C11"].shape == (RF, RF) and np.all(np.isnan(back.aMatrix["C11"]))
    assert back.covariancesModel["C11"].shape == (N, RF, RF)
    assert back.metadata["DET_NAME"] == "R22_S11"


def test_old_eo_baseline_column_names_are_read():
    table = Table({"AMPLIFIER_NAME": ["C10"], "PTC_FIT_TYPE": ["EXPAPPROXIMATION"], "COV_MATRIX_SIDE": [1],
                   "RAW_MEANS": [[1.0, 2.0]], "PHOTO_CHARGE_DELTA": [[0.5, 0.25]]})  # fmt: skip
    table.meta = {"OBSTYPE": "PTC", "PTC_VERSION": 2.6}
    ptc = EoPtcDataset.from_table(table)
    np.testing.assert_array_equal(ptc.photoChargeDeltas["C10"], [0.5, 0.25])


def test_ptc_reader_rejects_other_obstype(tmp_path):
    table = Table({"AMPLIFIER_NAME": ["C10"], "COV_MATRIX_SIDE": [1]})
    table.meta = {"OBSTYPE": "defects"}
    with pytest.raises(ValueError, match="OBSTYPE"):
        EoPtcDataset.from_table(table)


def test_defects_file_in_ip_isr_layout(tmp_path):
    # A 3 x 2 block at x 4..6, y 10..11 and a 1 x 5 column at x 20, y 0..4.
    mask = np.zeros((30, 40), dtype=bool)
    mask[10:12, 4:7] = True
    mask[0:5, 20] = True
    boxes = defect_table(mask)
    boxes.meta.update({"DETECTOR": 94, "DET_NAME": "R22_S11"})
    path = str(tmp_path / "defects.fits")
    write_defects_fits(boxes, path)
    with fits.open(path) as hdul:
        assert hdul[0].data is None
        header = hdul[1].header
        table = Table.read(hdul[1])
    # ip_isr Defects: OBSTYPE 'defects', <OBSTYPE>_SCHEMA '' and _VERSION 2.0, CALIBCLS its class.
    assert header["OBSTYPE"] == "defects"
    assert header["DEFECTS_SCHEMA"] == "" and header["DEFECTS_VERSION"] == 2.0
    assert header["CALIBCLS"] == "lsst.ip.isr.defects.Defects"
    assert header["DETECTOR"] == 94
    assert table.colnames == ["x0", "y0", "width", "height"]
    assert all(table[c].dtype.kind == "i" for c in table.colnames)
    assert sorted(map(tuple, np.array(table.as_array().tolist()))) == [(4, 10, 3, 2), (20, 0, 1, 5)]
    back = read_defects_fits(path)
    assert sorted(map(tuple, np.array(back.as_array().tolist()))) == [(4, 10, 3, 2), (20, 0, 1, 5)]


def test_read_ip_isr_written_defects(tmp_path):
    # As Defects.toTable + writeFits: int64 columns from Python ints, metadata without None values.
    table = Table({"x0": [1, 7], "y0": [2, 0], "width": [1, 2], "height": [3, 4]})
    table.meta = {"OBSTYPE": "defects", "DEFECTS_SCHEMA": "", "DEFECTS_VERSION": 2.0,
                  "CALIBCLS": "lsst.ip.isr.defects.Defects", "DETECTOR": 94}  # fmt: skip
    with pytest.warns(fits.verify.VerifyWarning):
        hdu = fits.table_to_hdu(table)
    path = str(tmp_path / "ip_isr_defects.fits")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    back = read_defects_fits(path)
    assert list(back["x0"]) == [1, 7] and list(back["height"]) == [3, 4]
    table.meta["OBSTYPE"] = "PTC"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(path, overwrite=True)
    with pytest.raises(ValueError, match="OBSTYPE"):
        read_defects_fits(path)
