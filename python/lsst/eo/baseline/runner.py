"""Run the EO analysis of an acquisition run: its pipelines in order, with calibration certification.

A run type (``config/runs/<name>.yaml``) lists steps; each step is a ``pipetask run`` of one pipeline
on the exposures its ``where`` clause selects.  Combined calibrations a step produces are certified
(``butler certify-calibrations``) into the run's calibration collection before the next step, as
cp_pipe's calibration chain does.  Every command is logged so that it can be re-run by hand.
With ``bps``, each step is a BPS workflow (``bps submit``, config/bps) instead of a ``pipetask run``:
the same pipelines, inputs, outputs and certification, on parsl or a batch farm.

Collections, for run 13600 and the default prefix ``u/eo``:

* ``u/eo/13600/<step>``: output chain of each step;
* ``LSSTCam/calib/eo/13600``: calibration collection (eoBias, eoDark, ...);
* ``u/eo/13600``: chain of all of the above, the collection to give to ``butler.get``.

Re-running a run resumes it: a step whose output collection exists (interrupted, partly failed
or complete) is run with ``--extend-run --skip-existing-in`` on its original inputs, so only the
missing quanta run and nothing is duplicated (the summary step is instead redone, replacing its
previous output, to include the steps run since); certification skips what is already certified.
A step with no exposures is skipped and a failed step does not stop the later ones; the status of
every step is recorded on ``u/eo/<run>`` for the report (`lsst.eo.baseline.runState`).

Another prefix (a reprocessing with a different configuration, say ``u/me/newcfg``) gets its own
calibration collection, ``u/me/newcfg/13600/calib``, so that two analyses of the same acquisition
run never certify over each other.
"""

from __future__ import annotations

__all__ = [
    "RunStep",
    "StepResult",
    "calib_collection",
    "load_run_type",
    "bps_resume_options",
    "run_analysis",
    "shell_join",
    "write_bps_submit",
]

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

import astropy.time
import yaml
from lsst.daf.butler import Butler, CollectionType, MissingCollectionError, MissingDatasetTypeError, Timespan
from lsst.utils.logging import getLogger

from .paths import config_dir, pipelines_dir
from .runState import certify_once, error_summary, is_empty_graph, record_steps, resume_arguments

_LOG = getLogger(__name__)


@dataclass(frozen=True)
class RunStep:
    """One step of a run type.

    Attributes
    ----------
    name : `str`
        Step name (used in collection names).
    pipeline : `str`
        Pipeline file (relative to ``pipelines/``, or absolute).
    where : `str`
        Exposure selection, ANDed with the instrument, run and detector constraints.
    certify : `tuple` [`str`]
        Calibration dataset types to certify after the step.
    select_exposures : `bool`
        False for steps that gather earlier steps' outputs (run summary): they run on the chain
        of the earlier outputs with no exposure selection.
    """

    name: str
    pipeline: str
    where: str
    certify: tuple[str, ...] = ()
    select_exposures: bool = True


@dataclass
class StepResult:
    """What happened to one step.

    Attributes
    ----------
    step : `RunStep`
        The step.
    status : `str`
        ``done``, ``partial`` (some outputs not written, e.g. too few exposures), ``skipped`` (no
        exposure selected), ``failed`` or ``dry-run``.
    output : `str`
        Output chained collection.
    message : `str`
        Human-readable detail (why skipped or failed).
    commands : `list` [`str`]
        Shell commands equivalent to what was run.
    """

    step: RunStep
    status: str
    output: str
    message: str = ""
    commands: list[str] = field(default_factory=list)


def load_run_type(name_or_path: str) -> tuple[str, list[RunStep]]:
    """Load a run-type file (name in ``config/runs`` or a path)."""
    path = name_or_path if os.path.exists(name_or_path) else config_dir("runs", f"{name_or_path}.yaml")
    if not os.path.exists(path):
        known = sorted(f[:-5] for f in os.listdir(config_dir("runs")) if f.endswith(".yaml"))
        raise FileNotFoundError(f"No run type {name_or_path!r}: known run types are {known}")
    with open(path) as f:
        spec = yaml.safe_load(f)
    steps = [
        RunStep(
            name=s["name"],
            pipeline=s["pipeline"],
            where=s.get("where", ""),
            certify=tuple(s.get("certify", ())),
            select_exposures=bool(s.get("select_exposures", True)),
        )
        for s in spec["steps"]
    ]
    return spec.get("name", os.path.basename(path)[:-5]), steps


def _query(run: str, where: str, detectors: list[int] | None) -> str:
    parts = ["instrument = 'LSSTCam'", f"exposure.science_program = '{run}'", f"({where})"]
    if detectors:
        parts.append(f"detector IN ({', '.join(str(d) for d in detectors)})")
    return " AND ".join(parts)


def _tool(name: str) -> str:
    """Path of a stack command-line tool installed next to this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else name


def _exists(butler: Butler, collection: str) -> bool:
    """Whether a collection exists."""
    try:
        return bool(butler.collections.query(collection))
    except MissingCollectionError:
        return False


def _pipeline_outputs(pipeline: str) -> list[str]:
    """Dataset types a pipeline's tasks write (config/log/metadata excluded)."""
    from lsst.pipe.base import Pipeline

    graph = Pipeline.from_uri(pipeline).to_graph()
    return [e.parent_dataset_type_name for node in graph.tasks.values() for e in node.outputs.values()]


def _produced(butler: Butler, output: str, dataset_types: list[str]) -> dict[str, int]:
    counts = {}
    for name in dataset_types:
        try:
            counts[name] = len(butler.query_datasets(name, collections=output, limit=None, explain=False))
        except Exception:  # noqa: BLE001 - a type never registered means nothing was written
            counts[name] = 0
    return counts


def shell_join(cmd: list[str]) -> str:
    """Quote a command for a POSIX shell, readably: butler queries keep their single quotes."""
    parts = []
    for arg in cmd:
        if shlex.quote(arg) == arg:
            parts.append(arg)
        elif not any(c in arg for c in '"$`\\!'):
            parts.append(f'"{arg}"')
        else:
            parts.append(shlex.quote(arg))
    return " ".join(parts)


def calib_collection(run: str, output_prefix: str = "u/eo") -> str:
    """Calibration collection the steps of acquisition run ``run`` certify into.

    ``LSSTCam/calib/eo/<run>`` for the default output prefix ``u/eo``, else ``<prefix>/<run>/calib``.
    """
    if output_prefix.rstrip("/") == "u/eo":
        return f"LSSTCam/calib/eo/{run}"
    return f"{output_prefix.rstrip('/')}/{run}/calib"


def write_bps_submit(
    step: RunStep, run: str, pipeline: str, bps: str, *, jobs: int = 1, submit_dir: str
) -> str:
    """Write the BPS submit file of one step.

    Parameters
    ----------
    step : `RunStep`
        The step.
    run : `str`
        Acquisition run number (names the workflow).
    pipeline : `str`
        Pipeline file (with ``#subset``) of the step.
    bps : `str`
        Compute-site name in ``config/bps/eo_common.yaml`` or path of a site YAML file to include.
    jobs : `int`
        Cores of the ``local`` site.
    submit_dir : `str`
        Directory of the submit files (one sub-directory per run and step).

    Returns
    -------
    path : `str`
        The submit file, for ``bps submit PATH -b REPO -i ... -o ... -d ...``.
    """
    config: dict = {
        "includeConfigs": [config_dir("bps", "eo_common.yaml")],
        "pipelineYaml": pipeline,
        "payload": {"payloadName": f"eo_{run}_{step.name}"},
        "submitPath": os.path.join(os.path.abspath(submit_dir), run, step.name, "{outputRun}"),
    }
    if bps.endswith((".yaml", ".yml")):
        if not os.path.exists(bps):
            raise FileNotFoundError(f"BPS site configuration {bps} does not exist")
        config["includeConfigs"].append(os.path.abspath(bps))
    else:
        config["computeSite"] = bps
        if bps == "local":
            config["site"] = {"local": {"class": "lsst.ctrl.bps.parsl.sites.Local", "cores": max(jobs, 1)}}
    path = os.path.join(submit_dir, run, step.name, "submit.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def bps_resume_options(resume: list[str], output: str) -> list[str]:
    """``bps submit`` options equivalent to the ``pipetask run`` resume/replace options ``resume``.

    A BPS submission always writes a new RUN collection, prepended to the step's chain: resuming
    becomes skipping the quanta whose outputs the chain already holds; replacing (the run summary)
    becomes a rebased new run that supersedes the old one for every find-first read (``butler.get``
    on the chain).  bps does not pass ``--replace-run``/``--prune-replaced`` on to the job that
    defines the chain, so the old run stays in the chain, behind the new one.
    """
    if not resume:
        return []
    if "--extend-run" in resume:
        return ["--extra-qgraph-options", f"--skip-existing-in {output}"]
    return ["--extra-qgraph-options", "--rebase"]


def _graph_log(stderr: str) -> str:
    """Text of the quantum-graph generation log a failed ``bps submit`` points to (else its stderr)."""
    match = re.search(r"Check (\S+quantumGraphGeneration\.out)", stderr)
    if match and os.path.exists(match.group(1)):
        with open(match.group(1)) as f:
            return f.read()
    return stderr


def _run_command(cmd: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    _LOG.info("Running: %s", shell_join(cmd))
    # bps launches ``pipetask`` by name: make the tools next to this interpreter come first on PATH
    # so that a venv that is not activated still runs its own stack.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    if cwd:
        # parsl puts its ``runinfo`` directory in the working directory and bps resolves ``${PWD}``
        # from the environment: both follow the submit directory, not the caller's.
        env["PWD"] = cwd
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


def _validity(butler: Butler, run: str) -> tuple[astropy.time.Time, astropy.time.Time]:
    """A validity range covering every exposure of the run, with a day of margin."""
    records = butler.query_dimension_records(
        "exposure",
        where=f"instrument = 'LSSTCam' AND exposure.science_program = '{run}'",
        limit=None,
        explain=False,
    )
    begins = [r.timespan.begin for r in records if r.timespan is not None]
    ends = [r.timespan.end for r in records if r.timespan is not None]
    day = astropy.time.TimeDelta(1.0, format="jd")
    return min(begins) - day, max(ends) + day


def run_analysis(
    repo: str,
    run: str,
    run_type: str = "b_protocol",
    *,
    inputs: tuple[str, ...] = ("LSSTCam/raw/all",),
    output_prefix: str = "u/eo",
    jobs: int = 1,
    detectors: list[int] | None = None,
    steps: list[str] | None = None,
    dry_run: bool = False,
    bps: str | None = None,
    submit_dir: str | None = None,
) -> list[StepResult]:
    """Run the steps of a run type on acquisition run ``run``.

    Parameters
    ----------
    repo : `str`
        Butler repository.
    run : `str`
        Run number (``exposure.science_program``).
    run_type : `str`
        Run-type name in ``config/runs`` or path to one.
    inputs : `tuple` [`str`]
        Input collections with the raws.
    output_prefix : `str`
        Prefix of the output collections.
    jobs : `int`
        ``pipetask -j`` (a process per quantum when > 1).
    detectors : `list` [`int`], optional
        Restrict to these detector ids.
    steps : `list` [`str`], optional
        Run only these steps (by name).
    dry_run : `bool`
        Only log the commands.
    bps : `str`, optional
        Run each step as a BPS workflow instead of one ``pipetask run``: a compute-site name of
        ``config/bps/eo_common.yaml`` (``local``: parsl on this machine with ``jobs`` workers;
        ``slurm``) or the path of a site YAML file to include (``config/bps/sites/*.yaml``).
    submit_dir : `str`, optional
        Where the BPS submit files go (default ``./submit``, as bps does).

    Returns
    -------
    results : `list` [`StepResult`]
        One per step, in order.  A failed step does not stop the others (a step whose
        calibrations are missing fails or is skipped in turn); a step whose output collection
        exists is resumed (`lsst.eo.baseline.runState`).
    """
    _, all_steps = load_run_type(run_type)
    calib = calib_collection(run, output_prefix)
    butler = Butler.from_config(repo, writeable=True)
    results: list[StepResult] = []
    outputs: list[str] = []
    for step in all_steps:
        if steps and step.name not in steps:
            continue
        output = f"{output_prefix}/{run}/{step.name}"
        earlier = [
            f"{output_prefix}/{run}/{s.name}"
            for s in reversed(all_steps[: all_steps.index(step)])
            if _exists(butler, f"{output_prefix}/{run}/{s.name}")
        ]
        if step.select_exposures:
            query = _query(run, step.where, detectors)
            try:
                n = len(
                    butler.query_datasets(
                        "raw", collections=list(inputs), where=query, limit=None, explain=False
                    )
                )
            except (MissingDatasetTypeError, MissingCollectionError):
                n = 0  # nothing ingested yet
            if n == 0:
                msg = f"no exposure matches {query!r}: step {step.name!r} skipped"
                _LOG.warning(msg)
                results.append(StepResult(step, "skipped", output, msg))
                continue
            collections = list(inputs)
        else:
            # A gathering step: the earlier steps' outputs are its inputs.
            query = " AND ".join(p for p in ("instrument = 'LSSTCam'", step.where) if p)
            n = len(earlier)
            if n == 0:
                msg = f"no earlier step output for run {run}: step {step.name!r} skipped"
                _LOG.warning(msg)
                results.append(StepResult(step, "skipped", output, msg))
                continue
            collections = earlier + list(inputs)
        if _exists(butler, calib):
            collections.append(calib)
        pipeline = step.pipeline if os.path.isabs(step.pipeline) else pipelines_dir(step.pipeline)
        # An existing output (interrupted or earlier run) is resumed, not started again.
        collections, resume = resume_arguments(butler, output, collections, replace=not step.select_exposures)
        if bps:
            submit_file = write_bps_submit(
                step,
                run,
                pipeline,
                bps,
                jobs=jobs,
                submit_dir=submit_dir or os.path.join(os.getcwd(), "submit"),
            )
            cmd = [_tool("bps"), "submit", os.path.abspath(submit_file), "-b", os.path.abspath(repo),
                   "-i", ",".join(collections), "-o", output, "-d", query,
                   *bps_resume_options(resume, output)]  # fmt: skip
            cwd = os.path.dirname(os.path.abspath(submit_file))
        else:
            cwd = None
            cmd = [_tool("pipetask"), "run", "--register-dataset-types", "-b", repo,
                   "-i", ",".join(collections), "-o", output, "-p", pipeline, "-d", query,
                   "-j", str(jobs), *resume]  # fmt: skip
        result = StepResult(step, "dry-run" if dry_run else "done", output, commands=[shell_join(cmd)])
        results.append(result)
        if dry_run:
            _LOG.info("[dry run] %s", shell_join(cmd))
            continue
        _LOG.info("Step %s: %d input(s) -> %s", step.name, n, output)
        proc = _run_command(cmd, cwd=cwd)
        empty = proc.returncode != 0 and is_empty_graph(_graph_log(proc.stderr) if bps else proc.stderr)
        if empty and "--extend-run" not in resume:
            result.status = "skipped"
            result.message = "no quantum to run (inputs or calibrations missing?): see the pipetask log"
            _LOG.warning("Step %s: %s\n%s", step.name, result.message, proc.stderr[-3000:])
            continue
        # An empty graph when resuming: every quantum was done before.
        failed = proc.returncode != 0 and not empty
        butler.registry.refresh()
        counts = _produced(butler, output, _pipeline_outputs(pipeline)) if _exists(butler, output) else {}
        if failed:
            # Other steps still run: those needing this step's outputs fail or are skipped in turn.
            result.status = "failed"
            tool = os.path.basename(cmd[0])
            result.message = (
                f"{tool} failed (exit {proc.returncode}): {error_summary(proc.stderr)}\n{proc.stderr[-4000:]}"
            )
            _LOG.error("Step %s failed:\n%s", step.name, proc.stderr[-4000:])
            if not any(counts.values()):
                continue
        outputs.append(output)
        missing = [name for name, n in counts.items() if n == 0]
        if len(counts) > 12:
            result.message = (
                f"{sum(1 for n in counts.values() if n)} dataset types, {sum(counts.values())} datasets"
            )
        else:
            result.message = ", ".join(f"{name}: {n}" for name, n in counts.items())
        if failed:
            result.status = "partial"
            result.message += f" -- some quanta failed (exit {proc.returncode}): {error_summary(proc.stderr)}"
        if missing:
            result.status = "partial"
            result.message += f" -- nothing written for {', '.join(missing)} (see the pipetask log)"
            _LOG.warning("Step %s wrote no %s; pipetask log:\n%s", step.name, missing, proc.stderr[-3000:])
            lost = [name for name in step.certify if name in missing]
            if lost:
                _LOG.warning("Calibration(s) %s of step %s were not produced: later steps needing them will "
                             "fail or be skipped", lost, step.name)  # fmt: skip
        if step.certify:
            begin, end = _validity(butler, run)
            butler.collections.register(calib, CollectionType.CALIBRATION)
            for dataset_type in step.certify:
                refs = butler.query_datasets(dataset_type, collections=output, limit=None, explain=False)
                if refs:
                    n_new = certify_once(butler, calib, dataset_type, refs, Timespan(begin, end))
                    _LOG.info("Certified %d %s into %s", n_new, dataset_type, calib)
            result.commands.append(
                shell_join(
                    [
                        _tool("butler"),
                        "certify-calibrations",
                        "--begin-date",
                        begin.isot,
                        "--end-date",
                        end.isot,
                        repo,
                        output,
                        calib,
                        *step.certify,
                    ]
                )  # fmt: skip
            )
    if outputs and not dry_run:
        umbrella = f"{output_prefix}/{run}"
        butler.collections.register(umbrella, CollectionType.CHAINED)
        # Every step output of the run (this invocation's and earlier ones'), latest step first.
        chain = [
            f"{output_prefix}/{run}/{s.name}"
            for s in reversed(all_steps)
            if _exists(butler, f"{output_prefix}/{run}/{s.name}")
        ]
        if _exists(butler, calib):
            chain.append(calib)
        butler.collections.redefine_chain(umbrella, chain)
        record_steps(butler, umbrella, run_type, [s.name for s in all_steps], results)
        _LOG.info("Outputs of run %s: collection %s", run, umbrella)
    return results
