"""Orchestration: truth tables, one raw file per (detector, exposure), optional process pool.

Random streams (all `numpy.random.SeedSequence`):

* detector truth: ``[seed, det_id]``; fixed patterns of amplifier k: ``[seed, det_id, 0, k]``;
* exposure (source jitter, photodiode, temperatures): ``[seed, DAYOBS, SEQNUM]``;
* per exposure and amplifier scalars (bias jitter): ``[seed, det_id, DAYOBS, SEQNUM, 1]``;
* pixels: ``[seed, det_id, DAYOBS, SEQNUM]``, spawned into one child per amplifier.

So every file depends only on (seed, plan, detector, exposure): not on ``-j``, the order of work or
the detector selection.  Workers receive the per-exposure truth they need and rebuild the detector
truth themselves; no state is carried between tasks.
"""

from __future__ import annotations

__all__ = ["SIMULATOR_VERSION", "Simulation", "simulate"]

import functools
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import asdict
from typing import Any

import numpy as np
import yaml
from astropy.table import Table
from lsst.images import Image
from lsst.utils.logging import getLogger

from ..camera import DetectorInfo, get_camera
from ..crosstalk import load_crosstalk
from ..rawdata import RawAmp, RawCcd
from ..rawio import write_raw
from ..version import __version__
from .crosstalk import digitise, inject_crosstalk
from .headers import primary_header, segment_headers
from .housekeeping import HOUSEKEEPING_COMMENTS, housekeeping_hdus
from .model import AmpFixed, make_fixed, simulate_amp
from .plans import ExposureSpec, Plan, load_plan, mjd
from .truth import (
    MODEL_VERSION,
    DetectorTruth,
    ExposureAmpTruth,
    ExposureTruth,
    amp_table_row,
    defects_table,
    detectors_table,
    draw_detector_truth,
    draw_exposure_truth,
    exposure_amp_truths,
)

_LOG = getLogger(__name__)

SIMULATOR_VERSION = f"{__version__}+model{MODEL_VERSION}"
"""Version string written to ``truth.yaml``."""


@functools.lru_cache(maxsize=16)
def _fixed(det_name: str, seed: int, amp_index: int) -> AmpFixed:
    """Fixed patterns of one amplifier, cached per process (one CCD's worth, ~130 MB)."""
    return make_fixed(draw_detector_truth(det_name, seed), amp_index)


def _pixel_streams(seed: int, det_id: int, exposure: ExposureSpec, n_amps: int) -> list[np.random.Generator]:
    root = np.random.SeedSequence([int(seed), int(det_id), exposure.day_obs, exposure.seq_num])
    return [np.random.default_rng(s) for s in root.spawn(n_amps)]


def simulate_ccd_arrays(
    truth: DetectorTruth,
    exposure: ExposureSpec,
    states: Sequence[ExposureAmpTruth],
    amps: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate the raw arrays of one CCD exposure (all or some amplifiers).

    The array of an amplifier is the same whether it is simulated alone or with the others: with
    crosstalk (``exposure.crosstalk``) every amplifier is simulated, as each one's crosstalk comes
    from all the others.

    Parameters
    ----------
    truth : `~lsst.eo.baseline.simulator.truth.DetectorTruth`
        Detector truth.
    exposure : `~lsst.eo.baseline.simulator.plans.ExposureSpec`
        The exposure.
    states : sequence of `~lsst.eo.baseline.simulator.truth.ExposureAmpTruth`
        Per-amplifier values of this exposure, in HDU order.
    amps : iterable of `str`, optional
        Amplifier names (default: all).

    Returns
    -------
    arrays : `dict` [`str`, `numpy.ndarray`]
        int32 raw arrays by amplifier name, in HDU order.
    """
    ccd = truth.detector.ccd_type
    wanted = set(ccd.amp_names if amps is None or exposure.crosstalk else amps)
    streams = _pixel_streams(truth.seed, truth.det_id, exposure, len(truth.amps))
    out: dict[str, np.ndarray] = {}
    for k, amp in enumerate(truth.amps):
        if amp.amp not in wanted:
            continue
        fixed = _fixed(truth.det_name, truth.seed, k)
        out[amp.amp] = simulate_amp(
            amp, ccd.amp(amp.amp), fixed, exposure, states[k], streams[k], ccd.raw_shape,
            digitise=not exposure.crosstalk,
        )  # fmt: skip
    if exposure.crosstalk:
        _add_crosstalk(truth, states, out)
        if amps is not None:
            keep = set(amps)
            out = {a: v for a, v in out.items() if a in keep}
    return out


def _add_crosstalk(truth: DetectorTruth, states: Sequence[ExposureAmpTruth], arrays: dict) -> None:
    """Inject the detector's measured crosstalk matrix into the raw arrays of all its amplifiers."""
    matrix = load_crosstalk(truth.detector)
    if matrix is None:
        for name, signal in arrays.items():
            arrays[name] = digitise(signal)
        return
    by_amp = {a.amp: (a.bias_level + s.bias_drift, s.gain) for a, s in zip(truth.amps, states, strict=True)}
    levels, gains = zip(*(by_amp[name] for name in matrix.amp_names), strict=True)
    inject_crosstalk(arrays, matrix, levels, gains)


def _raw_relpath(det_name: str, exposure: ExposureSpec) -> str:
    return os.path.join(str(exposure.day_obs), exposure.obs_id, f"{exposure.obs_id}_{det_name}.fits")


def _write_task(task: tuple[str, int, str, ExposureSpec, ExposureTruth, list[ExposureAmpTruth], str]) -> str:
    """Simulate and write one CCD exposure (runs in a worker process or inline)."""
    det_name, seed, run, exposure, etruth, states, path = task
    truth = draw_detector_truth(det_name, seed)
    det = truth.detector
    arrays = simulate_ccd_arrays(truth, exposure, states)
    header = primary_header(det, exposure, etruth, run, truth.lsst_num)
    seg = segment_headers(det.ccd_type)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # After the segments, the camera's housekeeping HDUs; checksums in every HDU, as the camera writes.
    write_raw(
        path,
        header,
        ((lay.extname, arrays[lay.name], h) for lay, h in zip(det.ccd_type.amps, seg, strict=True)),
        housekeeping=_housekeeping(det, exposure, run, seed),
        comments=HOUSEKEEPING_COMMENTS,
        checksum=True,
    )
    return path


def _housekeeping(det: DetectorInfo, exposure: ExposureSpec, run: str, seed: int) -> list[tuple[str, dict]]:
    return housekeeping_hdus(mjd(exposure.date(0.0)), det.name, det.raft, str(run), seed)


class Simulation:
    """A simulated EO run: plan, detectors, seed; truth tables and raw files.

    Parameters
    ----------
    plan : `str` or `~lsst.eo.baseline.simulator.plans.Plan`
        Plan name, path, or expanded plan.
    detectors : `str` or sequence
        Detector selection (``"R22_S11,R01"``, ``"all"``...) or `DetectorInfo` objects.
    run : `str` or `int`, optional
        RUNNUM.
    seed : `int`, optional
        Run seed.
    max_exposures : `int`, optional
        Keep only the first exposures of the plan.
    """

    def __init__(
        self,
        plan: str | Plan,
        detectors: str | Sequence[DetectorInfo | str] = "R22_S11",
        run: str | int = "13600",
        seed: int = 1,
        max_exposures: int | None = None,
    ):
        self.plan = (
            plan.truncated(max_exposures) if isinstance(plan, Plan) else load_plan(plan, max_exposures)
        )
        camera = get_camera()
        if isinstance(detectors, str):
            self.detectors = camera.select(detectors)
        else:
            self.detectors = [d if isinstance(d, DetectorInfo) else camera[d] for d in detectors]
        if not self.detectors:
            raise ValueError("No detector selected")
        self.run = str(run)
        self.seed = int(seed)
        self.exposures = self.plan.exposures
        self.exposure_truths = [draw_exposure_truth(e, self.seed) for e in self.exposures]

    def detector_truth(self, det: str | DetectorInfo) -> DetectorTruth:
        """Truth of one detector."""
        return draw_detector_truth(det, self.seed)

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a Simulation lives for one run
    def states(self, det_name: str) -> list[list[ExposureAmpTruth]]:
        """Per exposure and amplifier truth of a detector (``[exposure][amp]``)."""
        return exposure_amp_truths(
            self.detector_truth(det_name), self.exposures, self.exposure_truths, self.seed
        )

    def simulate_exposure(
        self, det: str, index: int, amps: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Raw arrays of exposure ``index`` of detector ``det`` (no file written)."""
        return simulate_ccd_arrays(
            self.detector_truth(det), self.exposures[index], self.states(det)[index], amps
        )

    def raw_handle(self, det: str, index: int) -> SimulatedRawHandle:
        """A butler-handle stand-in that simulates exposure ``index`` of ``det`` on demand."""
        return SimulatedRawHandle(self, det, index)

    def raw_path(self, out_dir: str, det_name: str, index: int) -> str:
        """Output path of one raw file."""
        return os.path.join(out_dir, _raw_relpath(det_name, self.exposures[index]))

    def write_truth(self, out_dir: str) -> str:
        """Write ``truth.yaml`` and the ECSV truth tables; return the path of ``truth.yaml``."""
        tdir = os.path.join(out_dir, "truth")
        os.makedirs(os.path.join(tdir, "exposure_amps"), exist_ok=True)
        os.makedirs(os.path.join(tdir, "defects"), exist_ok=True)
        truths = [self.detector_truth(d) for d in self.detectors]  # small: scalars and defect lists
        amps = Table(rows=[amp_table_row(a) for t in truths for a in t.amps])
        amps.meta["description"] = "Injected per-amplifier parameters (AmpTruth); see doc/simulator.rst."
        amps.write(os.path.join(tdir, "amps.ecsv"), format="ascii.ecsv", overwrite=True)
        detectors_table(truths).write(
            os.path.join(tdir, "detectors.ecsv"), format="ascii.ecsv", overwrite=True
        )
        exp_rows = []
        for e, et in zip(self.exposures, self.exposure_truths, strict=True):
            exp_rows.append(
                {
                    "index": e.index,
                    "exposure_id": e.exposure_id,
                    "day_obs": e.day_obs,
                    "seq_num": e.seq_num,
                    "obs_id": e.obs_id,
                    "block": e.block,
                    "imgtype": e.imgtype,
                    "testtype": e.testtype,
                    "exptime": e.exptime,
                    "darktime": e.darktime,
                    "filter": e.filter,
                    "led": e.led or "",
                    "flux": e.flux,
                    "pair": e.pair,
                    "tseqnum": e.tseqnum,
                    "t_beg": e.t_beg,
                    "t_end": e.t_end,
                    "date_beg": e.date_beg.isoformat(timespec="milliseconds"),
                    "stability_phase": e.stability_phase,
                    "flux_factor": et.flux_factor,
                    "ccobflux": np.nan if et.ccobflux is None else et.ccobflux,
                }
            )
        Table(rows=exp_rows).write(os.path.join(tdir, "exposures.ecsv"), format="ascii.ecsv", overwrite=True)
        exposure_amp_paths: dict[str, str] = {}
        defect_paths: dict[str, str] = {}
        file_rows = []
        for t in truths:
            rows = []
            all_states = exposure_amp_truths(t, self.exposures, self.exposure_truths, self.seed)
            for e, states in zip(self.exposures, all_states, strict=True):
                for a, s in zip(t.amps, states, strict=True):
                    rows.append(
                        {"exposure_id": e.exposure_id, "seq_num": e.seq_num, "amp": a.amp, **asdict(s)}
                    )
                file_rows.append((t.det_name, e.exposure_id, _raw_relpath(t.det_name, e)))
            rel = os.path.join("truth", "exposure_amps", f"{t.det_name}.ecsv")
            Table(rows=rows).write(os.path.join(out_dir, rel), format="ascii.ecsv", overwrite=True)
            exposure_amp_paths[t.det_name] = rel
            rel = os.path.join("truth", "defects", f"{t.det_name}.ecsv")
            defects_table(t).write(os.path.join(out_dir, rel), format="ascii.ecsv", overwrite=True)
            defect_paths[t.det_name] = rel
        Table(rows=file_rows, names=["det_name", "exposure_id", "path"]).write(
            os.path.join(tdir, "files.ecsv"), format="ascii.ecsv", overwrite=True
        )
        index = {
            "simulator_version": SIMULATOR_VERSION,
            "model_version": MODEL_VERSION,
            "seed": self.seed,
            "run": self.run,
            "plan": {
                "name": self.plan.name,
                "path": self.plan.path,
                "n_exposures": len(self.exposures),
                "summary": self.plan.summary(),
                "start": self.plan.start.isoformat(),
            },
            "detectors": [d.name for d in self.detectors],
            "crosstalk": self._crosstalk_record(),
            "units": {
                "charge": "electron",
                "rate": "electron/s/pixel",
                "level": "adu",
                "gain": "electron/adu",
                "a_matrix": "1/electron, [serial lag, parallel lag]",
                "time": "s",
            },
            "tables": {
                "amps": "truth/amps.ecsv",
                "detectors": "truth/detectors.ecsv",
                "exposures": "truth/exposures.ecsv",
                "files": "truth/files.ecsv",
                "exposure_amps": exposure_amp_paths,
                "defects": defect_paths,
            },
            "raw_layout": "<DAYOBS>/<OBSID>/<OBSID>_<RAFT>_<SLOT>.fits",
        }
        path = os.path.join(out_dir, "truth.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(index, f, sort_keys=False)
        return path

    def _crosstalk_record(self) -> dict[str, Any]:
        """What ``truth.yaml`` says of crosstalk: whether injected, and each detector's matrix."""
        injected = any(e.crosstalk for e in self.exposures)
        record: dict[str, Any] = {"injected": injected}
        if injected:
            from ..crosstalk import CROSSTALK_FILE

            matrices = {d.name: load_crosstalk(d) for d in self.detectors}
            record["matrix_file"] = f"lsst.eo.baseline:data/{CROSSTALK_FILE}"
            record["matrices"] = {name: (m.origin if m else None) for name, m in matrices.items()}
        return record

    def tasks(self, out_dir: str) -> Iterator[tuple[Any, ...]]:
        """Work items ``(det, seed, run, exposure, exposure truth, states, path)``, detector-major.

        A generator: the per-exposure truth of one detector at a time is held in memory.
        """
        for d in self.detectors:
            states = exposure_amp_truths(
                self.detector_truth(d), self.exposures, self.exposure_truths, self.seed
            )
            for i, e in enumerate(self.exposures):
                yield (
                    d.name,
                    self.seed,
                    self.run,
                    e,
                    self.exposure_truths[i],
                    states[i],
                    self.raw_path(out_dir, d.name, i),
                )

    def run_all(self, out_dir: str, jobs: int = 1) -> list[str]:
        """Write the truth and every raw file; return the raw file paths (detector-major order)."""
        os.makedirs(out_dir, exist_ok=True)
        self.write_truth(out_dir)
        n = len(self.detectors) * len(self.exposures)
        _LOG.info(
            "Simulating %d CCD exposures (%d detectors x %d exposures of plan %s) into %s, %d process(es)",
            n, len(self.detectors), len(self.exposures), self.plan.name, out_dir, jobs,
        )  # fmt: skip
        start = time.monotonic()
        last = start
        done: list[str] = []

        def progress() -> None:
            nonlocal last
            now = time.monotonic()
            if len(done) == n or now - last > 10.0:
                last = now
                rate = len(done) / max(now - start, 1e-9)
                _LOG.info(
                    "%d/%d files written (%.2f files/s, %.0f s left)",
                    len(done),
                    n,
                    rate,
                    (n - len(done)) / rate,
                )

        if jobs <= 1 or n == 1:
            for task in self.tasks(out_dir):
                done.append(_write_task(task))
                progress()
        else:
            # Bounded memory: at most 2 tasks per worker are queued, each worker holds one CCD
            # exposure plus one CCD's cached fixed patterns, results are only paths.
            ctx = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                pending: set[Future[str]] = set()
                for task in self.tasks(out_dir):
                    if len(pending) >= 2 * jobs:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            done.append(fut.result())
                            progress()
                    pending.add(pool.submit(_write_task, task))
                for fut in as_completed(pending):
                    done.append(fut.result())
                    progress()
        _LOG.info("Done: %d files in %.1f s", len(done), time.monotonic() - start)
        order = {path: k for k, path in enumerate(t[-1] for t in self._task_paths(out_dir))}
        return sorted(done, key=order.__getitem__)

    def _task_paths(self, out_dir: str) -> Iterator[tuple[str]]:
        for d in self.detectors:
            for i in range(len(self.exposures)):
                yield (self.raw_path(out_dir, d.name, i),)


def simulate(
    plan: str | Plan,
    detectors: str | Sequence[DetectorInfo | str],
    out_dir: str,
    run: str | int = "13600",
    seed: int = 1,
    jobs: int = 1,
    max_exposures: int | None = None,
) -> list[str]:
    """Simulate a run: write the truth and one raw file per detector and exposure.

    Parameters
    ----------
    plan : `str` or `~lsst.eo.baseline.simulator.plans.Plan`
        Plan name (``b_protocol``, ``ptc``, ``b_protocol_short``, ``ptc_short``) or YAML path.
    detectors : `str` or sequence
        Detector selection (``"R22_S11,R01_S01"``, ``"R22"``, ``"all"``).
    out_dir : `str`
        Output directory.
    run : `str` or `int`, optional
        RUNNUM.
    seed : `int`, optional
        Run seed.
    jobs : `int`, optional
        Worker processes.
    max_exposures : `int`, optional
        Simulate only the first exposures of the plan.

    Returns
    -------
    paths : `list` [`str`]
        Raw files written.
    """
    sim = Simulation(plan, detectors, run=run, seed=seed, max_exposures=max_exposures)
    return sim.run_all(out_dir, jobs=jobs)


class SimulatedRawHandle:
    """Stand-in for a deferred butler handle of a raw, simulated in memory when read.

    ``get(parameters={"amps": [...]})`` simulates only those amplifiers (the pixels are identical
    to the same amplifiers of the written file), so tasks' ``run`` methods can be exercised on
    long plans for a few amplifiers without writing files.

    Parameters
    ----------
    sim : `Simulation`
        The simulation.
    det : `str`
        Detector name.
    index : `int`
        Exposure index in the plan.
    """

    def __init__(self, sim: Simulation, det: str, index: int):
        self.sim = sim
        self.det = det
        self.index = index
        self.dataId = {"exposure": sim.exposures[index].exposure_id, "detector": get_camera()[det].id}

    def _header(self) -> dict:
        truth = self.sim.detector_truth(self.det)
        return primary_header(
            truth.detector, self.sim.exposures[self.index], self.sim.exposure_truths[self.index],
            self.sim.run, truth.lsst_num,
        )  # fmt: skip

    def get(self, *, component: str | None = None, parameters: dict | None = None) -> RawCcd | dict:
        """The simulated raw (or its header or housekeeping for ``component="header"``/``"housekeeping"``)."""
        header = self._header()
        if component == "header":
            return header
        det = get_camera()[self.det]
        housekeeping = dict(_housekeeping(det, self.sim.exposures[self.index], self.sim.run, self.sim.seed))
        if component == "housekeeping":
            return housekeeping
        amps = (parameters or {}).get("amps") or det.amp_names
        arrays = self.sim.simulate_exposure(self.det, self.index, amps=amps)
        raw_amps = {
            lay.name: RawAmp(layout=lay, image=Image(arrays[lay.name], yx0=(0, 0)), header={})
            for lay in det.ccd_type.amps
            if lay.name in arrays
        }
        return RawCcd(header=header, detector=det, amps=raw_amps, path=None, housekeeping=housekeeping)
