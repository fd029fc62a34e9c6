"""Projected cost of a full LSSTCam B-protocol plus PTC analysis, from the measured benchmarks.

The exposure counts come from the shipped acquisition plans (``config/plans/b_protocol.yaml`` and
``ptc.yaml``, the real sequences' shape).  Each exposure of a CCD costs the CPU seconds per
CCD-exposure measured for every task that reads it; the tasks that work on per-detector products
rather than raws (PTC solve, linearity, BF, defects, summaries) are charged as one extra read floor
per exposure, an over-estimate of their measured cost.  Each quantum adds the per-quantum pipetask
overhead measured by the scale run.  The total is for the 205 detectors of the focal plane.
"""

from __future__ import annotations

__all__ = ["project_full_run"]

from typing import Any

from ..camera import get_camera
from ..simulator.run import Simulation

# Tasks reading each kind of raw exposure, by (IMGTYPE, TESTTYPE); names as in the task benchmarks.
_READERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("BIAS", "BIAS"): ("eoBias", "eoReadNoise", "eoBiasStability"),
    ("DARK", "DARK"): ("eoDark",),
    ("FLAT", "PTC"): ("eoPtcExtract", "eoCti"),
    ("FLAT", "GAIN_STABILITY"): ("eoGainStability",),
    ("FLAT", "LAMBDA"): ("eoWavelengthFlats",),
    ("BIAS", "PERSISTENCE"): ("eoPersistence",),
    ("DARK", "PERSISTENCE"): ("eoPersistence",),
    ("FLAT", "PERSISTENCE"): ("eoPersistence",),
}
# Per-detector quanta of one analysis besides the pair extractions (one per flat pair, counted from
# the plan): B protocol 4 bias + 3 dark + 7 flat products + 4 stability + 2 lambda + 3 persistence
# + 2 flat-field; PTC run 6 products (pipelines/bProtocol.yaml, ptc.yaml).
_OTHER_QUANTA_PER_DETECTOR = {"b_protocol": 4 + 3 + 7 + 4 + 2 + 3 + 2, "ptc": 6}


def project_full_run(
    tasks: dict[str, Any], stability: dict[str, Any], scale: dict[str, Any]
) -> dict[str, Any]:
    """Core-hours of a full-focal-plane B-protocol plus PTC analysis.

    Parameters
    ----------
    tasks, stability : `dict`
        Results of `~lsst.eo.baseline.bench.tasks.run_task_benchmark` and
        `~lsst.eo.baseline.bench.stability.run_stability_benchmark`.
    scale : `dict`
        Result of `~lsst.eo.baseline.bench.scale.run_scale_benchmark` (per-quantum overhead).

    Returns
    -------
    projection : `dict`
        Exposures per run type, CPU seconds per detector, overhead, and the core-hour totals.
    """
    cpu = {name: t["cpu_s_per_ccd_exposure"] for name, t in tasks["tasks"].items()}
    cpu.update({name: t["cpu_s_per_ccd_exposure"] for name, t in stability["tasks"].items()})
    floor = tasks["floor_cpu_s_per_ccd_exposure"]
    overhead = [(s["pipetask_wall_s"] - s["quantum_wall_s"]) / s["quanta"] for s in scale["steps"].values()]
    overhead_s = max(overhead)
    n_detectors = len(list(get_camera()))
    runs: dict[str, Any] = {}
    for plan in ("b_protocol", "ptc"):
        exposures = Simulation(plan, "R22_S11").exposures
        seconds = 0.0
        for exp in exposures:
            readers = _READERS.get((exp.imgtype, exp.testtype), ())
            seconds += sum(cpu.get(name, 2 * floor) for name in readers) + floor
        pairs = sum(1 for exp in exposures if exp.testtype == "PTC" and exp.imgtype == "FLAT") // 2
        quanta = pairs + _OTHER_QUANTA_PER_DETECTOR[plan]
        per_detector = seconds + quanta * overhead_s
        runs[plan] = {
            "exposures": len(exposures),
            "cpu_s_per_detector": round(seconds, 1),
            "quanta_per_detector": quanta,
            "overhead_s_per_detector": round(quanta * overhead_s, 1),
            "core_hours": round(per_detector * n_detectors / 3600.0, 2),
        }
    return {
        "detectors": n_detectors,
        "overhead_s_per_quantum": round(overhead_s, 3),
        "runs": runs,
        "total_core_hours": round(sum(r["core_hours"] for r in runs.values()), 2),
    }
