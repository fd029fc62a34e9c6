"""Acquisition plans: YAML descriptions of an EO test run, expanded into timed exposures.

A plan is data (``config/plans/*.yaml``).  It lists *blocks* of exposures in acquisition order;
`load_plan` expands them into `ExposureSpec` objects carrying everything the header writer and the
physics model need (image/test type, exposure and dark times, LED, source flux, pairing, DAYOBS,
SEQNUM, OBSID and TAI times).  The expansion is pure arithmetic on the plan: no random numbers, so
every process of a parallel simulation derives the same timeline.

Plan file schema (all times in seconds, fluxes in electrons per second per pixel for an amplifier
of unit response)::

    name: b_protocol
    description: free text
    start: "2026-01-14T19:00:00"   # TAI DATE-BEG of the first exposure
    first_seqnum: 1                 # SEQNUM of the first exposure of the first day
    timing:
      readout: 2.0                  # DATE-END to end of readout
      overhead: 0.6                 # end of readout to next DATE-BEG
      dark_overhead: 0.092          # DARKTIME - EXPTIME of exposures without light
      flat_overhead: 0.5            # DARKTIME - EXPTIME of flats
    defaults: {filter: NONE, led: red}
    crosstalk: false                # inject intra-CCD crosstalk (default false)
    blocks:
      - name: bias                  # free label (kept in the truth tables)
        imgtype: BIAS               # IMGTYPE header value
        testtype: BIAS              # TESTTYPE header value
        count: 20                   # repeats of each exposure time (default 1)
        exptime: 0.0                # scalar or list (default 0)
      - name: ptc
        imgtype: FLAT
        testtype: PTC
        pairs: true                 # two consecutive exposures per level
        flux: 5000.0
        signal: {logspace: [200, 3.0e5, 40]}   # e-/pixel; exptime = signal / flux
      - name: lambda
        imgtype: FLAT
        testtype: LAMBDA
        exptime: 10.0
        count: 2
        leds:                       # one sub-block per LED, with its own flux / filter
          - {led: uv, flux: 4000.0}
          - {led: red, flux: 3000.0}
      - name: persistence_darks
        gap_before: 600             # idle time before the block (s)
        ...

``exptime`` may also be ``{logspace: [min, max, n]}`` or ``{linspace: [min, max, n]}``.  Exposure
times are rounded to milliseconds.
"""

from __future__ import annotations

__all__ = [
    "LEDS",
    "ExposureSpec",
    "Plan",
    "PlanError",
    "list_plans",
    "load_plan",
    "resolve_plan_path",
]

import datetime
import glob
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import yaml

from ..paths import config_dir

LEDS = ("uv", "blue", "red", "nm750", "nm850", "nm960")
"""CCOB LED names known to the simulator (CCOBLED header values)."""

_DAY_OBS_OFFSET = datetime.timedelta(hours=12)
_MJD_EPOCH = datetime.datetime(1858, 11, 17)


class PlanError(ValueError):
    """A plan file that cannot be expanded."""


@dataclass(frozen=True)
class ExposureSpec:
    """One exposure of a plan (identical for every detector).

    Attributes
    ----------
    index : `int`
        0-based position in the plan.
    block : `str`
        Name of the plan block the exposure comes from.
    imgtype, testtype : `str`
        IMGTYPE and TESTTYPE header values.
    exptime, darktime : `float`
        Exposure (shutter-open) and dark (integration) times, s.
    filter : `str`
        FILTER header value.
    led : `str` or `None`
        CCOB LED (``None`` for exposures without light).
    flux : `float`
        Nominal source flux, e-/s/pixel for an amplifier of unit response (0 without light).
    pair : `int`
        Pair number for flat pairs (``-1`` otherwise).
    tseqnum : `int`
        0-based index of the exposure among those of the same TESTTYPE (TSEQNUM).
    t_beg, t_end : `float`
        DATE-BEG and DATE-END in seconds since the plan start; ``t_end - t_beg = darktime``.
    day_obs, seq_num : `int`
        DAYOBS (YYYYMMDD) and SEQNUM.
    date_beg : `datetime.datetime`
        DATE-BEG (TAI, naive).
    stability_phase : `float`
        For GAIN_STABILITY exposures, the fraction of the stability sequence elapsed (0 at the
        first, 1 at the last, linear in time); 0 otherwise.
    crosstalk : `bool`
        Inject intra-CCD crosstalk (the plan's ``crosstalk`` key; `lsst.eo.baseline.simulator.crosstalk`).
    """

    index: int
    block: str
    imgtype: str
    testtype: str
    exptime: float
    darktime: float
    filter: str
    led: str | None
    flux: float
    pair: int
    tseqnum: int
    t_beg: float
    t_end: float
    day_obs: int
    seq_num: int
    date_beg: datetime.datetime
    stability_phase: float = 0.0
    crosstalk: bool = False

    @property
    def obs_id(self) -> str:
        """OBSID (``MC_C_YYYYMMDD_NNNNNN``)."""
        return f"MC_C_{self.day_obs}_{self.seq_num:06d}"

    @property
    def exposure_id(self) -> int:
        """obs_lsst exposure id ``DAYOBS * 100000 + SEQNUM``."""
        return self.day_obs * 100000 + self.seq_num

    @property
    def has_light(self) -> bool:
        """True if the source illuminates the CCD during this exposure."""
        return self.flux > 0 and self.exptime > 0

    @property
    def nominal_signal(self) -> float:
        """Nominal photo-charge (e-/pixel) for an amplifier of unit response."""
        return self.flux * self.exptime

    def date(self, offset: float = 0.0) -> datetime.datetime:
        """TAI date ``offset`` seconds after DATE-BEG."""
        return self.date_beg + datetime.timedelta(seconds=offset)


@dataclass
class Plan:
    """An expanded acquisition plan.

    Attributes
    ----------
    name : `str`
        Plan name.
    description : `str`
        Free text.
    path : `str`
        File it was read from.
    start : `datetime.datetime`
        TAI DATE-BEG of the first exposure.
    exposures : `list` [`ExposureSpec`]
        Exposures in acquisition order.
    timing : `dict`
        Timing constants used.
    """

    name: str
    description: str
    path: str
    start: datetime.datetime
    exposures: list[ExposureSpec] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.exposures)

    def truncated(self, max_exposures: int | None) -> Plan:
        """Return the plan limited to its first ``max_exposures`` exposures (timeline unchanged)."""
        if max_exposures is None or max_exposures >= len(self.exposures):
            return self
        if max_exposures < 1:
            raise PlanError(f"max_exposures must be >= 1, got {max_exposures}")
        return replace(self, exposures=self.exposures[:max_exposures])

    def summary(self) -> dict[str, int]:
        """Number of exposures per ``IMGTYPE/TESTTYPE``."""
        counts: dict[str, int] = {}
        for e in self.exposures:
            key = f"{e.imgtype}/{e.testtype}"
            counts[key] = counts.get(key, 0) + 1
        return counts


def list_plans() -> list[str]:
    """Names of the plans shipped in ``config/plans``."""
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(config_dir("plans", "*.yaml")))


def resolve_plan_path(plan: str) -> str:
    """Path of a plan given by name (``b_protocol``) or by file path."""
    if os.path.isfile(plan):
        return os.path.abspath(plan)
    candidate = config_dir("plans", plan if plan.endswith(".yaml") else f"{plan}.yaml")
    if os.path.isfile(candidate):
        return candidate
    raise PlanError(f"No plan {plan!r}: not a file, and not one of the shipped plans {list_plans()}")


def _values(spec: Any, what: str) -> list[float]:
    """Expand a scalar, list, or ``{logspace|linspace: [a, b, n]}`` into a list of floats."""
    if spec is None:
        return [0.0]
    if isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in ("logspace", "linspace"):
            raise PlanError(f"{what}: expected a number, a list or {{logspace|linspace: [min, max, n]}}")
        kind, args = next(iter(spec.items()))
        lo, hi, n = float(args[0]), float(args[1]), int(args[2])
        if kind == "logspace":
            if lo <= 0 or hi <= 0:
                raise PlanError(f"{what}: logspace bounds must be positive")
            return list(np.geomspace(lo, hi, n))
        return list(np.linspace(lo, hi, n))
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return [float(v) for v in spec]
    return [float(spec)]


def _expand_block(block: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand one block into exposure dicts (without timing)."""
    name = str(block.get("name", block.get("testtype", "block")))
    for key in ("imgtype", "testtype"):
        if key not in block:
            raise PlanError(f"block {name!r}: missing {key!r}")
    imgtype = str(block["imgtype"]).upper()
    testtype = str(block["testtype"]).upper()
    count = int(block.get("count", 1))
    pairs = bool(block.get("pairs", False))
    variants: list[Mapping[str, Any]] = list(block.get("leds", [{}])) or [{}]
    out: list[dict[str, Any]] = []
    for variant in variants:
        merged = {**block, **variant}
        flux = float(merged.get("flux", 0.0))
        light = imgtype not in ("BIAS", "DARK") and flux > 0
        led = str(merged.get("led", defaults.get("led", "red"))) if light else None
        if led is not None and led not in LEDS:
            raise PlanError(f"block {name!r}: unknown LED {led!r}; known: {LEDS}")
        filt = str(merged.get("filter", defaults.get("filter", "NONE")))
        if "signal" in merged:
            if flux <= 0:
                raise PlanError(f"block {name!r}: 'signal' needs a positive 'flux'")
            exptimes = [s / flux for s in _values(merged["signal"], f"block {name!r} signal")]
        else:
            exptimes = _values(merged.get("exptime", 0.0), f"block {name!r} exptime")
        for t in exptimes:
            t = round(float(t), 3)
            if t < 0:
                raise PlanError(f"block {name!r}: negative exposure time {t}")
            for _ in range(count):
                for k in range(2 if pairs else 1):
                    out.append(
                        {
                            "block": name,
                            "imgtype": imgtype,
                            "testtype": testtype,
                            "exptime": t,
                            "filter": filt,
                            "led": led,
                            "flux": flux if light else 0.0,
                            "paired": pairs,
                            "first_of_pair": pairs and k == 0,
                            "gap_before": float(block.get("gap_before", 0.0)) if not out else 0.0,
                        }
                    )
    return out


def _day_obs(date: datetime.datetime) -> int:
    return int((date - _DAY_OBS_OFFSET).strftime("%Y%m%d"))


def mjd(date: datetime.datetime) -> float:
    """Modified Julian Date of a naive datetime."""
    return (date - _MJD_EPOCH).total_seconds() / 86400.0


def load_plan(plan: str, max_exposures: int | None = None) -> Plan:
    """Read and expand a plan.

    Parameters
    ----------
    plan : `str`
        Name of a shipped plan (``b_protocol``, ``ptc``, ``b_protocol_short``, ``ptc_short``) or
        path of a plan YAML file.
    max_exposures : `int`, optional
        Keep only the first exposures (for quick runs; the timeline is not changed).

    Returns
    -------
    plan : `Plan`
        The expanded plan.
    """
    path = resolve_plan_path(plan)
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, Mapping) or "blocks" not in spec:
        raise PlanError(f"{path}: a plan needs a 'blocks' list")
    timing = {"readout": 2.0, "overhead": 0.6, "dark_overhead": 0.092, "flat_overhead": 0.5}
    timing.update({k: float(v) for k, v in (spec.get("timing") or {}).items()})
    defaults = spec.get("defaults") or {}
    start = datetime.datetime.fromisoformat(str(spec.get("start", "2026-01-14T19:00:00")))
    first_seqnum = int(spec.get("first_seqnum", 1))
    raw: list[dict[str, Any]] = []
    for block in spec["blocks"]:
        raw.extend(_expand_block(block, defaults))
    if not raw:
        raise PlanError(f"{path}: the plan has no exposures")

    exposures: list[ExposureSpec] = []
    t = 0.0
    day = _day_obs(start)
    seq = first_seqnum - 1
    pair = -1
    tseq: dict[str, int] = {}
    for i, r in enumerate(raw):
        if i > 0:
            t += timing["readout"] + timing["overhead"]
        t += r["gap_before"]
        date_beg = start + datetime.timedelta(seconds=t)
        this_day = _day_obs(date_beg)
        if this_day != day:
            day, seq = this_day, 0
        seq += 1
        light = r["flux"] > 0 and r["exptime"] > 0
        darktime = round(r["exptime"] + (timing["flat_overhead"] if light else timing["dark_overhead"]), 4)
        if r["first_of_pair"]:
            pair += 1
        n = tseq.get(r["testtype"], 0)
        tseq[r["testtype"]] = n + 1
        exposures.append(
            ExposureSpec(
                index=i,
                block=r["block"],
                imgtype=r["imgtype"],
                testtype=r["testtype"],
                exptime=r["exptime"],
                darktime=darktime,
                filter=r["filter"],
                led=r["led"],
                flux=r["flux"],
                pair=pair if r["paired"] else -1,
                tseqnum=n,
                t_beg=t,
                t_end=t + darktime,
                day_obs=day,
                seq_num=seq,
                date_beg=date_beg,
            )
        )
        t += darktime
    stab = [e for e in exposures if e.testtype == "GAIN_STABILITY"]
    if len(stab) > 1:
        t0, t1 = stab[0].t_beg, stab[-1].t_beg
        phases = {e.index: (e.t_beg - t0) / (t1 - t0) for e in stab}
        exposures = [replace(e, stability_phase=phases.get(e.index, 0.0)) for e in exposures]
    if spec.get("crosstalk", False):
        exposures = [replace(e, crosstalk=True) for e in exposures]
    result = Plan(
        name=str(spec.get("name", os.path.splitext(os.path.basename(path))[0])),
        description=str(spec.get("description", "")).strip(),
        path=path,
        start=start,
        exposures=exposures,
        timing=timing,
    )
    return result.truncated(max_exposures)
