"""Header translation on the real LSSTCam headers, and on broken variants of them."""

import astropy.time
import pytest

from lsst.eo.baseline.translate import HeaderError, exposure_id, translate_header

from tests.rawfactory import E2V_HEADER, ITL_HEADER, load_real_header


def test_itl_bias_header():
    primary, _ = load_real_header(ITL_HEADER)
    t = translate_header(primary)
    rec = t.record
    assert rec["instrument"] == "LSSTCam"
    assert rec["id"] == 20231107 * 100000 + 78 == 2023110700078
    assert rec["obs_id"] == rec["group"] == "MC_C_20231107_000078"
    assert rec["day_obs"] == 20231107
    assert rec["seq_num"] == 78
    assert rec["observation_type"] == "bias"
    assert rec["observation_reason"] == "bot_persistence"
    assert rec["science_program"] == "13518"
    assert rec["physical_filter"] == "ph_05"
    assert rec["exposure_time"] == 0.0
    assert rec["dark_time"] == pytest.approx(0.092)
    span = rec["timespan"]
    assert span.begin == astropy.time.Time("2023-11-08T01:26:57.923", scale="tai")
    assert span.end == astropy.time.Time("2023-11-08T01:26:58.015", scale="tai")
    assert t.warnings == []
    # Null CCOB keywords are kept as None in the metadata.
    assert t.metadata["CCOBLED"] is None
    assert t.metadata["SEQFILE"] == "FP_ITL_2s_ir2_v26_no_RG.seq"


def test_e2v_flat_header():
    primary, _ = load_real_header(E2V_HEADER)
    t = translate_header(primary)
    rec = t.record
    assert rec["id"] == exposure_id(20231125, 600) == 2023112500600
    assert rec["observation_type"] == "flat"
    assert rec["observation_reason"] == "flat"
    assert rec["science_program"] == "13593"
    assert rec["physical_filter"] == "NONE"
    assert rec["exposure_time"] == 15.0
    assert rec["dark_time"] == pytest.approx(18.1514)
    # Exposure record timespan spans DATE-BEG..DATE-END (18.151 s here).
    assert (rec["timespan"].end - rec["timespan"].begin).sec == pytest.approx(18.151, abs=1e-3)
    md = t.metadata
    assert md["CCOBLED"] == "uv"
    assert md["CCOBFLUX"] == 75819.0
    assert md["CCOBCURR"] == pytest.approx(0.273)
    assert md["TEMPLED1"] == pytest.approx(35.0476)


@pytest.mark.parametrize("key", ["OBSID", "DAYOBS", "SEQNUM", "IMGTYPE", "EXPTIME"])
def test_missing_required_keyword(key):
    primary, _ = load_real_header(E2V_HEADER)
    del primary[key]
    with pytest.raises(HeaderError, match=key):
        translate_header(primary)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("DAYOBS", "2023-11-25", "DAYOBS"),
        ("SEQNUM", "six", "SEQNUM"),
        ("EXPTIME", "fast", "EXPTIME"),
        ("EXPTIME", -1.0, "EXPTIME"),
        ("DATE-BEG", "yesterday", "DATE-BEG"),
        ("DATE-END", "2023-11-25T20:13:00.000", "before"),
    ],
)
def test_malformed_keyword(key, value, match):
    primary, _ = load_real_header(E2V_HEADER)
    primary[key] = value
    with pytest.raises(HeaderError, match=match):
        translate_header(primary)


def test_defaults_for_optional_keywords():
    """A 2025-style file: IMGTYPE UNKNOWN, no RUNNUM/TESTTYPE, null FILTER."""
    primary, _ = load_real_header(E2V_HEADER)
    primary["IMGTYPE"] = "UNKNOWN"
    del primary["RUNNUM"]
    del primary["TESTTYPE"]
    primary["FILTER"] = None
    t = translate_header(primary)
    assert t.record["science_program"] == "unknown"
    assert t.record["observation_reason"] == "unknown"
    assert t.record["physical_filter"] == "UNKNOWN"
    assert t.record["observation_type"] == "unknown"
    text = " ".join(t.warnings)
    for word in ("RUNNUM", "TESTTYPE", "FILTER", "UNKNOWN"):
        assert word in text


def test_long_imgtype_truncated_with_warning():
    primary, _ = load_real_header(E2V_HEADER)
    primary["IMGTYPE"] = "SUPERSATURATEDFLAT"
    t = translate_header(primary)
    assert t.record["observation_type"] == "supersaturatedfl"
    assert len(t.record["observation_type"]) == 16
    assert t.metadata["IMGTYPE"] == "SUPERSATURATEDFLAT"
    assert any("16 characters" in w for w in t.warnings)


def test_missing_date_end_and_darktime_fall_back():
    primary, _ = load_real_header(E2V_HEADER)
    del primary["DATE-END"]
    del primary["DARKTIME"]
    t = translate_header(primary)
    assert t.record["dark_time"] == 15.0
    assert (t.record["timespan"].end - t.record["timespan"].begin).sec == pytest.approx(15.0, abs=1e-3)
    assert len(t.warnings) == 2
