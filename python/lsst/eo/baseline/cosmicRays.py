"""Cosmic-ray detection in dark frames before they are combined (cp_pipe ``CpDarkTask``).

cp_pipe masks cosmic rays in every processed dark with meas_algorithms' ``RepairTask``
(``findCosmicRays``, a single-Gaussian PSF of FWHM 3 pixels), grows the CR mask by 2 pixels and
combines the darks excluding CR pixels (``cp_pipe_algorithms.md`` section 7).  A pixel is a cosmic
ray if it is significant and sharper than the PSF allows:

* ``value - background > min_sigma * sigma`` (meas_algorithms ``minSigma`` = 6);
* for at least one of the four directions through the pixel (rows, columns, both diagonals),
  ``(mean of the two neighbours + cond3_fac2 * sigma_mean) / psi < value - cond3_fac * sigma``, with
  ``psi`` the PSF at the neighbours' distance relative to its centre (``cond3_fac`` = 2.5,
  ``cond3_fac2`` = 0.4, values relative to the background);
* its 8-connected group holds at least ``min_flux`` above the background (``min_DN`` = 150).

Deliberate differences: the noise ``sigma`` is one number per frame (its 3-sigma clipped standard
deviation) instead of the variance plane, the background is the frame median, and there is no
second pass over the neighbours of detected pixels (the 2-pixel growth covers them).  cp_pipe
interpolates known defects before the detection so that hot pixels are not taken for cosmic rays;
no defect list exists when our darks are combined, so `persistent_hits_unmasked` releases pixels
flagged in more than half of the frames: a hot pixel is there in every frame, a cosmic ray in one.
"""

from __future__ import annotations

__all__ = ["find_cosmic_rays", "persistent_hits_unmasked"]

import numpy as np
from scipy import ndimage


def _disk(radius: int) -> np.ndarray:
    """Structuring element of afw ``SpanSet.dilated(radius)`` (circular stencil)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def find_cosmic_rays(
    image: np.ndarray,
    sigma: float,
    *,
    background: float | None = None,
    psf_fwhm: float = 3.0,
    min_sigma: float = 6.0,
    min_flux: float = 150.0,
    cond3_fac: float = 2.5,
    cond3_fac2: float = 0.4,
    grow: int = 2,
) -> np.ndarray:
    """Mask of the cosmic-ray pixels of one frame (True = cosmic ray, grown by ``grow``).

    Parameters
    ----------
    image : `numpy.ndarray`
        One frame ``[y, x]`` (e.g. electrons; ``min_flux`` is in the same units).
    sigma : `float`
        Noise of one pixel.
    background : `float`, optional
        Background level; default the median of ``image``.
    psf_fwhm : `float`, optional
        FWHM (pixels) of the single-Gaussian PSF a real source would have.
    min_sigma, min_flux, cond3_fac, cond3_fac2 : `float`, optional
        Detection thresholds (see the module docstring).
    grow : `int`, optional
        Radius (pixels) by which the mask is dilated.

    Returns
    -------
    mask : `numpy.ndarray` of `bool`
        Same shape as ``image``.
    """
    data = np.asarray(image, dtype=np.float32)
    bkg = float(np.median(data)) if background is None else float(background)
    d = data - np.float32(bkg)
    mask = np.zeros(d.shape, dtype=bool)
    if d.shape[0] < 3 or d.shape[1] < 3 or not np.isfinite(sigma) or sigma <= 0:
        return mask
    g = psf_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    psi_side = np.exp(-1.0 / (2.0 * g * g))  # PSF at 1 pixel / PSF at the centre
    psi_diag = np.exp(-2.0 / (2.0 * g * g))  # at sqrt(2) pixels
    centre = d[1:-1, 1:-1]
    significant = centre > min_sigma * sigma
    if not significant.any():
        return mask
    limit = centre - cond3_fac * sigma
    sigma_mean = sigma / np.sqrt(2.0)  # noise of the mean of two neighbours
    pairs = (
        ((d[:-2, 1:-1] + d[2:, 1:-1]), psi_side),
        ((d[1:-1, :-2] + d[1:-1, 2:]), psi_side),
        ((d[:-2, :-2] + d[2:, 2:]), psi_diag),
        ((d[:-2, 2:] + d[2:, :-2]), psi_diag),
    )
    sharp = np.zeros(centre.shape, dtype=bool)
    for total, psi in pairs:
        sharp |= (0.5 * total + cond3_fac2 * sigma_mean) / psi < limit
    mask[1:-1, 1:-1] = significant & sharp
    if not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    flux = ndimage.sum_labels(d, labels, index=np.arange(1, n + 1))
    keep = np.concatenate(([False], flux >= min_flux))
    mask = keep[labels]
    if grow > 0 and mask.any():
        mask = ndimage.binary_dilation(mask, structure=_disk(grow))
    return mask


def persistent_hits_unmasked(masks: np.ndarray) -> np.ndarray:
    """Clear the cosmic-ray mask where more than half of the frames are flagged (in place).

    Parameters
    ----------
    masks : `numpy.ndarray` of `bool`
        ``(n_frames, ny, nx)`` cosmic-ray masks of the frames of one stack.

    Returns
    -------
    masks : `numpy.ndarray` of `bool`
        The same array: a pixel flagged in more than half of the frames is a hot pixel, not a
        cosmic ray, and is unmasked in every frame.
    """
    persistent = 2 * masks.sum(axis=0) > masks.shape[0]
    masks[:, persistent] = False
    return masks
