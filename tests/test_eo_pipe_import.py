"""eo_pipe tables as a run summary: fixtures built from the documented schemas (eo_pipe.md 3, 9),
and the public per-CCD defect table of earlier LSSTCam runs (tests/data/eo_pipe/README.md)."""

import os

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from click.testing import CliRunner

from lsst.eo.baseline.camera import get_camera, nominal_amps
from lsst.eo.baseline.cli import main
from lsst.eo.baseline.eoPipeImport import (
    EoPipeImportError,
    eo_pipe_summary,
    read_eo_pipe_files,
    read_per_ccd_defects,
)
from lsst.eo.baseline.metrics import load_metrics
from lsst.eo.baseline.runCompare import GeometryMismatchError, compare_runs
from lsst.eo.baseline.summaryExport import read_summary_file

METRICS = {m.name: m for m in load_metrics()}
DEFECTS_CSV = os.path.join(
    os.path.dirname(__file__), "data", "eo_pipe", "lsstcam_defects_per_ccd_comprun.csv"
)
E2V, ITL = get_camera()["R22_S11"], get_camera()["R01_S01"]


def _per_amp(det, **columns):
    n = len(det.amp_names)
    t = Table({"det_name": [det.name] * n, "amp_name": det.amp_names})
    for name, value in columns.items():
        t[name] = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    return t


def _fixtures():
    from astropy.table import vstack

    ptc = vstack([_per_amp(d, ptc_a00=3.0e-6, ptc_gain=g, ptc_noise=5.5, ptc_turnoff=100000.0)
                  for d, g in ((E2V, 1.5), (ITL, 1.7))])  # fmt: skip
    exposures = []
    for k, value in enumerate((4.0, 5.0, 9.0)):  # median 5 adu
        t = _per_amp(E2V, read_noise=value)
        t["exposure_id"] = k
        exposures.append(t)
    hours = np.arange(5.0)
    bias = vstack([_per_amp(E2V, mean=1.0 + 0.5 * h, mjd=60000.0 + h / 24.0) for h in hours])
    rmv = _per_amp(E2V, slope=1.05)
    rmv["det_name"] = [str(E2V.id)] * 16  # eo_pipe writes the integer id here
    return {
        "ptc_summary": ptc,
        "eo_read_noise": vstack(exposures),
        "dark_current_stats": _per_amp(E2V, dark_current_95=0.02, dark_current_median=0.01),
        "bright_defects_results": _per_amp(E2V, bright_columns=1, bright_pixels=10),
        "dark_defects_results": _per_amp(E2V, dark_columns=0, dark_pixels=100),
        "eper_stats": _per_amp(E2V, scti=2e-7, pcti=1e-7),
        "row_means_variance_stats": rmv,
        "bias_stability_stats": bias,
    }


def test_mapping_units_and_signs_by_hand():
    s = eo_pipe_summary(_fixtures())
    row = s[(s["det_name"] == "R22_S11") & (s["amp"] == "C10")][0]
    g_cam = nominal_amps("R22_S11")["C10"].gain
    assert row["ptc_a00"] == pytest.approx(3.0e-6)  # eo_pipe's -a00 is our ptc_a00 sign: unchanged
    assert row["ptc_turnoff"] == pytest.approx(100000.0 * 1.5)  # adu x PTC gain -> e-
    assert row["read_noise"] == pytest.approx(5.0 * 1.5)  # median over exposures, adu x PTC gain -> e-
    assert row["dark_current_95"] == pytest.approx(0.02)  # PTC-gain e-/s on both sides: unchanged
    assert row["serial_cti"] == pytest.approx(2e-7) and row["parallel_cti"] == pytest.approx(1e-7)
    assert row["row_means_variance"] == pytest.approx(1.05)  # integer det_name understood
    ny, nx = E2V.ccd_type.data_shape
    assert row["bright_defect_fraction"] == pytest.approx((10 + 1 * ny) / (nx * ny))
    assert row["total_defect_fraction"] == pytest.approx((10 + ny + 100) / (nx * ny))
    assert row["bias_drift"] == pytest.approx(2.0)  # 0.5 adu/h over 4 h
    notes = s.meta["DEFINITION_NOTES"]
    assert {"bias_drift", "bias_scatter"} <= set(notes)
    for same in ("read_noise", "ptc_a00", "dark_current_95", "ptc_gain", "ptc_turnoff", "row_means_variance"):
        assert same not in notes, same
    # Without a ptc_summary the read noise falls back to the camera-model gains, with a note.
    tables = _fixtures()
    del tables["ptc_summary"]
    s2 = eo_pipe_summary(tables)
    row2 = s2[(s2["det_name"] == "R22_S11") & (s2["amp"] == "C10")][0]
    assert row2["read_noise"] == pytest.approx(5.0 * g_cam) and "read_noise" in s2.meta["DEFINITION_NOTES"]
    itl = s[(s["det_name"] == "R01_S01") & (s["amp"] == "C10")][0]
    assert itl["ptc_turnoff"] == pytest.approx(170000.0) and np.isnan(itl["read_noise"])


def test_missing_columns_wrong_units_and_duplicates_are_named():
    tables = _fixtures()
    tables["ptc_summary"].remove_column("ptc_noise")
    with pytest.raises(EoPipeImportError, match="ptc_summary lacks column.*ptc_noise"):
        eo_pipe_summary(tables)
    tables = _fixtures()
    tables["dark_current_stats"]["dark_current_95"].unit = u.adu
    with pytest.raises(EoPipeImportError, match=r"dark_current_stats\.dark_current_95 is in adu"):
        eo_pipe_summary(tables)
    tables = _fixtures()
    tables["dark_current_stats"]["dark_current_95"].unit = u.electron / u.hour  # convertible
    s = eo_pipe_summary(tables)
    c10 = (s["amp"] == "C10") & (s["det_name"] == "R22_S11")
    assert s["dark_current_95"][c10][0] == pytest.approx(0.02 / 3600)
    tables = _fixtures()
    tables["eo_read_noise"]["read_noise"].unit = u.electron  # apply_gains=True: already e-
    s = eo_pipe_summary(tables)
    assert s["read_noise"][c10][0] == pytest.approx(5.0)
    from astropy.table import vstack

    tables = _fixtures()
    tables["eper_stats"] = vstack([tables["eper_stats"], tables["eper_stats"]])  # two filters
    with pytest.raises(EoPipeImportError, match="eper_stats: several rows for amplifier"):
        eo_pipe_summary(tables)
    tables = _fixtures()
    tables["bf_stats"] = Table({"det_name": ["R22_S11"], "amp_name": ["C99"], "bf_slope_x": [1.0],
                                "bf_slope_y": [1.0]})  # fmt: skip
    with pytest.raises(GeometryMismatchError, match="R22_S11 has no amplifier C99"):
        eo_pipe_summary(tables)


def test_import_command_and_comparison_with_notes(tmp_path):
    src = tmp_path / "eo_pipe"
    src.mkdir()
    for name, table in _fixtures().items():
        if name == "eo_read_noise":
            table.write(src / f"{name}_R22_S11.parquet", format="parquet")
        else:
            table.to_pandas().to_csv(src / f"{name}.csv")  # pandas index column included
    assert set(read_eo_pipe_files(str(src))) == set(_fixtures())
    out = tmp_path / "run5"
    result = CliRunner().invoke(main, ["import-eo-pipe", str(src), "--out", str(out), "--run", "13391"])
    assert result.exit_code == 0, result.output
    assert "bias_drift: definition differs" in result.output
    imported = read_summary_file(str(out) + ".parquet")
    assert imported.meta["SUMMARY_SOURCE"] == "eo_pipe" and imported.meta["ACQUISITION_RUN"] == "13391"
    ours = imported.copy()
    ours.meta = {"SUMMARY_SOURCE": "eo_baseline"}
    ours["ptc_gain"] *= 1.5
    ours["ptc_noise"][0] *= 1.5
    ours["bias_drift"] *= 3.0
    c = compare_runs(
        {"eo_pipe": imported, "ours": ours},
        [METRICS["ptc_gain"], METRICS["ptc_noise"], METRICS["bias_drift"]],
    )
    # ptc_gain is eo_pipe's definition on both sides (ratio-adjusted): a 50% change is flagged everywhere.
    assert len(c["metrics"]["ptc_gain"]["exceeds"]["ours"]) == 32
    assert "ours" not in c["metrics"]["bias_drift"]["changes"] and c["metrics"]["bias_drift"]["notes"]
    assert c["metrics"]["ptc_noise"]["exceeds"]["ours"] == ["R01_S01 C10"]  # row 0: lowest detector id


def test_public_per_ccd_defect_table():
    runs = read_per_ccd_defects(DEFECTS_CSV)
    assert list(runs) == ["13391", "13401", "13505", "13550"]
    raw = Table.read(DEFECTS_CSV, format="ascii.csv")
    first = runs["13391"]
    assert len(first) == 205 and first.meta["LEVEL"] == "detector"
    row = first[first["det_name"] == "R01_S00"][0]
    assert row["bright_pixels"] == 4322 and row["bright_columns"] == 598
    ny, nx = get_camera()["R01_S00"].ccd_type.data_shape
    assert row["bright_defect_fraction"] == pytest.approx((4322 + 598 * ny) / (16 * nx * ny))
    c = compare_runs({"13391": first, "13550": runs["13550"]}, load_metrics())
    dark = c["metrics"]["dark_pixels"]
    change = np.asarray(raw["13550_dark_pixels"], dtype=float) - np.asarray(
        raw["13391_dark_pixels"], dtype=float
    )
    expected = sorted(np.asarray(raw["col0"]).astype(str)[np.abs(change) > 100])
    assert sorted(dark["exceeds"]["13550"]) == expected and 0 < len(expected) < 205
    assert c["metrics"]["total_defect_fraction"]["stats"]["n"].max() > 0


def test_per_ccd_geometry_mismatch_names_the_detector(tmp_path):
    raw = Table.read(DEFECTS_CSV, format="ascii.csv")
    raw["Manufacturer"][raw["col0"] == "R22_S11"] = "ITL"
    raw.write(tmp_path / "bad.csv", format="ascii.csv")
    with pytest.raises(GeometryMismatchError, match="R22_S11: vendor ITL vs E2V"):
        read_per_ccd_defects(str(tmp_path / "bad.csv"))


def test_import_command_on_the_per_ccd_table(tmp_path):
    result = CliRunner().invoke(main, ["import-eo-pipe", DEFECTS_CSV, "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "13391, 13401, 13505, 13550: choose one" in result.output
    out = str(tmp_path / "run13550")
    result = CliRunner().invoke(main, ["import-eo-pipe", DEFECTS_CSV, "--run", "13550", "--out", out])
    assert result.exit_code == 0, result.output
    for path in (out + ".ecsv", out + ".parquet"):
        t = read_summary_file(path)
        assert t.meta["LEVEL"] == "detector" and t.meta["ACQUISITION_RUN"] == "13550"
        assert set(t["amp"]) == {""} and len(t) == 205
        assert t["dark_pixels"][t["det_name"] == "R01_S00"][0] == 159121
