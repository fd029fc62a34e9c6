"""Bad amplifiers in valid raw files: flagged with NaN metrics, the other amplifiers unaffected.

One e2v detector is simulated (4 biases, 2 darks, 4 flat pairs); in every file amplifier C10 is
all zero, C11 is at the ADC maximum and C12 is dead (a constant bias level, no signal, no noise).
The tasks' ``run`` methods are called on the files (the pipetask path with a bad amplifier is in
tests/test_incomplete_runs.py) with RuntimeWarnings turned into errors, so that NaN arithmetic on
empty data would fail the test.  NaN arising inside processing is injected into a combined bias and
into PTC pair tables.
"""

import os
import warnings

import numpy as np
import pytest
from astropy.table import Table
from lsst.images import MaskedImage

from lsst.eo.baseline.ampFlags import (
    ADC_MAX,
    FLAGS_COLUMN,
    AmpFlag,
    apply_amp_flags,
    decode_amp_flags,
    encode_amp_flags,
    flag_names,
    metadata_amp_flags,
    raw_amp_flags,
)
from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.biasStability import EoBiasStabilityTask
from lsst.eo.baseline.calibCombine import EoBiasTask, EoDarkTask, EoFlatTask
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.cti import EoCtiTask
from lsst.eo.baseline.darkCurrent import EoDarkCurrentTask, dark_current_table
from lsst.eo.baseline.defects import EoBrightDefectsTask
from lsst.eo.baseline.flatPairStats import serial_overscan_columns
from lsst.eo.baseline.metrics import load_metrics
from lsst.eo.baseline.ptcExtract import EoPtcExtractTask
from lsst.eo.baseline.ptcMetrics import EoBrighterFatterTask, EoLinearityTask, EoRowMeansVarianceTask
from lsst.eo.baseline.ptcSolve import EoPtcSolveTask
from lsst.eo.baseline.rawio import read_raw
from lsst.eo.baseline.readNoise import EoReadNoiseTask
from lsst.eo.baseline.report import build_report, metric_statistics
from lsst.eo.baseline.runSummary import build_run_summary
from lsst.eo.baseline.simulator import load_truth, simulate
from lsst.eo.baseline.simulator.model import ADC_MAX as SIMULATOR_ADC_MAX
from lsst.eo.baseline.simulator.model import POISSON_MAX_MEAN, covariance_model

from tests.reliability_helpers import corrupt_amps

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "bad_amps.yaml")
DET = "R22_S11"
BAD = {"C10": "zero", "C11": "saturated", "C12": "dead"}
EXPECTED = {"C10": AmpFlag.ZERO, "C11": AmpFlag.SATURATED, "C12": AmpFlag.DEAD}
NAN_AMP = "C14"  # good in the raws; NaN injected into its combined bias / pair statistics


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bad_amps"))
    paths = simulate(PLAN, DET, out, run="13700", seed=3, jobs=2)
    corrupt_amps(paths, BAD)
    return load_truth(out)


def _handles(truth, imgtype):
    ids = set(int(e) for e in truth.exposures[truth.exposures["imgtype"] == imgtype]["exposure_id"])
    rows = sorted((int(r["exposure_id"]), r["path"]) for r in truth.files if int(r["exposure_id"]) in ids)
    return [RawFileHandle(os.path.join(truth.out_dir, p)) for _, p in rows]


@pytest.fixture(scope="module")
def products(sim):
    """Every per-amplifier task on the corrupted files; RuntimeWarnings are errors."""
    det = get_camera()[DET]
    biases, darks, flats = _handles(sim, "BIAS"), _handles(sim, "DARK"), _handles(sim, "FLAT")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out["eoReadNoise"] = EoReadNoiseTask().run(biases, det).readNoise
        out["bias"] = EoBiasTask().run(biases, det).bias
        out["eoBiasStability"] = EoBiasStabilityTask().run(biases, det).stability
        out["dark"] = EoDarkTask().run(darks, det, bias=out["bias"]).dark
        out["eoDarkCurrent"] = EoDarkCurrentTask().run(out["dark"], det).darkCurrent
        out["eoBrightDefects"] = EoBrightDefectsTask().run(out["dark"], det).counts
        out["eoCti"] = EoCtiTask().run(flats, det, bias=out["bias"]).cti
        out["pairs"] = [
            EoPtcExtractTask().run(flats[i : i + 2], det, bias=out["bias"]).pair
            for i in range(0, len(flats), 2)
        ]
        # The short plan has 4 flat pairs; the default FULLCOVARIANCE fit (cp_pipe LSSTCam) needs at
        # least as many pairs as covariance lags (10), so the Eq. 16 fit is used here.
        solve = EoPtcSolveTask()
        solve.config.ptcFitType = "EXPAPPROXIMATION"
        solved = solve.run(out["pairs"], det)
        out["ptc"], out["eoPtcSummary"] = solved.ptc, solved.summary
        for name, task in (("eoLinearity", EoLinearityTask), ("eoBrighterFatter", EoBrighterFatterTask)):
            out[name] = task().run(solved.ptc, det).metric
        out["eoRowMeansVariance"] = EoRowMeansVarianceTask().run(solved.ptc, det, out["pairs"]).metric
    return out


def _flags(table):
    return {str(a): int(f) for a, f in zip(table["amp"], table[FLAGS_COLUMN], strict=True)}


def test_flag_helpers():
    assert ADC_MAX == SIMULATOR_ADC_MAX == 2**18 - 1
    assert flag_names(AmpFlag.ZERO | AmpFlag.FIT_FAILED) == ["ZERO", "FIT_FAILED"]
    assert flag_names(0) == []
    flags = {"C10": 1, "C11": 0, "C12": 24}
    assert decode_amp_flags(encode_amp_flags(flags)) == {"C10": 1, "C12": 24}
    assert metadata_amp_flags(None) == {} and decode_amp_flags(None) == {}
    table = Table({"amp": ["C10", "C11", "C12"], "x": [1.0, np.nan, 3.0], "n": [4, 4, 4]})
    apply_amp_flags(table, {"C10": int(AmpFlag.DEAD)}, required=["x"])
    assert list(table[FLAGS_COLUMN]) == [AmpFlag.DEAD, AmpFlag.NONFINITE, 0]
    assert np.isnan(table["x"][0]) and table["x"][2] == 3.0 and list(table["n"]) == [4, 4, 4]


def test_raw_flags_of_the_corrupted_files(sim):
    path = _handles(sim, "FLAT")[0].path
    raw = read_raw(path)
    for amp, flag in EXPECTED.items():
        assert raw_amp_flags(raw[amp]) == flag, amp
    # A real flat (signal, noise, overscan) is never flagged.
    assert raw_amp_flags(raw["C13"]) == 0


@pytest.mark.parametrize(
    "name",
    ["eoReadNoise", "eoBiasStability", "eoDarkCurrent", "eoBrightDefects", "eoCti", "eoPtcSummary",
     "eoLinearity", "eoBrighterFatter", "eoRowMeansVariance"],
)  # fmt: skip
def test_bad_amps_flagged_with_nan(products, name):
    table = products[name]
    assert len(table) == 16
    flags = _flags(table)
    for amp, flag in EXPECTED.items():
        assert flags[amp] & flag, (name, amp, flag_names(flags[amp]))
    float_cols = [c for c in table.colnames if table[c].dtype.kind == "f" and c != "gain_e_per_adu"]
    bad_rows = table[np.isin(table["amp"], list(BAD))]
    for col in float_cols:
        assert np.all(np.isnan(np.asarray(bad_rows[col], dtype=float))), (name, col)


def test_other_amps_recover_the_truth(sim, products):
    good = [a for a in get_camera()[DET].amp_names if a not in BAD]
    rn = products["eoReadNoise"]
    dc = products["eoDarkCurrent"]
    ptc = products["eoPtcSummary"]
    for amp in good:
        truth = sim.amp(DET, amp)
        row = rn[rn["amp"] == amp][0]
        assert row[FLAGS_COLUMN] == 0
        # Overscan stdev from ~110k pixels per bias (0.2%), median of 4 biases; the 2% tolerance
        # is the read-noise requirement of the bias/dark tests.
        assert row["read_noise_overscan_adu"] == pytest.approx(truth.read_noise / truth.gain, rel=0.02), amp
        row = dc[dc["amp"] == amp][0]
        assert row[FLAGS_COLUMN] == 0
        # Median of 1M pixels of 2 x 60 s darks (~1e-4 e-/s) and the bias offset (~5e-4 e-/s).
        measured = row["dark_current_median_e_per_s"]
        assert abs(measured - truth.dark_current) <= max(0.05 * truth.dark_current, 0.002), amp
        row = ptc[ptc["amp"] == amp][0]
        assert row[FLAGS_COLUMN] == 0 and not row["failure"], amp
        # 4 pairs of ~1M pixels: each variance to ~0.15%, the fitted gain to ~0.5%.
        assert row["ptc_gain_e_per_adu"] == pytest.approx(truth.gain, rel=0.02), amp
        # The intercept (noise^2 ~ 30 e-^2) comes from a 1000 e- variance known to ~2 e-^2.
        assert row["ptc_noise_e"] == pytest.approx(truth.read_noise, rel=0.25), amp


def test_calibrations_carry_the_flags(products):
    for name in ("bias", "dark"):
        image: MaskedImage = products[name]
        flags = metadata_amp_flags(image.metadata)
        assert {a: flags.get(a, 0) for a in BAD} == {a: int(f) for a, f in EXPECTED.items()}, name
        bad = image.mask.get("BAD")
        det = get_camera()[DET]
        for layout in det.ccd_type.amps:
            b = layout.bbox
            amp_bad = bad[b.y.start : b.y.stop, b.x.start : b.x.stop]
            assert amp_bad.all() if layout.name in BAD else not amp_bad.all(), (name, layout.name)
        assert np.isfinite(image.image.array).all(), name
    ptc_flags = metadata_amp_flags(products["ptc"].metadata)
    assert all(ptc_flags[a] & f for a, f in EXPECTED.items())
    pair = products["pairs"][0]
    for amp in BAD:
        row = pair[pair["amp"] == amp][0]
        assert not row["valid"] and "flagged amplifier" in row["reason"]


def test_combined_flat_leaves_bad_amps_out(sim, products):
    """The flat level comes from the good amplifiers of the first group (C10-C12 are bad, C13 good)."""
    det = get_camera()[DET]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        flat = EoFlatTask().run(_handles(sim, "FLAT")[-2:], det, bias=products["bias"]).flat
    assert {a: metadata_amp_flags(flat.metadata).get(a, 0) for a in BAD} == {
        a: int(f) for a, f in EXPECTED.items()
    }
    assert flat.metadata["LEVEL_MEDIAN_ADU"] > 1000.0
    bad = flat.mask.get("BAD")
    for layout in det.ccd_type.amps:
        b = layout.bbox
        values = flat.image.array[b.y.start : b.y.stop, b.x.start : b.x.stop]
        if layout.name in BAD:
            assert bad[b.y.start : b.y.stop, b.x.start : b.x.stop].all(), layout.name
        else:
            # Normalised by the detector level: amplifier gains differ by a few percent.
            assert 0.8 < float(np.median(values)) < 1.2, layout.name


def test_nan_in_processing_is_flagged(sim, products):
    """A NaN combined bias (one amplifier) and NaN pair statistics give NONFINITE / FIT_FAILED."""
    det = get_camera()[DET]
    bias = products["bias"]
    layout = det.ccd_type.amp(NAN_AMP)
    b = layout.bbox
    array = bias.image.array.copy()
    array[b.y.start : b.y.stop, b.x.start : b.x.stop] = np.nan
    nan_bias = MaskedImage(type(bias.image)(array), mask=bias.mask, variance=bias.variance,
                           metadata=dict(bias.metadata))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        dark = EoDarkTask().run(_handles(sim, "DARK"), det, bias=nan_bias).dark
        dc = EoDarkCurrentTask().run(dark, det).darkCurrent
    flags = _flags(dc)
    assert flags[NAN_AMP] == AmpFlag.NONFINITE
    assert np.isnan(dc[dc["amp"] == NAN_AMP]["dark_current_median_e_per_s"][0])
    good = [a for a in det.amp_names if a not in BAD and a != NAN_AMP]
    before, after = products["eoDarkCurrent"], dc
    for amp in good:
        assert flags[amp] == 0
        assert after[after["amp"] == amp][0]["dark_current_median_e_per_s"] == pytest.approx(
            before[before["amp"] == amp][0]["dark_current_median_e_per_s"], rel=1e-6
        ), amp
    # A dark with NaN pixels and no mask or metadata: NaN pixels are skipped, all-NaN is flagged.
    image = dark.image.array.copy()
    image[b.y.start : b.y.stop, b.x.start : b.x.stop] = np.nan
    table = dark_current_table(image, det)
    assert _flags(table)[NAN_AMP] == AmpFlag.NONFINITE
    # NaN variances in every pair of one amplifier: its PTC fit fails, the others are unchanged.
    pairs = []
    for t in products["pairs"]:
        t = t.copy()
        t["raw_var_adu2"][t["amp"] == NAN_AMP] = np.nan
        pairs.append(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        solve = EoPtcSolveTask()
        solve.config.ptcFitType = "EXPAPPROXIMATION"  # as in the products fixture (4 pairs)
        summary = solve.run(pairs, det).summary
    row = summary[summary["amp"] == NAN_AMP][0]
    assert row[FLAGS_COLUMN] == AmpFlag.FIT_FAILED and np.isnan(row["ptc_gain_e_per_adu"])
    assert "too few" in row["failure"]
    reference = products["eoPtcSummary"]
    for amp in good:
        assert summary[summary["amp"] == amp][0]["ptc_gain_e_per_adu"] == pytest.approx(
            reference[reference["amp"] == amp][0]["ptc_gain_e_per_adu"], rel=1e-9
        ), amp


def test_summary_and_report_skip_flagged_amps(products, tmp_path):
    tables = {name: {94: products[name]} for name in
              ("eoReadNoise", "eoBiasStability", "eoDarkCurrent", "eoBrightDefects", "eoCti", "eoPtcSummary",
               "eoLinearity", "eoBrighterFatter", "eoRowMeansVariance")}  # fmt: skip
    summary = build_run_summary(tables)
    assert len(summary) == 16
    by_amp = {str(r["amp"]): r for r in summary}
    for amp, flag in EXPECTED.items():
        row = by_amp[amp]
        assert row[FLAGS_COLUMN] & flag
        assert "eoReadNoise" in row["flag_sources"] and "eoPtcSummary" in row["flag_sources"]
        # Integer counts of flagged rows are blanked too (bright pixels -> defect fraction).
        for name in ("read_noise", "dark_current_95", "ptc_gain", "bright_pixels", "bright_defect_fraction"):
            assert np.isnan(row[name]), (amp, name)
    good = [a for a in by_amp if a not in BAD]
    assert all(by_amp[a][FLAGS_COLUMN] == 0 and np.isfinite(by_amp[a]["read_noise"]) for a in good)
    metric = {m.name: m for m in load_metrics()}["read_noise"]
    stats = metric_statistics(summary, metric)
    rn = products["eoReadNoise"]
    expected = np.median([rn[rn["amp"] == a][0]["read_noise_e"] for a in good])
    assert stats["vendors"]["E2V"]["n"] == len(good)
    assert stats["vendors"]["E2V"]["median"] == pytest.approx(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = build_report(None, "test/bad_amps", str(tmp_path / "report"), summary=summary)
    assert set(result.flagged) == {f"{DET} {a}" for a in BAD}
    text = open(result.html).read()
    assert ">Missing / incomplete</h2>" in text
    for amp, flag in EXPECTED.items():
        assert amp in text and flag.name in text
    rst = open(result.rst).read()
    assert "Missing / incomplete" in rst and "SATURATED" in rst


def test_row_means_variance_recovers_shot_noise(sim, products):
    # End to end (simulated raws -> extraction -> PTC -> eoRowMeansVariance) on the good amplifiers,
    # against the expectation from the simulation's truth.  A row mean of f1 - f2 over N columns has
    # variance (2 / N) sum_dx C(dx, 0) (e-^2): the shot noise with the brighter-fatter covariances
    # along the row (the simulator's spectral model, `covariance_model`, all orders; Poisson
    # below POISSON_MAX_MEAN), plus the white read noise 2 rn^2 / N plus, common to the whole
    # row, the per-row overscan median of each flat, 2 (pi/2) rn^2 / n_os.  eo_pipe's slope
    # divides by 2 S / N and uses the PTC gain g for both, so its expectation is
    # (g / g_true) sum(V) / sum(E) over the pairs in (3000, 1e5) e-.  Each pair's V comes from
    # R - 1 rows: relative standard deviation sqrt(2 / (R - 2)); the ratio of sums has
    # sigma = that x sqrt(sum V^2) / sum E.
    det = get_camera()[DET]
    layouts = {a.name: a for a in det.ccd_type.amps}
    table = products["eoRowMeansVariance"]
    gains = products["ptc"].gain
    pulls = []
    for row in table:
        amp = str(row["amp"])
        if amp in BAD or amp == NAN_AMP:
            continue
        truth = sim.amp(DET, amp)
        n_cols = layouts[amp].bbox.x.size
        n_rows = layouts[amp].bbox.y.size
        n_os = serial_overscan_columns(layouts[amp], 3, 3)
        mean_adu = []
        for t in products["pairs"]:
            r = t[t["amp"] == amp][0]
            mean_adu.append(0.5 * (r["eo_mean_1_adu"] + r["eo_mean_2_adu"]))
            assert r["eo_row_means_n_cols"] == n_cols
        mean_adu = np.array(mean_adu)
        signal = mean_adu * gains[amp]
        use = (signal > 3000.0) & (signal < 1.0e5)
        assert row["n_pairs"] == use.sum() == 3  # 5k, 20k, 50k e- of the plan
        s_true = mean_adu[use] * truth.gain
        row_sum = []
        for s in s_true:
            if s < POISSON_MAX_MEAN:
                row_sum.append(s)
            else:
                c = covariance_model(truth.a_matrix, s, maxlag=64, size=128)
                row_sum.append(c[0, 0] + 2.0 * np.sum(c[1:, 0]))
        e = 2.0 * s_true / n_cols
        v = 2.0 * np.array(row_sum) / n_cols + 2.0 * truth.read_noise**2 * (1.0 / n_cols + 0.5 * np.pi / n_os)
        ratio = gains[amp] / truth.gain
        expected = ratio * np.sum(v) / np.sum(e)
        sigma = ratio * np.sqrt(2.0 / (n_rows - 2)) * np.sqrt(np.sum(v**2)) / np.sum(e)
        assert row["row_means_variance_slope"] == pytest.approx(expected, abs=5 * sigma), amp
        # One row more or less changes V by ~1/R of its own scatter.
        assert row["row_means_variance_slope_all_rows"] == pytest.approx(
            row["row_means_variance_slope"], abs=sigma
        )
        pulls.append((row["row_means_variance_slope"] - expected) / sigma)
    # The good amplifiers together: their mean pull is N(0, 1/n).
    assert abs(np.mean(pulls)) < 4.0 / np.sqrt(len(pulls)), pulls
