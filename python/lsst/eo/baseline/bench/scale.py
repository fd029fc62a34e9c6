"""Full-focal-plane scale run: every one of the 205 LSSTCam detectors through ingest and processing.

Simulates one bias and one flat pair for all 189 science CCDs and the 16 corner-raft sensors
(guiders and wavefront half-CCDs), ingests them into a new SQLite repository on one core, and runs
the bias tasks (eoReadNoise, eoBiasStability, its plots; eoBias, which needs three biases, is left
out of the graph when it is built) and the PTC pair extraction (eoPtcExtract) on every detector with
one ``pipetask run -j 1`` each.  A combined bias per detector is not written here: at 195 MB each
(image, variance and mask planes), 205 of them (40 GB) exceed the benchmark machine's free disk.  It
proves that nothing assumes a handful of detectors and measures, from the task metadata every
quantum writes:

* the peak resident set size.  With ``-j 1`` all quanta share one process, so the process peak
  after each quantum bounds that quantum's peak from above; the issue's limit is 2 GiB;
* the pipetask overhead per quantum: wall time of the ``pipetask run`` minus the summed wall time
  of the quanta themselves (graph building, butler reads and writes outside ``runQuantum``, process
  start), as a fraction of the quantum time;
* ingest files per second on one core and simulator seconds per CCD-exposure.

Run as ``python -m lsst.eo.baseline.bench.scale --out bench/scale.json`` (``make bench`` includes
it); it takes about 20 minutes on two cores.
"""

from __future__ import annotations

__all__ = ["SimulatedRepo", "run_pipetask_step", "run_scale_benchmark", "simulate_and_ingest"]

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lsst.daf.butler import Butler

from ..camera import get_camera
from ..ingest import ingest_raws
from ..paths import pipelines_dir
from ..repo import create_repo
from ..simulator.run import Simulation
from . import write_figures, write_plan

RSS_LIMIT_BYTES = 2 * 1024**3
"""Issue limit on the peak memory of one quantum."""
OVERHEAD_TARGET = 0.10
"""Issue target: pipetask overhead under 10% of the quantum time."""

_PLAN = """
name: scale
description: full focal plane, one bias and one flat pair
start: "2026-03-01T20:00:00"
first_seqnum: 1
timing: {readout: 2.0, overhead: 0.6, dark_overhead: 0.092, flat_overhead: 0.5}
defaults: {filter: NONE, led: red}
blocks:
  - {name: bias, imgtype: BIAS, testtype: BIAS, count: 1}
  - {name: ptc, imgtype: FLAT, testtype: PTC, pairs: true, flux: 8000.0, signal: [20000.0]}
"""

# The bias-exposure tasks (the bias step and the read noise, which a run does after the PTC;
# here without a PTC, so with camera-model gains).
BIAS_TASKS = "bProtocol.yaml#eoBias,eoReadNoise,eoBiasStability,eoBiasStabilityPlots"

# (name, pipeline, where) of the processing steps of the scale run.
_STEPS = (
    ("bias", BIAS_TASKS, "exposure.observation_type = 'bias'"),
    ("ptcExtract", "bProtocol.yaml#eoPtcExtract", "exposure.observation_type = 'flat'"),
)


def _quanta(butler: Butler, collection: str) -> list[dict[str, Any]]:
    """Wall time and process peak RSS of every quantum of a run, from its ``*_metadata`` datasets."""
    rows = []
    for dataset_type in butler.registry.queryDatasetTypes("*_metadata"):
        for ref in butler.query_datasets(dataset_type, collections=collection, limit=None, explain=False):
            quantum = butler.get(ref)["quantum"]
            wall = (
                datetime.fromisoformat(quantum["endUtc"]) - datetime.fromisoformat(quantum["prepUtc"])
            ).total_seconds()
            rows.append(
                {
                    "task": dataset_type.name.removesuffix("_metadata"),
                    "wall_s": wall,
                    "cpu_s": quantum["endCpuTime"] - quantum["prepCpuTime"],
                    "rss_bytes": quantum["endMaxResidentSetSize"],
                }
            )
    return rows


@dataclass(frozen=True)
class SimulatedRepo:
    """A repository of freshly simulated and ingested raws (`simulate_and_ingest`)."""

    repo: str
    """Butler repository path."""
    files: int
    """Raw files simulated and ingested."""
    detectors: int
    """Detectors with raws in the repository."""
    simulate_s: float
    """Wall seconds of the simulation."""
    ingest_s: float
    """Wall seconds of the ingest (one core)."""


def simulate_and_ingest(
    top: str, plan_name: str, plan: str, detectors: str, run: str, seed: int, jobs: int
) -> SimulatedRepo:
    """Simulate a plan's raws under ``top/raws`` and ingest them into a new ``top/repo``.

    Parameters
    ----------
    top : `str`
        Working directory (created).
    plan_name, plan : `str`
        File name and text of the simulator plan.
    detectors : `str`
        Detector selection.
    run : `str`
        Run number written in the headers.
    seed : `int`
        Simulator seed.
    jobs : `int`
        Simulator worker processes (ingest runs on one core).

    Returns
    -------
    result : `SimulatedRepo`
        The repository, counts and timings.

    Raises
    ------
    RuntimeError
        If any file fails to ingest.
    """
    raws = os.path.join(top, "raws")
    simulation = Simulation(write_plan(top, plan_name, plan), detectors, run=run, seed=seed)
    start = time.time()
    paths = simulation.run_all(raws, jobs=jobs)
    simulate_s = time.time() - start
    repo = os.path.join(top, "repo")
    butler = create_repo(repo)
    start = time.time()
    report = ingest_raws(butler, [raws], jobs=1, progress=False)
    ingest_s = time.time() - start
    if not report.ok:
        raise RuntimeError(f"Ingest of the simulated raws failed: {report.summary()}")
    refs = butler.query_datasets("raw", collections="LSSTCam/raw/all", limit=None, explain=False)
    n_detectors = len({ref.dataId["detector"] for ref in refs})
    return SimulatedRepo(repo, len(paths), n_detectors, simulate_s, ingest_s)


def run_pipetask_step(repo: str, output: str, pipeline: str, where: str) -> dict[str, Any]:
    """Run one pipeline step with ``pipetask run -j 1`` and measure it from its quanta's metadata.

    Parameters
    ----------
    repo : `str`
        Butler repository with ingested raws (``LSSTCam/raw/all``).
    output : `str`
        Output collection.
    pipeline : `str`
        Pipeline file (and ``#subset``) under ``pipelines/``.
    where : `str`
        Data query added to ``instrument = 'LSSTCam'``.

    Returns
    -------
    figures : `dict`
        Quanta (in all and per task), wall time of the ``pipetask run``, summed wall time of the
        quanta, overhead (the difference) as a fraction of the latter and per quantum, peak RSS.
    """
    bin_dir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bin_dir, "pipetask"), "run", "--register-dataset-types", "-b", repo,
           "-i", "LSSTCam/raw/all", "-o", output, "-p", pipelines_dir(pipeline),
           "-d", f"instrument = 'LSSTCam' AND {where}", "-j", "1"]  # fmt: skip
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"Step {pipeline} failed:\n{proc.stderr[-3000:]}")
    quanta = _quanta(Butler.from_config(repo), output)
    quantum_wall = sum(q["wall_s"] for q in quanta)
    per_task: dict[str, int] = {}
    for q in quanta:
        per_task[q["task"]] = per_task.get(q["task"], 0) + 1
    peak = max(q["rss_bytes"] for q in quanta)
    return {
        "quanta": len(quanta),
        "quanta_per_task": per_task,
        "pipetask_wall_s": round(wall, 1),
        "quantum_wall_s": round(quantum_wall, 1),
        "pipetask_overhead_fraction": round((wall - quantum_wall) / quantum_wall, 3),
        "overhead_s_per_quantum": round((wall - quantum_wall) / len(quanta), 3),
        "peak_rss_mb": round(peak / 1024**2, 1),
        "meets_rss_limit": bool(peak < RSS_LIMIT_BYTES),
    }


def run_scale_benchmark(work_dir: str | None = None, jobs: int = 2, detectors: str = "all") -> dict[str, Any]:
    """Simulate, ingest and process one bias and one flat pair on all 205 detectors.

    Parameters
    ----------
    work_dir : `str`, optional
        Where to put raws and repository (a temporary directory by default).
    jobs : `int`
        Simulator worker processes (ingest and pipetask run on one core).
    detectors : `str`
        Detector selection (``all``: the 205 detectors; smaller ones for a quick check).

    Returns
    -------
    figures : `dict`
        Detector and file counts, simulator and ingest rates, and per step: quanta, datasets,
        wall time, peak RSS, pipetask overhead; ``meets_rss_limit``.
    """
    camera = get_camera()
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate_and_ingest(work_dir or tmp, "scale_plan.yaml", _PLAN, detectors, "13700", 7, jobs)
        steps: dict[str, Any] = {}
        for name, pipeline, where in _STEPS:
            steps[name] = run_pipetask_step(sim.repo, f"u/scale/{name}", pipeline, where)
    return {
        "detectors_in_camera": len(list(camera)),
        "detectors_processed": sim.detectors,
        "raw_files": sim.files,
        "simulator_s_per_ccd_exposure": round(sim.simulate_s * jobs / sim.files, 3),
        "simulator_jobs": jobs,
        "ingest_files_per_s_one_core": round(sim.files / sim.ingest_s, 1),
        "steps": steps,
        "rss_limit_mb": RSS_LIMIT_BYTES / 1024**2,
        "meets_rss_limit": all(s["meets_rss_limit"] for s in steps.values()),
        "overhead_target": OVERHEAD_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/scale.json", help="JSON output file.")
    parser.add_argument("--work-dir", default=None, help="Keep raws and repository here.")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="Simulator worker processes.")
    parser.add_argument("--detectors", default="all", help="Detector selection (default all 205).")
    args = parser.parse_args()
    figures = run_scale_benchmark(args.work_dir, jobs=args.jobs, detectors=args.detectors)
    write_figures(figures, args.out)


if __name__ == "__main__":
    main()
