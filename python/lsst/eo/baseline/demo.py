"""``eo-baseline demo``: a simulated run, end to end, on an embedded SQLite repository.

1. simulate a short B protocol for one e2v and one ITL CCD (raw files + truth);
2. create a SQLite butler repository (``--registry postgres``: PostgreSQL on loopback) and ingest
   the raws;
3. run the B-protocol analysis (all steps, with calibration certification, and the run summary);
4. write the report (HTML and reStructuredText);
5. print where everything is and a comparison of a few measured metrics with the injected truth.
"""

from __future__ import annotations

__all__ = ["demo_cmd", "run_demo"]

import os
import shutil
import time

import click
import numpy as np
from lsst.daf.butler import Butler
from lsst.utils.logging import getLogger

from .pgserver import PostgresServer

_LOG = getLogger(__name__)

DEMO_DETECTORS = "R22_S11,R01_S01"
DEMO_RUN = "13600"


def _get(butler: Butler, name: str, detector: int):
    """A per-detector product, or None if it was not produced."""
    try:
        return butler.get(name, instrument="LSSTCam", detector=detector)
    except Exception:  # noqa: BLE001 - a missing product is reported, not fatal
        return None


def _compare(repo: str, collection: str, truth_dir: str, detectors: str) -> list[str]:
    """Lines comparing measured metrics with the simulator's truth (medians over amplifiers)."""
    from .camera import get_camera
    from .simulator import load_truth

    truth = load_truth(truth_dir)
    butler = Butler.from_config(repo, collections=collection)
    lines = []
    for det in get_camera().select(detectors):
        rn = _get(butler, "eoReadNoise", det.id)
        if rn is not None:
            ratio = []
            for row in rn:
                amp = truth.amp(det.name, row["amp"])
                ratio.append(row["read_noise_overscan_adu"] / (amp.read_noise / amp.gain))
            lines.append(
                f"{det.name} read noise: measured/injected = {np.median(ratio):.3f} (median of amps)"
            )
        dc = _get(butler, "eoDarkCurrent", det.id)
        if dc is not None:
            diff = [
                row["dark_current_median_e_per_s"] - truth.amp(det.name, row["amp"]).dark_current
                for row in dc
            ]
            lines.append(
                f"{det.name} dark current: measured - injected = {np.median(diff):+.4f} e-/s (median)"
            )
        cti = _get(butler, "eoCti", det.id)
        if cti is not None:
            pairs = [
                (row["serial_cti"], truth.amp(det.name, row["amp"]).serial_cti)
                for row in cti
                if np.isfinite(row["serial_cti"])
            ]
            if pairs:
                worst = max(pairs, key=lambda p: p[1])
                lines.append(
                    f"{det.name} highest serial CTI: measured {worst[0]:.2e}, injected {worst[1]:.2e}"
                )
    return lines


def run_demo(
    out: str,
    jobs: int = 2,
    plan: str = "b_protocol_demo",
    detectors: str = DEMO_DETECTORS,
    registry: str = "sqlite",
) -> dict:
    """Run the demo; returns the paths and collections it produced.

    Parameters
    ----------
    out : `str`
        Output directory (replaced).
    jobs : `int`
        Processes for simulation and ingest.
    plan : `str`
        Acquisition plan to simulate.
    detectors : `str`
        Detector selection.
    registry : `str`
        ``sqlite`` (embedded default) or ``postgres``: a private PostgreSQL server started in
        ``out/postgres`` on loopback, stopped again at the end (``eo-baseline postgres start
        out/postgres`` brings it back to read the outputs).
    """
    from .ingest import ingest_raws, log_report
    from .repo import create_repo
    from .runner import run_analysis
    from .simulator import simulate

    t0 = time.time()
    pg_root = os.path.join(out, "postgres")
    if os.path.exists(os.path.join(pg_root, "server")):
        PostgresServer(pg_root).destroy()  # a previous demo's server and its database
    if os.path.exists(out):
        shutil.rmtree(out)
    raw_dir = os.path.join(out, "raws")
    repo = os.path.join(out, "repo")
    _LOG.info("Simulating plan %s for %s into %s", plan, detectors, raw_dir)
    files = simulate(plan, detectors, raw_dir, run=DEMO_RUN, seed=1, jobs=jobs)
    server = None
    if registry == "postgres":
        server = PostgresServer(pg_root).start()
    elif registry != "sqlite":
        raise ValueError(f"registry must be 'sqlite' or 'postgres', not {registry!r}")
    try:
        _LOG.info("Creating %s repository %s and ingesting %d files", registry, repo, len(files))
        butler = create_repo(repo, registry_db=server.url if server else None)
        report = ingest_raws(butler, [raw_dir], jobs=jobs)
        log_report(report)
        if not report.ok:
            raise RuntimeError(report.summary())
        del butler
        results = run_analysis(repo, DEMO_RUN, "b_protocol", jobs=1)
        failed = [r for r in results if r.status == "failed"]
        if failed:
            raise RuntimeError(f"Step {failed[0].step.name} failed: {failed[0].message}")
        collection = f"u/eo/{DEMO_RUN}"
        from .report import build_report

        written = build_report(repo, collection, os.path.join(out, "report"))
        comparison = _compare(repo, collection, raw_dir, detectors)
    finally:
        if server is not None:
            server.stop()
    return {
        "report": written.html,
        "raws": raw_dir,
        "repo": repo,
        "collection": collection,
        "steps": results,
        "comparison": comparison,
        "registry": registry,
        "postgres": pg_root if server else None,
        "seconds": time.time() - t0,
    }


@click.command("demo")
@click.option("--out", default="demo_output", show_default=True, help="Output directory (replaced).")
@click.option(
    "-j", "--jobs", type=int, default=2, show_default=True, help="Processes for simulation and ingest."
)
@click.option("--plan", default="b_protocol_demo", show_default=True, help="Acquisition plan to simulate.")
@click.option("--detectors", default=DEMO_DETECTORS, show_default=True, help="Detectors to simulate.")
@click.option(
    "--registry",
    type=click.Choice(["sqlite", "postgres"]),
    default="sqlite",
    show_default=True,
    help="Registry database: embedded SQLite, or a private PostgreSQL server on loopback.",
)
def demo_cmd(out: str, jobs: int, plan: str, detectors: str, registry: str) -> None:
    """Simulate a run, ingest it into a new butler repo, run the EO pipelines, show the outputs."""
    result = run_demo(out, jobs=jobs, plan=plan, detectors=detectors, registry=registry)
    click.echo("")
    click.echo(f"Demo finished in {result['seconds']:.0f} s.")
    click.echo(f"  raw files and truth : {result['raws']}")
    click.echo(f"  butler repository   : {result['repo']}")
    click.echo(f"  output collection   : {result['collection']}")
    for step in result["steps"]:
        click.echo(f"  step {step.step.name:<6}: {step.status} -> {step.output} {step.message}")
    click.echo("Measured versus injected:")
    for line in result["comparison"]:
        click.echo(f"  {line}")
    click.echo(
        f"Read the outputs with: Butler('{result['repo']}', collections='{result['collection']}')"
        ".get('eoReadNoise', instrument='LSSTCam', detector=94)"
    )
    if result["postgres"]:
        click.echo(
            f"The registry is PostgreSQL (stopped now): run 'eo-baseline postgres start {result['postgres']}'"
            f" and export LSST_DB_AUTH={os.path.join(result['postgres'], 'db-auth.yaml')} to read it."
        )
    click.echo(f"Report: {os.path.abspath(result['report'])}")
