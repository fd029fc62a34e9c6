"""Raw files as the camera writes them: real headers, housekeeping HDUs, EXTNAME case, malformed variants.

Files are rebuilt with astropy from the header dumps of two real LSSTCam raws (obs_lsst test data,
see ``tests/data/headers/README.md``): every card of every HDU as the camera wrote it, pixels
re-filled.  Expected values are read by hand from the dumps (quoted in the comments).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.ingest import ingest_raws
from lsst.eo.baseline.rawio import RawFileError, check_raw_file, read_housekeeping, read_raw, write_raw_ccd
from lsst.eo.baseline.repo import create_repo

from tests.rawfactory import REAL_2019_DUMP, REAL_2021_DUMP, real_raw_hdus, segment_truth

RUN = "LSSTCam/raw/all"


def _write(hdus, path):
    hdus.writeto(path, overwrite=True)
    return str(path)


def _variant(slot, edit=None, **kwargs):
    """HDUs of the 2021 file for detector R22_<slot> (all R22 CCDs are e2v, like the real one)."""
    hdus = real_raw_hdus(REAL_2021_DUMP, primary_overrides={"CCDSLOT": slot}, seed=len(slot), **kwargs)
    if edit is not None:
        edit(hdus)
    return hdus


def _upper(hdus):
    for hdu in hdus[1:17]:
        hdu.header["EXTNAME"] = hdu.header["EXTNAME"].upper()


def _housekeeping_between(hdus):
    # REB_COND moved between the segments, and a header-only image HDU (NAXIS = 0) appended.
    reb = hdus.pop(17)
    hdus.insert(5, reb)
    hdus.append(fits.ImageHDU(name="TEST_COND", header=fits.Header([("TEMPSET", -100.0, "set point")])))


def _drop_segment05(hdus):
    del hdus[[h.header.get("EXTNAME") for h in hdus].index("Segment05")]


def _duplicate(hdus):
    hdus[2].header["EXTNAME"] = "Segment10"  # HDU 2 was Segment11


def _extra_image(hdus):
    hdus.append(fits.ImageHDU(np.zeros((10, 20), dtype=np.int32), name="EXTRA"))


def _segment_as_table(hdus):
    hdus[4] = fits.BinTableHDU(name="Segment13")  # HDU 4 was Segment13


def _segment_without_pixels(hdus):
    hdus[4] = fits.ImageHDU(name="Segment13")


GOOD = {
    "real2021.fits": lambda: real_raw_hdus(REAL_2021_DUMP, seed=1),
    "real2019.fits": lambda: real_raw_hdus(REAL_2019_DUMP, seed=2),
    "upper.fits": lambda: _variant("S21", _upper),
    "uncompressed.fits": lambda: _variant("S20", compress=False),
    "between.fits.fz": lambda: _variant("S12", _housekeeping_between),
}
# (HDUs, words of the reason, HDU index of the error) of each malformed variant.
BAD = {
    "missing.fits": (
        lambda: _variant("S00", _drop_segment05),
        ["has 15 of the 16 amplifier segments", "Segment05"],
        None,
    ),
    "duplicate.fits": (
        lambda: _variant("S01", _duplicate),
        ["duplicate amplifier segment Segment10", "HDU 1"],
        2,
    ),
    "extra_image.fits": (
        lambda: _variant("S02", _extra_image),
        ["image HDU 'EXTRA'", "not an amplifier segment"],
        19,
    ),
    "seg_table.fits": (
        lambda: _variant("S10", _segment_as_table),
        ["Segment13 is a BINARY_TBL, not an image"],
        4,
    ),
    "seg_empty.fits": (lambda: _variant("S11", _segment_without_pixels), ["Segment13 holds no pixels"], 4),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    top = tmp_path_factory.mktemp("real")
    good, truth = {}, {}
    for name, make in GOOD.items():
        hdus = make()
        good[name] = _write(hdus, top / name)
        truth[name] = segment_truth(hdus)
    bad = {_write(make(), top / name): (words, hdu) for name, (make, words, hdu) in BAD.items()}
    return str(top), good, truth, bad


def test_real_file_reads_back(files):
    _, good, truth, _ = files
    path = good["real2021.fits"]
    summary = check_raw_file(path)
    assert summary.detector.name == "R22_S22"
    assert summary.layout.housekeeping == [(17, "REB_COND"), (18, "CONFIG_COND")]
    raw = read_raw(path)
    assert len(raw.amps) == 16
    for amp in raw.amps.values():
        np.testing.assert_array_equal(amp.array, truth["real2021.fits"][amp.layout.extname])
    # From the dump: Segment10 DATASEC = '[11:522,1:2002]', REB_COND CCDTEMP = -99.9828,
    # RTDTEMP = -105.801, TEMP10 = -0.25; CONFIG_COND FPDAQCS = '2338216281'.
    assert raw["C10"].header["DATASEC"] == "[11:522,1:2002]"
    reb = raw.housekeeping["REB_COND"]
    assert (reb["CCDTEMP"], reb["RTDTEMP"], reb["TEMP10"]) == (-99.9828, -105.801, -0.25)
    assert raw.housekeeping["CONFIG_COND"]["FPDAQCS"] == "2338216281"
    # Structural cards are not housekeeping values.
    assert not {"XTENSION", "NAXIS", "TFIELDS", "CHECKSUM", "EXTNAME"} & set(reb)
    assert read_housekeeping(path) == raw.housekeeping


def test_old_file_unnamed_housekeeping_uncompressed(files):
    _, good, truth, _ = files
    path = good["real2019.fits"]
    summary = check_raw_file(path)
    assert summary.detector.name == "R10_S02"
    # The 2019 housekeeping tables have no EXTNAME: named by HDU index.
    assert summary.layout.housekeeping == [(17, "HDU17"), (18, "HDU18")]
    raw = read_raw(path)
    for amp in raw.amps.values():
        np.testing.assert_array_equal(amp.array, truth["real2019.fits"][amp.layout.extname])
    # From the dump: HDU 17 TEMP1 = -4.0 'REB Board temperature 1', no CCDTEMP; HDU 18 empty.
    assert raw.housekeeping["HDU17"]["TEMP1"] == -4.0
    assert "CCDTEMP" not in raw.housekeeping["HDU17"]
    assert raw.housekeeping["HDU18"] == {}


@pytest.mark.parametrize("name", ["upper.fits", "uncompressed.fits", "between.fits.fz"])
def test_accepted_variants(files, name):
    _, good, truth, _ = files
    summary = check_raw_file(good[name])
    assert sorted(summary.layout.segments) == sorted(truth[name])
    raw = read_raw(good[name])
    # Amplifiers come back in the camera's order, under the camera's EXTNAMEs.
    assert raw.amp_names == summary.detector.amp_names
    for amp in raw.amps.values():
        np.testing.assert_array_equal(amp.array, truth[name][amp.layout.extname])
    if name == "between.fits.fz":
        assert summary.layout.housekeeping == [(5, "REB_COND"), (18, "CONFIG_COND"), (19, "TEST_COND")]
        assert raw.housekeeping["TEST_COND"] == {"TEMPSET": -100.0}
        assert raw.housekeeping["REB_COND"]["CCDTEMP"] == -99.9828


def test_write_raw_ccd_keeps_housekeeping(files, tmp_path):
    _, good, _, _ = files
    for name in ("real2021.fits", "real2019.fits"):
        raw = read_raw(good[name])
        out = str(tmp_path / name)
        write_raw_ccd(out, raw)
        again = read_raw(out)
        assert list(again.housekeeping) == list(raw.housekeeping)
        for hdu, cards in raw.housekeeping.items():
            assert list(again.housekeeping[hdu]) == list(cards)
            # cfitsio writes floating-point values with 15 significant digits (the camera's Java
            # writer 17): equal to 1e-14 relative.
            for key, value in cards.items():
                assert again.housekeeping[hdu][key] == (
                    pytest.approx(value, rel=1e-14) if isinstance(value, float) else value
                ), key
        assert check_raw_file(out).layout.housekeeping == check_raw_file(good[name]).layout.housekeeping


def test_malformed_variants_named(files):
    _, _, _, bad = files
    for path, (words, hdu) in bad.items():
        with pytest.raises(RawFileError) as err:
            check_raw_file(path)
        assert err.value.path == path
        assert err.value.hdu == hdu, (path, str(err.value))
        for w in words:  # astropy's name= writes EXTNAMEs upper case, and messages quote the file
            assert w.lower() in str(err.value).lower(), (path, str(err.value))
        with pytest.raises(RawFileError):
            read_raw(path)


def test_ingest_real_structure_batch(files, tmp_path):
    top, good, truth, bad = files
    butler = create_repo(str(tmp_path / "repo"))
    report = ingest_raws(butler, [top], progress=False)
    # Every good file ingested, every bad one reported with its HDU and reason.
    assert report.ingested == len(good), report.bad
    assert sorted(p for p, _ in report.bad) == sorted(bad)
    for path, reason in report.bad:
        words, hdu = bad[path]
        for w in words:
            assert w.lower() in reason.lower(), reason
        if hdu is not None:
            assert f"(HDU {hdu})" in reason, reason
    # Exposure records of the real files, from their primary headers (by hand):
    # OBSID 'MC_C_20211212_000310', DAYOBS '20211212', SEQNUM 310, IMGTYPE 'FLAT', EXPTIME 7.83172,
    # RUNNUM '13162'; OBSID 'MC_C_20190319_000001', IMGTYPE 'BIAS', EXPTIME 0.0.
    records = {r.id: r for r in butler.query_dimension_records("exposure", instrument="LSSTCam")}
    flat = records[2021121200310]
    assert (flat.obs_id, flat.day_obs, flat.seq_num) == ("MC_C_20211212_000310", 20211212, 310)
    assert (flat.observation_type, flat.exposure_time, flat.science_program) == ("flat", 7.83172, "13162")
    bias = records[2019031900001]
    assert (bias.obs_id, bias.observation_type, bias.exposure_time) == ("MC_C_20190319_000001", "bias", 0.0)
    # Raw read-back and housekeeping through the butler.
    camera_ids = {"real2021.fits": "R22_S22", "upper.fits": "R22_S21", "between.fits.fz": "R22_S12"}
    for name, det in camera_ids.items():
        data_id = {"instrument": "LSSTCam", "exposure": 2021121200310, "detector": get_camera()[det].id}
        raw = butler.get("raw", data_id, collections=RUN)
        for amp in raw.amps.values():
            np.testing.assert_array_equal(amp.array, truth[name][amp.layout.extname])
        housekeeping = butler.get("raw.housekeeping", data_id, collections=RUN)
        assert housekeeping["REB_COND"]["CCDTEMP"] == -99.9828
        assert housekeeping == raw.housekeeping
