"""Physics of one raw amplifier: pure numpy functions from truth to an int32 576 x 2048 array.

Physical order (doc/simulator.rst gives the equations):

1. mean charge in the data region: photo-charge (flux x time x LED response x response map:
   illumination gradient, pixel non-uniformity, divisadero tearing, dark defects), dark current,
   hot pixels and bright columns, persistence;
2. shot noise: Poisson below `POISSON_MAX_MEAN` e-; above, Gaussian spectral synthesis whose
   2-d power spectrum is the Astier et al. (2019) brighter-fatter model
   ``P(k) = (exp(2 a~(k) mu) - 1) / (2 a~(k))`` (``a~`` = Fourier transform of a_ij);
3. full-well clipping with blooming along the column;
4. parallel then serial CTI (first-order deferred charge);
5. output non-linearity;
6. electronics: divide by the gain, add bias level + drift, row pattern (all columns), column
   pattern (data and parallel-overscan columns), read noise; clip to the 18-bit ADC range; round.

Arrays are in raw readout orientation (output node at [0, 0]).  Everything is vectorised per
amplifier.
"""

from __future__ import annotations

__all__ = [
    "ADC_MAX",
    "BLOOM_ITERATIONS",
    "POISSON_MAX_MEAN",
    "AmpFixed",
    "apply_cti",
    "bloom",
    "covariance_model",
    "exp_model_c00",
    "make_fixed",
    "shot_noise_spectrum",
    "simulate_amp",
]

from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..camera import AmpLayout
from .plans import ExposureSpec
from .truth import LED_PRNU_SCALE, AmpTruth, DetectorTruth, ExposureAmpTruth

ADC_MAX = 262143
"""Largest value of the 18-bit ADC."""

POISSON_MAX_MEAN = 100.0
"""Below this mean charge (e-/pixel) shot noise is drawn as Poisson (brighter-fatter negligible)."""

BLOOM_ITERATIONS = 8
"""Passes of the blooming redistribution (each moves half of a pixel's excess to each neighbour)."""


@dataclass
class AmpFixed:
    """Fixed (exposure-independent) patterns of one amplifier.

    Attributes
    ----------
    response : `numpy.ndarray`
        Data-region response without pixel noise: gradient x divisadero x dark defects (float32).
    prnu : `numpy.ndarray`
        Pixel non-uniformity term, ``response * prnu_rms * n`` with ``n`` unit normal (float32);
        the map for an LED is ``response + LED_PRNU_SCALE[led] * prnu``.
    col_pattern : `numpy.ndarray`
        Column pattern (adu) for every raw column (0 outside the data columns).
    row_ramp : `numpy.ndarray`
        Fixed row pattern (adu) for every raw row.
    a_tilde : `numpy.ndarray`
        Real Fourier transform of a_ij on the raw grid (``rfft2`` layout).
    defect_index : `numpy.ndarray`
        Flat indices (into the data region) of hot pixels and bright-column pixels.
    defect_rate : `numpy.ndarray`
        Their excess dark current, e-/s.
    """

    response: np.ndarray
    prnu: np.ndarray
    col_pattern: np.ndarray
    row_ramp: np.ndarray
    a_tilde: np.ndarray
    defect_index: np.ndarray
    defect_rate: np.ndarray

    def response_map(self, led: str) -> np.ndarray:
        """Pixel response map for an LED (mean close to 1)."""
        return self.response + np.float32(LED_PRNU_SCALE[led]) * self.prnu


def _data_slices(layout: AmpLayout) -> tuple[slice, slice]:
    d = layout.raw.data_bbox
    return slice(d.y.start, d.y.stop), slice(d.x.start, d.x.stop)


def a_grid(a_matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Place a_ij (i serial, j parallel lag) on a periodic ``(ny, nx)`` grid, all sign quadrants."""
    grid = np.zeros(shape, dtype=np.float64)
    ni, nj = a_matrix.shape
    for i in range(ni):
        for j in range(nj):
            for sx in (1, -1):
                for sy in (1, -1):
                    grid[(sy * j) % shape[0], (sx * i) % shape[1]] = a_matrix[i, j]
    return grid


def shot_noise_spectrum(a_tilde: np.ndarray, mu: float) -> np.ndarray:
    """Astier+19 power spectrum ``mu * exprel(2 a~ mu)`` (e^2) of the shot noise at mean ``mu``."""
    x = 2.0 * a_tilde * mu
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    rel = np.where(small, 1.0 + 0.5 * x, np.expm1(safe) / safe)
    return mu * rel


def covariance_model(a_matrix: np.ndarray, mu: float, maxlag: int = 4, size: int = 128) -> np.ndarray:
    """Pixel covariances of the simulator's shot noise at mean charge ``mu``.

    Parameters
    ----------
    a_matrix : `numpy.ndarray`
        a_ij, 1/e- (i serial, j parallel lag).
    mu : `float`
        Mean charge, e-.
    maxlag : `int`, optional
        Lags returned per axis.
    size : `int`, optional
        Periodic grid used for the transform.

    Returns
    -------
    cov : `numpy.ndarray`
        ``cov[i, j]`` (e^2) for serial lag ``i`` and parallel lag ``j``; ``cov[0, 0]`` is the
        variance.  This is Astier+19 Eq. 20 with b = 0 summed to all orders.
    """
    grid = a_grid(np.asarray(a_matrix, dtype=np.float64), (size, size))
    a_tilde = np.fft.rfft2(grid).real
    p = shot_noise_spectrum(a_tilde, mu)
    c = np.fft.irfft2(p, s=(size, size))
    return c[:maxlag, :maxlag].T.copy()


def exp_model_c00(a00: float, mu: np.ndarray | float) -> np.ndarray | float:
    """cp_pipe's EXPAPPROXIMATION variance (Astier+19 Eq. 16) in e^2: ``(exp(2 a00 mu) - 1)/(2 a00)``."""
    return np.expm1(2.0 * a00 * np.asarray(mu)) / (2.0 * a00)


def make_fixed(truth: DetectorTruth, amp_index: int) -> AmpFixed:
    """Build the fixed patterns of one amplifier (stream ``[seed, det_id, 0, amp_index]``).

    Parameters
    ----------
    truth : `~lsst.eo.baseline.simulator.truth.DetectorTruth`
        Detector truth.
    amp_index : `int`
        Amplifier index (HDU order).

    Returns
    -------
    fixed : `AmpFixed`
        The patterns.
    """
    amp = truth.amps[amp_index]
    ccd = truth.detector.ccd_type
    layout = ccd.amp(amp.amp)
    rng = np.random.default_rng(np.random.SeedSequence([truth.seed, truth.det_id, 0, amp_index]))
    ny_raw, nx_raw = ccd.raw_shape
    ys, xs = _data_slices(layout)
    ny, nx = ys.stop - ys.start, xs.stop - xs.start
    det_ny, det_nx = ccd.shape
    bbox = layout.bbox
    dx = np.arange(nx)
    dy = np.arange(ny)
    x_det = bbox.x.start + (nx - 1 - dx if layout.flip_x else dx)
    y_det = bbox.y.start + (ny - 1 - dy if layout.flip_y else dy)
    u = (x_det + 0.5) / det_nx * 2.0 - 1.0
    v = (y_det + 0.5) / det_ny * 2.0 - 1.0
    gx, gy, gr = truth.gradient
    grad = (1.0 + gx * u[None, :] + gy * v[:, None] + gr * (u[None, :] ** 2 + v[:, None] ** 2)).astype(
        np.float32
    )
    grad /= np.float32(grad.mean(dtype=np.float64))
    d_left = x_det - bbox.x.start
    d_right = bbox.x.stop - 1 - x_det
    w = amp.divisadero_width
    div = 1.0 + amp.divisadero_left * np.exp(-d_left / w) + amp.divisadero_right * np.exp(-d_right / w)
    response = grad * div.astype(np.float32)[None, :]
    prnu = response * rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(amp.prnu_rms)
    idx: list[np.ndarray] = []
    rates: list[np.ndarray] = []
    for d in truth.amp_defects(amp.amp):
        r0, r1 = d.y0_raw - ys.start, d.y1_raw - ys.start + 1
        c = d.x_raw - xs.start
        if d.kind in ("dark_pixel", "dark_column"):
            response[r0:r1, c] *= np.float32(d.value)
            prnu[r0:r1, c] *= np.float32(d.value)
        else:
            rows = np.arange(r0, r1)
            idx.append(rows * nx + c)
            rates.append(np.full(rows.size, d.value))
    col = np.zeros(nx_raw, dtype=np.float32)
    col_data = rng.standard_normal(nx) * amp.bias_col_rms
    col[xs] = (col_data - col_data.mean()).astype(np.float32)
    row_ramp = (amp.bias_ramp * np.exp(-np.arange(ny_raw) / amp.bias_ramp_scale)).astype(np.float32)
    a_tilde = scipy.fft.rfft2(a_grid(amp.a_matrix, (ny_raw, nx_raw)), workers=1).real.astype(np.float32)
    return AmpFixed(
        response=response,
        prnu=prnu,
        col_pattern=col,
        row_ramp=row_ramp,
        a_tilde=a_tilde,
        defect_index=np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64),
        defect_rate=np.concatenate(rates) if rates else np.zeros(0),
    )


def bloom(charge: np.ndarray, full_well: float, iterations: int = BLOOM_ITERATIONS) -> None:
    """Clip pixels at the full well, spilling their excess up and down their column (in place).

    Each pass moves the excess of every over-full pixel half to the pixel above and half to the
    pixel below (charge reaching the ends of the column is lost).  After ``iterations`` passes any
    remaining excess is removed (it would have bloomed further than modelled).

    Parameters
    ----------
    charge : `numpy.ndarray`
        Data-region charge ``[y, x]`` (e-), modified in place.
    full_well : `float`
        Full well (e-).
    iterations : `int`, optional
        Number of spreading passes.
    """
    fw = np.float32(full_well)
    cols = np.flatnonzero((charge > fw).any(axis=0))
    if cols.size == 0:
        return
    sub = charge[:, cols]
    for _ in range(iterations):
        excess = sub - fw
        np.maximum(excess, 0, out=excess)
        if not excess.any() or not (sub < fw).any():
            break
        sub -= excess
        excess *= 0.5
        sub[1:] += excess[:-1]
        sub[:-1] += excess[1:]
    np.minimum(sub, fw, out=sub)
    charge[:, cols] = sub


def apply_cti(charge: np.ndarray, cti: float, axis: int) -> None:
    """First-order deferred charge along one axis of a raw charge array (in place).

    Pixel ``k`` (0-based from the output) is transferred ``k + 1`` times and keeps
    ``1 - (k + 1) cti`` of its charge; the lost charge trails into pixel ``k + 1``.  The first
    overscan pixel after the last data pixel ``k = N - 1`` thus receives ``N cti x_last``, which
    EPER ``(OS0 + OS1) / (N x_last)`` recovers as ``cti``.

    Parameters
    ----------
    charge : `numpy.ndarray`
        Raw amplifier charge ``[y, x]`` (e-).
    cti : `float`
        Charge transfer inefficiency per transfer.
    axis : `int`
        0 for parallel (along columns), 1 for serial (along rows).
    """
    if cti <= 0:
        return
    n = charge.shape[axis]
    frac = (np.arange(1, n + 1, dtype=np.float32) * np.float32(cti)).astype(np.float32)
    if axis == 0:
        loss = charge * frac[:, None]
        charge -= loss
        charge[1:] += loss[:-1]
    else:
        loss = charge * frac[None, :]
        charge -= loss
        charge[:, 1:] += loss[:, :-1]


def _poisson_uniform(rng: np.random.Generator, lam: float, shape: tuple[int, int]) -> np.ndarray:
    """Independent Poisson(lam) counts per pixel (fast for small ``lam`` via Poisson splitting)."""
    n = shape[0] * shape[1]
    if lam <= 0:
        return np.zeros(shape, dtype=np.float32)
    if lam < 2.0:
        total = int(rng.poisson(lam * n))
        hits = rng.integers(0, n, size=total)
        return np.bincount(hits, minlength=n).astype(np.float32).reshape(shape)
    return rng.poisson(lam, size=shape).astype(np.float32)


def simulate_amp(
    amp: AmpTruth,
    layout: AmpLayout,
    fixed: AmpFixed,
    exposure: ExposureSpec,
    state: ExposureAmpTruth,
    rng: np.random.Generator,
    raw_shape: tuple[int, int] = (2048, 576),
    digitise: bool = True,
) -> np.ndarray:
    """Simulate one raw amplifier array.

    Parameters
    ----------
    amp : `~lsst.eo.baseline.simulator.truth.AmpTruth`
        Amplifier truth.
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Raw geometry.
    fixed : `AmpFixed`
        Fixed patterns (`make_fixed`).
    exposure : `~lsst.eo.baseline.simulator.plans.ExposureSpec`
        The exposure.
    state : `~lsst.eo.baseline.simulator.truth.ExposureAmpTruth`
        Per-exposure values (bias drift, gain, charges).
    rng : `numpy.random.Generator`
        Random stream of this amplifier and exposure.
    raw_shape : `tuple` [`int`, `int`], optional
        ``(ny, nx)`` of the raw array.
    digitise : `bool`, optional
        Clip to the ADC range and round; if False return the float32 analogue signal (adu), for
        effects that couple amplifiers before the ADC (crosstalk).

    Returns
    -------
    raw : `numpy.ndarray`
        int32 raw array ``[y, x]`` in readout orientation (float32 if not ``digitise``).
    """
    ys, xs = _data_slices(layout)
    ny, nx = ys.stop - ys.start, xs.stop - xs.start
    background = state.dark_e + state.persistence_e
    defect_e = fixed.defect_rate * exposure.darktime
    # 1-2. charge and shot noise
    if state.photo_e > 0:
        lam = fixed.response_map(exposure.led) * np.float32(state.photo_e) + np.float32(background)
        flat_lam = lam.reshape(-1)
        flat_lam[fixed.defect_index] += defect_e.astype(np.float32)
        lam_bar = float(lam.mean(dtype=np.float64))
        if lam_bar < POISSON_MAX_MEAN:
            data = rng.poisson(lam).astype(np.float32)
        else:
            spectrum = shot_noise_spectrum(fixed.a_tilde, lam_bar)
            white = rng.standard_normal(raw_shape, dtype=np.float32)
            field = scipy.fft.rfft2(white, workers=1)
            field *= np.sqrt(spectrum).astype(np.float32)
            noise = scipy.fft.irfft2(field, s=raw_shape, workers=1)[ys, xs]
            scale = lam * np.float32(1.0 / lam_bar)
            np.sqrt(scale, out=scale)
            data = lam + scale * noise
            np.maximum(data, 0, out=data)
    else:
        data = _poisson_uniform(rng, background, (ny, nx))
        if fixed.defect_index.size:
            data.reshape(-1)[fixed.defect_index] += rng.poisson(defect_e).astype(np.float32)
    # 3. full well and blooming
    if float(data.max()) > amp.full_well:
        bloom(data, amp.full_well)
    charge = np.zeros(raw_shape, dtype=np.float32)
    charge[ys, xs] = data
    del data
    # 4. CTI: parallel transfers first, then serial
    apply_cti(charge[:, : xs.stop], amp.parallel_cti, axis=0)
    apply_cti(charge, amp.serial_cti, axis=1)
    # 5. output non-linearity
    peak = float(charge.max())
    if peak > 0 and amp.nl_beta * (peak / amp.full_well) ** amp.nl_power > 1e-9:
        x = charge * np.float32(1.0 / amp.full_well)
        # a floor keeps x**p out of float32 denormals (very slow); its effect is < 1e-20 relative
        np.maximum(x, np.float32(1e-3), out=x)
        x **= amp.nl_power
        x *= np.float32(amp.nl_beta)
        np.subtract(1.0, x, out=x)
        charge *= x
        del x
    # 6. electronics
    out = charge
    out *= np.float32(1.0 / state.gain)
    out += np.float32(amp.bias_level + state.bias_drift)
    rows = fixed.row_ramp + (rng.standard_normal(raw_shape[0]) * amp.bias_row_noise).astype(np.float32)
    out += rows[:, None]
    out += fixed.col_pattern[None, :]
    read = rng.standard_normal(raw_shape, dtype=np.float32)
    read *= np.float32(amp.read_noise / state.gain)
    out += read
    del read
    if not digitise:
        return out
    np.clip(out, 0, ADC_MAX, out=out)
    np.rint(out, out=out)
    return out.astype(np.int32)
