"""Every pipeline file and run type loads, builds a pipeline graph, and follows the naming rules."""

import glob
import os
import re

import pytest
from lsst.pipe.base import Pipeline

from lsst.eo.baseline.paths import config_dir, pipelines_dir
from lsst.eo.baseline.runner import load_run_type

PIPELINES = sorted(glob.glob(pipelines_dir("*.yaml")))
RUN_TYPES = sorted(glob.glob(config_dir("runs", "*.yaml")))
# Dataset types eo_baseline does not own.
EXTERNAL = {"raw"}


@pytest.mark.parametrize("path", PIPELINES, ids=os.path.basename)
def test_pipeline_builds(path):
    graph = Pipeline.from_uri(path).to_graph()
    assert graph.tasks, path
    for node in graph.tasks.values():
        assert node.label.startswith("eo"), node.label
        for edge in node.outputs.values():
            name = edge.parent_dataset_type_name
            # camelCase, prefixed by "eo" and the family.
            assert re.fullmatch(r"eo[A-Z][A-Za-z0-9]*", name), name


def test_every_task_is_in_the_full_b_protocol():
    full = Pipeline.from_uri(pipelines_dir("bProtocol.yaml")).to_graph()
    for path in PIPELINES:
        name = os.path.basename(path)
        if not name.startswith("bProtocol") or name == "bProtocol.yaml":
            continue
        for label in Pipeline.from_uri(path).to_graph().tasks:
            assert label in full.tasks, f"{label} of {name} missing from bProtocol.yaml"


@pytest.mark.parametrize("path", RUN_TYPES, ids=os.path.basename)
def test_run_type_steps_resolve(path):
    _, steps = load_run_type(path)
    assert steps
    for step in steps:
        graph = Pipeline.from_uri(pipelines_dir(step.pipeline)).to_graph()
        outputs = {e.parent_dataset_type_name for n in graph.tasks.values() for e in n.outputs.values()}
        for name in step.certify:
            assert name in outputs, f"step {step.name} certifies {name}, which it does not produce"
