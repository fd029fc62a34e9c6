"""Defect detection, boxes and tabulation as eo_pipe defines them, on hand-built images."""

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import Box, Image, MaskedImage

from lsst.eo.baseline.calibCombine import CALIB_MASK_SCHEMA
from lsst.eo.baseline.camera import get_camera, nominal_amps
from lsst.eo.baseline.darkCurrent import dark_current_table
from lsst.eo.baseline.defects import (
    EoBrightDefectsTask,
    EoDarkDefectsTask,
    e2v_midline_row,
    find_bright_pixels,
    find_dark_pixels,
    footprint_boxes,
    tabulate_amp_defects,
    tabulate_defects,
)
from lsst.eo.baseline.runGains import GAIN_SOURCE_PTC, RunGains


def _afw_boxes_by_hand(mask):
    """footprintToBBoxList written pixel by pixel from its definition (small masks only)."""
    m = mask.copy()
    out = []
    for y0 in range(m.shape[0]):
        while m[y0].any():
            x0 = int(np.argmax(m[y0]))
            x1 = x0
            while x1 + 1 < m.shape[1] and m[y0, x1 + 1]:
                x1 += 1
            y = y0
            while y < m.shape[0] and m[y, x0 : x1 + 1].all():
                m[y, x0 : x1 + 1] = False
                y += 1
            out.append((x0, y0, x1 - x0 + 1, y - y0))
    return sorted(out)


def _boxes(mask):
    return sorted(zip(*[a.tolist() for a in footprint_boxes(mask)], strict=True))


def test_footprint_boxes_small_shapes():
    # An L: rows 0-2 of columns 1-3 (a 3x3 block), then column 2 alone up to row 9.  afw starts
    # at row 0 with run [1, 3], extends it through rows 1, 2 (all of 1..3 set), stops at row 3;
    # then the run [2, 2] of row 3 extends to row 9: boxes (1, 0, 3, 3) and (2, 3, 1, 7).
    m = np.zeros((12, 6), dtype=bool)
    m[0:3, 1:4] = True
    m[3:10, 2] = True
    assert _boxes(m) == [(1, 0, 3, 3), (2, 3, 1, 7)]
    # A column with a pixel to its right in row 4: the run at row 0 is [0, 0] and extends up the
    # column (only column 0 is tested), so the column stays one box; (1, 4) is a box of its own.
    m = np.zeros((10, 3), dtype=bool)
    m[:, 0] = True
    m[4, 1] = True
    assert _boxes(m) == [(0, 0, 1, 10), (1, 4, 1, 1)]


def test_footprint_boxes_random_masks_match_definition():
    rng = np.random.default_rng(3)
    for _ in range(200):
        m = rng.random((rng.integers(1, 25), rng.integers(1, 25))) < rng.uniform(0.05, 0.9)
        got = _boxes(m)
        assert got == _afw_boxes_by_hand(m)
        # The boxes cover the mask exactly, without overlap.
        area = sum(w * h for _, _, w, h in got)
        assert area == m.sum()


def test_column_threshold_is_strictly_taller():
    # eo_pipe: a column is bad if a strip is taller than colthresh (region.height > 20).
    m = np.zeros((2000, 509), dtype=bool)
    m[100:121, 20] = True  # 21 pixels > 20: a bright column
    m[100:120, 30] = True  # 20 pixels: 20 bright pixels, not a column
    m[5, 40:45] = True  # one 5 x 1 box: 5 strips of height 1 = 5 pixels
    m[100:600, 10] = True  # a 500-pixel column
    m[700:710, 10] = True  # a second, short strip in that column: not counted as pixels
    # columns: 20 and 10 -> 2; pixels: 20 (column 30) + 5 = 25.
    assert tabulate_amp_defects(m, column_threshold=20) == (2, 25)


def test_dark_column_threshold_101():
    m = np.zeros((2000, 509), dtype=bool)
    m[0:101, 7] = True  # 101 > 100: a dark column
    m[0:100, 9] = True  # 100: 100 dark pixels
    assert tabulate_amp_defects(m, column_threshold=100) == (1, 100)


def test_tabulate_clips_boxes_to_amplifiers():
    # One 3-wide, 30-tall box straddling two amplifiers side by side at x = 10: columns 8, 9 in
    # amp A and column 10 in amp B, each strip 30 tall (> 20): A has 2 bad columns, B 1.  A 1 x 40
    # box crossing the boundary y = 20 between A (y < 20) and C (y >= 20) at x = 3: 15 rows in A
    # (y 5..19) and 25 in C (y 20..44): in A 15 pixels, in C a bad column.
    boxes = Table({"x0": [8, 3], "y0": [0, 5], "width": [3, 1], "height": [30, 40]})
    amps = {"A": Box.factory[0:20, 0:10], "B": Box.factory[0:20, 10:20], "C": Box.factory[20:50, 0:10]}
    counts = tabulate_defects(boxes, amps, 20)
    # A: box 1 clipped to y 0..19 -> height 20 (not > 20): 2 x 20 = 40 pixels; box 2: 15 pixels.
    assert counts["A"] == (0, 55)
    # B: column 10, clipped height 20 -> 20 pixels.
    assert counts["B"] == (0, 20)
    # C: box 1 clipped to y 20..29 in columns 8, 9 -> 2 x 10 = 20 pixels; box 2: 25 > 20 -> column.
    assert counts["C"] == (1, 20)


def test_bright_threshold_4_and_6_e_per_s():
    # A flat 0.01 e-/s dark: MEANCLIP is 0.01 (the two outliers are clipped); 5 e-/s threshold:
    # 4.01 - 0.01 = 4 < 5 not bright, 6.01 - 0.01 = 6 >= 5 bright, 5.01 - 0.01 = 5 >= 5 bright.
    img = np.full((200, 100), 0.01)
    img[10, 10] = 4.01
    img[20, 20] = 6.01
    img[30, 30] = 5.01
    found = find_bright_pixels(img, 5.0)
    assert not found[10, 10] and found[20, 20] and found[30, 30]
    assert found.sum() == 2


def test_dark_fraction_075_and_085():
    # Flat at 1000 with 5 adu noise: MEANCLIP is 1000 within 5 / sqrt(20000) = 0.035 adu, so the
    # 0.8 threshold is 800 within 0.03: 850 is not dark, 750 is, 799.5 is, 800.5 is not.
    img = np.random.default_rng(2).normal(1000.0, 5.0, (200, 100))
    img[1, 1] = 850.0
    img[2, 2] = 750.0
    img[3, 3] = 799.5
    img[4, 4] = 800.5
    found = find_dark_pixels(img, 0.8)
    assert not found[1, 1] and found[2, 2] and found[3, 3] and not found[4, 4]
    assert found.sum() == 2  # noise reaches 800 at 40 sigma: never


def test_e2v_midline_row_never_detected():
    det = get_camera()["R22_S11"]  # e2v
    assert det.vendor == "E2V"
    ny = det.ccd_type.amps[0].bbox.y.stop - det.ccd_type.amps[0].bbox.y.start
    # The CCD halves meet at the one y that is the top of some amplifier boxes and the bottom of
    # the others; each amplifier's midline row is its row on that edge.
    rows = {a.name: e2v_midline_row(a, det) for a in det.ccd_type.amps}
    edge = {a.bbox.y.start for a in det.ccd_type.amps} & {a.bbox.y.stop for a in det.ccd_type.amps}
    for a in det.ccd_type.amps:
        expected = ny - 1 if a.bbox.y.stop in edge else 0
        assert rows[a.name] == expected
    assert e2v_midline_row(get_camera()["R01_S01"].ccd_type.amps[0], get_camera()["R01_S01"]) is None
    # A flat with a dead midline row (0.5 of the level): detected without the replacement (all
    # 512 pixels of the row), never with it.
    rng = np.random.default_rng(5)
    img = rng.normal(1000.0, 5.0, (ny, 512))
    img[ny - 1] = 500.0
    assert find_dark_pixels(img, 0.8)[ny - 1].sum() == 512
    assert find_dark_pixels(img, 0.8, midline_row=ny - 1).sum() == 0


def test_dark_defects_task_on_e2v_flat():
    det = get_camera()["R22_S11"]
    rng = np.random.default_rng(9)
    image = rng.normal(1000.0, 5.0, det.ccd_type.shape).astype(np.float32)
    amp = det.ccd_type.amps[0]
    b = amp.bbox
    row = b.y.start + e2v_midline_row(amp, det)
    image[row, b.x.start : b.x.stop] = 100.0  # dead midline row: must not be detected
    image[b.y.start + 200 : b.y.start + 301, b.x.start + 50] = 700.0  # 101-pixel dark column
    image[b.y.start + 400, b.x.start + 60] = 750.0  # one dark pixel
    image[b.y.start + 410, b.x.start + 60] = 850.0  # not dark
    result = EoDarkDefectsTask().run(MaskedImage(Image(image), mask_schema=CALIB_MASK_SCHEMA), det)
    counts = {r["amp"]: (r["dark_columns"], r["dark_pixels"]) for r in result.counts}
    assert counts[amp.name] == (1, 1)
    assert all(v == (0, 0) for k, v in counts.items() if k != amp.name)
    assert int(np.sum(result.defects["width"] * result.defects["height"])) == 102


@pytest.mark.parametrize("detector", ["R22_S11", "R01_S01"])
def test_bright_defects_task_on_known_dark(detector):
    """Bright pixels and columns injected into a 0.01 e-/s dark with 0.05 e-/s noise.

    The noise is 100 sigma below the 5 e-/s threshold, so only injected pixels are detected.
    """
    det = get_camera()[detector]
    rng = np.random.default_rng(7)
    image = rng.normal(0.01, 0.05, det.ccd_type.shape).astype(np.float32)
    truth_pixels = {}
    for layout in det.ccd_type.amps:
        b = layout.bbox
        ys = rng.integers(b.y.start + 5, b.y.stop - 5, 20)
        xs = rng.integers(b.x.start + 5, b.x.stop - 5, 20)
        image[ys, xs] = rng.uniform(10, 100, 20)
        truth_pixels[layout.name] = len(set(zip(ys, xs, strict=True)))
    c10 = det.ccd_type.amp("C10").bbox
    image[c10.y.start : c10.y.start + 300, c10.x.start + 100] = 6.0  # partial bright column
    c00 = det.ccd_type.amp("C00").bbox
    image[c00.y.start : c00.y.stop, c00.x.start + 7] = 5.5  # full-height bright column
    image[c00.y.start + 10 : c00.y.start + 50, c00.x.start + 200] = 4.0  # below 5 e-/s: nothing
    # Camera-model gains x 2 as "PTC gains": the threshold becomes 5 g_cam / g_ptc = 2.5 e-/s,
    # so the 4 e-/s strip (40 pixels > 20) becomes a bright column in the PTC-gain count.
    ptc_gains = {a: 2.0 * v.gain for a, v in nominal_amps(det.name).items()}
    result = EoBrightDefectsTask().run(
        MaskedImage(Image(image), mask_schema=CALIB_MASK_SCHEMA), det, ptc_gains=ptc_gains
    )
    counts = {r["amp"]: (r["bright_columns"], r["bright_pixels"]) for r in result.counts}
    ptc = {r["amp"]: (r["bright_columns_ptc_gain"], r["bright_pixels_ptc_gain"]) for r in result.counts}
    for name, n in truth_pixels.items():
        expected_cols = 1 if name in ("C10", "C00") else 0
        assert counts[name] == (expected_cols, n), name
        assert ptc[name] == (expected_cols + (name == "C00"), n), name
    boxes = result.defects
    assert int(np.sum(boxes["width"] * boxes["height"])) == (
        sum(truth_pixels.values()) + 300 + c00.y.stop - c00.y.start
    )
    assert result.defects.colnames == ["x0", "y0", "width", "height"]


def test_bright_defects_without_ptc_gains_flags_minus_one():
    det = get_camera()["R22_S11"]
    image = np.zeros(det.ccd_type.shape, dtype=np.float32)
    result = EoBrightDefectsTask().run(MaskedImage(Image(image), mask_schema=CALIB_MASK_SCHEMA), det)
    assert np.all(result.counts["bright_columns_ptc_gain"] == -1)
    assert np.all(result.counts["bright_pixels_ptc_gain"] == -1)
    assert np.all(result.counts["bright_pixels"] == 0)


def test_dark_current_table():
    det = get_camera()["R22_S11"]
    image = np.zeros(det.ccd_type.shape, dtype=np.float32)
    for i, layout in enumerate(det.ccd_type.amps):
        b = layout.bbox
        image[b.y.start : b.y.stop, b.x.start : b.x.stop] = np.linspace(0, 0.02 * (i + 1), b.area).reshape(
            tuple(b.shape)
        )
    # The image is in adu/s; amplifier i has a PTC gain of 1 + i / 10 e-/adu.
    gains = RunGains(
        gains={a: 1.0 + i / 10 for i, a in enumerate(det.amp_names)},
        sources={a: GAIN_SOURCE_PTC for a in det.amp_names},
    )
    table = dark_current_table(image, det, gains=gains)
    for i, row in enumerate(table):
        top = 0.02 * (i + 1)
        assert row["dark_current_median_adu_per_s"] == pytest.approx(top / 2, rel=1e-4)
        assert row["dark_current_95_adu_per_s"] == pytest.approx(0.95 * top, rel=1e-4)
        assert row["dark_current_median_e_per_s"] == pytest.approx(top / 2 * (1.0 + i / 10), rel=1e-4)
        assert row["dark_current_95_e_per_s"] == pytest.approx(0.95 * top * (1.0 + i / 10), rel=1e-4)
        assert row["gain_source"] == "PTC" and row["gain_e_per_adu"] == pytest.approx(1.0 + i / 10)
