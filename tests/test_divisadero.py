"""Divisadero tearing as eo_pipe defines it (eo_pipe.md 9.15), on hand-built profiles and flats."""

import numpy as np
import pytest
from lsst.images import Image, MaskedImage

from lsst.eo.baseline.calibCombine import CALIB_MASK_SCHEMA
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.divisadero import EoDivisaderoTask, boundary_deviations, column_profile

DIP = 0.03


def _pair(left_index=None, right_index=None, width=40):
    left = np.ones(width)
    right = np.ones(width)
    if left_index is not None:
        left[left_index] = 1.0 - DIP
    if right_index is not None:
        right[right_index] = 1.0 - DIP
    return [left, right]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_dip_within_three_columns_left_of_boundary_is_found(k):
    # eo_pipe window p[x_b - 2 : x_b + 4], x_b = last column of the left amp: the left amp's
    # columns x_b - 2, x_b - 1, x_b, i.e. its last three.  A dip k columns from the boundary
    # (k = 1 the last column) inside them gives D = |0.97 - 1| = 0.03 exactly.
    (d,) = boundary_deviations(_pair(left_index=-k), n_pix=2)
    assert d == pytest.approx(DIP, abs=1e-12)


def test_dip_four_columns_left_of_boundary_is_not_found():
    # Column x_b - 3 is outside p[x_b - 2 : x_b + 4]: the window is all ones, D = 0.
    (d,) = boundary_deviations(_pair(left_index=-4), n_pix=2)
    assert d == 0.0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_dip_within_three_columns_right_of_boundary_is_found(k):
    # Right amp's columns x_b + 1 .. x_b + 3 are its first three (index 0, 1, 2).
    (d,) = boundary_deviations(_pair(right_index=k - 1), n_pix=2)
    assert d == pytest.approx(DIP, abs=1e-12)


def test_dip_four_columns_right_of_boundary_is_not_found():
    (d,) = boundary_deviations(_pair(right_index=3), n_pix=2)
    assert d == 0.0


def test_all_nan_window_counts_zero():
    left, right = _pair()
    left[-3:] = np.nan
    right[:3] = np.nan
    assert boundary_deviations([left, right]) == [0.0]


def test_column_profile_removes_gradient_and_clips_outliers():
    # Columns: level 100 + 0.1 x (a linear gradient); rows 10..209 are used.  One pixel per column
    # at 1e4 lies far beyond 3 std of the other 199 (all equal), so it is clipped and every
    # clipped mean equals 100 + 0.1 x; divided by the median and by the fitted line -> exactly 1.
    ny, nx = 300, 120
    x = np.arange(nx)
    image = np.tile(100.0 + 0.1 * x, (ny, 1))
    image[50, :] = 1.0e4
    image[5, 7] = -1.0e6  # row 5 is outside rows 10..209: ignored
    profile = column_profile(image, 10, 210, 25)
    np.testing.assert_allclose(profile, 1.0, atol=1e-12)


def test_column_profile_rows_from_10_to_209():
    # Rows 10..209 of column 60 are raised by 1%; rows 0..9 and 210.. by 50% (not averaged).
    # The clipped mean of column 60 is 1.01 (all 200 rows equal); the others are 1; the median
    # is 1 and the line through the core columns (60 is in it, a 1% bump in one of 70 columns)
    # shifts the rest by < 0.0002, so p[60] - p[59] = 0.01 within 2e-4.
    image = np.ones((300, 120))
    image[10:210, 60] = 1.01
    image[:10, 60] = 1.5
    image[210:, 60] = 1.5
    p = column_profile(image)
    assert p[60] - p[59] == pytest.approx(0.01, abs=2e-4)


def test_task_finds_dip_three_columns_from_c10_c11_boundary():
    # A noise-free flat of ones with a 3% dip in the column three to the left of the C10/C11
    # boundary (inside the window): D = 0.03 for C10 and C11, whose boundary it is, and 0 for every
    # other amplifier.  Halves are found from the layout (amps sharing a grid row).
    det = get_camera()["R01_S01"]
    ny = max(a.bbox.y.stop for a in det.ccd_type.amps)
    nx = max(a.bbox.x.stop for a in det.ccd_type.amps)
    image = np.ones((ny, nx), dtype=np.float32)
    c10 = det.ccd_type.amp("C10")
    c11 = det.ccd_type.amp("C11")
    row = sorted((a for a in det.ccd_type.amps if a.iy == c10.iy), key=lambda a: a.bbox.x.start)
    names = [a.name for a in row]
    i10, i11 = names.index("C10"), names.index("C11")
    assert abs(i10 - i11) == 1
    left, right = (c10, c11) if i10 < i11 else (c11, c10)
    image[left.bbox.y.start : left.bbox.y.stop, left.bbox.x.stop - 3] = 1.0 - DIP
    flat = MaskedImage(Image(image), mask_schema=CALIB_MASK_SCHEMA)
    table = EoDivisaderoTask().run(flat, det).tearing
    values = {r["amp"]: r["divisadero_tearing"] for r in table}
    assert values["C10"] == pytest.approx(DIP, abs=1e-6)
    assert values["C11"] == pytest.approx(DIP, abs=1e-6)
    for amp, v in values.items():
        if amp not in ("C10", "C11"):
            assert v == pytest.approx(0.0, abs=1e-6), amp
