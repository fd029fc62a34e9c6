"""Intra-CCD crosstalk: the measured LSSTCam matrices and their correction, on plain arrays.

Convention (ip_isr ``CrosstalkCalib``, LSSTCam matrices of lsst/obs_lsst_data): ``coeffs[s, t]`` is
the fraction of the signal of source amplifier ``s`` that appears in target amplifier ``t``, with
amplifiers in HDU order; the ratios are in electrons (``CROSSTALK_RATIOS_UNITS = electron``), so in
electrons ``target += coeffs[s, t] * source + coeffs_sqr[s, t] * source**2``.  Crosstalk couples the
pixels read out at the same clock tick, so ip_isr flips the source amplifier into the target's readout
orientation before scaling it.  Arrays here are all in readout orientation (output node at
``[0, 0]``, `lsst.eo.baseline.rawdata.RawAmp`), where that flip is the identity: pixel ``[y, x]`` of
the source feeds pixel ``[y, x]`` of the target, whatever the amplifiers' places in the CCD.

The package ships the matrices of the detectors the plans, the demo and the tests use, and for every
CCD type the element-wise median over all detectors of that type, the fallback for the others
(``data/crosstalk/lsstcam_crosstalk.ecsv``; `load_crosstalk`).
"""

from __future__ import annotations

__all__ = ["CROSSTALK_FILE", "CrosstalkMatrix", "crosstalk_subtrahend", "load_crosstalk"]

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
from astropy.table import Table

from .camera import DetectorInfo

CROSSTALK_FILE = "crosstalk/lsstcam_crosstalk.ecsv"
"""Shipped matrices, relative to the package's ``data`` directory (source: the file's metadata)."""


@dataclass(frozen=True)
class CrosstalkMatrix:
    """Crosstalk coefficients of one CCD.

    Attributes
    ----------
    amp_names : `tuple` [`str`, ...]
        Amplifiers in matrix (HDU) order.
    coeffs : `numpy.ndarray`
        Linear ratios ``[source, target]`` (electron / electron), zero diagonal.
    coeffs_sqr : `numpy.ndarray`
        Quadratic coefficients ``[source, target]`` (1 / electron).
    origin : `str`
        Where the matrix comes from: a detector name, or ``MEDIAN_<ccd type>`` for the fallback.
    """

    amp_names: tuple[str, ...]
    coeffs: np.ndarray
    coeffs_sqr: np.ndarray
    origin: str

    def subset(self, amps: Sequence[str]) -> CrosstalkMatrix:
        """The matrix restricted to some amplifiers (as sources and targets), in the given order."""
        index = [self.amp_names.index(a) for a in amps]
        return CrosstalkMatrix(
            tuple(amps), self.coeffs[np.ix_(index, index)], self.coeffs_sqr[np.ix_(index, index)], self.origin
        )


@functools.lru_cache(maxsize=1)
def _table() -> Table:
    path = resources.files("lsst.eo.baseline").joinpath("data", CROSSTALK_FILE)
    return Table.read(path.read_text(), format="ascii.ecsv")


@functools.lru_cache(maxsize=64)
def _matrix(key: str, amp_names: tuple[str, ...]) -> CrosstalkMatrix | None:
    table = _table()
    rows = table[table["detector"] == key]
    if len(rows) == 0:
        return None
    index = {a: i for i, a in enumerate(amp_names)}
    s = np.array([index[a] for a in rows["source"]])
    t = np.array([index[a] for a in rows["target"]])
    c0 = np.zeros((len(amp_names),) * 2)
    c1 = np.zeros_like(c0)
    c0[s, t] = rows["coeff"]
    c1[s, t] = rows["coeff_sqr"]
    c0.setflags(write=False)
    c1.setflags(write=False)
    return CrosstalkMatrix(amp_names, c0, c1, key)


def load_crosstalk(detector: DetectorInfo) -> CrosstalkMatrix | None:
    """Crosstalk matrix of a detector: its own if shipped, else the median of its CCD type.

    Parameters
    ----------
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        The detector.

    Returns
    -------
    matrix : `CrosstalkMatrix` or `None`
        `None` if neither is shipped.
    """
    amps = tuple(detector.amp_names)
    return _matrix(detector.name, amps) or _matrix(f"MEDIAN_{detector.ccd_type.name}", amps)


def crosstalk_subtrahend(
    images: np.ndarray,
    matrix: CrosstalkMatrix,
    gains: Sequence[float] | np.ndarray | Mapping[str, float] | None = None,
    quadratic: bool = False,
) -> np.ndarray:
    """The crosstalk signal that every target amplifier received from all the others.

    One matrix product over amplifiers: ``ghost[t] = sum_s coeffs[s, t] * e[s]`` (plus
    ``coeffs_sqr[s, t] * e[s]**2`` if ``quadratic``) with ``e = images * gains`` in electrons, then
    divided by the target's gain to return to the images' units.  ip_isr subtracts exactly this
    from the targets.

    Parameters
    ----------
    images : `numpy.ndarray`
        ``[amp, y, x]`` background-free signal of every amplifier of the CCD in `matrix` order,
        readout orientation, in adu (with ``gains``) or electrons (``gains`` `None`).
    matrix : `CrosstalkMatrix`
        Coefficients.
    gains : sequence or mapping of `float`, optional
        Gains (e-/adu) in `matrix` order or by amplifier name; `None` if ``images`` are electrons.
    quadratic : `bool`, optional
        Include the quadratic term.

    Returns
    -------
    ghost : `numpy.ndarray`
        ``[amp, y, x]`` float32, in the units of ``images``.
    """
    n = len(matrix.amp_names)
    if images.shape[0] != n:
        raise ValueError(f"{images.shape[0]} images for a {n}-amplifier crosstalk matrix")
    if isinstance(gains, Mapping):
        gains = [gains[a] for a in matrix.amp_names]
    g = np.ones(n) if gains is None else np.asarray(gains, dtype=np.float64)
    flat = images.reshape(n, -1).astype(np.float32, copy=False)
    # Fold the gains into the matrix: coeffs in adu/adu from source s to target t is c g_s / g_t.
    lin = (matrix.coeffs * g[:, None] / g[None, :]).astype(np.float32)
    ghost = lin.T @ flat
    if quadratic:
        sqr = (matrix.coeffs_sqr * (g[:, None] ** 2) / g[None, :]).astype(np.float32)
        ghost += sqr.T @ np.square(flat)
    return ghost.reshape(images.shape)
