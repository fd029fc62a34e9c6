"""Focal-plane position of detector pixels (cameraGeom PIXELS -> FOCAL_PLANE), for every detector.

The transform is the one obs_lsst's generated LSSTCam camera gives (obs_lsst 0e84d75:
``policy/rafts.yaml``, ``policy/cameraHeader.yaml``, ``policy/lsstCam/R*.yaml``, assembled by
``python/lsst/obs/lsst/script/generateCamera.py``): a detector's reference pixel sits at its
focal-plane position (`~lsst.eo.baseline.camera.DetectorInfo.focal_plane_mm`: raft offset plus slot
offset, rotated by the raft yaw for the corner rafts) and its pixel axes are turned
counter-clockwise by its yaw (`~lsst.eo.baseline.camera.DetectorInfo.yaw_deg`, 0 for every science
CCD); pixels are 0.010 mm.  Reference pixels (``cameraHeader.yaml`` ``refpos``, pixel-centre
coordinates): (2047.5, 2001.5) for e2v and (2036.5, 2000.5) for ITL CCDs, guiders included.  The
wavefront half-CCDs are taken to be referenced at their geometric centre (no refpos for them in
the policy files read).

Pixel coordinates are assembled detector pixels in the cameraGeom layout (`camera`), with pixel
``i`` centred on coordinate ``i``.  The focal-plane mosaics (`plotting`) and cp_pipe's vignetting
region selection (`ptcRegion`) both use this module.
"""

from __future__ import annotations

__all__ = [
    "PIXEL_SIZE_MM",
    "REFPOS",
    "amp_focal_plane_radius_m",
    "pixel_focal_plane_mm",
    "reference_pixel",
]

import numpy as np

from .camera import AmpLayout, DetectorInfo

PIXEL_SIZE_MM = 0.010
"""Pixel size (obs_lsst ``cameraHeader.yaml`` ``pixelSize``)."""

REFPOS = {"E2V": (2047.5, 2001.5), "ITL": (2036.5, 2000.5)}
"""Pixel (x, y) at a full-size CCD's focal-plane position, by vendor (obs_lsst ``cameraHeader.yaml``)."""


def reference_pixel(detector: DetectorInfo) -> tuple[float, float]:
    """Pixel (x, y) of ``detector`` placed at its focal-plane position.

    Full-size CCDs use the obs_lsst reference pixel of their vendor; other shapes (the wavefront
    half-CCDs) their geometric centre.
    """
    ny, nx = detector.ccd_type.shape
    full_size = {"E2V": (4004, 4096), "ITL": (4000, 4072)}
    if full_size.get(detector.vendor) == (ny, nx):
        return REFPOS[detector.vendor]
    return (nx - 1) / 2.0, (ny - 1) / 2.0


def pixel_focal_plane_mm(
    detector: DetectorInfo, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Focal-plane coordinates (mm) of assembled detector pixels.

    Parameters
    ----------
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector (focal-plane position, yaw, CCD type).
    x, y : `numpy.ndarray`
        Pixel coordinates (column, row; pixel centres at integers), any broadcastable shapes.

    Returns
    -------
    fx, fy : `numpy.ndarray`
        Focal-plane x and y (mm).
    """
    rx, ry = reference_pixel(detector)
    dx = (np.asarray(x, dtype=np.float64) - rx) * PIXEL_SIZE_MM
    dy = (np.asarray(y, dtype=np.float64) - ry) * PIXEL_SIZE_MM
    cos, sin = detector.yaw_cos_sin
    cx, cy = detector.focal_plane_mm
    return cx + cos * dx - sin * dy, cy + sin * dx + cos * dy


def amp_focal_plane_radius_m(detector: DetectorInfo, layout: AmpLayout) -> np.ndarray:
    """Focal-plane radius (m) of every pixel of an amplifier, in assembled orientation.

    Returns
    -------
    radius : `numpy.ndarray`
        ``[y, x]`` array over the amplifier's box in the assembled detector (m, as cp_pipe's
        vignetting polynomial expects).
    """
    b = layout.bbox
    x = np.arange(b.x.start, b.x.stop, dtype=np.float64)[None, :]
    y = np.arange(b.y.start, b.y.stop, dtype=np.float64)[:, None]
    fx, fy = pixel_focal_plane_mm(detector, x, y)
    return np.hypot(fx, fy) / 1000.0
