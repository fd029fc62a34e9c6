"""State of an ``eo-baseline run`` kept in the butler repository: resuming steps and recording them.

* Resuming: a step whose output chain already exists (an interrupted or failed ``pipetask run``,
  or a step run before) is run again with ``--extend-run --skip-existing-in <output>
  --clobber-outputs`` on the same inputs as the first time: quanta whose outputs all exist are
  skipped, outputs of quanta that did not finish are replaced, and nothing is duplicated.  A step
  gathering earlier outputs (the run summary) is instead re-run in place of the previous one
  (``--rebase --replace-run --prune-replaced purge``), to include steps run since.
* Certification is idempotent: datasets already certified are not certified again.
* The status of every step (``done``, ``partial``, ``skipped``, ``failed``) and why is written as
  YAML into the documentation string of the run's umbrella collection (``u/eo/<run>``), where
  ``eo-baseline report`` reads it for its "Missing / incomplete" section.
"""

from __future__ import annotations

__all__ = [
    "EMPTY_GRAPH_MESSAGE",
    "certify_once",
    "error_summary",
    "is_empty_graph",
    "parse_step_record",
    "record_steps",
    "resume_arguments",
]

import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from lsst.daf.butler import Butler, CollectionType, DatasetRef, MissingCollectionError, Timespan
from lsst.utils.logging import getLogger

_LOG = getLogger(__name__)

EMPTY_GRAPH_MESSAGE = "QuantumGraph was empty"
"""What ``pipetask run`` prints (exit code 1) when there is no quantum to run."""

_RECORD_KEY = "eo_baseline_run"


def resume_arguments(
    butler: Butler, output: str, inputs: Sequence[str], *, replace: bool = False
) -> tuple[list[str], list[str]]:
    """Inputs and extra ``pipetask run`` options to run a step into ``output``, resuming if it exists.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler of the repository.
    output : `str`
        The step's output CHAINED collection.
    inputs : sequence of `str`
        Input collections for a first run.
    replace : `bool`, optional
        For steps that gather earlier steps' outputs (the run summary): an existing output is
        replaced (``--rebase --replace-run --prune-replaced purge``) rather than resumed, so that
        outputs of steps run since are included.

    Returns
    -------
    inputs : `list` [`str`]
        ``inputs`` for a first or replaced run; for a resumed one, the inputs recorded in the
        existing chain (pipetask requires the same ones, even if e.g. a calibration collection
        appeared since).
    options : `list` [`str`]
        ``[]``, the resume options ``--extend-run --skip-existing-in <output> --clobber-outputs``, or
        the replace options.
    """
    try:
        info = butler.collections.get_info(output)
    except MissingCollectionError:
        return list(inputs), []
    if info.type != CollectionType.CHAINED:
        return list(inputs), []
    children = list(info.children)
    if not children or not children[0].startswith(f"{output}/"):
        return list(inputs), []
    if replace:
        _LOG.info("Output %s exists (run %s): replacing it", output, children[0])
        return list(inputs), ["--rebase", "--replace-run", "--prune-replaced", "purge"]
    previous = [c for c in children if not c.startswith(f"{output}/")]
    _LOG.info("Output %s exists (run %s): resuming it, skipping the quanta already done", output, children[0])
    return previous or list(inputs), ["--extend-run", "--skip-existing-in", output, "--clobber-outputs"]


def is_empty_graph(stderr: str) -> bool:
    """Whether a failed ``pipetask run`` only reported an empty quantum graph."""
    return EMPTY_GRAPH_MESSAGE in stderr


def error_summary(stderr: str) -> str:
    """The most telling line of a failed command's log: its last exception or error message.

    The failed quanta of ``pipetask run`` (``1 of 2 quanta failed: eoCti {instrument: 'LSSTCam',
    detector: 94}: ValueError: ...``), else the last exception, e.g. ``FileNotFoundError: Not enough
    datasets (0) found for non-optional connection eoCti.bias (eoBias) ...`` when a calibration is
    missing.
    """
    failures = re.findall(
        r"Execution of task '([^']+)' on quantum (\{[^}]*\}) failed\. Exception (.*)$", stderr, re.MULTILINE
    )
    if failures:
        counts = re.findall(
            r"Executed \d+ quanta successfully, (\d+) failed and \d+ remain out of total (\d+)", stderr
        )
        head = (
            f"{counts[-1][0]} of {counts[-1][1]} quanta failed"
            if counts
            else f"{len(failures)} quanta failed"
        )
        listed = "; ".join(f"{label} {data_id}: {exc.strip()}" for label, data_id, exc in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        return f"{head}: {listed}{more}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception)\b.*:", line) or line.startswith("Error:"):
            return line
    for line in reversed(lines):
        if "failed" in line.lower():
            return line
    return lines[-1] if lines else ""


def certify_once(
    butler: Butler, calib: str, dataset_type: str, refs: Iterable[DatasetRef], timespan: Timespan
) -> int:
    """Certify datasets into a calibration collection unless they already are.

    A dataset of the same type and data ID already certified over an overlapping range (e.g. from
    an earlier processing of the step) is decertified over ``timespan`` first.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable butler.
    calib : `str`
        CALIBRATION collection (registered if needed).
    dataset_type : `str`
        Dataset type of ``refs``.
    refs : iterable of `lsst.daf.butler.DatasetRef`
        Datasets to certify.
    timespan : `lsst.daf.butler.Timespan`
        Validity range.

    Returns
    -------
    n : `int`
        Number of datasets newly certified.
    """
    butler.collections.register(calib, CollectionType.CALIBRATION)
    certified = {}
    for assoc in butler.registry.queryDatasetAssociations(dataset_type, collections=calib):
        certified.setdefault(assoc.ref.dataId.required_values, set()).add(assoc.ref.id)
    new = []
    replaced = []
    for ref in refs:
        ids = certified.get(ref.dataId.required_values, set())
        if ref.id in ids:
            continue
        if ids:
            replaced.append(ref.dataId)
        new.append(ref)
    if replaced:
        butler.registry.decertify(calib, dataset_type, timespan, dataIds=replaced)
        _LOG.info("Decertified the earlier %s of %d data ID(s) in %s", dataset_type, len(replaced), calib)
    if new:
        butler.registry.certify(calib, new, timespan)
    return len(new)


def parse_step_record(doc: Any) -> dict[str, dict[str, str]]:
    """Step statuses recorded by `record_steps` in a collection's documentation (``{}`` if none)."""
    if not isinstance(doc, str) or _RECORD_KEY not in doc:
        return {}
    try:
        data = yaml.safe_load(doc)
    except yaml.YAMLError:
        return {}
    steps = (data or {}).get(_RECORD_KEY, {}).get("steps", {}) if isinstance(data, dict) else {}
    if not isinstance(steps, dict):
        return {}
    return {
        str(name): {"status": str(info.get("status", "")), "message": str(info.get("message", ""))}
        for name, info in steps.items()
        if isinstance(info, dict)
    }


def record_steps(
    butler: Butler, collection: str, run_type: str, step_order: Sequence[str], results: Iterable[Any]
) -> dict[str, dict[str, str]]:
    """Record step statuses in a collection's documentation, merged with what is already there.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable butler.
    collection : `str`
        The run's umbrella collection (must exist).
    run_type : `str`
        Run-type name.
    step_order : sequence of `str`
        Step names in run order (the record follows it).
    results : iterable
        `lsst.eo.baseline.runner.StepResult` objects of this invocation (dry runs are ignored).

    Returns
    -------
    steps : `dict` [`str`, `dict`]
        The merged record.
    """
    try:
        doc = butler.registry.getCollectionDocumentation(collection)
    except MissingCollectionError:
        return {}
    steps = parse_step_record(doc)
    for result in results:
        if result.status == "dry-run":
            continue
        message = " ".join(str(result.message).split())
        steps[result.step.name] = {
            "status": result.status,
            "message": message if len(message) <= 300 else message[:297] + "...",
        }
    ordered = {name: steps[name] for name in step_order if name in steps}
    ordered.update({name: info for name, info in steps.items() if name not in ordered})
    text = (
        "# Written by eo-baseline run (lsst.eo.baseline.runState): status of each step.\n"
        + yaml.safe_dump({_RECORD_KEY: {"run_type": run_type, "steps": ordered}}, sort_keys=False)
    )
    butler.registry.setCollectionDocumentation(collection, text)
    return ordered
