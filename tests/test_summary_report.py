"""Run summary, metric registry and run comparison on hand-built tables."""

import numpy as np
import pytest
from astropy.table import Table

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.metrics import load_metrics, load_sections, out_of_spec
from lsst.eo.baseline.plotting import focal_plane_mosaic, vendor_histograms
from lsst.eo.baseline.report import compare_summaries, metric_statistics
from lsst.eo.baseline.runSummary import build_run_summary

METRICS = {m.name: m for m in load_metrics()}


def _table(det, column, values):
    return Table({"amp": det.amp_names, column: values})


def test_registry_is_consistent():
    sections = {s.key for s in load_sections()}
    for m in METRICS.values():
        assert m.section in sections, m.name
        assert m.derived or (m.dataset.startswith("eo") and m.column), m.name
        assert m.tolerance_abs is not None or m.tolerance_rel is not None, m.name
    assert METRICS["read_noise"].spec_max == 9.0
    assert METRICS["ptc_turnoff"].spec_min == 90000


def test_summary_joins_and_derives():
    e2v, itl = get_camera()["R22_S11"], get_camera()["R01_S01"]
    rn = {e2v.id: _table(e2v, "read_noise_e", np.linspace(4, 10, 16)),
          itl.id: _table(itl, "read_noise_e", np.full(16, 6.0))}  # fmt: skip
    bright = {e2v.id: Table({"amp": e2v.amp_names, "bright_pixels": np.full(16, 512 * 2002 // 100),
                             "bright_columns": np.zeros(16, int)})}  # fmt: skip
    wl = Table({"led": ["uv", "red"], "filter": ["NONE", "NONE"], "amp": ["C10", "C10"],
                "nonuniformity": [0.02, 0.01], "relative_response": [0.97, 1.01]})  # fmt: skip
    summary = build_run_summary({"eoReadNoise": rn, "eoBrightDefects": bright, "eoWavelengthFlats": {94: wl}})
    assert len(summary) == 32
    row = summary[(summary["det_name"] == "R22_S11") & (summary["amp"] == "C10")][0]
    assert row["vendor"] == "E2V" and row["raft"] == "R22"
    assert row["read_noise"] == pytest.approx(4.0)
    assert row["bright_defect_fraction"] == pytest.approx((512 * 2002 // 100) / (512 * 2002))
    assert row["wavelength_nonuniformity"] == pytest.approx(0.02)  # worst LED
    assert row["wavelength_relative_response"] == pytest.approx(0.97)  # farthest from 1
    assert row["nonuniformity_uv"] == pytest.approx(0.02)
    assert np.isnan(summary[summary["det_name"] == "R01_S01"]["bright_defect_fraction"]).all()


def test_statistics_and_spec():
    e2v = get_camera()["R22_S11"]
    values = np.linspace(4, 10, 16)  # 4 amps above 9 e-
    summary = build_run_summary({"eoReadNoise": {e2v.id: _table(e2v, "read_noise_e", values)}})
    st = metric_statistics(summary, METRICS["read_noise"])
    assert st["vendors"]["E2V"]["median"] == pytest.approx(np.median(values))
    assert st["vendors"]["E2V"]["n_out"] == int((values > 9).sum()) == 3
    assert len(st["out_of_spec"]) == 3 and st["out_of_spec"][0].startswith("R22_S11 ")
    assert "ITL" not in st["vendors"]
    assert out_of_spec(METRICS["ptc_turnoff"], np.array([80000, 95000, np.nan])).tolist() == [
        True,
        False,
        False,
    ]


def test_comparison_flags_changes_and_missing():
    e2v, itl = get_camera()["R22_S11"], get_camera()["R01_S01"]
    before_values = np.full(16, 6.0)
    after_values = before_values.copy()
    after_values[3] = 7.0  # +16.7%, beyond the 5% tolerance
    after_values[4] = 6.1  # +1.7%, within it
    before_tables = {
        e2v.id: _table(e2v, "read_noise_e", before_values),
        itl.id: _table(itl, "read_noise_e", before_values),
    }
    before = build_run_summary({"eoReadNoise": before_tables})
    after = build_run_summary({"eoReadNoise": {e2v.id: _table(e2v, "read_noise_e", after_values)}})
    c = compare_summaries(after, before, METRICS["read_noise"])
    assert [name for name, _, _ in c["changed"]] == [f"R22_S11 {e2v.amp_names[3]}"]
    assert len(c["only_previous"]) == 16 and not c["only_current"]
    assert c["vendors"]["E2V"]["median_diff"] == pytest.approx(0.0)
    assert len(c["diff"]) == 16


def test_figures_draw():
    e2v = get_camera()["R22_S11"]
    summary = build_run_summary(
        {"eoReadNoise": {e2v.id: _table(e2v, "read_noise_e", np.linspace(4, 10, 16))}}
    )
    fig = focal_plane_mosaic(summary, "read_noise", "Read noise (e-)", (0, 20))
    assert fig.axes and fig.axes[0].get_title() == "Read noise (e-)"
    fig = vendor_histograms(summary, METRICS["read_noise"])
    # The spec line is drawn.
    assert any(abs(line.get_xdata()[0] - 9.0) < 1e-9 for line in fig.axes[0].get_lines())
