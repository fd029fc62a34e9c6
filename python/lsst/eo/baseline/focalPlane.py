"""Focal-plane position of detector pixels (cameraGeom PIXELS -> FOCAL_PLANE) for science CCDs.

The transform is the one obs_lsst's generated LSSTCam camera gives a science CCD (obs_lsst
0e84d75: ``policy/rafts.yaml``, ``policy/cameraHeader.yaml``, ``policy/lsstCam/R*.yaml``,
assembled by ``python/lsst/obs/lsst/script/generateCamera.py``):

* raft ``Rab`` is centred at ``((b - 2) 127, (a - 2) 127)`` mm (``rafts.yaml`` offsets; science
  rafts have no yaw);
* CCD ``Scd`` sits at ``((d - 1) 42.25, (c - 1) 42.25)`` mm from its raft centre
  (``cameraHeader.yaml`` ccd offsets); every science CCD of ``lsstCam/R*.yaml`` has
  ``geometryWithinRaft`` offset [0, 0] and yaw 0;
* pixel ``(x, y)`` maps to ``centre + (x - refpos_x, y - refpos_y) * 0.010`` mm, with refpos
  (2047.5, 2001.5) for e2v and (2036.5, 2000.5) for ITL CCDs (``cameraHeader.yaml`` ``CCD_E2V``
  / ``CCD_ITL``; pixel size 0.010 mm, no transpose, pitch/roll/yaw 0).

Pixel coordinates are assembled detector pixels ``[y, x]``, taken to be the cameraGeom ones.
Corner-raft (wavefront, guider) CCDs are rotated and offset individually and are not covered:
`detector_centre_mm` raises for them.
"""

from __future__ import annotations

__all__ = [
    "CCD_PITCH_MM",
    "PIXEL_SIZE_MM",
    "RAFT_PITCH_MM",
    "REFPOS",
    "amp_focal_plane_radius_m",
    "detector_centre_mm",
    "pixel_focal_plane_mm",
]

import re

import numpy as np

from .camera import AmpLayout, DetectorInfo

RAFT_PITCH_MM = 127.0
"""Distance between neighbouring science raft centres (obs_lsst ``policy/rafts.yaml``)."""

CCD_PITCH_MM = 42.25
"""Distance between neighbouring CCD centres in a raft (obs_lsst ``policy/cameraHeader.yaml``)."""

PIXEL_SIZE_MM = 0.010
"""Pixel size (obs_lsst ``cameraHeader.yaml`` ``pixelSize``)."""

REFPOS = {"E2V": (2047.5, 2001.5), "ITL": (2036.5, 2000.5)}
"""Pixel (x, y) at the CCD's focal-plane position, by vendor (obs_lsst ``cameraHeader.yaml``)."""

_SCIENCE_NAME = re.compile(r"^R([0-4])([0-4])_S([0-2])([0-2])$")
_CORNER_RAFTS = {"R00", "R04", "R40", "R44"}


def detector_centre_mm(name: str) -> tuple[float, float]:
    """Focal-plane position (mm) of a science CCD's reference pixel.

    Parameters
    ----------
    name : `str`
        Detector name ``Rab_Scd``.

    Returns
    -------
    x, y : `float`
        Focal-plane coordinates (mm).

    Raises
    ------
    ValueError
        For a corner-raft or malformed name.
    """
    match = _SCIENCE_NAME.match(name)
    if match is None or name[:3] in _CORNER_RAFTS:
        raise ValueError(f"{name!r} is not a science CCD (Rab_Scd outside the corner rafts)")
    a, b, c, d = (int(g) for g in match.groups())
    return (
        (b - 2) * RAFT_PITCH_MM + (d - 1) * CCD_PITCH_MM,
        (a - 2) * RAFT_PITCH_MM + (c - 1) * CCD_PITCH_MM,
    )


def pixel_focal_plane_mm(
    name: str, vendor: str, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Focal-plane coordinates (mm) of assembled detector pixels.

    Parameters
    ----------
    name : `str`
        Science detector name.
    vendor : `str`
        ``E2V`` or ``ITL`` (selects the reference pixel).
    x, y : `numpy.ndarray`
        Pixel coordinates (column, row), any broadcastable shapes.

    Returns
    -------
    fx, fy : `numpy.ndarray`
        Focal-plane x and y (mm).
    """
    if vendor not in REFPOS:
        raise ValueError(f"Unknown CCD vendor {vendor!r} for {name}; expected one of {sorted(REFPOS)}")
    cx, cy = detector_centre_mm(name)
    rx, ry = REFPOS[vendor]
    fx = cx + (np.asarray(x, dtype=np.float64) - rx) * PIXEL_SIZE_MM
    fy = cy + (np.asarray(y, dtype=np.float64) - ry) * PIXEL_SIZE_MM
    return fx, fy


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
    fx, fy = pixel_focal_plane_mm(detector.name, detector.vendor, x, y)
    return np.hypot(fx, fy) / 1000.0
