"""The run's gains: PTC gains per amplifier, camera-model gains only where the PTC has none.

Values in electrons must follow the gain of the run's ``eoPtc`` and not the camera model's: each
test builds a PTC dataset whose gains differ from ``lsstcam_amps.csv`` (by hand-chosen factors),
with one amplifier without a usable gain, and checks the e- values against adu x gain worked out
from those numbers.
"""

import os
import types

import numpy as np
import pytest

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.camera import get_camera, nominal_amps
from lsst.eo.baseline.darkCurrent import EoDarkCurrentConfig, dark_current_table
from lsst.eo.baseline.persistence import EoPersistenceConfig
from lsst.eo.baseline.ptcDataset import EoPtcDataset
from lsst.eo.baseline.readNoise import EoReadNoiseConfig, EoReadNoiseTask
from lsst.eo.baseline.runGains import (
    GAIN_SOURCE_CAMERA,
    GAIN_SOURCE_PTC,
    RunGains,
    camera_gain_amplifiers,
    choose_gains,
    quantum_gains,
    run_gains,
)
from lsst.eo.baseline.runSummary import build_run_summary
from lsst.eo.baseline.wavelengthFlats import EoWavelengthFlatsConfig

from .rawfactory import make_raw

DET = "R22_S11"
NAN_AMP = "C10"
ZERO_AMP = "C03"


def _camera(det):
    return {a: v.gain for a, v in nominal_amps(det.name).items()}


def _ptc(det):
    """A PTC whose gains are 1.25 x the camera-model ones, NaN for NAN_AMP and 0 for ZERO_AMP."""
    ptc = EoPtcDataset(ampNames=list(det.amp_names))
    for amp, g in _camera(det).items():
        ptc.set("gain", amp, 1.25 * g)
    ptc.set("gain", NAN_AMP, np.nan)
    ptc.set("gain", ZERO_AMP, 0.0)
    return ptc


def test_choose_gains_by_hand():
    gains, sources = choose_gains(
        ["A", "B", "C", "D", "E"],
        {"A": 1.5, "B": np.nan, "C": 0.0, "D": -1.0},
        {"A": 9.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0},
    )
    assert gains == {"A": 1.5, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0}
    assert sources == {"A": "PTC", "B": "CAMERA", "C": "CAMERA", "D": "CAMERA", "E": "CAMERA"}
    # No PTC at all: every amplifier falls back.
    gains, sources = choose_gains(["A"], None, {"A": 9.0})
    assert gains == {"A": 9.0} and sources == {"A": "CAMERA"}


def test_run_gains_from_a_ptc_dataset():
    det = get_camera()[DET]
    camera = _camera(det)
    result = run_gains(det, _ptc(det))
    for amp in det.amp_names:
        if amp in (NAN_AMP, ZERO_AMP):
            assert result.sources[amp] == GAIN_SOURCE_CAMERA
            assert result.gains[amp] == camera[amp]
        else:
            assert result.sources[amp] == GAIN_SOURCE_PTC
            assert result.gains[amp] == pytest.approx(1.25 * camera[amp], rel=1e-15)
    assert sorted(result.camera_amps) == sorted([NAN_AMP, ZERO_AMP])
    assert result.summary == "PTC+CAMERA" and result.ptc_found
    without = run_gains(det)
    assert without.summary == "CAMERA" and without.gains == camera and not without.ptc_found


def test_quantum_gains_without_and_with_a_ptc():
    det = get_camera()[DET]
    ptc = _ptc(det)

    class ButlerQC:
        def get(self, ref):
            assert ref == "ptc-ref"
            return ptc

    # minimum=0 prerequisite: no reference when the run has no certified PTC.
    assert quantum_gains(ButlerQC(), types.SimpleNamespace(ptc=None), det).summary == "CAMERA"
    assert quantum_gains(ButlerQC(), types.SimpleNamespace(), det).summary == "CAMERA"
    assert quantum_gains(ButlerQC(), types.SimpleNamespace(ptc="ptc-ref"), det) == run_gains(det, ptc)


@pytest.mark.parametrize(
    "config_class", [EoReadNoiseConfig, EoDarkCurrentConfig, EoPersistenceConfig, EoWavelengthFlatsConfig]
)
def test_tasks_in_electrons_take_the_certified_ptc(config_class):
    connections = config_class().connections.ConnectionsClass(config=config_class())
    ptc = connections.allConnections["ptc"]
    assert "ptc" in connections.prerequisiteInputs
    assert ptc.name == "eoPtc" and ptc.isCalibration and ptc.minimum == 0
    # The calibration lookup is bounded by the raws' time span.
    assert connections.getTemporalBoundsConnections() == ("raws",)


def test_dark_current_follows_the_ptc_gain_not_the_camera_gain():
    det = get_camera()[DET]
    camera = _camera(det)
    image = np.zeros(det.ccd_type.shape, dtype=np.float32)
    for i, layout in enumerate(det.ccd_type.amps):
        b = layout.bbox
        image[b.y.start : b.y.stop, b.x.start : b.x.stop] = 0.01 * (i + 1)  # adu/s
    gains = run_gains(det, _ptc(det))
    table = dark_current_table(image, det, gains=gains)
    for i, row in enumerate(table):
        amp = str(row["amp"])
        adu = 0.01 * (i + 1)
        g = camera[amp] if amp in (NAN_AMP, ZERO_AMP) else 1.25 * camera[amp]
        assert row["dark_current_median_adu_per_s"] == pytest.approx(adu, rel=1e-6)
        assert row["dark_current_median_e_per_s"] == pytest.approx(adu * g, rel=1e-6)
        assert row["dark_current_95_e_per_s"] == pytest.approx(adu * g, rel=1e-6)
        assert row["dark_current_clipped_mean_e_per_s"] == pytest.approx(adu * g, rel=1e-6)
        assert row["gain_e_per_adu"] == pytest.approx(g, rel=1e-15)
        assert row["gain_source"] == ("CAMERA" if amp in (NAN_AMP, ZERO_AMP) else "PTC")
    assert table.meta["GAIN_SOURCE"] == "PTC+CAMERA" and table.meta["PTC_FOUND"] is True
    # Another camera model changes only the fallback amplifiers.
    other, sources = choose_gains(det.amp_names, dict(_ptc(det).gain), {a: 2 * g for a, g in camera.items()})
    moved = dark_current_table(image, det, gains=RunGains(other, sources))
    for row, ref in zip(moved, table, strict=True):
        factor = 2.0 if str(row["amp"]) in (NAN_AMP, ZERO_AMP) else 1.0
        assert row["dark_current_median_e_per_s"] == pytest.approx(
            factor * ref["dark_current_median_e_per_s"], rel=1e-6
        )


@pytest.fixture(scope="module")
def biases(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run_gains_biases"))
    paths = [
        make_raw(os.path.join(out, f"bias{k}.fits"), detector=DET, seqnum=k + 1, noise=5.0, seed=k)
        for k in range(2)
    ]
    return [RawFileHandle(p) for p in paths]


def test_read_noise_follows_the_ptc_gain_not_the_camera_gain(biases):
    det = get_camera()[DET]
    camera = _camera(det)
    task = EoReadNoiseTask()
    with_ptc = task.run(biases, det, run_gains(det, _ptc(det)))
    without = task.run(biases, det)
    for table in (with_ptc.readNoise, with_ptc.readNoiseExposures):
        for row in table:
            amp = str(row["amp"])
            fallback = amp in (NAN_AMP, ZERO_AMP)
            g = camera[amp] if fallback else 1.25 * camera[amp]
            assert row["gain_source"] == ("CAMERA" if fallback else "PTC")
            assert row["gain_e_per_adu"] == pytest.approx(g, rel=1e-15)
            assert row["read_noise_e"] == pytest.approx(row["read_noise_adu"] * g, rel=1e-12)
    t, ref = with_ptc.readNoise, without.readNoise
    # The adu values do not depend on the gains; the e- values scale by PTC / camera gain.
    np.testing.assert_array_equal(t["read_noise_adu"], ref["read_noise_adu"])
    assert set(ref["gain_source"]) == {"CAMERA"} and ref.meta["GAIN_SOURCE"] == "CAMERA"
    assert ref.meta["PTC_FOUND"] is False and t.meta["PTC_FOUND"] is True
    ratio = np.asarray(t["read_noise_overscan_e"]) / np.asarray(ref["read_noise_overscan_e"])
    expected = [1.0 if a in (NAN_AMP, ZERO_AMP) else 1.25 for a in t["amp"]]
    np.testing.assert_allclose(ratio, expected, rtol=1e-12)
    # 5 adu of Gaussian noise: eo_pipe's estimator (median of 20 x 20 box stdevs) within 3%.
    np.testing.assert_allclose(t["read_noise_adu"], 5.0, rtol=0.03)


def test_summary_and_report_list_the_camera_gain_amplifiers():
    det = get_camera()[DET]
    gains = run_gains(det, _ptc(det))
    image = np.full(det.ccd_type.shape, 0.01, dtype=np.float32)
    tables = {"eoDarkCurrent": {det.id: dark_current_table(image, det, gains=gains)}}
    summary = build_run_summary(tables)
    sources = dict(zip(summary["amp"], summary["camera_gain_sources"], strict=True))
    assert {a for a, s in sources.items() if s} == {NAN_AMP, ZERO_AMP}
    assert sources[NAN_AMP] == "eoDarkCurrent"
    groups = camera_gain_amplifiers(summary)
    assert len(groups) == 1 and groups[0]["det_name"] == DET
    assert sorted(groups[0]["amps"]) == sorted([NAN_AMP, ZERO_AMP])


def test_report_lists_the_camera_gain_amplifiers(tmp_path):
    from lsst.eo.baseline.report import build_report

    det = get_camera()[DET]
    image = np.full(det.ccd_type.shape, 0.01, dtype=np.float32)
    table = dark_current_table(image, det, gains=run_gains(det, _ptc(det)))
    summary = build_run_summary({"eoDarkCurrent": {det.id: table}})
    result = build_report(None, "test/run_gains", str(tmp_path / "report"), summary=summary)
    text = open(result.rst).read()
    section = text[text.index("Missing / incomplete") :]
    assert "2 amplifier(s) without a usable PTC gain" in section
    assert f"{ZERO_AMP}, {NAN_AMP}" in section or f"{NAN_AMP}, {ZERO_AMP}" in section
