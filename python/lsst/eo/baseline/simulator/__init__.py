"""LSSTCam EO raw-data simulator: raw files in the real format from an explicit truth model.

Public API::

    from lsst.eo.baseline.simulator import simulate, load_truth, Simulation, load_plan
    paths = simulate("b_protocol_short", "R22_S11,R01_S01", out_dir, run="13600", seed=1, jobs=2)
    truth = load_truth(out_dir)

See ``doc/simulator.rst`` for the plans, the truth model's equations and the file layout.
"""

from .model import covariance_model, exp_model_c00, simulate_amp
from .plans import ExposureSpec, Plan, PlanError, list_plans, load_plan
from .run import SIMULATOR_VERSION, SimulatedRawHandle, Simulation, simulate
from .truth import (
    AmpTruth,
    Defect,
    DetectorTruth,
    ExposureAmpTruth,
    ExposureTruth,
    SimulationTruth,
    draw_detector_truth,
    load_truth,
)

__all__ = [
    "SIMULATOR_VERSION",
    "AmpTruth",
    "Defect",
    "DetectorTruth",
    "ExposureAmpTruth",
    "ExposureSpec",
    "ExposureTruth",
    "Plan",
    "PlanError",
    "Simulation",
    "SimulatedRawHandle",
    "SimulationTruth",
    "covariance_model",
    "draw_detector_truth",
    "exp_model_c00",
    "list_plans",
    "load_plan",
    "load_truth",
    "simulate",
    "simulate_amp",
]
