"""Header readers of `lsst.eo.baseline.headerValues`, on plain dicts with values worked out by hand."""

import astropy.time
import numpy as np
import pytest

from lsst.eo.baseline.headerValues import exposure_end_mjd, exposure_mjd, header_float


def test_header_float():
    assert header_float({"EXPTIME": 15.0}, "EXPTIME") == 15.0
    assert header_float({"EXPTIME": "2.5"}, "EXPTIME") == 2.5  # a numeric string is a number
    assert header_float({"EXPTIME": 3}, "EXPTIME") == 3.0
    for header in ({}, {"EXPTIME": None}, {"EXPTIME": "n/a"}, {"EXPTIME": float("inf")}, {"EXPTIME": np.nan}):
        assert np.isnan(header_float(header, "EXPTIME")), header


def test_exposure_mjd_order_of_keywords():
    # MJD-BEG first, then MJD-OBS; a non-finite or non-numeric MJD falls through to the next.
    assert exposure_mjd({"MJD-BEG": 61000.25, "MJD-OBS": 61000.5}) == 61000.25
    assert exposure_mjd({"MJD-BEG": np.nan, "MJD-OBS": 61000.5}) == 61000.5
    assert exposure_mjd({"MJD-BEG": "61000.25", "MJD-OBS": 61000.5}) == 61000.5
    # DATE-BEG (TAI): 2026-02-14T12:00:00 is MJD 61085.5 (MJD 61085 = 2026-02-14).
    assert exposure_mjd({"DATE-BEG": "2026-02-14T12:00:00"}) == pytest.approx(61085.5, abs=1e-9)
    assert exposure_mjd({"DATE-OBS": "2026-02-14T18:00:00"}) == pytest.approx(61085.75, abs=1e-9)
    assert np.isnan(exposure_mjd({}))


def test_exposure_end_from_headers():
    assert exposure_end_mjd({"MJD-END": 61000.5, "MJD-BEG": 61000.4}) == 61000.5
    end = exposure_end_mjd({"DATE-END": "2026-02-14T20:00:15.092"})
    assert end == pytest.approx(astropy.time.Time("2026-02-14T20:00:15.092", scale="tai").mjd, abs=1e-9)
    # 86.4 s = 0.001 d after the start; EXPTIME stands in for a missing DARKTIME.
    assert exposure_end_mjd({"MJD-BEG": 61000.0, "DARKTIME": 86.4}) == pytest.approx(61000.001)
    assert exposure_end_mjd({"MJD-BEG": 61000.0, "EXPTIME": 864.0}) == pytest.approx(61000.01)
    assert np.isnan(exposure_end_mjd({"MJD-BEG": 61000.0}))
