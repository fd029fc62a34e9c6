"""Intra-CCD crosstalk injection into the simulated raw amplifiers of one CCD exposure.

Crosstalk is electronic: while the 16 amplifiers of a CCD are read out in lockstep, a fraction of
each amplifier's output signal appears in the others at the same clock tick.  Raw arrays are in
readout orientation, so pixel ``[y, x]`` of every source feeds pixel ``[y, x]`` of every target
(ip_isr's flip of the source to the target's readout corner is the identity here).  With the
measured LSSTCam matrices (`lsst.eo.baseline.crosstalk.load_crosstalk`, ratios in electrons)::

    e_s = (raw_s - bias_s) * g_s                      # source signal, electrons
    raw_t += sum_s (c[s, t] e_s + c2[s, t] e_s**2) / g_t

over the whole raw segment (prescan and overscans carry ~0 signal and get ~0 crosstalk), on the
analogue signal, before the ADC range and the rounding (`simulate_amp` with ``digitise=False``):
ghosts of a fraction of an adu survive in the mean, as in the camera.  ``bias_s`` is the
amplifier's bias level of the exposure, so the source's row and column patterns and read noise
couple too, as they do in the camera.
"""

from __future__ import annotations

__all__ = ["digitise", "inject_crosstalk"]

from collections.abc import MutableMapping, Sequence

import numpy as np

from ..crosstalk import CrosstalkMatrix
from .model import ADC_MAX


def inject_crosstalk(
    arrays: MutableMapping[str, np.ndarray],
    matrix: CrosstalkMatrix,
    bias_levels: Sequence[float],
    gains: Sequence[float],
) -> None:
    """Add crosstalk to the raw arrays of every amplifier of a CCD exposure (in place).

    Parameters
    ----------
    arrays : mapping [`str`, `numpy.ndarray`]
        Float32 analogue raw signal (adu) of all amplifiers of the CCD by name (same shape),
        replaced by their crosstalk-affected, digitised (int32) version (float32 inputs are
        overwritten in the process).
    matrix : `~lsst.eo.baseline.crosstalk.CrosstalkMatrix`
        Coefficients ``[source, target]`` (electrons) and quadratic terms.
    bias_levels : sequence of `float`
        Bias level (adu) of each amplifier in this exposure, in `matrix` order.
    gains : sequence of `float`
        Gain (e-/adu) of each amplifier in this exposure, in `matrix` order.
    """
    names = matrix.amp_names
    n = len(names)
    shape = arrays[names[0]].shape
    g = np.asarray(gains, dtype=np.float64)
    adu = np.empty((n, shape[0] * shape[1]), dtype=np.float32)
    for k, name in enumerate(names):
        np.subtract(arrays[name].reshape(-1), np.float32(bias_levels[k]), out=adu[k], dtype=np.float32)
    # In adu with the gains folded into the matrices: e_s = adu_s g_s and raw_t += ghost_e / g_t, so
    # ghost[t] = sum_s (c[s, t] g_s / g_t) adu_s + (c2[s, t] g_s**2 / g_t) adu_s**2: two (n x n) by
    # (n x pixels) products.
    lin = (np.asarray(matrix.coeffs) * g[:, None] / g[None, :]).astype(np.float32)
    sqr = (np.asarray(matrix.coeffs_sqr) * g[:, None] ** 2 / g[None, :]).astype(np.float32)
    ghost = lin.T @ adu
    np.square(adu, out=adu)
    ghost += sqr.T @ adu
    del adu
    for k, name in enumerate(names):
        out = np.asarray(arrays[name], dtype=np.float32)
        if out is arrays[name]:
            out += ghost[k].reshape(shape)  # the analogue signal is the caller's to overwrite
        else:
            out = out + ghost[k].reshape(shape)
        arrays[name] = digitise(out)


def digitise(signal: np.ndarray) -> np.ndarray:
    """The ADC: clip a float32 analogue signal (adu) to the 18-bit range and round to int32 (in place)."""
    np.clip(signal, 0, ADC_MAX, out=signal)
    np.rint(signal, out=signal)
    return signal.astype(np.int32)
