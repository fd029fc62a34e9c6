"""Benchmark of the gain-stability, wavelength-flat and persistence tasks against the read floor.

Simulates a small run (biases and darks for the combined calibrations, stability flats, wavelength
flats through two LEDs, a persistence sequence) for one ITL and one e2v CCD, then measures the CPU
time of each task's ``run`` in its default configuration (one core, no butler; the calibrations
are passed, and used where the configuration asks for them) per CCD-exposure it consumed, next to
the CPU time of reading and decompressing the same raws once
(`lsst.eo.baseline.rawio.read_raw`).  Issue target: at most 2x the floor.

Run as ``python -m lsst.eo.baseline.bench.stability --out bench/stability.json``.
"""

from __future__ import annotations

__all__ = ["run_stability_benchmark"]

import argparse
import functools
import os
import tempfile
from typing import Any

from ..ampStream import RawFileHandle
from ..calibCombine import EoBiasTask, EoDarkTask
from ..camera import get_camera
from ..gainStability import EoGainStabilityTask
from ..persistence import EoPersistenceTask
from ..rawio import read_raw
from ..simulator import load_truth, simulate
from ..wavelengthFlats import EoWavelengthFlatsTask
from . import write_figures, write_plan
from .tasks import _in_child, _timed, summarize_tasks

_PLAN = """
name: bench_stability
description: stability-family benchmark set
start: "2026-03-02T20:00:00"
first_seqnum: 1
timing: {readout: 2.0, overhead: 0.6, dark_overhead: 0.092, flat_overhead: 0.5}
defaults: {filter: NONE, led: red}
blocks:
  - {name: bias, imgtype: BIAS, testtype: BIAS, count: 3}
  - {name: dark, imgtype: DARK, testtype: DARK, exptime: 60.0, count: 2}
  - {name: gs, imgtype: FLAT, testtype: GAIN_STABILITY, flux: 5000.0, exptime: 10.0, count: 6}
  - name: lambda
    imgtype: FLAT
    testtype: LAMBDA
    exptime: 10.0
    count: 2
    leds: [{led: uv, flux: 5000.0}, {led: nm960, flux: 7500.0}]
  - {name: pflat, imgtype: FLAT, testtype: PERSISTENCE, flux: 50000.0, exptime: 20.0}
  - {name: pdark, imgtype: DARK, testtype: PERSISTENCE, exptime: 15.0, count: 6}
"""


def run_stability_benchmark(
    work_dir: str | None = None, detectors: str = "R22_S11,R01_S01"
) -> dict[str, Any]:
    """Measure the three tasks of the stability family against the read floor.

    Parameters
    ----------
    work_dir : `str`, optional
        Where to simulate the raws (a temporary directory by default).
    detectors : `str`
        Detectors to use.

    Returns
    -------
    figures : `dict`
        ``floor_cpu_s_per_ccd_exposure`` and, per task, CPU seconds per CCD-exposure, ratio to the
        floor and whether it meets the target.
    """
    per_task: dict[str, list[tuple[float, int]]] = {}
    peak_mb: dict[str, float] = {}
    floor: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = work_dir or tmp
        plan = write_plan(out, "bench_stability_plan.yaml", _PLAN)
        raw_dir = os.path.join(out, "raws")
        simulate(plan, detectors, raw_dir, run="13600", seed=3, jobs=1)
        truth = load_truth(raw_dir)

        def handles(det_name: str, testtype: str) -> list[RawFileHandle]:
            ids = {int(e) for e in truth.exposures[truth.exposures["testtype"] == testtype]["exposure_id"]}
            rows = [r for r in truth.files if r["det_name"] == det_name and int(r["exposure_id"]) in ids]
            rows.sort(key=lambda r: int(r["exposure_id"]))
            return [RawFileHandle(os.path.join(raw_dir, r["path"])) for r in rows]

        for det_name in detectors.split(","):
            det = get_camera()[det_name]
            sets = {
                t: handles(det_name, t) for t in ("BIAS", "DARK", "GAIN_STABILITY", "LAMBDA", "PERSISTENCE")
            }
            for h in sets["GAIN_STABILITY"] + sets["LAMBDA"] + sets["PERSISTENCE"]:
                floor.append(_timed(lambda p=h.path: read_raw(p))[0])
            bias = EoBiasTask().run(sets["BIAS"], det).bias
            dark = EoDarkTask().run(sets["DARK"], det, bias=bias).dark
            tasks = (
                ("eoGainStability", EoGainStabilityTask(), "GAIN_STABILITY"),
                ("eoWavelengthFlats", EoWavelengthFlatsTask(), "LAMBDA"),
                ("eoPersistence", EoPersistenceTask(), "PERSISTENCE"),
            )
            for name, task, testtype in tasks:
                inputs = sets[testtype]
                job = functools.partial(task.run, inputs, det, bias=bias, dark=dark)
                seconds, rss = _in_child(job), _in_child(job, trace=True)
                per_task.setdefault(name, []).append((seconds, len(inputs)))
                peak_mb[name] = max(peak_mb.get(name, 0.0), rss)
    return summarize_tasks(per_task, peak_mb, sum(floor) / len(floor), detectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/stability.json", help="JSON output file.")
    args = parser.parse_args()
    figures = run_stability_benchmark()
    write_figures(figures, args.out)


if __name__ == "__main__":
    main()
