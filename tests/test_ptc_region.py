"""Pixels of the PTC pair statistics: focal-plane radius, vignetting selection, defect mask.

Expected values are worked out by hand from obs_lsst's geometry facts (focalPlane module doc) and
cp_pipe's selection rule (cp_pipe_algorithms.md 2.2 step 1).
"""

import numpy as np
import pytest
from astropy.table import Table

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.covariance import measure_pair
from lsst.eo.baseline.defectBoxes import defect_mask
from lsst.eo.baseline.focalPlane import amp_focal_plane_radius_m, pixel_focal_plane_mm
from lsst.eo.baseline.ptcExtract import EoPtcExtractTask
from lsst.eo.baseline.ptcRegion import VIGNETTE_COEFFS, amp_use_masks, vignette_keep


def test_focal_plane_positions_of_hand_worked_pixels():
    # R22_S11 (e2v) is the camera centre; its reference pixel (2047.5, 2001.5) is at (0, 0) and
    # pixel (0, 0) at (-2047.5, -2001.5) x 0.010 mm = (-20.475, -20.015) mm.
    camera = get_camera()
    fx, fy = pixel_focal_plane_mm(camera["R22_S11"], np.array([2047.5, 0.0]), np.array([2001.5, 0.0]))
    assert fx == pytest.approx([0.0, -20.475], abs=1e-9)
    assert fy == pytest.approx([0.0, -20.015], abs=1e-9)
    # R01_S00 (ITL): raft R01 at (-127, -254), slot S00 at (-42.25, -42.25) -> (-169.25, -296.25).
    assert camera["R01_S00"].focal_plane_mm == (-169.25, -296.25)
    # Its pixel (0, 0), refpos (2036.5, 2000.5): (-189.615, -316.255) mm, r = 368.743 mm; the
    # opposite corner (4071, 3999): (-148.885, -276.265) mm, r = 313.839 mm.
    det = get_camera()["R01_S00"]
    r = np.zeros(det.ccd_type.shape)
    for a in det.ccd_type.amps:
        b = a.bbox
        r[b.y.start : b.y.stop, b.x.start : b.x.stop] = amp_focal_plane_radius_m(det, a)
    assert r.shape == (4000, 4072)
    assert r[0, 0] * 1000 == pytest.approx(368.7426, abs=1e-3)
    assert r[3999, 4071] * 1000 == pytest.approx(313.8392, abs=1e-3)
    # A wavefront half-CCD (ITL 4072 x 2000, no refpos in the policy files: geometric centre
    # (2035.5, 999.5)) with yaw 0 has its centre pixel at its focal-plane position.
    wf = next(d for d in camera if d.ccd_type.shape == (2000, 4072) and d.yaw_deg == 0.0)
    fx, fy = pixel_focal_plane_mm(wf, np.array([2035.5]), np.array([999.5]))
    assert (fx[0], fy[0]) == pytest.approx(wf.focal_plane_mm, abs=1e-9)


def test_vignette_keep_rule():
    # v = 999.5, 998.5, ... (vmax 999.5).  p = 2: keep v > 979.51 -> 20 values (999.5 .. 980.5).
    v = 1000.0 - np.arange(1000) - 0.5
    keep, p = vignette_keep(v, 2.0, 20)
    assert p == 2.0 and keep.sum() == 20 and keep[:20].all()
    # At least 50 wanted: p = 3 (> 969.52: 30), 4 (> 959.52: 40), 5 (> 949.53: 50) -> p = 5.
    keep, p = vignette_keep(v, 2.0, 50)
    assert p == 5.0 and keep.sum() == 50
    # Never enough: cp_pipe stops at p = 99 (keep v > 9.995: 990 values).
    keep, p = vignette_keep(v, 2.0, 10**6)
    assert p == 99.0 and keep.sum() == 990


def test_vignetting_selection_centre_and_outer_ccd():
    # Centre CCD: V ranges from V(0) = 0.99894 (constant term) to V at its farthest pixel
    # (r = hypot(20.475, 20.015) mm = 28.6 mm); this variation is below 2 %, so every pixel is kept.
    v_far = np.polyval(VIGNETTE_COEFFS, np.hypot(20.475, 20.015) / 1000)
    assert abs(v_far / VIGNETTE_COEFFS[-1] - 1) < 0.02
    masks, used = amp_use_masks(get_camera()["R22_S11"], vignette=True)
    assert not any(m.any() for m in masks.values())
    assert set(used.values()) == {2.0}
    # Outer CCD: the 2 % band holds fewer than 250000 pixels of an amp, so the band is widened
    # until it does; the kept count must reach 250000 and the previous percentage must not.
    det = get_camera()["R01_S00"]
    masks, used = amp_use_masks(det, vignette=True)
    for a in det.ccd_type.amps:
        kept = int((~masks[a.name]).sum())
        v = np.polyval(VIGNETTE_COEFFS, amp_focal_plane_radius_m(det, a))
        assert kept >= 250000
        assert used[a.name] > 2.0
        assert np.count_nonzero(v > v.max() * (1 - (used[a.name] - 1) / 100)) < 250000
        assert kept == np.count_nonzero(v > v.max() * (1 - used[a.name] / 100))


def test_defect_boxes_render_and_validate():
    table = Table({"x0": [1, 5], "y0": [0, 2], "width": [2, 1], "height": [1, 3]})
    mask = defect_mask([table, None], (6, 8))
    # Box 1: x 1..2, y 0 (2 pixels); box 2: x 5, y 2..4 (3 pixels).
    assert mask.sum() == 5
    assert mask[0, 1] and mask[0, 2] and mask[2:5, 5].all() and not mask[0, 3]
    with pytest.raises(ValueError, match="missing column"):
        defect_mask([Table({"x0": [1]})], (6, 8), label="of R22_S11")
    with pytest.raises(ValueError, match="outside"):
        defect_mask([Table({"x0": [9], "y0": [0], "width": [1], "height": [1]})], (6, 8))


def test_defect_pixels_are_excluded_from_the_pair_statistics():
    # A 30 x 40 defect box inside amp C10 of R22_S11, whose pixels are wild in the first flat:
    # with the defect mask the pair statistics equal those of the same pair with the box set to
    # NaN (ignored pixels), and the pixel count drops by exactly the 1200 box pixels.
    det = get_camera()["R22_S11"]
    layout = det.ccd_type.amp("C10")
    b = layout.bbox
    box = Table({"x0": [b.x.start + 100], "y0": [b.y.start + 500], "width": [30], "height": [40]})
    task = EoPtcExtractTask()
    task.config.doVignetteFunctionRegionSelection = False
    masks, defect_amps = task._excluded_pixels(det, [box])
    amp_mask = masks["C10"]
    assert amp_mask.sum() == 1200 and not any(masks[a].any() for a in det.amp_names if a != "C10")
    # eo_pipe's row means see the defects only (here the same pixels: no vignetting selection).
    assert np.array_equal(defect_amps["C10"], amp_mask)
    rng = np.random.default_rng(3)
    im1 = rng.normal(20000.0, 120.0, amp_mask.shape).astype(np.float32)
    im2 = rng.normal(20000.0, 120.0, amp_mask.shape).astype(np.float32)
    im1[amp_mask] = 5.0e4
    masked = measure_pair(im1, im2, amp_mask, max_lag=3)
    nan1 = im1.copy()
    nan1[amp_mask] = np.nan
    reference = measure_pair(nan1, im2, None, max_lag=3)
    unmasked = measure_pair(im1, im2, None, max_lag=3)
    assert masked.valid and reference.valid
    assert masked.n_pixels == unmasked.n_pixels - 1200
    assert masked.raw_mean == reference.raw_mean and masked.raw_var == reference.raw_var
    assert np.array_equal(masked.covariances, reference.covariances)
    assert masked.gain == reference.gain
    # Without the mask the wild pixels enter the unclipped per-pair gain statistic (the clipped
    # variance would drop them anyway): (I1 - I2)^2 / (I1 + I2) ~ 3e4^2 / 7e4 on 1200 of 9.3e5
    # pixels adds ~16 adu to its mean of 14400/40000 = 0.36 adu, so the gain falls ~40-fold.
    assert unmasked.gain < 0.1 * masked.gain


def test_eo_row_means_leave_out_the_box_maxy_row():
    # eo_pipe skips the amplifier box's maxY row in detector orientation.  C10 of R22_S11 is
    # flipped in y (its readout row 0 is the box's top row), C00 is not (its top row is the last
    # one read out).  f1 - f2 has row offsets +1, -1 alternating, except 0 on the row eo_pipe
    # leaves out: the variance without it is that of the other ny - 1 offsets, and differs both
    # from the all-rows value and from leaving out the row at the other end.
    from types import SimpleNamespace

    from lsst.eo.baseline.ptcExtract import _eo_row_means

    det = get_camera()["R22_S11"]
    for name, skipped, other_end in (("C10", 0, -1), ("C00", -1, 0)):
        layout = det.ccd_type.amp(name)
        assert layout.flip_y == (name == "C10")
        ny, nx = layout.bbox.y.size, layout.bbox.x.size
        base = np.full((ny, nx), 1000.0)
        offsets = np.where(np.arange(ny) % 2 == 0, 1.0, -1.0)
        offsets[skipped] = 0.0
        no_mask = np.zeros((ny, nx), dtype=bool)
        isr = [
            SimpleNamespace(layout=layout, image=base + offsets[:, None], mask=no_mask),
            SimpleNamespace(layout=layout, image=base, mask=no_mask),
        ]
        r = _eo_row_means(isr, None)
        expected = np.var(np.delete(offsets, skipped), ddof=1)
        wrong_end = np.var(np.delete(offsets, other_end), ddof=1)
        assert r.row_means_variance_adu2 == pytest.approx(expected, rel=1e-12), name
        assert r.row_means_variance_all_rows_adu2 == pytest.approx(np.var(offsets, ddof=1), rel=1e-12)
        assert abs(expected - wrong_end) > 1e-4 and abs(expected - np.var(offsets, ddof=1)) > 1e-4
        assert r.n_cols == nx
        assert r.mean_1_adu == pytest.approx(1000.0 + offsets.mean(), rel=1e-12)
