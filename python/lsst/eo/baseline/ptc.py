"""Photon transfer curve (PTC) solver on plain arrays: gain, noise, a00, turnoff, full covariances.

The algorithms follow cp_pipe's ``PhotonTransferCurveSolveTask`` (``cp_pipe_algorithms.md``
sections 2.3-2.6) so that the numbers are comparable with cp_pipe's ``ptc`` datasets.  Inputs are
the per-pair measurements of one amplifier (`lsst.eo.baseline.covariance.measure_pair`): means
``mu`` (adu), variances ``C00`` (adu^2) and optionally covariances ``C[dx, dy]`` (adu^2) with
their 1/sigma weights.

Models (Astier et al. 2019, PASP 131, 064002):

* EXPAPPROXIMATION (Eq. 16), parameters a00 (1/e-), gain g (e-/adu), n (e-^2)::

      C00(mu) = (exp(2 a00 g mu) - 1) / (2 a00 g^2) + n / g^2

* FULLCOVARIANCE (Eq. 20), r x r matrices a (1/e-), b (1/e-), n (e-^2) and g, with
  ``c = a * b`` (element-wise) and the 2-d convolution ``x`` of lag-symmetric matrices::

      C_ij(mu) = a_ij mu^2 + (2/3) (a x a + c)_ij g mu^3
                 + ((1/3) (a x a x a) + (5/6) (a x c))_ij g^2 mu^4 + n_ij / g^2 + delta_i0 delta_j0 mu / g

  (i.e. ``{a mu_e^2 + (2/3)(a x a + c) mu_e^3 + [...] mu_e^4 + n} / g^2 + mu/g`` with mu_e = g mu);
  FULLCOVARIANCE_NO_B sets c = 0.  The convolutions follow cp_pipe's recipe exactly: a (and c)
  zero-padded to ``m = int(1.5 r) + 1`` lags, mirrored into the four quadrants (2m - 1 square),
  ``same``-size linear convolutions (so a x a is truncated at m - 1 lags before the second
  convolution), and the r x r block of non-negative lags read out.

Solve sequence (per amplifier):

1. Start mask = given mask & finite & ``min_mean < mu < max_mean``; zero variances -> 1e-9.
2. EXPAPPROXIMATION outlier rejection: bounded TRF fits (start [-2e-6, 1.5, 25], bounds a00 in
   [-1e-4, 0], g in [0.1, 10], n in [0, 2000], unweighted, scipy defaults as cp_pipe) first on
   points with mu and C00 <= ``max_signal_initial`` (no minimum number: TRF accepts fewer points
   than parameters, so a sparse curve with 1-2 points there is still fitted and extrapolated),
   then up to ``max_iterations`` times on the points with ``|C00 - model| / sqrt(C00) <
   sigma_cut`` (over all points), with the jump check (a good point preceded by a rejected one and
   at least ``max_delta_initial`` above the previous good point is rejected with everything above
   it).  Fewer than 2 survivors, or fewer than 3 (the parameters), fail the amplifier.
   ``ptc_turnoff`` = the largest mean that survives; ``ptc_turnoff_sampling_error`` = half the
   distance between its two neighbouring means.
3. A weighted, unbounded Levenberg-Marquardt fit of Eq. 16 on the surviving points (weights
   ``covariance_weights[:, 0, 0]``); errors scaled by sqrt(chi2/dof).
4. Optional roll-off model (cp_pipe ``doModelPtcRolloff``, on for LSSTCam), on the points in the
   detector-mean order (``point_order``): an exponential variance deficit above mu_t is fitted
   (bounded TRF, mu_t in [min(turnoff - 20000, 0), turnoff], tau in [-10000, -100]) on the
   surviving points plus the points up to ``rolloff_extension`` adu above the turnoff whose
   variance is at most the turnoff's; ``ptc_rolloff`` = the mean of the last point in that order
   where the model with the deficit departs from the model without by at most
   ``max_rolloff_deviation`` (capped at the turnoff); the new mask keeps the fitted points with
   ``mu < ptc_rolloff`` (strictly, so a roll-off equal to the turnoff drops the turnoff point).  A
   failed roll-off fit leaves the amplifier untouched.
5. Final fit: EXPAPPROXIMATION re-runs step 2's rejection (the turnoff is not updated) then
   step 3; FULLCOVARIANCE(_NO_B) fits Eq. 20 on the mask of steps 2/4 (no further rejection)
   from a 5-iteration per-lag parabola initial guess, one LM fit over all parameters.

Deliberate deviations from cp_pipe (each also noted where implemented):

* the weighted fits use analytic (FULLCOVARIANCE) or default finite-difference (EXPAPPROXIMATION)
  Jacobians and ``x_scale='jac'`` instead of ``leastsq(epsfcn=1e-4)`` (1% finite-difference
  steps); they converge to the same minimum, more reliably;
* a roll-off fit with no point within tolerance leaves the amplifier untouched (cp_pipe raises);
* the Eq. 20 block is read at the known centre of the symmetrised arrays (cp_pipe: at argmax|a|,
  which is the same place whenever |a00| is the largest coefficient, i.e. always in practice);
* ``ptc_turnoff_sampling_error`` for a turnoff at the first point uses the next point (cp_pipe
  indexes position -1, i.e. the last point).
"""

from __future__ import annotations

__all__ = [
    "FIT_TYPES",
    "PtcAmpFit",
    "evaluate_exp_model",
    "evaluate_full_model",
    "evaluate_rolloff_model",
    "fit_ptc_amp",
]

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy.optimize import least_squares

from .covariance import _single_thread_blas

FIT_TYPES = ("EXPAPPROXIMATION", "FULLCOVARIANCE", "FULLCOVARIANCE_NO_B")
"""Supported ``fit_type`` values."""

_EXP_START = (-2.0e-6, 1.5, 25.0)
_EXP_LOWER = (-1.0e-4, 0.1, 0.0)
_EXP_UPPER = (0.0, 10.0, 2000.0)


# ---------------------------------------------------------------------------------------------
# Models


def evaluate_exp_model(mu: np.ndarray, a00: float, gain: float, noise_e2: float) -> np.ndarray:
    """Astier+19 Eq. 16 variance (adu^2) at mean signal ``mu`` (adu).

    Parameters
    ----------
    mu : `numpy.ndarray`
        Mean signal (adu).
    a00 : `float`
        Brighter-fatter coefficient (1/e-); 0 gives the linear PTC ``mu/g + n/g^2``.
    gain : `float`
        Gain (e-/adu).
    noise_e2 : `float`
        Read noise variance (e-^2).

    Returns
    -------
    c00 : `numpy.ndarray`
        ``(exp(2 a00 g mu) - 1) / (2 a00 g^2) + n / g^2`` (adu^2).
    """
    mu = np.asarray(mu, dtype=np.float64)
    if a00 == 0.0:
        return mu / gain + noise_e2 / gain**2
    with np.errstate(over="ignore"):
        return np.expm1(2.0 * a00 * gain * mu) / (2.0 * a00 * gain * gain) + noise_e2 / gain**2


def evaluate_rolloff_model(
    mu: np.ndarray, a00: float, gain: float, noise_e2: float, mu_t: float, tau: float
) -> np.ndarray:
    """Eq. 16 with cp_pipe's roll-off deficit: ``C00 - [mu >= mu_t] (exp(-(mu - mu_t)/tau) - 1)``.

    ``tau`` (adu) is negative, so the variance falls below Eq. 16 above ``mu_t`` (adu).
    """
    mu = np.asarray(mu, dtype=np.float64)
    base = evaluate_exp_model(mu, a00, gain, noise_e2)
    with np.errstate(over="ignore"):
        deficit = np.where(mu >= mu_t, np.expm1(-(mu - mu_t) / tau), 0.0)
    return base - deficit


def _symmetrize(x: np.ndarray, size: int) -> np.ndarray:
    """Mirror ``x[..., r, r]`` (non-negative lags) into a zero-padded ``(2 size - 1)^2`` array.

    Output ``[o + p, o + q] = x[|p|, |q|]`` for |p|, |q| < r, zero elsewhere; o = size - 1.
    """
    r = x.shape[-1]
    o = size - 1
    idx = np.abs(np.arange(-(r - 1), r))
    out = np.zeros(x.shape[:-2] + (2 * size - 1, 2 * size - 1), dtype=np.float64)
    out[..., o - (r - 1) : o + r, o - (r - 1) : o + r] = x[..., idx[:, None], idx[None, :]]
    return out


class _FullCovModel:
    """Eq. 20 and its analytic Jacobian for r x r lags (cp_pipe's convolution recipe).

    All convolutions are done with real FFTs of a size >= the full linear convolution, so they are
    exact linear convolutions; ``same`` cropping is applied where cp_pipe's ``fftconvolve(...,
    mode='same')`` crops.
    """

    def __init__(self, r: int) -> None:
        self.r = r
        self.m = int(1.5 * r) + 1
        self.S = 2 * self.m - 1
        self.o = self.m - 1
        n = int(sfft.next_fast_len(2 * self.S - 1, real=True))
        self.shape = (n, n)
        eye = np.zeros((r * r, r, r))
        eye[np.arange(r * r), np.arange(r * r) // r, np.arange(r * r) % r] = 1.0
        self._fe = sfft.rfft2(_symmetrize(eye, self.m), s=self.shape)

    def _crop_out(self, full: np.ndarray) -> np.ndarray:
        """Block of the r x r non-negative lags of a full convolution of two centred arrays."""
        b = 2 * self.o
        return full[..., b : b + self.r, b : b + self.r]

    def _crop_same(self, full: np.ndarray) -> np.ndarray:
        """``same``-size (S x S) centred part of a full convolution."""
        return full[..., self.o : self.o + self.S, self.o : self.o + self.S]

    def terms(self, a: np.ndarray, c: np.ndarray | None, jac: bool = False) -> dict[str, np.ndarray]:
        """Convolution terms u = a x a, v = a x a x a, q = a x c (r x r), and derivatives."""
        s = self.shape
        fa = sfft.rfft2(_symmetrize(a, self.m), s=s)
        full_aa = sfft.irfft2(fa * fa, s=s)
        aa_same = self._crop_same(full_aa)
        faa = sfft.rfft2(aa_same, s=s)
        out = {"u": self._crop_out(full_aa), "v": self._crop_out(sfft.irfft2(faa * fa, s=s))}
        fc = None
        if c is not None:
            fc = sfft.rfft2(_symmetrize(c, self.m), s=s)
            out["q"] = self._crop_out(sfft.irfft2(fa * fc, s=s))
        else:
            out["q"] = np.zeros_like(a)
        if jac:
            fe = self._fe
            g_full = sfft.irfft2(fa[None] * fe, s=s)  # a x E_kl for every unit lag kl
            out["dq_dc"] = self._crop_out(g_full)  # (r^2, r, r) indexed [kl, i, j]
            out["du_da"] = 2.0 * out["dq_dc"]
            h = sfft.rfft2(2.0 * self._crop_same(g_full), s=s)
            out["dv_da"] = self._crop_out(sfft.irfft2(h * fa[None], s=s)) + self._crop_out(
                sfft.irfft2(faa[None] * fe, s=s)
            )
            if fc is not None:
                out["dq_da"] = self._crop_out(sfft.irfft2(fe * fc[None], s=s))
        return out

    def evaluate(
        self, mu: np.ndarray, a: np.ndarray, c: np.ndarray | None, n: np.ndarray, g: float
    ) -> np.ndarray:
        """Model covariances (len(mu), r, r) in adu^2."""
        t = self.terms(a, c)
        cc = 0.0 if c is None else c
        mu = np.asarray(mu, dtype=np.float64)[:, None, None]
        model = (
            a * mu**2
            + (2.0 / 3.0) * (t["u"] + cc) * g * mu**3
            + ((1.0 / 3.0) * t["v"] + (5.0 / 6.0) * t["q"]) * g * g * mu**4
            + n / (g * g)
        )
        model[:, 0, 0] += mu[:, 0, 0] / g
        return model

    def evaluate_with_jacobian(
        self, mu: np.ndarray, a: np.ndarray, c: np.ndarray | None, n: np.ndarray, g: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Model (K, r^2) and Jacobian (K, r^2, n_par) for parameters [a, (c), n, g]."""
        r2 = self.r * self.r
        t = self.terms(a, c, jac=True)
        cc = 0.0 if c is None else c
        mu1 = np.asarray(mu, dtype=np.float64)
        m2, m3, m4 = mu1**2, mu1**3, mu1**4
        mu3 = mu1[:, None, None]
        quart = (1.0 / 3.0) * t["v"] + (5.0 / 6.0) * t["q"]
        model = a * mu3**2 + (2.0 / 3.0) * (t["u"] + cc) * g * mu3**3 + quart * g * g * mu3**4 + n / g**2
        model[:, 0, 0] += mu1 / g
        eye = np.eye(r2)
        # d model_ij / d a_kl: [kl, ij] matrices transposed to [ij, kl]
        du = t["du_da"].reshape(r2, r2).T
        dv = t["dv_da"].reshape(r2, r2).T
        dq_a = t["dq_da"].reshape(r2, r2).T if c is not None else 0.0
        d3 = (2.0 / 3.0) * g * du
        d4 = g * g * ((1.0 / 3.0) * dv + (5.0 / 6.0) * dq_a)
        blocks = [m2[:, None, None] * eye + m3[:, None, None] * d3 + m4[:, None, None] * d4]
        if c is not None:
            dq_c = t["dq_dc"].reshape(r2, r2).T
            blocks.append(
                m3[:, None, None] * ((2.0 / 3.0) * g * eye) + m4[:, None, None] * ((5.0 / 6.0) * g * g * dq_c)
            )
        blocks.append(np.broadcast_to(eye / g**2, (len(mu1), r2, r2)))
        dg = ((2.0 / 3.0) * (t["u"] + cc) * mu3**3 + 2.0 * g * quart * mu3**4 - 2.0 * n / g**3).reshape(
            len(mu1), r2
        )
        dg[:, 0] -= mu1 / g**2
        blocks.append(dg[:, :, None])
        return model.reshape(len(mu1), r2), np.concatenate(blocks, axis=2)


def evaluate_full_model(
    mu: np.ndarray,
    a_matrix: np.ndarray,
    b_matrix: np.ndarray | None,
    noise_matrix: np.ndarray,
    gain: float,
) -> np.ndarray:
    """Astier+19 Eq. 20 covariances (adu^2) with cp_pipe's convolution recipe.

    Parameters
    ----------
    mu : `numpy.ndarray`
        Mean signals (adu), shape (N,).
    a_matrix : `numpy.ndarray`
        ``a`` (1/e-), r x r, index order [dx, dy] (``[1, 0]`` = serial nearest neighbour).
    b_matrix : `numpy.ndarray` or `None`
        ``b`` (1/e-), r x r; None (or zeros) for FULLCOVARIANCE_NO_B.
    noise_matrix : `numpy.ndarray`
        ``n`` (e-^2), r x r.
    gain : `float`
        e-/adu.

    Returns
    -------
    cov : `numpy.ndarray`
        (N, r, r) model covariances (adu^2), same index order as the inputs.
    """
    a = np.asarray(a_matrix, dtype=np.float64)
    c = None if b_matrix is None else a * np.asarray(b_matrix, dtype=np.float64)
    model = _FullCovModel(a.shape[0])
    return model.evaluate(np.atleast_1d(mu), a, c, np.asarray(noise_matrix, dtype=np.float64), gain)


# ---------------------------------------------------------------------------------------------
# Result container


@dataclass
class PtcAmpFit:
    """PTC solution of one amplifier (cp_pipe ``PhotonTransferCurveDataset`` fields for one amp).

    Per-point arrays are in the *input* order.  A failed amplifier has ``failure`` set and NaN
    results (never an exception for bad data).

    Attributes
    ----------
    fit_type : `str`
        EXPAPPROXIMATION, FULLCOVARIANCE or FULLCOVARIANCE_NO_B.
    failure : `str`
        Why the amplifier could not be fitted ('' on success).
    gain, gain_err : `float`
        Gain (e-/adu) and its error (scaled by sqrt(chi2/dof)), from the final fit.
    noise, noise_err : `float`
        Read noise (e-): sqrt(|n|) (EXPAPPROXIMATION) or sqrt(|n00|) (FULLCOVARIANCE).
    a00, a00_err : `float`
        Brighter-fatter coefficient (1/e-): Eq. 16 a00 or ``a_matrix[0, 0]``; negative for the
        usual brighter-fatter effect (eo_pipe reports -a00).
    ptc_turnoff : `float`
        Largest mean (adu) surviving the initial EXPAPPROXIMATION outlier rejection (never updated
        by later steps), cp_pipe ``ptcTurnoff``.
    ptc_turnoff_sampling_error : `float`
        Half the distance (adu) between the means before and after the turnoff point (the
        turnoff minus the previous mean if it is the last finite point).
    max_signal : `float`
        Largest finite mean (adu, the means given to the fit) among the points allowed by the
        input mask, whether or not the fit keeps them.  Not eo_pipe's ``max_observed_signal``,
        which is the largest *measured* mean of all pairs (`lsst.eo.baseline.flatPairStats`).
    ptc_rolloff : `float`
        Roll-off (adu): the mean of the last point, in detector-mean order, where the roll-off
        model departs from Eq. 16 by at most ``max_rolloff_deviation``, capped at the turnoff;
        equals ``ptc_turnoff`` when no point is added above the turnoff; NaN if the roll-off was
        not modelled or its fit failed.
    rolloff_failure : `str`
        Why the roll-off fit failed ('' otherwise); the amplifier is then left as the turnoff pass
        left it (``ptc_rolloff`` NaN, ``rolloff_mask`` all False), as in cp_pipe.
    rolloff_params, rolloff_params_err : `numpy.ndarray`
        [a00, g, n, mu_t (adu), tau (adu)] of the roll-off fit and errors (NaN if not fitted;
        errors sqrt(diag((J^T J)^-1)), unscaled, as cp_pipe).
    rolloff_mask : `numpy.ndarray` of `bool`
        Points of the roll-off fit (cp_pipe ``expIdRolloffMask``).
    turnoff_mask : `numpy.ndarray` of `bool`
        Points surviving the initial outlier rejection (defines the turnoff).
    mask : `numpy.ndarray` of `bool`
        Points used by the final fit (cp_pipe ``expIdMask``).
    fit_params, fit_params_err : `numpy.ndarray`
        Final fit parameters: EXPAPPROXIMATION [a00 (1/e-), g (e-/adu), n (e-^2)] (cp_pipe
        ``ptcFitPars``); FULLCOVARIANCE [a.ravel(), c.ravel(), n.ravel(), g] with c = a b (e-^-2);
        FULLCOVARIANCE_NO_B [a.ravel(), n.ravel(), g].
    chi2_dof : `float`
        Weighted chi^2 per degree of freedom of the final fit.
    exp_params, exp_params_err, exp_chi2_dof
        The weighted EXPAPPROXIMATION fit of the turnoff pass (always computed).
    final_means, final_vars, final_model_vars : `numpy.ndarray`
        Means (adu), variances and model variances (adu^2), NaN where not in ``mask``.
    a_matrix, b_matrix, noise_matrix : `numpy.ndarray`
        FULLCOVARIANCE a (1/e-), b (1/e-; NaN where a = 0, 0 for NO_B) and n (e-^2), r x r in
        index order [dx, dy]; NaN for EXPAPPROXIMATION.
    covariances_model : `numpy.ndarray`
        (N, r, r) Eq. 20 model at every mean (adu^2); NaN for EXPAPPROXIMATION.
    """

    fit_type: str
    failure: str = ""
    gain: float = np.nan
    gain_err: float = np.nan
    noise: float = np.nan
    noise_err: float = np.nan
    a00: float = np.nan
    a00_err: float = np.nan
    ptc_turnoff: float = np.nan
    ptc_turnoff_sampling_error: float = np.nan
    max_signal: float = np.nan
    ptc_rolloff: float = np.nan
    rolloff_failure: str = ""
    rolloff_params: np.ndarray = field(default_factory=lambda: np.full(5, np.nan))
    rolloff_params_err: np.ndarray = field(default_factory=lambda: np.full(5, np.nan))
    rolloff_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    turnoff_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    fit_params: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    fit_params_err: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    chi2_dof: float = np.nan
    exp_params: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    exp_params_err: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    exp_chi2_dof: float = np.nan
    final_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    final_vars: np.ndarray = field(default_factory=lambda: np.zeros(0))
    final_model_vars: np.ndarray = field(default_factory=lambda: np.zeros(0))
    a_matrix: np.ndarray = field(default_factory=lambda: np.full((0, 0), np.nan))
    b_matrix: np.ndarray = field(default_factory=lambda: np.full((0, 0), np.nan))
    noise_matrix: np.ndarray = field(default_factory=lambda: np.full((0, 0), np.nan))
    covariances_model: np.ndarray = field(default_factory=lambda: np.full((0, 0, 0), np.nan))

    @property
    def valid(self) -> bool:
        """True if the amplifier was fitted."""
        return not self.failure


# ---------------------------------------------------------------------------------------------
# EXPAPPROXIMATION pieces


def _exp_fun(p: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return evaluate_exp_model(mu, p[0], p[1], p[2])


def _fit_bounded_exp(mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Unweighted bounded TRF fit of Eq. 16 from cp_pipe's start values (outlier-rejection fit)."""
    # cp_pipe's call exactly (TRF, default scaling): with fewer points than parameters (a sparse
    # B-protocol curve below the initial limit) the solution is not unique and depends on the path.
    res = least_squares(
        lambda p: _exp_fun(p, mu) - var,
        np.array(_EXP_START),
        bounds=(np.array(_EXP_LOWER), np.array(_EXP_UPPER)),
        method="trf",
    )
    return res.x


def _covariance_from_jacobian(jac: np.ndarray, chi2_dof: float) -> np.ndarray:
    """Parameter covariance ``(J^T J)^-1 chi2_dof`` by SVD (pseudo-inverse for rank defects).

    The columns are normalised first: the parameters span ~20 orders of magnitude (a ~ 1e-6,
    c ~ 1e-12, n ~ 10), which would otherwise put genuine directions below the SVD cut-off.
    """
    norm = np.sqrt(np.sum(jac * jac, axis=0))
    norm = np.where(norm > 0, norm, 1.0)
    _, s, vt = np.linalg.svd(jac / norm, full_matrices=False)
    keep = s > s[0] * np.finfo(float).eps * max(jac.shape)
    inv = np.where(keep, 1.0 / np.where(keep, s, 1.0) ** 2, 0.0)
    return ((vt.T * inv) @ vt) / np.outer(norm, norm) * chi2_dof


def _fit_weighted_exp(
    mu: np.ndarray, var: np.ndarray, weights: np.ndarray, p0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Unbounded weighted Levenberg-Marquardt fit of Eq. 16; errors scaled by sqrt(chi2/dof)."""
    res = least_squares(lambda p: weights * (_exp_fun(p, mu) - var), p0, method="lm", x_scale="jac")
    dof = len(mu) - 3
    if dof <= 0:
        return res.x, np.full(3, np.nan), np.nan
    chi2 = float(np.sum(res.fun**2)) / dof
    cov = _covariance_from_jacobian(res.jac, chi2)
    return res.x, np.sqrt(np.abs(np.diag(cov))), chi2


def _outlier_rejection(
    mu: np.ndarray,
    var: np.ndarray,
    start: np.ndarray,
    sigma_cut: float,
    max_signal_initial: float,
    max_delta_initial: float,
    max_iterations: int,
) -> tuple[np.ndarray, np.ndarray, str]:
    """cp_pipe's EXPAPPROXIMATION outlier loop on mean-sorted arrays.

    Returns the surviving mask, the last bounded-fit parameters and a failure message ('' if
    fine).
    """
    if max_iterations == 0:
        return start.copy(), _fit_bounded_exp(mu[start], var[start]), ""
    # No minimum number of points for the first fit (cp_pipe has none: TRF accepts fewer residuals
    # than parameters, so a curve with 1-2 points below the limit is fitted and extrapolated).
    fit_mask = start & (mu <= max_signal_initial) & (var <= max_signal_initial)
    last = start.copy()
    params = np.full(3, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        root_var = np.sqrt(var)
    for _ in range(max_iterations):
        params = _fit_bounded_exp(mu[fit_mask], var[fit_mask])
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            resid = (var - _exp_fun(params, mu)) / root_var
        new = np.isfinite(resid) & (np.abs(np.nan_to_num(resid)) < sigma_cut) & start
        if np.count_nonzero(new) < 2:
            return new & False, params, "too few points survive the outlier rejection (< 2)"
        # Jump check: a good point following a rejected one must be within max_delta_initial of
        # the previous good point, else it and everything above are rejected.
        good = np.flatnonzero(new)
        for j in range(1, len(good)):
            i = good[j]
            if new[i - 1]:
                continue
            if mu[i] - mu[good[j - 1]] >= max_delta_initial:
                new[i:] = False
                break
        if np.array_equal(new, last):
            break
        last = new.copy()
        fit_mask = new
    return last, params, ""


def _turnoff(mu: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Turnoff (largest mean in the mask of sorted means) and its sampling error."""
    last = int(np.flatnonzero(mask)[-1])
    turnoff = float(mu[last])
    prev = float(mu[last - 1]) if last > 0 else np.nan
    nxt = float(mu[last + 1]) if last + 1 < len(mu) else np.nan
    if not np.isfinite(nxt):
        return turnoff, turnoff - prev
    if not np.isfinite(prev):
        # Deliberate deviation: cp_pipe would index position -1 (the largest mean) here.
        return turnoff, nxt - turnoff
    return turnoff, 0.5 * (nxt - prev)


def _rolloff(
    mu: np.ndarray,
    var: np.ndarray,
    allowed: np.ndarray,
    mask: np.ndarray,
    turnoff: float,
    p_exp: np.ndarray,
    extension: float,
    max_deviation: float,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """cp_pipe's roll-off model (``fitPtcRolloff``, section 2.5) on arrays in detector-mean order.

    Parameters
    ----------
    mu, var : `numpy.ndarray`
        Means (adu) and zero-safe variances (adu^2) in the detector-mean order of the dataset
        (cp_pipe does not re-sort by this amplifier's means here, and the order decides which
        acceptable point is "last").
    allowed : `numpy.ndarray` of `bool`
        Points that exist at all (a measured pair).  The added points are *not* intersected with
        the min/max-mean cut, as in cp_pipe; a pair whose measurement failed has NaN statistics in
        cp_pipe and so can never be added.
    mask : `numpy.ndarray` of `bool`
        Points surviving the turnoff pass (all <= ``turnoff``).
    turnoff : `float`
        ``ptcTurnoff`` (adu).
    p_exp : `numpy.ndarray`
        [a00, g, n] of the turnoff pass (cp_pipe ``ptcFitPars``), the start values.
    extension : `float`
        ``extendRollofSearchMaskSizeAdu`` (adu).
    max_deviation : `float`
        ``maxPtcRolloffDeviation``.

    Returns
    -------
    rolloff, new_mask, rolloff_mask, params, params_err, failure
        ``failure`` is '' on success; on a failed fit the amplifier is left untouched as in cp_pipe
        (rolloff NaN, ``new_mask`` = ``mask``, ``rolloff_mask`` all False).
    """
    nan5 = np.full(5, np.nan)
    i_t = int(np.flatnonzero(mu == turnoff)[0])
    with np.errstate(invalid="ignore"):
        added = allowed & (mu >= turnoff) & (mu < turnoff + extension) & (var <= var[i_t])
    cand = mask | added
    if np.count_nonzero(cand) == np.count_nonzero(mask):
        return turnoff, mask.copy(), cand, nan5, nan5, ""
    # cp_pipe's bounds, including the lower bound of mu_t, min(turnoff - 20000, 0): 0 for any
    # turnoff above 20000 adu, turnoff - 20000 (< 0) below.
    lower = np.array([*_EXP_LOWER, min(turnoff - 20000.0, 0.0), -10000.0])
    upper = np.array([*_EXP_UPPER, turnoff, -100.0])
    p0 = np.clip(np.array([*p_exp, turnoff, -1200.0]), lower, upper)
    x, y = mu[cand], var[cand]

    def fun(p):
        return evaluate_rolloff_model(x, *p) - y

    untouched = (np.nan, mask.copy(), np.zeros_like(mask), nan5, nan5)
    res = least_squares(fun, p0, bounds=(lower, upper), method="trf")
    if not res.success:
        return (*untouched, f"roll-off fit did not converge ({res.message})")
    p = res.x
    # cp_pipe: sqrt(diag((J^T J)^-1)), not scaled by chi^2 (a pseudo-inverse here if singular).
    err = np.sqrt(np.abs(np.diag(_covariance_from_jacobian(res.jac, 1.0))))
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(evaluate_rolloff_model(x, *p) / evaluate_exp_model(x, *p[:3]) - 1.0)
    ok = np.flatnonzero(dev <= max_deviation)
    if ok.size == 0:
        # cp_pipe raises (IndexError) here; leave the amplifier untouched instead.
        return (*untouched, "no point within the roll-off tolerance")
    # The last acceptable point in array (detector-mean) order, not the largest acceptable mean.
    rolloff = min(float(x[ok[-1]]), turnoff)
    with np.errstate(invalid="ignore"):
        new_mask = cand & (mu < rolloff)  # strict, as cp_pipe
    return rolloff, new_mask, cand, p, err, ""


# ---------------------------------------------------------------------------------------------
# FULLCOVARIANCE pieces


def _full_initial_guess(
    model: _FullCovModel, mu: np.ndarray, cov: np.ndarray, w: np.ndarray, n_iter: int = 5
) -> tuple[np.ndarray, np.ndarray, float]:
    """cp_pipe's initial guess: per-lag weighted parabolas to (data - model), c = 0.

    a, n start at 0 and g at 1; each iteration adds the quadratic coefficient to a_ij, the constant
    to n_ij, and updates g from the linear coefficient of (0, 0); stops when chi^2 increases
    (keeping the best parameters).
    """
    r = model.r
    a = np.zeros((r, r))
    n = np.zeros((r, r))
    g = 1.0
    best = (a.copy(), n.copy(), g)
    best_chi2 = np.inf
    for _ in range(n_iter):
        resid = cov - model.evaluate(mu, a, None, n, g)
        chi2 = float(np.sum((w * resid) ** 2))
        if not np.isfinite(chi2) or chi2 > best_chi2:
            break
        best_chi2 = chi2
        best = (a.copy(), n.copy(), g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(r):
                for j in range(r):
                    wij = w[:, i, j]
                    if np.count_nonzero(wij > 0) < 3:
                        continue
                    p2, p1, p0 = np.polyfit(mu, resid[:, i, j], 2, w=wij)
                    a[i, j] += p2
                    n[i, j] += p0
                    if i == 0 and j == 0:
                        g = 1.0 / (1.0 / g + p1)
    return best


def _fit_full_covariance(
    mu: np.ndarray, cov: np.ndarray, w: np.ndarray, with_b: bool
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """LM fit of Eq. 20 over [a, (c), n, g]; returns params, errors, chi2/dof, model at mu."""
    r = cov.shape[-1]
    model = _FullCovModel(r)
    r2 = r * r
    a0, n0, g0 = _full_initial_guess(model, mu, cov, w)
    parts = [a0.ravel()] + ([np.zeros(r2)] if with_b else []) + [n0.ravel(), [g0]]
    p0 = np.concatenate(parts)
    wf = w.reshape(len(mu), r2)
    data = cov.reshape(len(mu), r2)
    use = (wf > 0) & np.isfinite(data)
    wsel = wf[use]
    dsel = data[use]

    def unpack(p):
        a = p[:r2].reshape(r, r)
        k = r2
        c = None
        if with_b:
            c = p[k : k + r2].reshape(r, r)
            k += r2
        n = p[k : k + r2].reshape(r, r)
        return a, c, n, p[-1]

    cache: dict[str, object] = {}

    def compute(p):
        key = p.tobytes()
        if cache.get("key") != key:
            mdl, jac = model.evaluate_with_jacobian(mu, *unpack(p))
            cache["key"] = key
            cache["res"] = wsel * (mdl[use] - dsel)
            cache["jac"] = wsel[:, None] * jac[use]
        return cache

    res = least_squares(
        lambda p: compute(p)["res"], p0, jac=lambda p: compute(p)["jac"], method="lm", x_scale="jac"
    )
    dof = len(dsel) - len(p0)
    chi2 = float(np.sum(res.fun**2)) / dof if dof > 0 else np.nan
    err = np.full(len(p0), np.nan)
    if dof > 0:
        err = np.sqrt(np.abs(np.diag(_covariance_from_jacobian(res.jac, chi2))))
    return res.x, err, chi2, unpack(res.x)


# ---------------------------------------------------------------------------------------------
# Driver


def fit_ptc_amp(
    raw_means: np.ndarray,
    raw_vars: np.ndarray,
    fit_type: str = "EXPAPPROXIMATION",
    model_rolloff: bool = False,
    *,
    covariances: np.ndarray | None = None,
    covariance_weights: np.ndarray | None = None,
    exp_id_mask: np.ndarray | None = None,
    sigma_cut: float = 5.0,
    max_signal_initial: float = 20000.0,
    max_delta_initial: float = 1000.0,
    max_iterations: int = 2,
    max_rolloff_deviation: float = 0.005,
    rolloff_extension: float = 5000.0,
    min_mean: float = 0.0,
    max_mean: float = 1.0e6,
    max_lag_fit: int | None = None,
    point_order: np.ndarray | None = None,
    scale_max_signal_initial: bool = False,
) -> PtcAmpFit:
    """Solve the PTC of one amplifier (cp_pipe ``PhotonTransferCurveSolveTask`` for one amp).

    Parameters
    ----------
    raw_means : `numpy.ndarray`
        (N,) pair means (adu, cp_pipe ``rawMeans``), any order.
    raw_vars : `numpy.ndarray`
        (N,) pair variances (adu^2, ``rawVars``).
    fit_type : `str`, optional
        EXPAPPROXIMATION (default), FULLCOVARIANCE or FULLCOVARIANCE_NO_B (LSSTCam:
        FULLCOVARIANCE).
    model_rolloff : `bool`, optional
        Fit the roll-off and drop the points above it (LSSTCam: True).
    covariances : `numpy.ndarray`, optional
        (N, R, R) covariances (adu^2), index [point, dx, dy]; required for FULLCOVARIANCE.
    covariance_weights : `numpy.ndarray`, optional
        (N, R, R) 1/sigma of the covariances (``covariance_sqrt_weights``).  If absent, weights
        proportional to the Gaussian statistics of a sample (co)variance are used:
        1/C00 (1/(sqrt(2) C00) at lag 0); only relative weights matter for the parameters and
        errors (scaled by chi2/dof), but ``chi2_dof`` is then not a goodness of fit.
    exp_id_mask : `numpy.ndarray` of `bool`, optional
        (N,) points allowed at all (e.g. invalid pairs False).
    sigma_cut : `float`, optional
        Outlier cut on ``(C00 - model)/sqrt(C00)`` (cp_pipe ``sigmaCutPtcOutliers``, 5).
    max_signal_initial : `float`, optional
        Mean and variance limit (adu) of the first outlier fit (LSSTCam 20000 adu; cp_pipe's
        default is 50000 e- / approximate gain: pass that value for non-LSSTCam behaviour).
    max_delta_initial : `float`, optional
        Jump-check threshold (adu; LSSTCam 1000).
    max_iterations : `int`, optional
        Outlier-rejection iterations (2).
    max_rolloff_deviation : `float`, optional
        Roll-off tolerance (LSSTCam 0.005).
    rolloff_extension : `float`, optional
        Roll-off search range above the turnoff (adu; cp_pipe ``extendRollofSearchMaskSizeAdu``).
    min_mean, max_mean : `float`, optional
        Points must satisfy ``min_mean < mu < max_mean`` (cp_pipe 0 and 1e6 adu).
    max_lag_fit : `int`, optional
        Lags fitted by FULLCOVARIANCE (cp_pipe ``maximumRangeCovariancesAstierFullCovFit``);
        default all measured lags.
    point_order : `numpy.ndarray` of `int`, optional
        Indices of the points in the dataset's order, i.e. sorted by the detector mean of each
        pair (the mean over amplifiers of ``rawMeans``, cp_pipe ``PhotonTransferCurveSolveTask.run``).
        Only the roll-off step depends on it (its "last acceptable point"); default: this
        amplifier's own mean order.
    scale_max_signal_initial : `bool`, optional
        Divide ``max_signal_initial`` and ``max_delta_initial`` by the approximate gain
        nanmedian(mean/var) (cp_pipe ``scaleMaxSignalInitialPtcOutlierFit``; LSSTCam: False, the
        limits are in adu).

    Returns
    -------
    fit : `PtcAmpFit`
        See `PtcAmpFit` for the fields and units.

    Raises
    ------
    ValueError
        For an unknown ``fit_type`` or inconsistent array shapes (programming errors); bad data
        never raise.
    """
    if fit_type not in FIT_TYPES:
        raise ValueError(f"Unknown fit_type {fit_type!r}; expected one of {FIT_TYPES}.")
    mu_in = np.asarray(raw_means, dtype=np.float64).ravel()
    var_in = np.asarray(raw_vars, dtype=np.float64).ravel()
    npt = len(mu_in)
    if var_in.shape != mu_in.shape:
        raise ValueError(f"raw_means and raw_vars differ in length ({npt} vs {len(var_in)}).")
    allowed = np.ones(npt, dtype=bool) if exp_id_mask is None else np.asarray(exp_id_mask, dtype=bool)
    if allowed.shape != mu_in.shape:
        raise ValueError("exp_id_mask must have one entry per point.")
    full = fit_type != "EXPAPPROXIMATION"
    cov_in = None
    w_in = None
    if covariances is not None:
        cov_in = np.asarray(covariances, dtype=np.float64)
        if cov_in.ndim != 3 or cov_in.shape[0] != npt or cov_in.shape[1] != cov_in.shape[2]:
            raise ValueError(f"covariances must have shape (N, R, R), got {cov_in.shape}.")
    if covariance_weights is not None:
        w_in = np.asarray(covariance_weights, dtype=np.float64)
        if w_in.ndim != 3 or w_in.shape[0] != npt:
            raise ValueError(f"covariance_weights must have shape (N, R, R), got {w_in.shape}.")
    if full and cov_in is None:
        if npt:
            raise ValueError(f"{fit_type} needs covariances.")
        cov_in = np.zeros((0, max_lag_fit or 1, max_lag_fit or 1))  # no data: fails below
    rf = None
    if full:
        rf = cov_in.shape[1] if max_lag_fit is None else int(max_lag_fit)
        if not 1 <= rf <= cov_in.shape[1]:
            raise ValueError(f"max_lag_fit={rf} outside 1..{cov_in.shape[1]}.")

    out = PtcAmpFit(fit_type=fit_type)
    out.mask = np.zeros(npt, dtype=bool)
    out.turnoff_mask = np.zeros(npt, dtype=bool)
    out.rolloff_mask = np.zeros(npt, dtype=bool)
    out.final_means = np.full(npt, np.nan)
    out.final_vars = np.full(npt, np.nan)
    out.final_model_vars = np.full(npt, np.nan)
    if full:
        out.a_matrix = np.full((rf, rf), np.nan)
        out.b_matrix = np.full((rf, rf), np.nan)
        out.noise_matrix = np.full((rf, rf), np.nan)
        out.covariances_model = np.full((npt, rf, rf), np.nan)
    finite = np.isfinite(mu_in) & np.isfinite(var_in)
    seen = allowed & np.isfinite(mu_in)
    out.max_signal = float(np.max(mu_in[seen])) if seen.any() else np.nan

    start_in = allowed & finite & (mu_in > min_mean) & (mu_in < max_mean)
    order = np.argsort(np.where(np.isfinite(mu_in), mu_in, np.inf), kind="stable")
    mu = mu_in[order]
    var = np.where(var_in[order] == 0.0, 1e-9, var_in[order])
    start = start_in[order]

    if not start.any():
        out.failure = "too few usable points (0)"
        return out

    if w_in is not None:
        w00 = w_in[order, 0, 0]
        w00 = np.where(np.isfinite(w00), w00, 0.0)
    else:
        w00 = None

    def unsort(mask_sorted: np.ndarray) -> np.ndarray:
        m = np.zeros(npt, dtype=bool)
        m[order] = mask_sorted
        return m

    def exp_weights(mask, params):
        if w00 is not None:
            return w00[mask]
        with np.errstate(invalid="ignore", divide="ignore"):
            model = _exp_fun(params, mu[mask])
            return np.where(model > 0, 1.0 / model, 0.0)

    if point_order is None:
        point_order = order
    point_order = np.asarray(point_order, dtype=np.intp)
    if np.array_equal(np.sort(point_order), np.arange(npt)) is False:
        raise ValueError("point_order must be a permutation of the point indices.")
    if scale_max_signal_initial:
        with np.errstate(invalid="ignore", divide="ignore"):
            approx_gain = float(np.nanmedian(mu_in / np.where(var_in == 0.0, 1e-9, var_in)))
        max_signal_initial = max_signal_initial / approx_gain
        max_delta_initial = max_delta_initial / approx_gain
    rejection = dict(
        sigma_cut=sigma_cut,
        max_signal_initial=max_signal_initial,
        max_delta_initial=max_delta_initial,
        max_iterations=max_iterations,
    )
    # Only small dense linear algebra here: a multi-threaded BLAS would just spin (measured 10x
    # slower on a loaded node), so it is limited to one thread.
    try:
        with _single_thread_blas():
            # 1-3. Turnoff pass.
            mask1, p_bounded, failure = _outlier_rejection(mu, var, start, **rejection)
            if failure:
                out.failure = failure
                return out
            if np.count_nonzero(mask1) < 3:
                out.failure = f"too few points after outlier rejection ({np.count_nonzero(mask1)} < 3)"
                return out
            out.turnoff_mask = unsort(mask1)
            out.ptc_turnoff, out.ptc_turnoff_sampling_error = _turnoff(mu, mask1)
            p_exp, e_exp, chi2_exp = _fit_weighted_exp(
                mu[mask1], var[mask1], exp_weights(mask1, p_bounded), p_bounded
            )
            out.exp_params, out.exp_params_err, out.exp_chi2_dof = p_exp, e_exp, chi2_exp

            # 4. Roll-off.
            fit_mask = mask1
            if model_rolloff:
                # In detector-mean order (``point_order``), as cp_pipe's roll-off step.
                d_mask = unsort(mask1)[point_order]
                d_var = np.where(var_in == 0.0, 1e-9, var_in)[point_order]
                rolloff, d_fit, d_cand, rp, re, why = _rolloff(
                    mu_in[point_order],
                    d_var,
                    allowed[point_order],
                    d_mask,
                    out.ptc_turnoff,
                    p_exp,
                    rolloff_extension,
                    max_rolloff_deviation,
                )
                out.ptc_rolloff = rolloff
                out.rolloff_params, out.rolloff_params_err = rp, re
                out.rolloff_failure = why
                fit_in = np.zeros(npt, dtype=bool)
                fit_in[point_order] = d_fit
                out.rolloff_mask = np.zeros(npt, dtype=bool)
                out.rolloff_mask[point_order] = d_cand
                fit_mask = fit_in[order]

            # 5. Final fit.
            model_all = np.full(npt, np.nan)
            if not full:
                final, p_b2, failure = _outlier_rejection(mu, var, fit_mask, **rejection)
                if failure or np.count_nonzero(final) < 3:
                    out.failure = failure or "too few points in the final EXPAPPROXIMATION fit"
                    return out
                p, e, chi2 = _fit_weighted_exp(mu[final], var[final], exp_weights(final, p_b2), p_b2)
                out.fit_params, out.fit_params_err, out.chi2_dof = p, e, chi2
                out.a00, out.a00_err = float(p[0]), float(e[0])
                out.gain, out.gain_err = float(p[1]), float(e[1])
                n_e2, n_err = float(p[2]), float(e[2])
                model_all[order] = _exp_fun(p, mu)
            else:
                final = fit_mask
                n_need = max(cov_in.shape[1], 3)
                if np.count_nonzero(final) < n_need:
                    out.failure = f"too few points for {fit_type} ({np.count_nonzero(final)} < {n_need})"
                    return out
                cov_s = cov_in[order][:, :rf, :rf]
                if w_in is not None:
                    w_s = w_in[order][:, :rf, :rf]
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        w_s = np.broadcast_to(1.0 / np.abs(var)[:, None, None], cov_s.shape).copy()
                    w_s[:, 0, 0] /= np.sqrt(2.0)
                w_s = np.where(np.isfinite(w_s) & np.isfinite(cov_s), w_s, 0.0)
                cov_s = np.where(w_s > 0, cov_s, 0.0)  # unused entries: finite placeholders
                with_b = fit_type == "FULLCOVARIANCE"
                p, e, chi2, (a, c, n, g) = _fit_full_covariance(mu[final], cov_s[final], w_s[final], with_b)
                out.fit_params, out.fit_params_err, out.chi2_dof = p, e, chi2
                out.a_matrix = a
                with np.errstate(invalid="ignore", divide="ignore"):
                    out.b_matrix = np.zeros_like(a) if c is None else np.where(a != 0, c / a, np.nan)
                out.noise_matrix = n
                out.a00, out.a00_err = float(a[0, 0]), float(e[0])
                out.gain, out.gain_err = float(g), float(e[-1])
                k_n = (2 if with_b else 1) * rf * rf  # index of n00 in the parameter vector
                n_e2, n_err = float(n[0, 0]), float(e[k_n])
                model_cov = _FullCovModel(rf).evaluate(mu, a, c, n, g)
                out.covariances_model[order] = model_cov
                model_all[order] = model_cov[:, 0, 0]
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        out.failure = f"fit failed: {exc}"
        return out

    out.noise = float(np.sqrt(abs(n_e2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        out.noise_err = float(0.5 * n_err / abs(n_e2) * out.noise) if n_e2 != 0 else np.nan
    out.mask = unsort(final)
    out.final_means = np.where(out.mask, mu_in, np.nan)
    out.final_vars = np.where(out.mask, var_in, np.nan)
    out.final_model_vars = np.where(out.mask, model_all, np.nan)
    return out
