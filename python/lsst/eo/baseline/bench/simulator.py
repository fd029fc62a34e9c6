"""Benchmark of the raw-data simulator: one full CCD exposure simulated and written, on one core.

Run as ``python -m lsst.eo.baseline.bench.simulator --out bench/simulator.json``.  For one ITL and
one e2v detector it times a bias, a mid-level flat (5e4 e-) and a high flat (1e5 e-, near full
well) of the short B protocol: simulation of the 16 amplifiers, then header building and
Rice-compressed writing with `lsst.eo.baseline.rawio.write_raw`.  The fixed per-amplifier patterns
(response map, spectra), computed once per detector and cached by each worker, are timed separately.
"""

from __future__ import annotations

__all__ = ["run_simulator_benchmark"]

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

from ..rawio import write_raw
from ..simulator.headers import primary_header, segment_headers
from ..simulator.run import SIMULATOR_VERSION, Simulation, simulate_ccd_arrays
from . import write_figures

_CASES = (("bias", 0), ("flat_5e4", 13), ("flat_1e5", 9))
_DETECTORS = (("ITL", "R01_S01"), ("E2V", "R22_S11"))
TARGET_SECONDS = 2.0
"""Issue target: one full CCD exposure simulated and written in under 2 s on one core."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_simulator_benchmark(repeats: int = 2, seed: int = 1) -> dict[str, Any]:
    """Time full-CCD simulation + writing; return the figures.

    Parameters
    ----------
    repeats : `int`, optional
        Timed repetitions of each case (the best and the mean are reported).
    seed : `int`, optional
        Simulation seed.

    Returns
    -------
    figures : `dict`
        ``cases`` (per vendor and exposure kind: simulate, write and total seconds, pixels/s, file
        size), ``setup_seconds`` per detector (fixed patterns), ``mean_total_seconds``,
        ``max_total_seconds``, ``peak_rss_mb``, ``target_seconds``, ``meets_target``, environment.
    """
    sim = Simulation("b_protocol_short", ",".join(d for _, d in _DETECTORS), seed=seed)
    cases: list[dict[str, Any]] = []
    setup: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for vendor, det_name in _DETECTORS:
            truth = sim.detector_truth(det_name)
            det = truth.detector
            states = sim.states(det_name)
            start = time.perf_counter()
            simulate_ccd_arrays(truth, sim.exposures[0], states[0])  # builds the fixed-pattern cache
            setup[det_name] = time.perf_counter() - start
            for kind, index in _CASES:
                exposure = sim.exposures[index]
                runs = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    arrays = simulate_ccd_arrays(truth, exposure, states[index])
                    t1 = time.perf_counter()
                    header = primary_header(
                        det, exposure, sim.exposure_truths[index], sim.run, truth.lsst_num
                    )
                    path = os.path.join(tmp, f"{exposure.obs_id}_{det_name}.fits")
                    segs = segment_headers(det.ccd_type)
                    write_raw(
                        path,
                        header,
                        (
                            (a.extname, arrays[a.name], h)
                            for a, h in zip(det.ccd_type.amps, segs, strict=True)
                        ),
                    )
                    t2 = time.perf_counter()
                    runs.append((t1 - t0, t2 - t1, t2 - t0))
                    size = os.path.getsize(path)
                    del arrays
                n_pix = len(det.ccd_type.amps) * det.ccd_type.raw_shape[0] * det.ccd_type.raw_shape[1]
                best = min(runs, key=lambda r: r[2])
                mean_total = statistics.fmean(r[2] for r in runs)
                cases.append(
                    {
                        "vendor": vendor,
                        "detector": det_name,
                        "exposure": kind,
                        "simulate_seconds": round(best[0], 4),
                        "write_seconds": round(best[1], 4),
                        "total_seconds": round(best[2], 4),
                        "mean_total_seconds": round(mean_total, 4),
                        "pixels_per_second": round(n_pix / best[2]),
                        "file_megabytes": round(size / 2**20, 2),
                    }
                )
    totals = [c["mean_total_seconds"] for c in cases]
    return {
        "benchmark": "simulator",
        "description": "one full CCD exposure (16 amps, 576x2048 int32) simulated and written, Rice",
        "simulator_version": SIMULATOR_VERSION,
        "cases": cases,
        "setup_seconds": {k: round(v, 3) for k, v in setup.items()},
        "mean_total_seconds": round(statistics.fmean(totals), 4),
        "max_total_seconds": round(max(totals), 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "target_seconds": TARGET_SECONDS,
        "meets_target": max(totals) < TARGET_SECONDS,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/simulator.json", help="JSON output file.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed repetitions per case.")
    args = parser.parse_args(argv)
    figures = run_simulator_benchmark(repeats=args.repeats)
    write_figures(figures, args.out, echo=False)
    for c in figures["cases"]:
        print(
            f"{c['vendor']:4s} {c['exposure']:9s} simulate {c['simulate_seconds']:.3f} s  "
            f"write {c['write_seconds']:.3f} s  total {c['total_seconds']:.3f} s"
        )
    print(
        f"mean {figures['mean_total_seconds']:.3f} s per CCD exposure, peak RSS {figures['peak_rss_mb']} MB"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
