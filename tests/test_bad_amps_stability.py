"""Bad amplifiers in the gain-stability, divisadero, wavelength-flat and persistence tables.

One e2v detector is simulated (tests/data/plans/bad_amps_stability.yaml: 2 biases, 3 stability
flats, a saturating flat and 4 darks) and copied; in the copy that is analysed, amplifier C10 is
all zero, C11 at the ADC maximum and C12 dead in every file, C07 is dead in the biases only (so it
reaches the flat, wavelength and persistence tables only through ``AMP_FLAGS`` of eoBias), and
C16 is at the ADC maximum in the saturating flat only (which a persistence flat may legitimately
be: not a bad amplifier).  The tasks' ``run`` methods are called on both sets of files, on the
corrupted ones with RuntimeWarnings turned into errors.  Flagged rows must have NaN metrics and
the right bits, and every other amplifier the same values as from the clean files (the
amplifiers are measured independently; the exceptions are the detector-median normalisation of
``relative_response`` and the divisadero boundaries shared with a flagged amplifier).
"""

import logging
import os
import shutil
import warnings

import numpy as np
import pytest

from lsst.eo.baseline.ampFlags import FLAGS_COLUMN, AmpFlag, flag_names, metadata_amp_flags
from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.calibCombine import EoBiasConfig, EoBiasTask, EoFlatTask
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.divisadero import EoDivisaderoTask, column_profile
from lsst.eo.baseline.gainStability import EoGainStabilityTask
from lsst.eo.baseline.persistence import EoPersistenceConfig, EoPersistenceTask
from lsst.eo.baseline.runSummary import build_run_summary
from lsst.eo.baseline.simulator import load_truth, simulate
from lsst.eo.baseline.wavelengthFlats import EoWavelengthFlatsConfig, EoWavelengthFlatsTask

from tests.reliability_helpers import corrupt_amps

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "bad_amps_stability.yaml")
DET = "R22_S11"
BAD = {"C10": "zero", "C11": "saturated", "C12": "dead"}
EXPECTED = {"C10": AmpFlag.ZERO, "C11": AmpFlag.SATURATED, "C12": AmpFlag.DEAD}
BIAS_ONLY = "C07"  # dead in the biases only
FLAT_ONLY = "C16"  # saturated in the saturating flat only
TABLES = ("eoGainStability", "eoDivisaderoTearing", "eoWavelengthFlats", "eoPersistence")
USES_BIAS = ("eoDivisaderoTearing", "eoWavelengthFlats", "eoPersistence")
# Values that depend on the other amplifiers (see the module docstring).
NOT_INDEPENDENT = {"eoWavelengthFlats": {"relative_response"}}


class _WarningRecords(logging.Handler):
    """Messages of the warnings logged while it is attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _handles(truth, root, testtype, imgtype=None):
    exposures = truth.exposures[truth.exposures["testtype"] == testtype]
    if imgtype is not None:
        exposures = exposures[exposures["imgtype"] == imgtype]
    ids = {int(e) for e in exposures["exposure_id"]}
    rows = sorted((int(r["exposure_id"]), r["path"]) for r in truth.files if int(r["exposure_id"]) in ids)
    return [RawFileHandle(os.path.join(root, p)) for _, p in rows]


def _analyse(truth, root):
    """The four tables (and the calibrations made on the way) from the files under ``root``."""
    det = get_camera()[DET]
    bias_config = EoBiasConfig()
    bias_config.minInputs = 2
    bias = EoBiasTask(config=bias_config).run(_handles(truth, root, "BIAS"), det).bias
    flats = _handles(truth, root, "GAIN_STABILITY")
    out = {"bias": bias}
    out["eoGainStability"] = EoGainStabilityTask().run(flats, det).stability
    out["flat"] = EoFlatTask().run(flats, det, bias=bias).flat
    out["eoDivisaderoTearing"] = EoDivisaderoTask().run(out["flat"], det).tearing
    # Without eoDark: the darks of the plan are the persistence darks.
    config = EoWavelengthFlatsConfig()
    config.isr.doDark = False
    out["eoWavelengthFlats"] = EoWavelengthFlatsTask(config=config).run(flats, det, bias=bias).wavelengthFlats
    config = EoPersistenceConfig()
    config.isr.doDark = False
    result = EoPersistenceTask(config=config).run(_handles(truth, root, "PERSISTENCE"), det, bias=bias)
    out["eoPersistence"], out["eoPersistenceExposures"] = result.persistence, result.exposures
    return out


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """``{"clean": tables, "bad": tables, "warnings": messages}``."""
    root = str(tmp_path_factory.mktemp("bad_amps_stability"))
    paths = simulate(PLAN, DET, root, run="13710", seed=5, jobs=2)
    clean_root = str(tmp_path_factory.mktemp("bad_amps_stability_clean"))
    shutil.copytree(root, clean_root, dirs_exist_ok=True)
    truth = load_truth(root)
    corrupt_amps(paths, BAD)
    corrupt_amps([h.path for h in _handles(truth, root, "BIAS")], {BIAS_ONLY: "dead"})
    saturating = [h.path for h in _handles(truth, root, "PERSISTENCE", "FLAT")]
    assert len(saturating) == 1
    corrupt_amps(saturating, {FLAT_ONLY: "saturated"})
    out = {"clean": _analyse(truth, clean_root)}
    records = _WarningRecords()
    logging.getLogger().addHandler(records)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            out["bad"] = _analyse(truth, root)
    finally:
        logging.getLogger().removeHandler(records)
    out["warnings"] = records.messages
    return out


def _rows(table, amp):
    return table[np.asarray(table["amp"]).astype(str) == amp]


def _float_columns(table, skip=()):
    return [c for c in table.colnames if table[c].dtype.kind == "f" and c not in skip]


# Inputs that flagged rows keep (they are not measurements): exposure descriptors and the conversion
# gain (the run's PTC gain or the camera model's, known whatever the amplifier's pixels are).
KEPT = {
    "eoWavelengthFlats": ("exptime_s", "ccobflux", "gain_e_per_adu"),
    "eoPersistence": ("gain_e_per_adu",),
}


@pytest.mark.parametrize("name", TABLES)
def test_bad_amps_flagged_with_nan(products, name):
    table = products["bad"][name]
    assert FLAGS_COLUMN in table.colnames and table[FLAGS_COLUMN].dtype == np.int32
    expected = {amp: int(flag) for amp, flag in EXPECTED.items()}
    if name in USES_BIAS:
        expected[BIAS_ONLY] = int(AmpFlag.DEAD)
    columns = _float_columns(table, KEPT.get(name, ()))
    assert columns
    for amp, flag in expected.items():
        rows = _rows(table, amp)
        assert len(rows) >= 1, (name, amp)
        for row in rows:
            assert row[FLAGS_COLUMN] == flag, (name, amp, flag_names(row[FLAGS_COLUMN]))
            for col in columns:
                assert np.isnan(row[col]), (name, amp, col)
    # Every other amplifier is measured: flags 0, finite metrics.
    metric = {"eoGainStability": "gain_drift_ppt", "eoDivisaderoTearing": "divisadero_tearing",
              "eoWavelengthFlats": "nonuniformity", "eoPersistence": "persistence_q0_e"}[name]  # fmt: skip
    others = [a for a in get_camera()[DET].amp_names if a not in expected]
    assert len(others) == 16 - len(expected)
    for amp in others:
        for row in _rows(table, amp):
            assert row[FLAGS_COLUMN] == 0, (name, amp, flag_names(row[FLAGS_COLUMN]))
            assert np.isfinite(row[metric]), (name, amp)
    # A warning names the flagged amplifiers.
    what = {"eoGainStability": "gain stability", "eoDivisaderoTearing": "divisadero tearing",
            "eoWavelengthFlats": "wavelength flats", "eoPersistence": "persistence"}[name]  # fmt: skip
    text = [m for m in products["warnings"] if f"{what} not measured for flagged amplifier" in m]
    assert len(text) == 1, (name, products["warnings"])
    assert all(f"{amp} ({flag_names(flag)[0]})" in text[0] for amp, flag in expected.items()), text


def _tolerance(name):
    """Same pixels, same arithmetic: equal values, except for the divisadero tearing.

    The combined flat divides each exposure by a level taken from the first good amplifiers (C13
    alone when C10-C12 are flagged, C10-C13 otherwise): its per-exposure weights change by ~1e-4,
    which moves column means by far less than their noise (~3e-4; tearing values ~1e-3 on e2v).
    """
    return {"abs": 2e-4} if name == "eoDivisaderoTearing" else {"rel": 1e-9, "abs": 1e-12}


@pytest.mark.parametrize("name", TABLES)
def test_other_amps_unchanged(products, name):
    """The amplifiers measured in both runs have the values of the clean files."""
    bad, clean = products["bad"][name], products["clean"][name]
    assert (clean[FLAGS_COLUMN] == 0).all()
    skip = NOT_INDEPENDENT.get(name, set())
    excluded = set(BAD) | {BIAS_ONLY, FLAT_ONLY}
    if name == "eoDivisaderoTearing":
        # Neighbours of a flagged amplifier: compared on their other boundary below.
        excluded |= {"C13", "C06"}
    compared = 0
    for amp in get_camera()[DET].amp_names:
        if amp in excluded:
            continue
        for got, ref in zip(_rows(bad, amp), _rows(clean, amp), strict=True):
            for col in _float_columns(clean, skip):
                if np.isnan(ref[col]):
                    assert np.isnan(got[col]), (name, amp, col)
                else:
                    assert got[col] == pytest.approx(ref[col], **_tolerance(name)), (name, amp, col)
                    compared += 1
    assert compared >= 10


def test_divisadero_next_to_a_flagged_amp(products):
    """A boundary with a flagged amplifier is measured from the good side; the other is unchanged."""
    bad, clean = products["bad"]["eoDivisaderoTearing"], products["clean"]["eoDivisaderoTearing"]
    # C13 is right of C12 (flagged), C06 left of C07 (flagged through eoBias).
    for amp, kept in (("C13", "divisadero_right"), ("C06", "divisadero_left")):
        row, ref = _rows(bad, amp)[0], _rows(clean, amp)[0]
        assert row[FLAGS_COLUMN] == 0 and np.isfinite(row["divisadero_tearing"]), amp
        assert row[kept] == pytest.approx(ref[kept], **_tolerance("eoDivisaderoTearing")), amp
        # e2v sensors do not tear: noise only (see tests/test_flat_field.py).
        assert row["divisadero_tearing"] < 0.005, amp
    # An amplifier without signal has no profile (no division by zero, no empty fit).
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert np.isnan(column_profile(np.zeros((300, 512)))).all()
        assert np.isnan(column_profile(np.full((300, 512), np.nan))).all()


def test_calibrations_and_saturating_flat(products):
    """eoBias and eoFlat carry C07 from the biases; C16 saturated in the persistence flat is measured."""
    for name in ("bias", "flat"):
        flags = metadata_amp_flags(products["bad"][name].metadata)
        assert flags.get(BIAS_ONLY) == AmpFlag.DEAD, name
    # The stability task uses no bias by default: C07 is measured there.
    stability = products["bad"]["eoGainStability"]
    assert _rows(stability, BIAS_ONLY)[0][FLAGS_COLUMN] == 0
    persistence = products["bad"]["eoPersistence"]
    row = _rows(persistence, FLAT_ONLY)[0]
    assert row[FLAGS_COLUMN] == 0 and np.isfinite(row["persistence_q0_e"])
    # The per-exposure tables carry the flags of their amplifier, with NaN values.
    for name, value in (("eoPersistenceExposures", "residual_e"),):
        table = products["bad"][name]
        for amp, flag in EXPECTED.items():
            rows = _rows(table, amp)
            assert len(rows) and (rows[FLAGS_COLUMN] == flag).all(), (name, amp)
            assert np.isnan(np.asarray(rows[value], dtype=float)).all(), (name, amp)


def test_summary_carries_the_flags(products):
    tables = {name: {94: products["bad"][name]} for name in TABLES}
    summary = build_run_summary(tables)
    assert len(summary) == 16
    by_amp = {str(r["amp"]): r for r in summary}
    metrics = ("gain_drift", "gain_scatter", "divisadero", "wavelength_nonuniformity",
               "wavelength_relative_response", "persistence_q0", "persistence_tau")  # fmt: skip
    led_columns = [c for c in summary.colnames if c.startswith(("nonuniformity_", "relative_response_"))]
    assert led_columns
    for amp, flag in EXPECTED.items():
        row = by_amp[amp]
        assert row[FLAGS_COLUMN] == flag, amp
        assert set(row["flag_sources"].split(",")) == set(TABLES), amp
        for name in metrics + tuple(led_columns):
            assert np.isnan(row[name]), (amp, name)
    row = by_amp[BIAS_ONLY]
    assert row[FLAGS_COLUMN] == AmpFlag.DEAD and set(row["flag_sources"].split(",")) == set(USES_BIAS)
    assert np.isfinite(row["gain_drift"]) and np.isnan(row["persistence_q0"])
    for amp in set(by_amp) - set(BAD) - {BIAS_ONLY}:
        row = by_amp[amp]
        assert row[FLAGS_COLUMN] == 0 and row["flag_sources"] == "", amp
        for name in metrics + tuple(led_columns):
            assert np.isfinite(row[name]), (amp, name)
