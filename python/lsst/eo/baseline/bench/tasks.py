"""Benchmark of the EO tasks: CPU seconds per CCD-exposure next to the raw-read floor.

Simulates the biases and darks of a B protocol (20 biases; 5 darks at each of 30 s and 180 s, so
that the per-detector tasks see quanta of their production size) and two flat pairs, for one ITL
and one e2v CCD, then for every task measures the CPU time of its ``run`` method on those raws (one
core, no butler: the quantum plumbing is measured separately by the pipetask benchmarks) and
divides by the number of CCD-exposures it consumed.  The *floor* is the CPU time to read and
decompress the same raw files once with `lsst.eo.baseline.rawio.read_raw`; issue targets are at
most 2x the floor per task.

Run as ``python -m lsst.eo.baseline.bench.tasks --out bench/tasks.json``.
"""

from __future__ import annotations

__all__ = ["run_task_benchmark", "summarize_tasks"]

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
import tracemalloc
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
from . import write_figures, write_plan

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
  - {name: bias, imgtype: BIAS, testtype: BIAS, count: 20}
  - {name: dark, imgtype: DARK, testtype: DARK, exptime: [30.0, 180.0], count: 5}
  - {name: ptc, imgtype: FLAT, testtype: PTC, pairs: true, flux: 8000.0, signal: [2000.0, 50000.0]}
"""


def _cpu() -> float:
    return time.process_time()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = _cpu()
    result = fn()
    return _cpu() - start, result


def _in_child(fn: Callable[[], Any], trace: bool = False) -> float:
    """Run ``fn`` in a forked child: its CPU seconds, or with ``trace`` its peak allocation (MiB).

    The peak is the largest amount of memory the task held at once (Python objects and numpy
    arrays, which report to `tracemalloc`), measured in a separate run because tracing slows
    Python code down; a forked child starts clean of the benchmark's own allocations.
    """
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def target() -> None:
        if trace:
            tracemalloc.start()
            fn()
            sender.send(tracemalloc.get_traced_memory()[1] / 1024.0**2)
        else:
            sender.send(_timed(fn)[0])

    proc = ctx.Process(target=target)
    proc.start()
    value = receiver.recv()
    proc.join()
    return value


def _time_tasks(handles: dict[str, list[RawFileHandle]], det: Any) -> list[tuple[str, float, int, float]]:
    """CPU seconds and peak RSS of every task on one detector's biases, darks and flats."""
    b, d, f = handles["b"], handles["d"], handles["f"]
    bias = EoBiasTask().run(b, det).bias
    runs = {
        "eoBias": (lambda: EoBiasTask().run(b, det), len(b)),
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
    out = []
    for name, (fn, n) in runs.items():
        out.append((name, _in_child(fn), n, _in_child(fn, trace=True)))
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
        plan = write_plan(out, "bench_plan.yaml", _PLAN)
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
        peak_mb: dict[str, float] = {}
        floor: list[float] = []
        for det_name in detectors.split(","):
            det = get_camera()[det_name]
            biases, darks, flats = files(det_name, "BIAS"), files(det_name, "DARK"), files(det_name, "FLAT")
            for path in biases + darks + flats:
                floor.append(_timed(lambda p=path: read_raw(p))[0])
            handles = {
                k: [RawFileHandle(p) for p in v] for k, v in (("b", biases), ("d", darks), ("f", flats))
            }
            for name, seconds, n, rss in _time_tasks(handles, det):
                per_task.setdefault(name, []).append((seconds, n))
                peak_mb[name] = max(peak_mb.get(name, 0.0), rss)
    return summarize_tasks(per_task, peak_mb, sum(floor) / len(floor), detectors)


def summarize_tasks(
    per_task: dict[str, list[tuple[float, int]]], peak_mb: dict[str, float], floor_s: float, detectors: str
) -> dict[str, Any]:
    """Benchmark figures of a set of tasks from their measurements.

    Parameters
    ----------
    per_task : `dict` [`str`, `list` [`tuple` [`float`, `int`]]]
        Per task, (CPU seconds, CCD-exposures consumed) of every measured run.
    peak_mb : `dict` [`str`, `float`]
        Per task, the largest peak allocation (MiB) of its runs.
    floor_s : `float`
        Read floor, CPU seconds per CCD-exposure.
    detectors : `str`
        Detectors the runs used.

    Returns
    -------
    figures : `dict`
        The floor, and per task: CPU seconds per CCD-exposure, ratio to the floor, target ratio,
        whether it meets it, peak allocation.
    """
    tasks = {}
    for name, values in per_task.items():
        per_exposure = sum(t for t, _ in values) / sum(n for _, n in values)
        target = TARGET_RATIOS.get(name, TARGET_RATIO)
        tasks[name] = {
            "cpu_s_per_ccd_exposure": round(per_exposure, 4),
            "ratio_to_floor": round(per_exposure / floor_s, 3),
            "target_ratio": target,
            "meets_target": per_exposure / floor_s <= target,
            "peak_alloc_mb": round(peak_mb[name], 1),
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
    write_figures(figures, args.out)


if __name__ == "__main__":
    main()
