"""Detector geometry: assembly follows the stack's cameraGeom, headers follow the real camera.

Every expectation below is written by hand from obs_lsst facts, not from our own output:

* ``policy/cameraHeader.yaml`` (obs_lsst 0e84d75): CCD_ITL / CCD_E2V amps C10..C17 (HDU 1..8) have
  ``ixy [i, 1]``, ``flipXY [True, True]``; C07..C00 (HDU 9..16) ``ixy [i, 0]``, ``flipXY
  [True, False]`` (ITL) or ``[False, False]`` (e2v).  CCD_ITL_WF amps C10..C17 have ``ixy [7 - i, 0]``,
  ``flipXY [True, True]``.  Every raw amp is read out at its lower left (``readCorner: LL``); data
  boxes ITL [[3, 0], [509, 2000]], e2v [[10, 0], [512, 2002]]; amp (ix, iy) covers
  x in [ix W, (ix + 1) W), y in [iy H, (iy + 1) H) (obs_base ``yamlCamera.py``).
* Real raw headers: e2v Segment10 (``shared/reference/headers``, R12_S10) has DATASEC
  '[11:522,1:2002]', DETSEC '[512:1,1:2002]', DTV1 = 523, DTV2 = 0, DTM1_1 = -1, DTM2_2 = 1, DTM1_2 =
  DTM2_1 = 0, DETSIZE '[1:4096,1:4004]'; ITL Segment10 (obs_lsst
  ``tests/headers/UCD-ITL-3800C-TS_C_20230730_000237_R22_S01.yaml``) has DATASEC '[4:512,1:2000]',
  DETSEC '[509:1,1:2000]', DTV1 = 513, DTV2 = 0, DTM1_1 = -1, DTM2_2 = 1, DETSIZE '[1:4072,1:4000]'; the
  wavefront R44_SW0 primary header (obs_lsst ``tests/headers/lsstCam-MC_O_20251121_000156_R44_SW0``)
  has DETSIZE '[1:4072,1:4000]'.  The header DETSEC layout is the vertical mirror of cameraGeom
  (obs_lsst ``assembly.py``, DM-36115).
"""

import numpy as np
import pytest

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.isr import assemble_ccd, split_ccd
from lsst.eo.baseline.plotting import pixel_box_to_focal_plane
from lsst.eo.baseline.rawio import read_raw, write_raw
from lsst.eo.baseline.simulator.headers import segment_header

from tests.rawfactory import E2V_HEADER, load_real_header

CAMERA = get_camera()
E2V = CAMERA["R22_S11"].ccd_type
ITL = CAMERA["R01_S01"].ccd_type
WF = CAMERA["R00_SW0"].ccd_type


def _parse_sec(sec: str) -> tuple[int, int, int, int]:
    xs, ys = sec.strip("[]").split(",")
    x0, x1 = (int(v) for v in xs.split(":"))
    y0, y1 = (int(v) for v in ys.split(":"))
    return x0, x1, y0, y1


# (CCD type, amp, raw pixel (x, y) of the data box, detector pixel (x, y) it must land on).
# Derivation: a data pixel at (dx, dy) from the data-box origin goes to x = ix W + dx, or
# ix W + W - 1 - dx if flipped in x; likewise y with iy, H and the y flip.
#   e2v (W, H = 512, 2002; data origin raw (10, 0)):
#     C10 ix 0 iy 1, flip x y: raw (10, 0) -> (511, 2002 + 2001) = (511, 4003);
#                              raw (521, 2001) -> (0, 2002)
#     C07 ix 7 iy 0, no flip:  raw (10, 0) -> (7 * 512, 0) = (3584, 0); raw (521, 2001) -> (4095, 2001)
#     C00 ix 0 iy 0, no flip:  raw (10, 0) -> (0, 0)
#     C17 ix 7 iy 1, flip x y: raw (10, 0) -> (4095, 4003)
#   ITL (W, H = 509, 2000; data origin raw (3, 0)):
#     C10 ix 0 iy 1, flip x y: raw (3, 0) -> (508, 3999); raw (511, 1999) -> (0, 2000)
#     C07 ix 7 iy 0, flip x:   raw (3, 0) -> (7 * 509 + 508, 0) = (4071, 0); raw (511, 1999) -> (3563, 1999)
#     C00 ix 0 iy 0, flip x:   raw (3, 0) -> (508, 0)
#   ITL_WF (one row, H = 2000):
#     C10 ix 7, flip x y: raw (3, 0) -> (4071, 1999); C17 ix 0: raw (3, 0) -> (508, 1999)
PIXEL_CASES = [
    ("E2V", "C10", (10, 0), (511, 4003)),
    ("E2V", "C10", (521, 2001), (0, 2002)),
    ("E2V", "C07", (10, 0), (3584, 0)),
    ("E2V", "C07", (521, 2001), (4095, 2001)),
    ("E2V", "C00", (10, 0), (0, 0)),
    ("E2V", "C17", (10, 0), (4095, 4003)),
    ("ITL", "C10", (3, 0), (508, 3999)),
    ("ITL", "C10", (511, 1999), (0, 2000)),
    ("ITL", "C07", (3, 0), (4071, 0)),
    ("ITL", "C07", (511, 1999), (3563, 1999)),
    ("ITL", "C00", (3, 0), (508, 0)),
    ("ITL_WF", "C10", (3, 0), (4071, 1999)),
    ("ITL_WF", "C17", (3, 0), (508, 1999)),
]


@pytest.mark.parametrize("ccd_name, amp, raw_xy, det_xy", PIXEL_CASES)
def test_raw_pixel_lands_at_camerageom_position(ccd_name, amp, raw_xy, det_xy):
    ccd = CAMERA.ccd_types[ccd_name]
    layout = ccd.amp(amp)
    d = layout.raw.data_bbox
    raw = np.zeros(ccd.raw_shape, dtype=np.float32)
    raw[raw_xy[1], raw_xy[0]] = 1.0
    image = assemble_ccd({amp: raw[d.y.start : d.y.stop, d.x.start : d.x.stop]}, ccd, fill=0.0)
    assert image[det_xy[1], det_xy[0]] == 1.0
    assert image.sum() == 1.0


@pytest.mark.parametrize(
    "ccd_name, amp, x_range, y_range",
    [
        # C10 occupies x 0..W-1, y H..2H-1 (top row); C07 the last column block of the bottom row.
        ("E2V", "C10", (0, 512), (2002, 4004)),
        ("E2V", "C07", (3584, 4096), (0, 2002)),
        ("E2V", "C00", (0, 512), (0, 2002)),
        ("ITL", "C10", (0, 509), (2000, 4000)),
        ("ITL", "C07", (3563, 4072), (0, 2000)),
        ("ITL", "C00", (0, 509), (0, 2000)),
        ("ITL_WF", "C10", (3563, 4072), (0, 2000)),
        ("ITL_WF", "C17", (0, 509), (0, 2000)),
    ],
)
def test_amp_bbox_is_camerageom(ccd_name, amp, x_range, y_range):
    b = CAMERA.ccd_types[ccd_name].amp(amp).bbox
    assert (b.x.start, b.x.stop) == x_range
    assert (b.y.start, b.y.stop) == y_range


@pytest.mark.parametrize(
    "ccd_name, bottom, top",
    [
        # Raw node at LL; a flip in x moves it to the right, a flip in y to the top (afw
        # Amplifier.Builder.transform): ITL C0x flip x -> LR, C1x flip x y -> UR; e2v C0x no flip
        # -> LL, C1x -> UR.  Wavefront C1x flip x y -> UR.
        ("ITL", "LR", "UR"),
        ("ITL_G", "LR", "UR"),
        ("E2V", "LL", "UR"),
        ("ITL_WF", None, "UR"),
    ],
)
def test_readout_corners_from_camera_flips(ccd_name, bottom, top):
    ccd = CAMERA.ccd_types[ccd_name]
    for layout in ccd.amps:
        expected = top if layout.name.startswith("C1") else bottom
        assert layout.readout_corner.value == expected, layout.name
        assert layout.half == ("top" if layout.name.startswith("C1") else "bottom")


@pytest.mark.parametrize("ccd", [E2V, ITL, WF], ids=["E2V", "ITL", "ITL_WF"])
def test_readout_corner_holds_the_output_node(ccd):
    """The raw output-node pixel (first data pixel) of every amp lands in its readout corner."""
    amps = {}
    for layout in ccd.amps:
        a = np.zeros(tuple(layout.raw.data_bbox.shape), dtype=np.float32)
        a[0, 0] = 1.0
        amps[layout.name] = a
    image = assemble_ccd(amps, ccd)
    for layout in ccd.amps:
        b = layout.bbox
        corner = layout.readout_corner.value
        y = b.y.stop - 1 if corner[0] == "U" else b.y.start
        x = b.x.stop - 1 if corner[1] == "R" else b.x.start
        assert image[y, x] == 1.0, (layout.name, corner)


def test_raw_file_assembles_by_extname(tmp_path):
    """Write an e2v raw file with the HDUs in reverse order and DETSEC from the real camera; the
    pixels are placed by EXTNAME and cameraGeom, so each segment's output node still lands where
    obs_lsst puts it (C10 at (511, 4003), C07 at (3584, 0), C00 at (0, 0))."""
    det = CAMERA["R22_S11"]
    primary, _ = load_real_header(E2V_HEADER)
    primary.update(RAFTBAY=det.raft, CCDSLOT=det.slot, CCD_MANU="E2V")
    segments = []
    for k, layout in enumerate(E2V.amps, start=1):
        array = np.zeros(E2V.raw_shape, dtype=np.int32)
        d = layout.raw.data_bbox
        array[d.y.start, d.x.start] = k  # the output-node data pixel carries the HDU number
        segments.append((layout.extname, array, segment_header(layout, E2V)))
    path = str(tmp_path / "reversed.fits")
    write_raw(path, primary, segments[::-1], compress=False)
    raw = read_raw(path, detector=det)
    image = assemble_ccd({name: raw[name].data.astype(np.float32) for name in raw}, E2V, fill=0.0)
    # HDU numbers in obs_lsst order: C10 = 1, C07 = 9, C00 = 16.
    assert image[4003, 511] == 1
    assert image[0, 3584] == 9
    assert image[0, 0] == 16
    assert np.count_nonzero(image) == 16


@pytest.mark.parametrize("ccd", [E2V, ITL, WF], ids=["E2V", "ITL", "ITL_WF"])
def test_split_is_inverse_of_assembly(ccd):
    rng = np.random.default_rng(1)
    image = rng.normal(size=ccd.shape).astype(np.float32)
    assert np.array_equal(assemble_ccd(split_ccd(image, ccd), ccd), image)


def test_e2v_segment10_header_is_the_real_one():
    _, segment = load_real_header(E2V_HEADER)
    header = segment_header(E2V.amp("C10"), E2V)
    for key in ("EXTNAME", "DATASEC", "DETSEC", "DETSIZE", "DTV1", "DTV2", "DTM1_1", "DTM2_2", "DTM1_2",
                "DTM2_1"):  # fmt: skip
        assert header[key] == segment[key], key


def test_itl_segment10_header_facts():
    # Values of obs_lsst tests/headers/UCD-ITL-3800C-TS_C_20230730_000237_R22_S01.yaml.
    layout = ITL.amp("C10")
    assert layout.datasec() == "[4:512,1:2000]"
    assert layout.raw_header_detsec() == "[509:1,1:2000]"
    assert layout.raw_header_dtv_dtm() == (513, 0, -1.0, 1.0)
    assert ITL.detsize() == "[1:4072,1:4000]"
    assert WF.detsize() == "[1:4072,1:4000]"


@pytest.mark.parametrize("ccd", [E2V, ITL], ids=["E2V", "ITL"])
def test_header_detsec_is_vertical_mirror_of_camerageom(ccd):
    """DM-36115: the camera's DETSEC is cameraGeom mirrored in y (y -> H_det + 1 - y, 1-based)."""
    ny = ccd.shape[0]
    for layout in ccd.amps:
        b = layout.bbox
        x0, x1, y0, y1 = _parse_sec(layout.raw_header_detsec())
        # x is as cameraGeom: the reversed range iff flipped in x.
        expected_x = (b.x.stop, b.x.start + 1) if layout.flip_x else (b.x.start + 1, b.x.stop)
        assert (x0, x1) == expected_x, layout.name
        # y: cameraGeom rows [y_a, y_b] (1-based) mirror to [ny + 1 - y_b, ny + 1 - y_a]; the mirror
        # reverses the direction of the rows, so the range is reversed iff cameraGeom does not flip.
        lo, hi = ny + 1 - b.y.stop, ny - b.y.start
        assert (y0, y1) == ((lo, hi) if layout.flip_y else (hi, lo)), layout.name


@pytest.mark.parametrize("ccd", [E2V, ITL, WF], ids=["E2V", "ITL", "ITL_WF"])
def test_header_dtv_maps_datasec_onto_detsec(ccd):
    for layout in ccd.amps:
        dtv1, dtv2, dtm1, dtm2 = layout.raw_header_dtv_dtm()
        dx0, dx1, dy0, dy1 = _parse_sec(layout.datasec())
        tx0, tx1, ty0, ty1 = _parse_sec(layout.raw_header_detsec())
        assert (dtm1 * dx0 + dtv1, dtm1 * dx1 + dtv1) == (tx0, tx1), layout.name
        assert (dtm2 * dy0 + dtv2, dtm2 * dy1 + dtv2) == (ty0, ty1), layout.name


def test_header_detsec_tiles_detsize():
    """The header DETSEC of a full CCD's 16 segments cover DETSIZE exactly once."""
    for ccd in (E2V, ITL):
        nx, ny = ccd.header_size
        cover = np.zeros((ny, nx), dtype=int)
        for layout in ccd.amps:
            x0, x1, y0, y1 = _parse_sec(layout.raw_header_detsec())
            cover[min(y0, y1) - 1 : max(y0, y1), min(x0, x1) - 1 : max(x0, x1)] += 1
        assert (cover == 1).all()


# Focal-plane placement (obs_lsst policy/rafts.yaml, cameraHeader.yaml, policy/lsstCam/R04.yaml,
# generateCamera.py: centre = raft offset + offset rotated by the raft yaw; yaw = sensor + raft yaw).
def test_science_amp_outline_in_focal_plane():
    # R22_S11 sits at the origin with yaw 0; e2v 4096 x 4004 pixels of 10 um, reference pixel
    # centre (2047.5, 2001.5), i.e. box-edge coordinate (2048, 2002).  C10 covers pixel edges x 0..512,
    # y 2002..4004 -> x (0 - 2048) * 0.01 = -20.48 to (512 - 2048) * 0.01 = -15.36 mm, y 0 to
    # (4004 - 2002) * 0.01 = 20.02 mm: upper left of the CCD.
    det = CAMERA["R22_S11"]
    b = det.ccd_type.amp("C10").bbox
    corners = pixel_box_to_focal_plane(det, b.x.start, b.y.start, b.x.stop, b.y.stop)
    assert np.allclose(corners, [[-20.48, 0.0], [-15.36, 0.0], [-15.36, 20.02], [-20.48, 20.02]])


def test_corner_raft_sensor_placement():
    # R04: offset (254, -254), yaw 270.  SG0 offset (-42.25, 0) + (0.49, 4.74) = (-41.76, 4.74),
    # rotated by 270 deg (cos 0, sin -1): (x, y) -> (y, -x) = (4.74, 41.76); centre (258.74, -212.24);
    # yaw 270 + 270 = 180.  SG1 (0, -42.25) + (4.74, 0.49) = (4.74, -41.76) -> (-41.76, -4.74);
    # centre (212.24, -258.74); yaw 0 + 270 = 270.
    sg0, sg1 = CAMERA["R04_SG0"], CAMERA["R04_SG1"]
    assert sg0.focal_plane_mm == pytest.approx((258.74, -212.24))
    assert sg0.yaw_deg == 180.0
    assert sg1.focal_plane_mm == pytest.approx((212.24, -258.74))
    assert sg1.yaw_deg == 270.0
    # A 180-degree turn sends the CCD's pixel origin (its lower left) to the upper right: the ITL
    # reference pixel centre is (2036.5, 2000.5), so the lower-left box edge (-0.5, -0.5) is
    # (-2037 x 0.01, -2001 x 0.01) = (-20.37, -20.01) mm from it, turned to (+20.37, +20.01).
    ny, nx = sg0.ccd_type.shape
    assert pixel_box_to_focal_plane(sg0, 0, 0, nx, ny)[0] == pytest.approx((258.74 + 20.37, -212.24 + 20.01))


def test_detectors_do_not_overlap_in_focal_plane():
    """All 205 detector outlines (quarter-turned rectangles) are disjoint."""
    boxes = []
    for det in CAMERA:
        ny, nx = det.ccd_type.shape
        c = pixel_box_to_focal_plane(det, 0, 0, nx, ny)
        boxes.append((c[:, 0].min(), c[:, 0].max(), c[:, 1].min(), c[:, 1].max()))
    b = np.array(boxes)
    overlap_x = (b[:, None, 0] < b[None, :, 1]) & (b[None, :, 0] < b[:, None, 1])
    overlap_y = (b[:, None, 2] < b[None, :, 3]) & (b[None, :, 2] < b[:, None, 3])
    both = overlap_x & overlap_y
    np.fill_diagonal(both, False)
    pairs = [(CAMERA[int(i)].name, CAMERA[int(j)].name) for i, j in np.argwhere(both)]
    assert not pairs, pairs[:4]
