"""``python -m lsst.eo.baseline.bench``: run every benchmark and write one JSON file (``make bench``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from .projection import project_full_run
from .quanta import run_quanta_benchmark
from .scale import run_scale_benchmark
from .simulator import run_simulator_benchmark
from .stability import run_stability_benchmark
from .tasks import run_task_benchmark


def main() -> None:
    """Run the simulator and task benchmarks and write their figures to one JSON file."""
    parser = argparse.ArgumentParser(description="Run the eo_baseline benchmarks.")
    parser.add_argument("--out", default="bench/results.json", help="JSON output file.")
    parser.add_argument(
        "--scale-from",
        default=None,
        help="Take the full-focal-plane figures from this JSON file (bench.scale --out) instead of "
        "re-running the ~20 minute scale run.",
    )
    args = parser.parse_args()
    started = time.time()
    results = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    if args.scale_from:
        with open(args.scale_from) as f:
            results["full_focal_plane"] = json.load(f)
    else:
        # First, while this process is small: a child's peak-RSS figure (ru_maxrss, which the
        # quantum metadata records) starts from the resident size of the process that started it,
        # and the task benchmarks below leave this one holding over a GB.
        results["full_focal_plane"] = run_scale_benchmark()
    results["production_quanta"] = run_quanta_benchmark()
    results["simulator"] = run_simulator_benchmark()
    results["tasks"] = run_task_benchmark()
    results["stability_tasks"] = run_stability_benchmark()
    results["projection"] = project_full_run(
        results["tasks"], results["stability_tasks"], results["full_focal_plane"]
    )
    results["wall_seconds"] = round(time.time() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Benchmark results written to {args.out}")


if __name__ == "__main__":
    main()
