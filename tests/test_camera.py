"""LSSTCam camera definition: detector ids/names, vendors, and raw amplifier geometry invariants."""

import numpy as np
import pytest

from lsst.eo.baseline.camera import get_camera

from tests.rawfactory import E2V_HEADER, load_real_header

ITL_RAFTS = {"R01", "R02", "R03", "R10", "R20", "R41", "R42", "R43"}
E2V_RAFTS = {"R11", "R12", "R13", "R14", "R21", "R22", "R23", "R24", "R30", "R31", "R32", "R33", "R34"}


def test_detector_count_and_purposes():
    cam = get_camera()
    assert len(cam) == 205
    purposes = [d.purpose for d in cam]
    assert purposes.count("SCIENCE") == 189
    assert purposes.count("GUIDER") == 8
    assert purposes.count("WAVEFRONT") == 8
    assert sorted(d.id for d in cam) == list(range(205))
    assert len({d.name for d in cam}) == 205


@pytest.mark.parametrize(
    "name, det_id",
    [
        ("R01_S00", 0),
        ("R12_S10", 48),
        ("R20_S01", 73),
        ("R22_S11", 94),
        ("R43_S22", 188),
        ("R00_SG0", 189),
        ("R00_SW0", 191),
        ("R04_SW0", 195),
        ("R40_SW0", 199),
        ("R44_SW0", 203),
        ("R44_SW1", 204),
    ],
)
def test_obs_lsst_ids(name, det_id):
    cam = get_camera()
    assert cam[name].id == det_id
    assert cam[det_id].name == name


def test_vendors_per_raft():
    cam = get_camera()
    for d in cam.science_detectors:
        expected = "ITL" if d.raft in ITL_RAFTS else "E2V"
        assert d.raft in ITL_RAFTS | E2V_RAFTS
        assert d.vendor == expected, d.name
    assert sum(d.vendor == "ITL" for d in cam.science_detectors) == 72
    assert sum(d.vendor == "E2V" for d in cam.science_detectors) == 117
    for d in cam:
        if d.purpose != "SCIENCE":
            assert d.vendor == "ITL"
            assert d.raft in {"R00", "R04", "R40", "R44"}


def test_amp_names_and_segments():
    cam = get_camera()
    ccd = cam["R22_S11"].ccd_type
    assert ccd.amp_names == [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(7, -1, -1)]
    assert [a.extname for a in ccd.amps] == [f"Segment{n[1:]}" for n in ccd.amp_names]
    assert [a.hdu for a in ccd.amps] == list(range(1, 17))
    wf = cam["R00_SW1"].ccd_type
    assert wf.amp_names == [f"C1{i}" for i in range(8)]


@pytest.mark.parametrize(
    "ccd_type, shape", [("ITL", (4000, 4072)), ("E2V", (4004, 4096)), ("ITL_WF", (2000, 4072))]
)
def test_assembled_sizes_and_tiling(ccd_type, shape):
    ccd = get_camera().ccd_types[ccd_type]
    assert ccd.shape == shape
    cover = np.zeros(shape, dtype=int)
    for amp in ccd.amps:
        b = amp.bbox
        assert tuple(b.shape) == tuple(amp.raw.data_bbox.shape)
        cover[b.y.start : b.y.stop, b.x.start : b.x.stop] += 1
    # Every pixel of the CCD belongs to exactly one amplifier.
    assert (cover == 1).all()


@pytest.mark.parametrize("ccd_type", ["ITL", "E2V", "ITL_G", "ITL_WF"])
def test_raw_boxes_tile_the_raw_amp(ccd_type):
    """Prescan, data, serial overscan, parallel overscan and their corners cover the raw amp once."""
    ccd = get_camera().ccd_types[ccd_type]
    raw = ccd.amps[0].raw
    ny, nx = ccd.raw_shape
    assert (ny, nx) == (2048, 576)
    regions = [raw.prescan_bbox, raw.data_bbox, raw.serial_overscan_bbox, raw.parallel_overscan_bbox]
    cover = np.zeros((ny, nx), dtype=int)
    for box in regions:
        cover[box.y.start : box.y.stop, box.x.start : box.x.stop] += 1
    assert cover.max() == 1, "raw regions overlap"
    # What is left is the prescan and serial-overscan columns of the parallel-overscan rows.
    d = raw.data_bbox
    assert (cover[: d.y.stop, :] == 1).all(), "data rows not fully covered"
    assert (cover[d.y.stop :, d.x.start : d.x.stop] == 1).all()
    assert (cover[d.y.stop :, : d.x.start] == 0).all()
    assert (cover[d.y.stop :, d.x.stop :] == 0).all()
    # Row layout: prescan | data | serial overscan, with the serial overscan ending at the edge.
    assert raw.prescan_bbox.x.stop == d.x.start
    assert raw.serial_overscan_bbox.x.start == d.x.stop
    assert raw.serial_overscan_bbox.x.stop == nx
    assert raw.parallel_overscan_bbox.y.stop == ny


@pytest.mark.parametrize(
    "ccd_type, data, prescan, serial, parallel",
    [
        ("ITL", (2000, 509), 3, 64, 48),
        ("E2V", (2002, 512), 10, 54, 46),
    ],
)
def test_vendor_geometry(ccd_type, data, prescan, serial, parallel):
    ccd = get_camera().ccd_types[ccd_type]
    raw = ccd.amps[0].raw
    assert tuple(raw.data_bbox.shape) == data
    assert raw.prescan_bbox.shape[1] == prescan
    assert raw.serial_overscan_bbox.shape[1] == serial
    assert raw.parallel_overscan_bbox.shape[0] == parallel


def test_e2v_segment10_matches_real_header():
    _, segment = load_real_header(E2V_HEADER)
    amp = get_camera()["R12_S10"].ccd_type.amp("C10")
    assert amp.extname == segment["EXTNAME"]
    assert amp.datasec() == segment["DATASEC"]
    # The camera's DETSEC, not our (cameraGeom) placement: see tests/test_geometry.py.
    assert amp.raw_header_detsec() == segment["DETSEC"]
    assert get_camera()["R12_S10"].ccd_type.detsize() == segment["DETSIZE"]


def test_readout_corners():
    cam = get_camera()
    itl = cam["R01_S01"].ccd_type
    e2v = cam["R22_S11"].ccd_type
    # cameraGeom flips: C1x flipped in x and y (node at the upper right); C0x flipped in x only on
    # ITL (lower right), not at all on e2v (lower left).
    assert itl.amp("C10").amplifier.readout_corner.value == "UR"
    assert itl.amp("C00").amplifier.readout_corner.value == "LR"
    assert e2v.amp("C10").amplifier.readout_corner.value == "UR"
    assert e2v.amp("C00").amplifier.readout_corner.value == "LL"


def test_select():
    cam = get_camera()
    assert [d.name for d in cam.select("R22_S11,R01_S01")] == ["R01_S01", "R22_S11"]
    assert len(cam.select("R22")) == 9
    assert len(cam.select("all")) == 205
    assert len(cam.select("science")) == 189
    assert [d.id for d in cam.select("94,94")] == [94]
    with pytest.raises(ValueError, match="R99"):
        cam.select("R99")
