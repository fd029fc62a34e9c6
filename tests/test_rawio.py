"""Raw FITS reading/writing and the structural checks that ingest relies on."""

import os

import fitsio
import numpy as np
import pytest

from lsst.eo.baseline.rawio import RawFileError, check_raw_file, read_raw, write_raw

from tests.rawfactory import make_raw


@pytest.fixture(scope="module")
def e2v_raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "e2v.fits"
    return make_raw(str(path), detector="R22_S11", level=21000.0, signal=1000.0, noise=4.0, seed=3)


def test_format_is_real_raw_format(e2v_raw):
    with fitsio.FITS(e2v_raw) as f:
        assert len(f) == 17
        for hdu in f[1:]:
            assert hdu.is_compressed()
            assert hdu.get_dims() == [2048, 576]
            hdr = hdu.read_header()
            assert hdr["ZCMPTYPE"] == "RICE_1"
            assert (hdr["ZTILE1"], hdr["ZTILE2"]) == (576, 1)
            assert hdr["ZBITPIX"] == 32


def test_read_round_trip(e2v_raw):
    raw = read_raw(e2v_raw)
    assert raw.detector.name == "R22_S11"
    assert raw.amp_names[0] == "C10" and raw.amp_names[-1] == "C00"
    amp = raw["C10"]
    assert amp.array.dtype == np.int32
    assert amp.array.shape == (2048, 576)
    assert amp.data.shape == (2002, 512)
    assert amp.serial_prescan.shape == (2002, 10)
    assert amp.serial_overscan.shape == (2002, 54)
    assert amp.serial_overscan_full.shape == (2048, 54)
    assert amp.parallel_overscan.shape == (46, 512)
    # Views share memory with the raw array (no copy).
    assert np.shares_memory(amp.data, amp.array)
    assert abs(np.median(amp.data) - 22000) <= 1
    assert abs(np.median(amp.serial_overscan) - 21000) <= 1
    assert amp.header["DATASEC"] == "[11:522,1:2002]"
    assert amp.data_image().bbox.x.start == 10
    assert raw.header["RAFTBAY"] == "R22"


def test_partial_read(e2v_raw):
    raw = read_raw(e2v_raw, amps=["C03", "C14"])
    assert raw.amp_names == ["C14", "C03"]  # HDU order
    with pytest.raises(KeyError, match="C10"):
        raw["C10"]
    header = read_raw(e2v_raw, header_only=True)
    assert header["OBSID"] == raw.header["OBSID"]
    with pytest.raises(RawFileError, match="C99"):
        read_raw(e2v_raw, amps=["C99"])


def test_write_is_atomic_and_lossless(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 2**18, size=(2048, 576), dtype=np.int32) for _ in range(2)]
    path = str(tmp_path / "x.fits")
    write_raw(path, {"OBSID": "X"}, [("Segment10", arrays[0], {}), ("Segment11", arrays[1], {})])
    assert os.listdir(tmp_path) == ["x.fits"]
    with fitsio.FITS(path) as f:
        assert (f[1].read() == arrays[0]).all()
        assert (f["Segment11"].read() == arrays[1]).all()


def _copy_with(path_in, path_out, transform):
    """Rewrite a raw file after transforming its list of (extname, array, header) segments."""
    raw = read_raw(path_in)
    segs = [(a.layout.extname, a.array, a.header) for a in raw.amps.values()]
    header = dict(raw.header)
    segs, header = transform(segs, header)
    write_raw(path_out, header, segs)
    return path_out


def test_check_accepts_good_file(e2v_raw):
    summary = check_raw_file(e2v_raw)
    assert summary.detector.id == 94
    assert summary.header["IMGTYPE"] == "BIAS"


def test_check_truncated(e2v_raw, tmp_path):
    bad = tmp_path / "truncated.fits"
    data = open(e2v_raw, "rb").read()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RawFileError, match="truncated") as err:
        check_raw_file(str(bad))
    assert err.value.path == str(bad)


def test_check_not_fits(tmp_path):
    bad = tmp_path / "notes.fits"
    bad.write_text("this is not a FITS file\n" * 200)
    with pytest.raises(RawFileError, match="not a readable FITS file"):
        check_raw_file(str(bad))
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(RawFileError, match="too short"):
        check_raw_file(str(empty))


def test_check_missing_hdu(e2v_raw, tmp_path):
    path = _copy_with(e2v_raw, str(tmp_path / "15.fits"), lambda s, h: (s[:-1], h))
    with pytest.raises(RawFileError, match="has 15 of the 16 amplifier segments .*; missing: Segment00"):
        check_raw_file(path)


def test_check_wrong_shape(e2v_raw, tmp_path):
    def shrink(segs, h):
        segs[3] = (segs[3][0], segs[3][1][:, :544], segs[3][2])
        return segs, h

    path = _copy_with(e2v_raw, str(tmp_path / "shape.fits"), shrink)
    with pytest.raises(RawFileError, match=r"Segment13 has shape \(2048, 544\)") as err:
        check_raw_file(path)
    assert err.value.hdu == 4


def test_check_wrong_extname(e2v_raw, tmp_path):
    def rename(segs, h):
        segs[0] = ("Segment99", segs[0][1], segs[0][2])
        return segs, h

    path = _copy_with(e2v_raw, str(tmp_path / "name.fits"), rename)
    # Segment99 is no segment name: an image HDU with pixels that is not a segment is refused.
    with pytest.raises(RawFileError, match="image HDU 'Segment99' holds .* not an amplifier segment") as err:
        check_raw_file(path)
    assert err.value.hdu == 1


def test_check_unknown_detector(e2v_raw, tmp_path):
    def drop(segs, h):
        del h["CCDSLOT"]
        return segs, h

    path = _copy_with(e2v_raw, str(tmp_path / "noslot.fits"), drop)
    with pytest.raises(RawFileError, match="CCDSLOT"):
        check_raw_file(path)
