"""Defect detection and tabulation on hand-built images with known defects."""

import numpy as np
import pytest
from lsst.images import Image, MaskedImage

from lsst.eo.baseline.calibCombine import CALIB_MASK_SCHEMA
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.darkCurrent import dark_current_table
from lsst.eo.baseline.defects import (
    EoBrightDefectsTask,
    column_runs,
    find_bright_pixels,
    find_dark_pixels,
    tabulate_amp_defects,
)


def test_column_runs():
    m = np.zeros((10, 4), dtype=bool)
    m[2:5, 1] = True
    m[7:10, 1] = True
    m[0, 3] = True
    x, y0, n = column_runs(m)
    assert list(zip(x, y0, n, strict=True)) == [(1, 2, 3), (1, 7, 3), (3, 0, 1)]


def test_tabulate_columns_and_pixels():
    m = np.zeros((2000, 509), dtype=bool)
    m[100:600, 10] = True  # a bright column (run of 500)
    m[100:121, 20] = True  # run of 21 > 20: a column
    m[100:120, 30] = True  # run of 20: pixels, not a column
    m[5, 40:45] = True  # 5 isolated pixels in a row
    m[700:710, 10] = True  # more pixels inside a bad column: not counted as pixels
    assert tabulate_amp_defects(m, column_threshold=20) == (2, 25)


@pytest.mark.parametrize("detector", ["R22_S11", "R01_S01"])
def test_bright_defects_task_on_known_dark(detector):
    """Hot pixels 10-100 e-/s and bright columns injected into a 0.01 e-/s dark with noise."""
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
    image[c10.y.start : c10.y.start + 300, c10.x.start + 100] = 5.0  # partial bright column
    c00 = det.ccd_type.amp("C00").bbox
    image[c00.y.start : c00.y.stop, c00.x.start + 7] = 4.0  # full-height bright column
    result = EoBrightDefectsTask().run(MaskedImage(Image(image), mask_schema=CALIB_MASK_SCHEMA), det)
    counts = {row["amp"]: (row["bright_columns"], row["bright_pixels"]) for row in result.counts}
    for name, n in truth_pixels.items():
        expected_cols = 1 if name in ("C10", "C00") else 0
        assert counts[name] == (expected_cols, n), name
    # The defect list covers exactly the detected pixels.
    boxes = result.defects
    assert (
        int(np.sum(boxes["width"] * boxes["height"]))
        == sum(truth_pixels.values()) + 300 + c00.y.stop - c00.y.start
    )


def test_thresholds():
    img = np.full((100, 100), 10.0)
    img[5, 5] = 13.0
    img[6, 6] = 12.9
    assert find_bright_pixels(img, 3.0).sum() == 1
    img[7, 7] = 9.0
    img[8, 8] = 8.0
    assert find_dark_pixels(img, 0.9).sum() == 2  # <= 0.9 x 10 includes 9.0


def test_dark_current_table():
    det = get_camera()["R22_S11"]
    image = np.zeros(det.ccd_type.shape, dtype=np.float32)
    for i, layout in enumerate(det.ccd_type.amps):
        b = layout.bbox
        image[b.y.start : b.y.stop, b.x.start : b.x.stop] = np.linspace(0, 0.02 * (i + 1), b.area).reshape(
            tuple(b.shape)
        )
    table = dark_current_table(image, det)
    for i, row in enumerate(table):
        top = 0.02 * (i + 1)
        assert row["dark_current_median_e_per_s"] == pytest.approx(top / 2, rel=1e-4)
        assert row["dark_current_95_e_per_s"] == pytest.approx(0.95 * top, rel=1e-4)
