"""Benchmark of the EO tasks: CPU seconds per CCD-exposure next to the raw-read floor.

Simulates a small run (biases, darks, flats) for one ITL and one e2v CCD, then for every task
measures the CPU time of its ``run`` method on those raws (one core, no butler: the quantum
plumbing is measured separately by the pipetask benchmarks) and divides by the number of
CCD-exposures it consumed.  The *floor* is the CPU time to read and decompress the same raw files
once with `lsst.eo.baseline.rawio.read_raw`; issue targets are at most 2x the floor per task.

Run as ``python -m lsst.eo.baseline.bench.tasks --out bench/tasks.json``.
"""

from __future__ import annotations

__all__ = ["run_task_benchmark"]

import argparse
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ..ampStream import RawFileHandle
from ..biasStability import EoBiasStabilityTask
from ..calibCombine import EoBiasTask, EoDarkTask
from ..camera import get_camera
from ..cti import EoCtiTask
from ..overscan import EoOverscanTask
from ..ptcExtract import EoPtcExtractTask
from ..rawio import read_raw
from ..readNoise import EoReadNoiseTask
from ..simulator import load_truth, simulate

TARGET_RATIO = 2.0
"""Issue target: each per-exposure task at most 2x the read floor..."""
TARGET_RATIOS = {"eoPtcExtract": 3.0}
"""...except the pair extraction, at most 3x the floor of its two raws."""

_PLAN = """
name: bench_tasks
description: benchmark set
start: "2026-03-01T20:00:00"
first_seqnum: 1
timing: {readout: 2.0, overhead: 0.6, dark_overhead: 0.092, flat_overhead: 0.5}
defaults: {filter: NONE, led: red}
blocks:
  - {name: bias, imgtype: BIAS, testtype: BIAS, count: 6}
  - {name: dark, imgtype: DARK, testtype: DARK, exptime: 120.0, count: 3}
  - {name: ptc, imgtype: FLAT, testtype: PTC, pairs: true, flux: 8000.0, signal: [2000.0, 50000.0]}
"""


def _cpu() -> float:
    return time.process_time()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = _cpu()
    result = fn()
    return _cpu() - start, result


def _time_tasks(handles: dict[str, list[RawFileHandle]], det: Any) -> list[tuple[str, float, int]]:
    """CPU seconds of every task on one detector's biases ("b"), darks ("d") and flats ("f")."""
    b, d, f = handles["b"], handles["d"], handles["f"]
    t, bias = _timed(lambda: EoBiasTask().run(b, det).bias)
    out = [("eoBias", t, len(b))]
    runs = {
        "eoOverscan": (lambda: [EoOverscanTask().run(h.get()) for h in b], len(b)),
        "eoReadNoise": (lambda: EoReadNoiseTask().run(b, det), len(b)),
        "eoBiasStability": (lambda: EoBiasStabilityTask().run(b, det), len(b)),
        "eoDark": (lambda: EoDarkTask().run(d, det, bias=bias), len(d)),
        "eoCti": (lambda: EoCtiTask().run(f, det, bias=bias), len(f)),
        "eoPtcExtract": (
            lambda: [EoPtcExtractTask().run(f[i : i + 2], det) for i in range(0, len(f) - 1, 2)],
            len(f),
        ),
    }
    for name, (fn, n) in runs.items():
        out.append((name, _timed(fn)[0], n))
    return out


def run_task_benchmark(work_dir: str | None = None, detectors: str = "R22_S11,R01_S01") -> dict[str, Any]:
    """Measure every bias/dark/flat task against the read floor.

    Parameters
    ----------
    work_dir : `str`, optional
        Where to simulate the raws (a temporary directory by default).
    detectors : `str`
        Detectors to use.

    Returns
    -------
    figures : `dict`
        ``floor_cpu_s_per_ccd_exposure``, and per task: CPU seconds per CCD-exposure, ratio to the
        floor, whether it meets the target.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = work_dir or tmp
        plan = os.path.join(out, "bench_plan.yaml")
        os.makedirs(out, exist_ok=True)
        with open(plan, "w") as f:
            f.write(_PLAN)
        raw_dir = os.path.join(out, "raws")
        simulate(plan, detectors, raw_dir, run="13600", seed=3, jobs=1)
        truth = load_truth(raw_dir)

        def files(det_name: str, imgtype: str) -> list[str]:
            ids = {int(e) for e in truth.exposures[truth.exposures["imgtype"] == imgtype]["exposure_id"]}
            rows = [r for r in truth.files if r["det_name"] == det_name and int(r["exposure_id"]) in ids]
            return [
                os.path.join(raw_dir, r["path"]) for r in sorted(rows, key=lambda r: int(r["exposure_id"]))
            ]

        per_task: dict[str, list[tuple[float, int]]] = {}
        floor: list[float] = []
        for det_name in detectors.split(","):
            det = get_camera()[det_name]
            biases, darks, flats = files(det_name, "BIAS"), files(det_name, "DARK"), files(det_name, "FLAT")
            for path in biases + darks + flats:
                floor.append(_timed(lambda p=path: read_raw(p))[0])
            handles = {
                k: [RawFileHandle(p) for p in v] for k, v in (("b", biases), ("d", darks), ("f", flats))
            }
            for name, seconds, n in _time_tasks(handles, det):
                per_task.setdefault(name, []).append((seconds, n))
    floor_s = sum(floor) / len(floor)
    tasks = {}
    for name, values in per_task.items():
        per_exposure = sum(t for t, _ in values) / sum(n for _, n in values)
        tasks[name] = {
            "cpu_s_per_ccd_exposure": round(per_exposure, 4),
            "ratio_to_floor": round(per_exposure / floor_s, 3),
            "target_ratio": TARGET_RATIOS.get(name, TARGET_RATIO),
            "meets_target": per_exposure / floor_s <= TARGET_RATIOS.get(name, TARGET_RATIO),
        }
    return {
        "floor_cpu_s_per_ccd_exposure": round(floor_s, 4),
        "target_ratio": TARGET_RATIO,
        "tasks": tasks,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "detectors": detectors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/tasks.json", help="JSON output file.")
    args = parser.parse_args()
    figures = run_task_benchmark()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
