"""Combined flat, divisadero tearing and dark defects recover the simulator's truth (issue 5)."""

import os

import numpy as np
import pytest

from lsst.eo.baseline.ampStream import RawFileHandle
from lsst.eo.baseline.calibCombine import EoBiasTask, EoFlatTask
from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.defects import EoDarkDefectsTask
from lsst.eo.baseline.divisadero import EoDivisaderoTask
from lsst.eo.baseline.simulator import load_truth, simulate

PLAN = os.path.join(os.path.dirname(__file__), "data", "plans", "flat_field.yaml")
DETECTORS = ("R01_S01", "R22_S11")


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("flat_field"))
    simulate(PLAN, ",".join(DETECTORS), out, run="13600", seed=31, jobs=2)
    truth = load_truth(out)
    result = {"truth": truth}
    for name in DETECTORS:
        det = get_camera()[name]

        def handles(imgtype, name=name):
            ids = {int(e) for e in truth.exposures[truth.exposures["imgtype"] == imgtype]["exposure_id"]}
            rows = sorted((int(r["exposure_id"]), r["path"]) for r in truth.files
                          if r["det_name"] == name and int(r["exposure_id"]) in ids)  # fmt: skip
            return [RawFileHandle(os.path.join(out, p)) for _, p in rows]

        bias = EoBiasTask().run(handles("BIAS"), det).bias
        flat = EoFlatTask().run(handles("FLAT"), det, bias=bias).flat
        result[name] = {
            "flat": flat,
            "tearing": {r["amp"]: r for r in EoDivisaderoTask().run(flat, det).tearing},
            "dark": EoDarkDefectsTask().run(flat, det),
        }
    return result


def test_flat_is_normalised(products):
    flat = products["R01_S01"]["flat"]
    assert flat.image.array.shape == (4000, 4072)
    # Amplifiers keep their gain ratios (~3%), so the level is 1 within a few percent.
    assert np.median(flat.image.array) == pytest.approx(1.0, abs=0.05)
    assert flat.metadata["NINPUTS"] == 6


def test_divisadero_itl(products):
    truth = products["truth"]
    for amp, row in products["R01_S01"]["tearing"].items():
        expected = truth.amp("R01_S01", amp).divisadero_tearing
        # Column means over 200 rows of a 6-flat stack: noise ~0.6% / sqrt(200) = 0.04% per column;
        # the max over 6 columns of noise alone reaches ~0.1%.
        assert row["divisadero_tearing"] == pytest.approx(expected, abs=0.002), amp


def test_no_divisadero_e2v(products):
    for amp, row in products["R22_S11"]["tearing"].items():
        assert row["divisadero_tearing"] < 0.002, amp


@pytest.mark.parametrize("det_name", DETECTORS)
def test_dark_defects_found(products, det_name):
    defects = products["truth"].defects(det_name)
    injected = set()
    columns = {}
    for d in defects:
        if d["kind"] not in ("dark_pixel", "dark_column"):
            continue
        pixels = {(int(d["x_det"]), y) for y in range(int(d["y0_det"]), int(d["y1_det"]) + 1)}
        injected |= pixels
        if d["kind"] == "dark_column":
            columns[(str(d["amp"]), int(d["x_det"]))] = len(pixels)
    assert injected
    found = set()
    for b in products[det_name]["dark"].defects:
        found.update((int(b["x0"]), y) for y in range(int(b["y0"]), int(b["y0"]) + int(b["height"])))
    recovered = len(injected & found) / len(injected)
    false = len(found - injected) / len(injected)
    assert recovered >= 0.99, recovered
    assert false <= 0.01, false
    counts = {r["amp"]: r["dark_columns"] for r in products[det_name]["dark"].counts}
    for layout in get_camera()[det_name].ccd_type.amps:
        expected = sum(1 for (amp, _), n in columns.items() if amp == layout.name and n > 100)
        assert counts[layout.name] == expected, layout.name
