"""Pipetask overhead with quanta of production size: the B-protocol bias tasks, 20 biases per CCD.

The full-focal-plane run (`lsst.eo.baseline.bench.scale`) holds one bias per detector, so its
bias-step quanta last a fraction of a second and the fixed cost of each quantum (writing its
metadata and log datasets) is a large part of them.  This benchmark measures the same step as a
camera run gives it: the 20 biases of ``config/plans/b_protocol.yaml`` for every CCD of one raft,
simulated, ingested into a new SQLite repository and processed by one ``pipetask run -j 1`` (eoBias,
eoReadNoise, eoBiasStability and its plots).  The overhead is the wall time of the ``pipetask run``
minus the summed wall time of its quanta, start-up and graph building included, over the latter;
the issue target is under 10%.

Run as ``python -m lsst.eo.baseline.bench.quanta --out bench/quanta.json`` (``make bench`` includes
it); it takes about 6 minutes on two cores.
"""

from __future__ import annotations

__all__ = ["run_quanta_benchmark"]

import argparse
import tempfile
from typing import Any

from . import write_figures
from .scale import BIAS_TASKS, OVERHEAD_TARGET, run_pipetask_step, simulate_and_ingest

BIASES = 20
"""Biases per detector in a B protocol (``config/plans/b_protocol.yaml``)."""

_PLAN = f"""
name: production_quanta
description: the biases of a B protocol
start: "2026-03-03T20:00:00"
first_seqnum: 1
timing: {{readout: 2.0, overhead: 0.6, dark_overhead: 0.092, flat_overhead: 0.5}}
defaults: {{filter: NONE, led: red}}
blocks:
  - {{name: bias, imgtype: BIAS, testtype: BIAS, count: {BIASES}}}
"""


def run_quanta_benchmark(
    work_dir: str | None = None, detectors: str = "R22", jobs: int = 2
) -> dict[str, Any]:
    """Measure the pipetask overhead of the bias step on production-size quanta.

    Parameters
    ----------
    work_dir : `str`, optional
        Where to put raws and repository (a temporary directory by default).
    detectors : `str`
        Detector selection (default: the nine CCDs of raft R22).
    jobs : `int`
        Simulator worker processes.

    Returns
    -------
    figures : `dict`
        Detectors, biases per detector, the step's figures
        (`~lsst.eo.baseline.bench.scale.run_pipetask_step`) and whether the overhead meets the
        target.
    """
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate_and_ingest(work_dir or tmp, "quanta_plan.yaml", _PLAN, detectors, "13800", 11, jobs)
        step = run_pipetask_step(sim.repo, "u/quanta/bias", BIAS_TASKS, "exposure.observation_type = 'bias'")
    return {
        "detectors": sim.detectors,
        "biases_per_detector": BIASES,
        "step": step,
        "overhead_target": OVERHEAD_TARGET,
        "meets_overhead_target": step["pipetask_overhead_fraction"] < OVERHEAD_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/quanta.json", help="JSON output file.")
    parser.add_argument("--work-dir", default=None, help="Keep raws and repository here.")
    parser.add_argument("--detectors", default="R22", help="Detector selection (default raft R22).")
    args = parser.parse_args()
    write_figures(run_quanta_benchmark(args.work_dir, detectors=args.detectors), args.out)


if __name__ == "__main__":
    main()
