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

    from .ingest import ingest_raws, log_report

    butler = Butler.from_config(repo, writeable=True)
    report = ingest_raws(butler, paths, transfer=transfer, jobs=jobs, run=run, progress=not no_progress)
    log_report(report, logging.getLogger("lsst.eo.baseline.ingest"))
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


def _register_optional_commands() -> None:
    """Attach commands living in modules that may be heavy to import."""
    from .simulator.cli import simulate_cmd

    main.add_command(simulate_cmd)
    from .demo import demo_cmd

    main.add_command(demo_cmd)


try:
    _register_optional_commands()
except ImportError as _err:  # pragma: no cover - only while a module is being written
    if "lsst.eo.baseline" not in str(_err):
        raise
