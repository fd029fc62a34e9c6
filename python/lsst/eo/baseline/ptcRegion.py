"""Pixels used by the PTC pair statistics: cp_pipe's LSSTCam vignetting-model region selection.

cp_pipe's LSSTCam PTC (``pipelines/LSSTCam/cpPtc.yaml``: ``doVignetteFunctionRegionSelection``;
algorithm ``PhotonTransferCurveExtractPairTask._maskVignetteFunctionRegion``, cp_pipe f029a3f)
evaluates a polynomial vignetting model V(r) of the focal-plane radius r (m) at every pixel and,
per amplifier, keeps the pixels with ``V > Vmax (1 - p/100)``, Vmax the amplifier's largest V,
p = 2 to start and raised by 1 while fewer than 250 000 pixels are kept (p < 100).  All other
pixels are masked (SUSPECT) in both flats.  The selection does not look at the data.
"""

from __future__ import annotations

__all__ = [
    "VIGNETTE_COEFFS",
    "amp_use_masks",
    "vignette_keep",
]

import functools

import numpy as np

from .camera import DetectorInfo
from .focalPlane import amp_focal_plane_radius_m
from .isr import split_ccd

VIGNETTE_COEFFS = (
    -2.04748298e12,
    4.62036195e12,
    -4.55318392e12,
    2.55519946e12,
    -8.86592878e11,
    1.89254514e11,
    -2.11087631e10,
    -2.68228152e08,
    4.87993883e08,
    -8.03764403e07,
    6.99808127e06,
    -3.58577957e05,
    1.05491604e04,
    -1.60565953e02,
    9.96009337e-01,
    9.98941038e-01,
)
"""cp_pipe ``pipelines/LSSTCam/cpPtc.yaml`` ``vignetteFunctionPolynomialCoeffs`` (highest power
first, r in m)."""


def vignette_keep(v: np.ndarray, percent: float = 2.0, min_pixels: int = 250000) -> tuple[np.ndarray, float]:
    """cp_pipe's per-amplifier selection on the vignetting model values ``v`` of its pixels.

    Returns
    -------
    keep : `numpy.ndarray` of `bool`
        ``v > max(v) (1 - p/100)``.
    p : `float`
        The percentage used (2 unless raised to reach ``min_pixels``).
    """
    vmax = float(np.max(v))
    p = float(percent)
    keep = v > vmax * (1.0 - p / 100.0)
    # cp_pipe raises p by 1 while too few pixels are kept and p < 100, keeping the last mask tried.
    while np.count_nonzero(keep) < min_pixels and p + 1.0 < 100.0:
        p += 1.0
        keep = v > vmax * (1.0 - p / 100.0)
    return keep, p


def _polyval_inplace(coeffs: tuple[float, ...], r: np.ndarray) -> np.ndarray:
    """``numpy.polyval(coeffs, r)`` by Horner's rule without temporaries (same arithmetic)."""
    out = np.full(r.shape, coeffs[0], dtype=np.float64)
    for c in coeffs[1:]:
        out *= r
        out += c
    return out


@functools.lru_cache(maxsize=4)
def _vignette_masks(
    name: str, coeffs: tuple[float, ...], percent: float, min_pixels: int
) -> tuple[np.ndarray, dict[str, float]]:
    from .camera import get_camera

    detector = get_camera()[name]
    keep = np.zeros(detector.ccd_type.shape, dtype=bool)
    used = {}
    for layout in detector.ccd_type.amps:
        b = layout.bbox
        v = _polyval_inplace(coeffs, amp_focal_plane_radius_m(detector, layout))
        keep[b.y.start : b.y.stop, b.x.start : b.x.stop], used[layout.name] = vignette_keep(
            v, percent, min_pixels
        )
    keep.setflags(write=False)
    return keep, used


def amp_use_masks(
    detector: DetectorInfo,
    *,
    vignette: bool,
    coeffs: tuple[float, ...] = VIGNETTE_COEFFS,
    percent: float = 2.0,
    min_pixels: int = 250000,
    defects: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray] | None, dict[str, float]]:
    """Per-amplifier masks (readout orientation, True = excluded) from vignetting and defects.

    Parameters
    ----------
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        A science detector (the vignetting selection needs its focal-plane position).
    vignette : `bool`
        Apply the vignetting-model selection.
    coeffs, percent, min_pixels
        Selection parameters (cp_pipe LSSTCam values by default).
    defects : `numpy.ndarray` of `bool`, optional
        Detector defect mask ``[y, x]`` (assembled pixels).

    Returns
    -------
    masks : `dict` [`str`, `numpy.ndarray`] or `None`
        Excluded pixels per amplifier (None if nothing is excluded).
    percent_used : `dict` [`str`, `float`]
        Selection percentage per amplifier (empty without the vignetting selection).
    """
    excluded = None
    used: dict[str, float] = {}
    if vignette:
        keep, used = _vignette_masks(detector.name, tuple(coeffs), float(percent), int(min_pixels))
        excluded = ~keep
    if defects is not None:
        excluded = defects.copy() if excluded is None else excluded | defects
    if excluded is None:
        return None, used
    return split_ccd(excluded, detector.ccd_type), used
