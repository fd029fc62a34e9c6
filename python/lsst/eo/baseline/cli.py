"""The ``eo-baseline`` command line."""

from __future__ import annotations

__all__ = ["main"]

import logging
import sys

import click


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("lsst.eo").setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.version_option(package_name="lsst-eo-baseline")
def main(verbose: int) -> None:
    """LSSTCam electro-optical baseline characterization."""
    _setup_logging(verbose)


@main.command("create-repo")
@click.argument("repo")
@click.option(
    "--registry-db", default=None, help="SQLAlchemy URL of a PostgreSQL registry (default: SQLite)."
)
@click.option("--namespace", default=None, help="PostgreSQL schema for the registry tables.")
def create_repo_cmd(repo: str, registry_db: str | None, namespace: str | None) -> None:
    """Create butler repository REPO with eo_baseline's storage classes and register LSSTCam."""
    from .repo import create_repo

    create_repo(repo, registry_db=registry_db, namespace=namespace)
    click.echo(f"Repository {repo} ready with instrument LSSTCam registered.")


@main.command("install-hooks")
@click.option("--target", default=None, help="site-packages directory (default: this interpreter's).")
def install_hooks_cmd(target: str | None) -> None:
    """Install the interpreter start-up hook (butler config path, zipfile fix) into an environment."""
    from .repo import install_hooks

    for path in install_hooks(target):
        click.echo(f"wrote {path}")


@main.command("ingest")
@click.argument("repo")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-t",
    "--transfer",
    type=click.Choice(["direct", "symlink", "relsymlink", "hardlink", "copy", "auto"]),
    default="direct",
    show_default=True,
    help="How files get into the datastore.",
)
@click.option("-j", "--jobs", type=int, default=1, show_default=True, help="Processes reading headers.")
@click.option("--run", default=None, help="RUN collection (default LSSTCam/raw/all).")
@click.option("--no-progress", is_flag=True, help="Do not show progress.")
def ingest_cmd(
    repo: str, paths: tuple[str, ...], transfer: str, jobs: int, run: str | None, no_progress: bool
) -> None:
    """Ingest LSSTCam raw files (PATHS: files or directories, searched recursively) into REPO.

    Bad files are reported with their path and the reason and skipped; all good files are still
    ingested.  The exit status is 1 if any file was bad.
    """
    from lsst.daf.butler import Butler

    from .ingest import ingest_raws, log_report, validate_run_name

    if run is not None:
        try:
            validate_run_name(run)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--run") from None
    butler = Butler.from_config(repo, writeable=True)
    report = ingest_raws(butler, paths, transfer=transfer, jobs=jobs, run=run, progress=not no_progress)
    log_report(report, logging.getLogger("lsst.eo.baseline.ingest"))
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@main.command("run")
@click.argument("repo")
@click.option("--run", "run_number", required=True, help="Acquisition run number (exposure.science_program).")
@click.option(
    "--run-type", default="b_protocol", show_default=True, help="Run type in config/runs, or a path."
)
@click.option("-i", "--input", "inputs", default="LSSTCam/raw/all", show_default=True,
              help="Comma-separated input collections.")  # fmt: skip
@click.option("--output-prefix", default="u/eo", show_default=True, help="Prefix of the output collections.")
@click.option("-j", "--jobs", type=int, default=1, show_default=True, help="pipetask -j.")
@click.option("--detectors", default=None, help="Detector selection (names, rafts, ids), default all.")
@click.option("--steps", default=None, help="Comma-separated step names to run (default all).")
@click.option("--dry-run", is_flag=True, help="Print the commands without running them.")
@click.option(
    "--bps",
    default=None,
    help="Run each step as a BPS workflow: a compute site of config/bps/eo_common.yaml (local: parsl "
    "with -j workers; slurm) or a site YAML file to include (config/bps/sites/).",
)
@click.option("--submit-dir", default=None, help="Directory of the BPS submit files (default ./submit).")
def run_cmd(
    repo, run_number, run_type, inputs, output_prefix, jobs, detectors, steps, dry_run, bps, submit_dir
):
    """Run the EO analysis of acquisition run RUN in REPO (pipelines in order, with certification)."""
    from .camera import get_camera
    from .runner import run_analysis

    det_ids = [d.id for d in get_camera().select(detectors)] if detectors else None
    results = run_analysis(
        repo, run_number, run_type, inputs=tuple(inputs.split(",")), output_prefix=output_prefix, jobs=jobs,
        detectors=det_ids, steps=steps.split(",") if steps else None, dry_run=dry_run, bps=bps,
        submit_dir=submit_dir,
    )  # fmt: skip
    for r in results:
        click.echo(
            f"{r.step.name:<10} {r.status:<8} {r.output}  {r.message.splitlines()[0] if r.message else ''}"
        )
        if dry_run:
            for c in r.commands:
                click.echo(f"    {c}")
    if any(r.status == "failed" for r in results):
        sys.exit(1)


@main.command("report")
@click.argument("repo")
@click.option("--collections", required=True, help="Output collection(s) of the run (comma-separated).")
@click.option(
    "--compare",
    "compare",
    multiple=True,
    help="A previous run, LABEL=SOURCE (repeatable): SOURCE is a collection of REPO, "
    "REPO_PATH:COLLECTION of another repository, or a summary file (.parquet/.ecsv from "
    "export-summary or import-eo-pipe).  A bare COLLECTION is labelled by its name.",
)
@click.option("--reference", default=None, help="Label of the reference run (default: the first --compare).")
@click.option("--label", default=None, help="Label of this run in the comparison (default: its collection).")
@click.option("--out", "out_dir", required=True, help="Output directory for index.html, report.rst, images.")
@click.option("--specs", default=None, help="YAML file overriding specifications and tolerances.")
@click.option("--title", default=None, help="Report title (HTML format).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "technote"]),
    default="html",
    show_default=True,
    help="html: index.html and report.rst; technote: a documenteer technote directory (technote.toml, "
    "conf.py, index.rst, figures/) with the headings of the baseline-characterization skeleton.",
)
@click.option(
    "--acquisition-runs",
    default=None,
    help="Technote: acquisition runs (exposure science_program, comma-separated) of the Background "
    "exposure table; default the runs named by --collections (u/eo/13600 -> 13600).",
)
def report_cmd(repo, collections, compare, reference, label, out_dir, specs, title, fmt, acquisition_runs):
    """Write the baseline-characterization report (HTML and reStructuredText, or a technote) of a run."""
    from .report import build_report
    from .runCompare import parse_compare_option

    runs: dict[str, str] = {}
    for value in compare:
        name, source = parse_compare_option(value)
        if name in runs:
            raise click.BadParameter(f"run label {name!r} given twice", param_hint="--compare")
        runs[name] = source
    this_run = label or collections
    if reference is not None and reference not in runs and reference != this_run:
        raise click.BadParameter(
            f"no --compare run (nor this run) is labelled {reference!r}", param_hint="--reference"
        )
    collections = collections.split(",") if "," in collections else collections
    if fmt == "technote":
        from .technote import build_technote

        acq = [r for r in acquisition_runs.split(",") if r] if acquisition_runs else None
        note = build_technote(
            repo,
            collections,
            out_dir,
            compare=runs or None,
            specs=specs,
            acquisition_runs=acq,
            reference=reference,
            label=label,
        )
        click.echo(
            f"Technote: {note.index} ({note.n_figures} figures, {note.figure_bytes / 1e6:.1f} MB); "
            f"build it with: cd {out_dir} && sphinx-build -W -b html . _build/html"
        )
        if note.missing:
            click.echo(f"Metrics without data: {', '.join(note.missing)}")
        return
    result = build_report(
        repo,
        collections,
        out_dir,
        compare=runs or None,
        specs=specs,
        title=title,
        reference=reference,
        label=label,
    )
    click.echo(f"Report: {result.html} ({result.n_images} images); reStructuredText: {result.rst}")
    if result.missing:
        click.echo(f"Metrics without data: {', '.join(result.missing)}")


@main.command("export-summary")
@click.argument("repo")
@click.option("--collections", required=True, help="Output collection(s) of the run (comma-separated).")
@click.option("--out", "out", required=True, help="Output file; FILE.parquet and FILE.ecsv are written.")
@click.option(
    "--run", "acquisition_run", default=None, help="Acquisition run (default: from the collection)."
)
def export_summary_cmd(repo, collections, out, acquisition_run):
    """Write the run summary of REPO's COLLECTIONS as parquet and ECSV, with provenance."""
    from .summaryExport import export_summary

    paths = export_summary(repo, collections.split(","), out, acquisition_run)
    click.echo(f"Run summary written to {paths[0]} and {paths[1]}")


@main.command("import-eo-pipe")
@click.argument("source")
@click.option("--collections", default=None, help="eo_pipe output collection(s) if SOURCE is a repository.")
@click.option("--out", "out", required=True, help="Output file; FILE.parquet and FILE.ecsv are written.")
@click.option(
    "--run", "acquisition_run", default=None, help="Acquisition run (required for a multi-run per-CCD table)."
)
@click.option(
    "--read-noise-unit",
    type=click.Choice(["adu", "e-"]),
    default="adu",
    show_default=True,
    help="Unit of eo_read_noise.read_noise (adu: eo_pipe's apply_gains=False default).",
)
def import_eo_pipe_cmd(source, collections, out, acquisition_run, read_noise_unit):
    """Convert eo_pipe's per-amplifier tables into a run summary file usable by report --compare.

    SOURCE: a butler repository (with --collections), a directory of exported tables
    (<dataset type>[_...].parquet/.csv/.ecsv), or a per-CCD defect table (<run>_bright_pixels ... columns).
    """
    import os

    from .eoPipeImport import eo_pipe_summary, read_eo_pipe_butler, read_eo_pipe_files, read_per_ccd_defects
    from .summaryExport import provenance, write_summary

    if os.path.isfile(source):
        per_run = read_per_ccd_defects(source)
        if acquisition_run is None and len(per_run) > 1:
            raise click.BadParameter(
                f"{source} holds runs {', '.join(per_run)}: choose one", param_hint="--run"
            )
        run = acquisition_run or next(iter(per_run))
        if run not in per_run:
            raise click.BadParameter(
                f"{source} has no run {run}; it has {', '.join(per_run)}", param_hint="--run"
            )
        summary, where, colls = per_run[run], source, []
    else:
        if collections:
            tables = read_eo_pipe_butler(source, collections.split(","))
            colls = collections.split(",")
        else:
            tables = read_eo_pipe_files(source)
            colls = []
        if not tables:
            raise click.ClickException(f"{source}: no eo_pipe tables found")
        summary = eo_pipe_summary(tables, read_noise_unit=read_noise_unit, where=source)
        run, where = acquisition_run, source
    meta = provenance(where, colls, acquisition_run=run or "", source="eo_pipe")
    paths = write_summary(summary, out, meta)
    notes = summary.meta.get("DEFINITION_NOTES") or {}
    click.echo(f"eo_pipe summary ({len(summary)} rows) written to {paths[0]} and {paths[1]}")
    for metric, note in notes.items():
        click.echo(f"  {metric}: definition differs ({note})")


@main.group("postgres")
def postgres_group() -> None:
    """A private PostgreSQL server on loopback for a shared-registry repository."""


@postgres_group.command("start")
@click.argument("directory")
@click.option("--port", type=int, default=0, help="TCP port (default: a free one, kept across restarts).")
def postgres_start_cmd(directory: str, port: int) -> None:
    """Create (first time) and start a PostgreSQL cluster in DIRECTORY; print the registry URL."""
    from .pgserver import PostgresServer

    server = PostgresServer(directory, port=port).start()
    click.echo(f"PostgreSQL running on 127.0.0.1:{server.port}.")
    click.echo(f"export LSST_DB_AUTH={server.auth_file}")
    click.echo(f"eo-baseline create-repo REPO --registry-db {server.url}")


@postgres_group.command("stop")
@click.argument("directory")
def postgres_stop_cmd(directory: str) -> None:
    """Stop the PostgreSQL cluster in DIRECTORY (its data stay on disk)."""
    from .pgserver import PostgresServer

    PostgresServer(directory).stop()
    click.echo(f"PostgreSQL in {directory} stopped.")


def _register_commands() -> None:
    """Attach the commands that live in their own modules."""
    from .demo import demo_cmd
    from .simulator.cli import simulate_cmd

    main.add_command(simulate_cmd)
    main.add_command(demo_cmd)


_register_commands()
