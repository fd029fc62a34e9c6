"""Per flat-pair measurements for the photon transfer curve: means, variance, covariances, gain.

The definitions follow cp_pipe's ``PhotonTransferCurveExtractPairTask`` (``cp_pipe_algorithms.md``
section 2.2) so that the numbers are comparable with cp_pipe's PTC datasets.  For one amplifier and
two flats ``I1``, ``I2`` of (nominally) equal exposure (post-ISR, adu, readout orientation):

* a border of ``edge`` pixels (cp_pipe ``numEdgeSuspect`` = 20) and the given bad pixels are
  masked; every statistic uses afw clipped statistics (`lsst.eo.baseline.afwstats`) with
  ``nsig`` = 5.5 and 3 passes;
* ``mu_i`` = MEANCLIP(I_i), ``raw_mean`` = (mu1 + mu2)/2, ``raw_delta`` = mu2 - mu1;
* the difference image ``D = (mu2 I1 - mu1 I2) / raw_mean`` removes the flux mismatch of the pair;
* ``raw_var`` = k/2 VARIANCECLIP(D), with k the Gaussian clipping bias of VARIANCECLIP;
* ``row_mean_variance`` = VARIANCECLIP of the (masked) means of the rows of D;
* ``covariances[dx, dy]`` = 1/2 of the covariance of D at serial lag ``dx`` and parallel lag
  ``dy`` (index order [dx, dy] like cp_pipe's ``covariances``), the mean-corrected Astier+19
  estimator ``sum(d d')/n - sum(d) sum(d')/n^2`` over pixel pairs that are both unmasked and
  within ``nsig`` clipped sigma of the clipped mean of D, averaged over (dx, dy) and (dx, -dy), by
  FFT; corrected for the clipping by ``k_w`` at (0, 0) and ``k_w^2`` elsewhere;
* ``covariance_sqrt_weights`` = 1/sigma of each covariance: ``sqrt(n_lag) / (c00/2)``, divided by
  sqrt(2) at (0, 0) (Gaussian statistics of a sample covariance);
* ``gain`` = the per-pair gain from ``K`` = MEAN((I1 - I2)^2 / (I1 + I2)) with cp_pipe's FULL
  read-noise correction ``g = (mu + sqrt(mu^2 - 2 mu K + 2 s^2)) / (2 K mu - 2 s^2)``, s = read
  noise in adu.

Deliberate deviations from cp_pipe, each documented where it is implemented: the amplifier is
rejected when ``raw_mean <= 0`` (cp_pipe tests ``mu1 + mu2/2 <= 0``, an operator-precedence
slip); the last row of D is used for the row-mean variance (cp_pipe's loop skips it); FFT sizes are
the next 5-smooth sizes >= N + max_lag instead of the next power of two above; the covariance
clip is centred on the clipped mean of D (``|D - m| <= nsig s`` instead of ``|D| <= m + nsig s``;
identical up to the ~0 mean of D); the clipping corrections are the exact ones for afw's iterated
clip (identical to cp_pipe's to ~1e-11 at 5.5 sigma).

Also here: `row_means_variance_slope` (the row-means variance metric, eo_pipe's with no read-noise
term).

Performance: images are processed in ``float32`` (exact for adu values, as afw images) with
float64 accumulation; the masked border is cropped rather than masked; the FFTs are real 2-d
transforms of 5-smooth sizes, and only the ``2 max_lag - 1`` rows of the correlation that are
needed are inverse-transformed along the parallel axis (a small matrix product instead of a full
inverse FFT).  One 2002 x 512 pair takes ~50 ms on one core.
"""

from __future__ import annotations

__all__ = [
    "PairMeasurement",
    "fft_covariances",
    "measure_pair",
    "pair_gain",
    "row_means_variance_slope",
]

import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from .afwstats import clipped_stats, gaussian_clip_factor


@dataclass
class PairMeasurement:
    """Measurements of one flat pair on one amplifier (cp_pipe partial PTC dataset, one point).

    Attributes
    ----------
    valid : `bool`
        False if the pair could not be measured; ``reason`` says why and the fields that could not
        be computed are NaN.
    reason : `str`
        Failure reason ('' if valid).
    mean1, mean2 : `float`
        MEANCLIP of each image (adu).
    raw_mean : `float`
        (mean1 + mean2)/2 (adu), cp_pipe ``rawMeans``.
    raw_delta : `float`
        mean2 - mean1 (adu), cp_pipe ``rawDeltas``.
    raw_var : `float`
        Clip-corrected half VARIANCECLIP of the difference image (adu^2), cp_pipe ``rawVars``.
    row_mean_variance : `float`
        VARIANCECLIP of the row means of the difference image D (adu^2), cp_pipe
        ``rowMeanVariance`` (all rows).  For uncorrelated noise it equals ``2 raw_var /
        row_mean_n_cols``.
    row_mean_n_cols : `float`
        Harmonic mean over the used rows of the number of pixels averaged per row (the ``N_cols``
        of the shot-noise expectation of ``row_mean_variance``).
    covariances : `numpy.ndarray`
        ``(max_lag, max_lag)`` per-image covariances (adu^2), index order ``[dx, dy]`` with dx the
        serial (x, column) lag and dy the parallel (y, row) lag; ``[0, 0]`` is the variance.
    covariance_sqrt_weights : `numpy.ndarray`
        ``(max_lag, max_lag)`` 1/sigma of each covariance (1/adu^2), 0 where not finite.
    covariance_n_pairs : `numpy.ndarray`
        ``(max_lag, max_lag)`` number of pixel pairs behind each covariance (both lag signs).
    n_pixels : `int`
        Unmasked pixels in the measured region (cp_pipe ``nPixelCovariance``).
    n_pixels_covariance : `int`
        Pixels with weight 1 in the covariance estimate (unmasked and not clipped).
    gain : `float`
        Per-pair gain (e-/adu), cp_pipe ``gainList``.
    noise : `float`
        Mean of the two read noises given (adu), cp_pipe ``noiseList``; NaN if none given.
    """

    valid: bool = False
    reason: str = ""
    mean1: float = np.nan
    mean2: float = np.nan
    raw_mean: float = np.nan
    raw_delta: float = np.nan
    raw_var: float = np.nan
    row_mean_variance: float = np.nan
    row_mean_n_cols: float = np.nan
    covariances: np.ndarray = field(default_factory=lambda: np.full((0, 0), np.nan))
    covariance_sqrt_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    covariance_n_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    n_pixels: int = 0
    n_pixels_covariance: int = 0
    gain: float = np.nan
    noise: float = np.nan


def _five_smooth(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (pocketfft's fastest real-transform sizes)."""
    return int(sfft.next_fast_len(int(n), real=True))


_BLAS_CONTROLLER = None


def _single_thread_blas():
    """Context limiting BLAS to one thread (threadpoolctl if available, else a no-op).

    The matrix product below is small (~50 Mflop): a multi-threaded OpenBLAS only adds spinning
    threads, which cost more than they save on a loaded node (measured 2x the CPU time).
    """
    global _BLAS_CONTROLLER
    try:
        if _BLAS_CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController()
        return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unusable: run with the default threads
        return contextlib.nullcontext()


def _inverse_rows(spectra: np.ndarray, rows: np.ndarray, n_fft: int) -> np.ndarray:
    """Inverse DFT along axis -2 evaluated only at output indices ``rows``.

    ``spectra`` has shape (..., n_fft, m); the result (..., len(rows), m) equals
    ``scipy.fft.ifft(spectra, axis=-2)[..., rows, :]``, computed as one small matrix product
    (2 max_lag - 1 rows of the full inverse are all that the covariances need).
    """
    k = np.arange(n_fft)
    phase = (np.exp((2j * np.pi / n_fft) * np.outer(rows, k)) / n_fft).astype(spectra.dtype)
    with _single_thread_blas():
        return np.matmul(phase, spectra)


def fft_covariances(diff: np.ndarray, weights: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean-corrected covariances of a weighted image at small lags, by FFT (Astier+19 appendix).

    For a lag (dx, dy) the estimate is ``c = sum(d d')/n - sum(d) sum(d')/n^2`` over the ``n`` pixel
    pairs (x, x + lag) with both weights 1; when dx and dy are both non-zero the (dx, -dy)
    estimate is averaged in (plain mean, pair counts added), as in cp_pipe.

    Parameters
    ----------
    diff : `numpy.ndarray`
        2-d image (rows = parallel direction y, columns = serial direction x).
    weights : `numpy.ndarray`
        Same shape, 1 for a used pixel and 0 otherwise.
    max_lag : `int`
        Number of lags per axis (lags 0 .. max_lag - 1).

    Returns
    -------
    cov : `numpy.ndarray`
        ``(max_lag, max_lag)`` covariances of ``diff`` indexed ``[dx, dy]`` (float64).
    n_pairs : `numpy.ndarray`
        ``(max_lag, max_lag)`` pair counts indexed ``[dx, dy]``.

    Notes
    -----
    FFT sizes: the correlation of two images of N pixels along an axis is free of wrap-around for
    lags < L when the transform length is >= N + L - 1.  cp_pipe pads to the power of two above
    ``N + L`` (2048 for 2002 rows, 512 -> 1024 for some widths); here the length is the smallest
    5-smooth number >= N + L (e.g. 2000 or 2025 rows, 480 columns after the 20-pixel border is
    cropped), which pocketfft transforms as fast per point as a power of two while padding less.
    The result is identical to rounding.  The images are transformed in float32 (relative errors
    ~1e-7 of the total power, far below the 1/sqrt(N) statistical error of a covariance); only
    the ``2 L - 1`` rows of the correlation needed are inverse-transformed along the parallel axis.
    """
    ny, nx = diff.shape
    L = int(max_lag)
    shape = (_five_smooth(ny + L), _five_smooth(nx + L))
    # Zero-padded float32 buffer filled once (cheaper than letting scipy pad a copy).
    stack = np.zeros((2,) + shape, dtype=np.float32)
    stack[0, :ny, :nx] = diff
    stack[1, :ny, :nx] = weights
    spec = sfft.rfft2(stack, axes=(-2, -1))
    t_im, t_w = spec[0], spec[1]
    prod = np.empty((3,) + t_im.shape, dtype=t_im.dtype)
    np.multiply(t_im, np.conj(t_im), out=prod[0])  # sum of d d'
    np.multiply(t_im, np.conj(t_w), out=prod[1])  # sum of d over the second pixel of a pair
    np.multiply(t_w, np.conj(t_w), out=prod[2])  # pair counts
    lags = np.arange(-(L - 1), L)
    rows = np.mod(lags, shape[0])
    part = _inverse_rows(prod, rows, shape[0])
    corr = sfft.irfft(part, n=shape[1], axis=-1)
    cols = np.mod(lags, shape[1])
    # corr[kind, iy, ix] for dy = lags[iy], dx = lags[ix]
    corr = corr[:, :, cols].astype(np.float64)
    p_cov, p_mean, p_cnt = corr
    c0 = L - 1  # index of lag 0

    cov = np.full((L, L), np.nan)
    npairs = np.zeros((L, L), dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for dy in range(L):
            for dx in range(L):
                n1 = int(round(p_cnt[c0 + dy, c0 + dx]))
                c1 = (
                    p_cov[c0 + dy, c0 + dx] / n1
                    - p_mean[c0 + dy, c0 + dx] * p_mean[c0 - dy, c0 - dx] / (float(n1) * n1)
                    if n1 > 0
                    else np.nan
                )
                if dx == 0 or dy == 0:
                    cov[dx, dy], npairs[dx, dy] = c1, n1
                    continue
                n2 = int(round(p_cnt[c0 - dy, c0 + dx]))
                c2 = (
                    p_cov[c0 - dy, c0 + dx] / n2
                    - p_mean[c0 - dy, c0 + dx] * p_mean[c0 + dy, c0 - dx] / (float(n2) * n2)
                    if n2 > 0
                    else np.nan
                )
                cov[dx, dy], npairs[dx, dy] = 0.5 * (c1 + c2), n1 + n2
    return cov, npairs


def pair_gain(
    image1: np.ndarray,
    image2: np.ndarray,
    mean: float,
    good: np.ndarray | None = None,
    read_noise_adu: float | None = None,
    correction: str = "FULL",
) -> float:
    """Per-pair gain from a flat pair (cp_pipe ``getGainFromFlatPair``).

    ``K`` = plain (unclipped) mean over the good pixels of ``(I1 - I2)^2 / (I1 + I2)`` (non-finite
    ratios ignored); with ``s`` the read noise (adu) and ``mu`` the pair mean (adu):

    * ``NONE``: ``g = 1/K``;
    * ``SIMPLE``: ``g = 1 / (K - (s^2 - 1/(2 g0^2)) / mu)`` with ``g0 = 1/K``;
    * ``FULL``: ``g = (mu + sqrt(mu^2 - 2 mu K + 2 s^2)) / (2 K mu - 2 s^2)``, the root of
      ``K = 1/g + s^2/mu - 1/(2 g^2 mu)``.

    Deliberate deviation from cp_pipe: its SIMPLE branch writes ``1/2*g**2`` (= g^2/2); the intended
    ``1/(2 g^2)`` (the term of the FULL model) is used.  Without a read noise (None or NaN) the
    NONE estimate is returned, as cp_pipe does.

    Notes
    -----
    For Poisson signal, E[(I1-I2)^2/(I1+I2)] = 1/g + s^2/mu + O(1/mu^2): the third-moment term
    -1/(2 g^2 mu) assumed by the FULL model is cancelled by the variance of the denominator, so
    FULL is biased *low* by ~1/(2 N_e) relative (N_e = g mu, the signal in electrons): 1% at 50 e-,
    5e-4 at 1000 e- (confirmed by simulation; 1/K without read noise is unbiased).  Above ~1000 e-
    this is below the statistical error sqrt(2/N_pix) ~ 1.5e-3 of one amplifier; cp_pipe's
    formula is kept for comparability.  K is not corrected for the flux mismatch of the pair
    (cp_pipe uses I1 - I2, not D): a mismatch delta (adu) adds delta^2/(2 mu) to K.

    Returns
    -------
    gain : `float`
        e-/adu; NaN if it cannot be computed.
    """
    a = np.asarray(image1, dtype=np.float32)
    b = np.asarray(image2, dtype=np.float32)
    diff = a - b
    np.multiply(diff, diff, out=diff)
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(diff, total, out=diff)
    use = np.isfinite(diff)
    if good is not None:
        use &= good
    n = int(np.count_nonzero(use))
    if n == 0 or not np.isfinite(mean) or mean <= 0:
        return np.nan
    k = float(np.sum(diff, where=use, dtype=np.float64)) / n
    if read_noise_adu is None or not np.isfinite(read_noise_adu) or correction == "NONE":
        return 1.0 / k if k > 0 else np.nan
    s2 = float(read_noise_adu) ** 2
    if correction == "SIMPLE":
        g0 = 1.0 / k
        denom = k - (s2 - 1.0 / (2.0 * g0 * g0)) / mean
        return 1.0 / denom if denom > 0 else np.nan
    if correction != "FULL":
        raise ValueError(f"Unknown gain correction {correction!r}; expected NONE, SIMPLE or FULL.")
    disc = mean * mean - 2.0 * mean * k + 2.0 * s2
    denom = 2.0 * k * mean - 2.0 * s2
    if disc < 0 or denom <= 0:
        return np.nan
    return (mean + np.sqrt(disc)) / denom


def measure_pair(
    image1: np.ndarray,
    image2: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    nsig: float = 5.5,
    n_iter: int = 3,
    max_lag: int = 8,
    edge: int = 20,
    min_pixels: int = 10000,
    read_noise_adu: tuple[float, float] | None = None,
    gain_correction: str = "FULL",
) -> PairMeasurement:
    """Measure one flat pair on one amplifier (cp_pipe ``_extractOneFlatPair`` for one amp).

    Parameters
    ----------
    image1, image2 : `numpy.ndarray`
        Post-ISR data sections of the amplifier in the two exposures (adu, readout orientation,
        rows = parallel direction), same shape.  Float32 is used internally.
    mask : `numpy.ndarray` of `bool`, optional
        True for bad pixels (defects, saturation, ...), in either exposure.  Non-finite pixels
        are always ignored.
    nsig, n_iter : `float`, `int`
        Clipping of every statistic (cp_pipe: 5.5 sigma, 3 passes).
    max_lag : `int`
        Number of covariance lags per axis (lags 0 .. max_lag - 1; LSSTCam cp_pipe uses 10).
    edge : `int`
        Pixels ignored at each border of the amplifier (cp_pipe ``numEdgeSuspect``, 20).
    min_pixels : `int`
        Minimum number of pixels with covariance weight 1 (cp_pipe
        ``minNumberGoodPixelsForCovariance``, 10000).
    read_noise_adu : `tuple` [`float`, `float`], optional
        Read noise of the two exposures (adu; cp_pipe: ``LSST ISR OVERSCAN RESIDUAL SERIAL
        STDEV``), used by the per-pair gain; their mean is stored as ``noise``.
    gain_correction : `str`, optional
        ``FULL`` (cp_pipe default), ``SIMPLE`` or ``NONE``; see `pair_gain`.

    Returns
    -------
    result : `PairMeasurement`
        ``valid`` False with a ``reason`` for a pair that cannot be measured (no exception).

    Notes
    -----
    Deliberate deviations from cp_pipe:

    * an amplifier is rejected if a clipped mean is non-finite or ``raw_mean <= 0``; cp_pipe's
      test ``mu1 + mu2/2 <= 0`` is an operator-precedence slip for the same intent;
    * the row-mean variance uses every row of D (cp_pipe's loop ``range(minY, maxY)`` skips the
      last row; with the 20-pixel border masked this changes nothing in practice);
    * the covariance clip keeps ``|D - m| <= nsig s`` (m, s = MEANCLIP, STDEVCLIP of D) rather than
      cp_pipe's ``|D| <= m + nsig s``; D has zero mean by construction, so they agree;
    * clipping corrections: ``raw_var`` is multiplied by ``1/f(nsig, n_iter)^2`` with f the
      expected STDEVCLIP/sigma of afw's iterated clip (`gaussian_clip_factor`); the covariance
      clip is a single truncation at ``nsig f(nsig, n_iter)`` sigma, whose variance factor is
      ``k_w = 1/f(nsig, n_iter + 1)^2``.  For a Gaussian pair with small correlation rho,
      truncating both pixels at +-a scales E[x y] by ``(1/k_w)^2`` to first order in rho (the
      rho^2 term vanishes by symmetry), so cp_pipe's ``k`` at (0, 0) and ``k^2`` at other lags is
      the right correction; it is applied with k_w.  At 5.5 sigma all these factors equal
      cp_pipe's single-pass ``sigmaClipCorrection(5.5)^2 = 1 + 1.18e-6`` to ~1e-11.
    """
    out = PairMeasurement()
    if read_noise_adu is not None:
        with np.errstate(invalid="ignore"):
            out.noise = float(np.mean(np.asarray(read_noise_adu, dtype=np.float64)))
    L = int(max_lag)
    out.covariances = np.full((L, L), np.nan)
    out.covariance_sqrt_weights = np.zeros((L, L))
    out.covariance_n_pairs = np.zeros((L, L), dtype=np.int64)

    im1 = np.asarray(image1)
    im2 = np.asarray(image2)
    if im1.shape != im2.shape or im1.ndim != 2:
        out.reason = f"images must be 2-d and of equal shape, got {im1.shape} and {im2.shape}"
        return out
    ny, nx = im1.shape
    if 2 * edge >= ny or 2 * edge >= nx:
        out.reason = f"no pixels left inside an edge of {edge} pixels ({ny} x {nx} image)"
        return out
    # The border is cropped (views, no copy) rather than masked.
    crop = (slice(edge, ny - edge), slice(edge, nx - edge))
    a = im1[crop].astype(np.float32, copy=False)
    b = im2[crop].astype(np.float32, copy=False)
    bad = ~np.isfinite(a)
    bad |= ~np.isfinite(b)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != im1.shape:
            out.reason = f"mask shape {m.shape} differs from image shape {im1.shape}"
            return out
        bad |= m[crop]
    good = ~bad
    out.n_pixels = int(np.count_nonzero(good))
    if out.n_pixels < min_pixels:
        out.reason = f"too few unmasked pixels ({out.n_pixels} < {min_pixels})"
        return out
    any_bad = out.n_pixels != good.size

    s1 = clipped_stats(a, nsig, n_iter, bad if any_bad else None)
    s2 = clipped_stats(b, nsig, n_iter, bad if any_bad else None)
    out.mean1, out.mean2 = s1.mean, s2.mean
    if not (np.isfinite(s1.mean) and np.isfinite(s2.mean)):
        out.reason = "non-finite clipped mean"
        return out
    mu = 0.5 * (s1.mean + s2.mean)
    out.raw_mean = mu
    out.raw_delta = s2.mean - s1.mean
    if mu <= 0:
        out.reason = f"non-positive mean signal ({mu:.4g} adu)"
        return out

    # Difference image D = (mu2 I1 - mu1 I2)/mu, in float32.
    diff = np.multiply(a, np.float32(s2.mean / mu))
    diff -= np.float32(s1.mean / mu) * b
    if any_bad:
        diff[bad] = 0.0  # finite placeholder; excluded by the mask everywhere below
    sd = clipped_stats(diff, nsig, n_iter, bad if any_bad else None)
    if not np.isfinite(sd.variance) or sd.n < 2:
        out.reason = "clipped variance of the difference image is not finite"
        return out
    k_var = 1.0 / gaussian_clip_factor(nsig, n_iter) ** 2
    out.raw_var = 0.5 * sd.variance * k_var

    # Row means of D over unmasked pixels (every row), then their clipped variance.
    row_n = good.sum(axis=1) if any_bad else np.full(diff.shape[0], diff.shape[1])
    row_sum = np.sum(diff, axis=1, dtype=np.float64)
    used_rows = row_n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        row_mean = np.where(used_rows, row_sum / row_n, np.nan)
        out.row_mean_n_cols = float(1.0 / np.mean(1.0 / row_n[used_rows])) if used_rows.any() else np.nan
    out.row_mean_variance = clipped_stats(row_mean, nsig, n_iter).variance

    # Covariance weights: unmasked and within nsig clipped sigma of the clipped mean.
    diff -= np.float32(sd.mean)  # centring improves the float32 precision; c is shift-invariant
    w = np.abs(diff) <= np.float32(nsig * sd.stdev)
    if any_bad:
        w &= good
    out.n_pixels_covariance = int(np.count_nonzero(w))
    if out.n_pixels_covariance < min_pixels:
        out.reason = f"too few pixels for the covariances ({out.n_pixels_covariance} < {min_pixels})"
        return out
    np.multiply(diff, w, out=diff)
    cov_d, npairs = fft_covariances(diff, w, L)
    if (npairs <= 0).any() or not np.isfinite(cov_d).all():
        out.reason = "no pixel pairs for some covariance lag"
        return out
    half_c00 = 0.5 * cov_d[0, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        var_cov = half_c00**2 / npairs
        var_cov[0, 0] *= 2.0
        sw = 1.0 / np.sqrt(var_cov)
    out.covariance_sqrt_weights = np.where(np.isfinite(sw), sw, 0.0)
    k_w = 1.0 / gaussian_clip_factor(nsig, n_iter + 1) ** 2
    cov = 0.5 * cov_d * k_w**2
    cov[0, 0] = half_c00 * k_w
    out.covariances = cov
    out.covariance_n_pairs = npairs

    rn = None
    if read_noise_adu is not None and np.isfinite(out.noise):
        rn = out.noise
    out.gain = pair_gain(a, b, mu, good if any_bad else None, rn, gain_correction)
    out.valid = True
    return out


def row_means_variance_slope(
    signal_e: np.ndarray,
    row_mean_var_e2: np.ndarray,
    n_cols: float | np.ndarray,
    min_e: float = 3000.0,
    max_e: float = 1.0e5,
    read_noise_e: float | np.ndarray = 0.0,
) -> float:
    """eo_pipe's row-means variance metric: measured over expected variance of the row means.

    ``slope = sum(V) / sum(2 (S + rn^2) / N_cols)`` over pairs with ``min_e < S < max_e``, where
    V is the variance of the row means of the pair difference image (e-^2), S the mean signal per
    pixel (e-) and N_cols the number of pixels averaged per row; a ratio of sums, not a fit
    (eo_pipe ``RowMeansVarianceTask``).  1 means no correlated row noise.

    Parameters
    ----------
    signal_e : `numpy.ndarray`
        Mean signal of each pair (e-): ``raw_mean * gain``.
    row_mean_var_e2 : `numpy.ndarray`
        Row-mean variance of each pair (e-^2): ``row_mean_variance * gain^2``.
    n_cols : `float` or `numpy.ndarray`
        Pixels per row mean (``PairMeasurement.row_mean_n_cols``: the unmasked width, 472 for a
        512-pixel amplifier with a 20-pixel border).
    min_e, max_e : `float`
        Signal range (exclusive), eo_pipe 3000 and 1e5 e-.
    read_noise_e : `float` or `numpy.ndarray`, optional
        Read noise (e-) added to the shot-noise expectation; 0 reproduces eo_pipe.

    Returns
    -------
    slope : `float`
        NaN if no pair is in range (eo_pipe returns 0).

    Notes
    -----
    eo_pipe differences the plain images, ``f1 - f2``; our row means come from cp_pipe's
    ``D = (mu2 I1 - mu1 I2)/mu``.  For Poisson pixels of variance mu_i/g (adu) and flux mismatch
    mu_2 - mu_1 = delta, ``Var(D) = 2 mu1 mu2 / (g mu) = (2 mu/g) (1 - delta^2/(4 mu^2))``, i.e. the
    same expectation ``2 S / N_cols`` (e-^2) to second order in the mismatch (1e-4 for a 2%
    mismatch).  D additionally cancels the term ``delta x (illumination pattern)`` that inflates
    the row means of ``f1 - f2`` when the pair fluxes differ, so it is the cleaner estimator.
    """
    s = np.asarray(signal_e, dtype=np.float64)
    v = np.asarray(row_mean_var_e2, dtype=np.float64)
    nc = np.broadcast_to(np.asarray(n_cols, dtype=np.float64), s.shape)
    rn2 = np.broadcast_to(np.asarray(read_noise_e, dtype=np.float64) ** 2, s.shape)
    use = np.isfinite(s) & np.isfinite(v) & np.isfinite(nc) & (nc > 0) & (s > min_e) & (s < max_e)
    if not use.any():
        return np.nan
    expected = np.sum(2.0 * (s[use] + rn2[use]) / nc[use])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.sum(v[use]) / expected) if expected > 0 else np.nan
