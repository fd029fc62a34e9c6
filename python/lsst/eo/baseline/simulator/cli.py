"""``eo-baseline simulate``: write a simulated LSSTCam EO run (raw files + truth)."""

from __future__ import annotations

__all__ = ["simulate_cmd"]

import click


@click.command("simulate")
@click.option(
    "--plan",
    default="b_protocol",
    show_default=True,
    help="Acquisition plan: b_protocol, ptc, b_protocol_short, ptc_short, or a plan YAML file.",
)
@click.option(
    "--detectors",
    default="R22_S11",
    show_default=True,
    help="Detectors: names (R22_S11,R01_S01), rafts (R22), ids, 'science' or 'all'.",
)
@click.option("--run", "run", default="13600", show_default=True, help="Run number written as RUNNUM.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed of the run.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("-j", "--jobs", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--max-exposures",
    type=int,
    default=None,
    help="Simulate only the first N exposures of the plan (quick looks; timeline unchanged).",
)
def simulate_cmd(
    plan: str, detectors: str, run: str, seed: int, out_dir: str, jobs: int, max_exposures: int | None
) -> None:
    """Simulate an EO test run: one raw FITS file per CCD and exposure, plus truth.yaml.

    Files go to OUT/<DAYOBS>/<OBSID>/<OBSID>_<RAFT>_<SLOT>.fits; the injected truth to
    OUT/truth.yaml and OUT/truth/*.ecsv (see doc/simulator.rst).
    """
    from .plans import PlanError
    from .run import Simulation

    try:
        sim = Simulation(plan, detectors, run=run, seed=seed, max_exposures=max_exposures)
    except (PlanError, ValueError, KeyError) as err:
        raise click.ClickException(str(err)) from None
    paths = sim.run_all(out_dir, jobs=max(1, jobs))
    click.echo(
        f"Wrote {len(paths)} raw files ({len(sim.detectors)} detectors x {len(sim.exposures)} exposures "
        f"of plan {sim.plan.name}) and {out_dir}/truth.yaml"
    )
