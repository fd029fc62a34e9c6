"""cp_pipe's PTC-solve rules on hand-made curves: jump cut, sparse initial fit, roll-off, config.

Each expected value is derived by hand from the rule (cp_pipe_algorithms.md sections 2.4, 2.5 and
2.9), in the comments; the curves are noiseless so that the fits reproduce them exactly.
"""

import numpy as np
import pytest
from astropy.table import Table
from lsst.pipe.base import Pipeline

import lsst.eo.baseline.ptc as ptc_module
from lsst.eo.baseline.paths import pipelines_dir
from lsst.eo.baseline.ptc import _rolloff, evaluate_exp_model, evaluate_rolloff_model, fit_ptc_amp
from lsst.eo.baseline.ptcSolve import EoPtcSolveConfig, _detector_means

# cp_pipe's start values of the bounded Eq. 16 fit: a00 (1/e-), gain (e-/adu), noise^2 (e-^2).
A00, GAIN, NOISE2 = -2.0e-6, 1.5, 25.0


def _sparse_curve_with_outlier():
    # B-protocol-like sampling every 4000 adu; the point at 60000 adu has a 30% variance excess
    # (|resid| = 0.3 sqrt(var) ~ 55 sigma, rejected by the 5 sigma cut).  The next good point,
    # 64000, follows that masked point and lies 64000 - 56000 = 8000 adu above the previous good
    # point: >= 1000 (cp_pipe LSSTCam) -> it and all above are cut, turnoff 56000;
    # < 10000 (eo_pipe B protocol) -> kept, turnoff = the last point, 96000.
    mu = np.arange(4000.0, 96001.0, 4000.0)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    var[mu == 60000.0] *= 1.3
    return mu, var


def test_jump_cut_1000_stops_at_the_gap_and_10000_does_not():
    mu, var = _sparse_curve_with_outlier()
    dense = fit_ptc_amp(mu, var, max_delta_initial=1000.0)
    assert dense.valid, dense.failure
    assert dense.ptc_turnoff == 56000.0
    assert np.array_equal(dense.turnoff_mask, mu <= 56000.0)
    sparse = fit_ptc_amp(mu, var, max_delta_initial=10000.0)
    assert sparse.valid, sparse.failure
    assert sparse.ptc_turnoff == 96000.0
    assert np.array_equal(sparse.turnoff_mask, mu != 60000.0)
    # The jump itself is compared with ">=": a threshold of exactly 8000 adu also cuts.
    assert fit_ptc_amp(mu, var, max_delta_initial=8000.0).ptc_turnoff == 56000.0
    assert fit_ptc_amp(mu, var, max_delta_initial=8000.1).ptc_turnoff == 96000.0


@pytest.mark.parametrize("n_below", [1, 2])
def test_one_or_two_points_below_the_initial_limit_are_still_fitted(n_below):
    # Only 1 or 2 points have mean and variance <= 20000 adu.  cp_pipe fits them anyway (TRF takes
    # fewer residuals than parameters).  The curve is made with exactly cp_pipe's start values,
    # so the first fit starts at zero residual and stays there, every point then has residual 0
    # (kept), there is no masked point (no jump cut), and the turnoff is the largest mean.
    mu = np.concatenate([[8000.0, 16000.0][:n_below], np.arange(40000.0, 90001.0, 5000.0)])
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    assert np.count_nonzero((mu <= 20000.0) & (var <= 20000.0)) == n_below
    fit = fit_ptc_amp(mu, var)
    assert fit.valid, fit.failure
    assert fit.ptc_turnoff == 90000.0
    assert fit.turnoff_mask.all()
    # Noiseless data: the final weighted fit reproduces the curve (relative precision ~1e-8).
    assert fit.gain == pytest.approx(GAIN, rel=1e-6)


def _rolloff_case():
    # Roll-off model of cp_pipe with mu_t = 30000 adu, tau = -3000 adu, sampled every 1000 adu up
    # to 61000; turnoff 60000 (the points up to it form the turnoff mask), 61000 is the one point
    # added (above the turnoff, below turnoff + 5000, variance below the turnoff's).
    mu = np.arange(1000.0, 61001.0, 1000.0)
    var = evaluate_rolloff_model(mu, A00, GAIN, NOISE2, 30000.0, -3000.0)
    mask = mu <= 60000.0
    return mu, var, mask


def test_rolloff_rule_lower_bound_and_strict_mask():
    mu, var, mask = _rolloff_case()
    rolloff, new_mask, fitted, p, _, failure = _rolloff(
        mu, var, np.ones(len(mu), bool), mask, 60000.0, np.array([A00, GAIN, NOISE2]), 5000.0, 0.005
    )
    assert not failure
    assert np.array_equal(fitted, mu <= 61000.0)
    # mu_t = 30000 is 30000 adu below the turnoff: reachable only with cp_pipe's lower bound
    # min(turnoff - 20000, 0) = 0 (a bound max(turnoff - 20000, 0) = 40000 would stop it there).
    assert p[3] == pytest.approx(30000.0, rel=1e-6)
    assert p[4] == pytest.approx(-3000.0, rel=1e-6)
    # Deviation |with/without - 1| = (exp((mu - 30000)/3000) - 1) / C00(mu):
    # at 44000: 105.34 / 25791.8 = 0.00408 <= 0.005; at 45000: 147.41 / 26302.3 = 0.00560 > 0.005,
    # and it grows above; so the roll-off is 44000 adu.
    assert rolloff == 44000.0
    # Strict "<": the roll-off point itself leaves the mask.
    assert np.array_equal(new_mask, mu < 44000.0)


def test_rolloff_takes_the_last_acceptable_point_in_array_order():
    # Same curve with the 44000 adu point moved to the front of the arrays (as when the detector-
    # mean order differs from this amplifier's): the last acceptable point in array order is then
    # 43000, which becomes the roll-off although 44000 is acceptable too.
    mu, var, mask = _rolloff_case()
    k = int(np.flatnonzero(mu == 44000.0)[0])
    perm = np.concatenate([[k], np.delete(np.arange(len(mu)), k)])
    rolloff, new_mask, _, _, _, failure = _rolloff(
        mu[perm],
        var[perm],
        np.ones(len(mu), bool),
        mask[perm],
        60000.0,
        np.array([A00, GAIN, NOISE2]),
        5000.0,
        0.005,
    )
    assert not failure
    assert rolloff == 43000.0
    assert np.array_equal(new_mask, mu[perm] < 43000.0)


def test_rolloff_with_nothing_added_keeps_the_turnoff_point():
    # Plain Eq. 16 curve: no point above the turnoff has a lower variance, so P adds nothing:
    # roll-off = turnoff, mask unchanged (the turnoff point stays), no fit parameters.
    mu = np.arange(1000.0, 61001.0, 1000.0)
    var = evaluate_exp_model(mu, A00, GAIN, NOISE2)
    mask = mu <= 60000.0
    rolloff, new_mask, fitted, p, _, failure = _rolloff(
        mu, var, np.ones(len(mu), bool), mask, 60000.0, np.array([A00, GAIN, NOISE2]), 5000.0, 0.005
    )
    assert not failure and rolloff == 60000.0
    assert np.array_equal(new_mask, mask) and np.array_equal(fitted, mask)
    assert np.isnan(p).all()


def test_failed_rolloff_fit_leaves_the_amplifier_untouched(monkeypatch):
    real = ptc_module.least_squares

    def failing(*args, **kwargs):
        res = real(*args, **kwargs)
        res.success = False
        return res

    monkeypatch.setattr(ptc_module, "least_squares", failing)
    mu, var, mask = _rolloff_case()
    rolloff, new_mask, fitted, p, _, failure = _rolloff(
        mu, var, np.ones(len(mu), bool), mask, 60000.0, np.array([A00, GAIN, NOISE2]), 5000.0, 0.005
    )
    assert failure
    assert np.isnan(rolloff) and np.isnan(p).all()
    assert np.array_equal(new_mask, mask)
    assert not fitted.any()


def test_rolloff_points_come_from_all_measured_pairs():
    # A point removed only by the min/max-mean cut can re-enter the roll-off fit (cp_pipe does not
    # intersect the added points with that cut); a pair that was not measured cannot.
    mu, var, mask = _rolloff_case()
    allowed = np.ones(len(mu), bool)
    allowed[mu == 61000.0] = False
    _, _, fitted, p, _, _ = _rolloff(
        mu, var, allowed, mask, 60000.0, np.array([A00, GAIN, NOISE2]), 5000.0, 0.005
    )
    assert np.array_equal(fitted, mask) and np.isnan(p).all()


def test_detector_means_order_the_pairs():
    # Two pairs, two amps; means 100/300 and 250/NaN -> detector means 200 and 250 (NaN ignored).
    table = Table(
        {
            "amp": ["C10", "C11", "C10", "C11"],
            "exposure_1": [1, 1, 3, 3],
            "exposure_2": [2, 2, 4, 4],
            "raw_mean_adu": [100.0, 300.0, 250.0, np.nan],
        }
    )
    assert _detector_means(table) == {(1, 2): 200.0, (3, 4): 250.0}


def test_solve_defaults_are_cp_pipe_lsstcam_and_b_protocol_override():
    # cp_pipe pipelines/LSSTCam/cpPtc.yaml + _ingredients/cpPtcLSST.yaml (cp_pipe_algorithms.md 2.9).
    cfg = EoPtcSolveConfig()
    assert cfg.ptcFitType == "FULLCOVARIANCE"
    assert cfg.maximumRangeCovariancesFullCovFit == 10
    assert cfg.sigmaCutPtcOutliers == 5.0 and cfg.maxIterationsPtcOutliers == 2
    assert cfg.maxSignalInitialPtcOutlierFit == 20000.0 and not cfg.scaleMaxSignalInitialPtcOutlierFit
    assert cfg.maxDeltaInitialPtcOutlierFit == 1000.0
    assert cfg.doModelPtcRolloff and cfg.maxPtcRolloffDeviation == 0.005
    assert cfg.extendRollofSearchMaskSizeAdu == 5000.0
    assert cfg.ksTestMinPvalue == 0.01
    # eo_pipe bps/cp_pipe/bps_cpPtc.yaml (B protocol): maxDeltaInitialPtcOutlierFit=10000; the
    # dense run keeps 1000.
    b_flat = Pipeline.from_uri(pipelines_dir("bProtocol.yaml")).to_graph()
    assert b_flat.tasks["eoPtcSolve"].config.maxDeltaInitialPtcOutlierFit == 10000.0
    dense = Pipeline.from_uri(pipelines_dir("ptc.yaml")).to_graph()
    assert dense.tasks["eoPtcSolve"].config.maxDeltaInitialPtcOutlierFit == 1000.0
