"""The registry of EO metrics (``data/metrics.yaml``): sources, labels, specifications, tolerances."""

from __future__ import annotations

__all__ = ["MetricSpec", "Section", "load_metrics", "load_sections", "out_of_spec"]

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from .paths import package_data


@dataclass(frozen=True)
class Section:
    """A section of the report.

    Attributes
    ----------
    key, title : `str`
        Identifier and heading.
    """

    key: str
    title: str


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Attributes
    ----------
    name : `str`
        Column name in ``eoRunSummary``.
    label, unit : `str`
        For plots and tables.
    section : `str`
        Report section key.
    dataset, column : `str` or `None`
        Per-detector table and column it comes from (None for derived metrics).
    spec_max, spec_min : `float` or `None`
        Requirement limits (both `None`: the metric has no requirement).
    spec_source : `str`
        Where the requirement comes from (LCA-57 item, LCA-128, document number), or, for a metric
        without one, the statement that there is none.
    value_range : `tuple` or `None`
        Colour range of the focal-plane mosaic.
    log : `bool`
        Log colour scale.
    tolerance_abs, tolerance_rel : `float` or `None`
        Change between runs above which an amplifier is flagged.
    reduce : `str`
        How several rows per amplifier combine (``max`` or ``extreme`` = farthest from 1).
    """

    name: str
    label: str
    unit: str
    section: str
    dataset: str | None = None
    column: str | None = None
    spec_max: float | None = None
    spec_min: float | None = None
    spec_source: str = ""
    value_range: tuple[float, float] | None = None
    log: bool = False
    tolerance_abs: float | None = None
    tolerance_rel: float | None = None
    reduce: str = "single"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def derived(self) -> bool:
        """True if computed from other summary columns."""
        return self.dataset is None

    @property
    def title(self) -> str:
        """Label with the unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def has_requirement(self) -> bool:
        """True if the metric has a requirement (a maximum and/or a minimum)."""
        return self.spec_max is not None or self.spec_min is not None

    def requirement_text(self) -> str:
        """The threshold with its source, or the statement that there is no requirement."""
        if not self.has_requirement:
            return self.spec_source or "no requirement"
        return f"{self.spec_text()} ({self.spec_source or 'source not given'})"

    def tolerance_text(self) -> str:
        """The run-to-run tolerance as text."""
        parts = []
        if self.tolerance_abs is not None:
            parts.append(f"|change| > {self.tolerance_abs:g}")
        if self.tolerance_rel is not None:
            parts.append(f"|change| > {100 * self.tolerance_rel:g}% of the reference")
        return " or ".join(parts) or "none"

    def spec_text(self) -> str:
        """The specification as text (empty if none)."""
        parts = []
        if self.spec_max is not None:
            parts.append(f"<= {self.spec_max:g}")
        if self.spec_min is not None:
            parts.append(f">= {self.spec_min:g}")
        return " and ".join(parts)

    def changed(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """True where the change between two runs exceeds the tolerance."""
        before = np.asarray(before, dtype=np.float64)
        after = np.asarray(after, dtype=np.float64)
        diff = np.abs(after - before)
        flag = np.zeros(diff.shape, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.tolerance_abs is not None:
                flag |= diff > self.tolerance_abs
            if self.tolerance_rel is not None:
                flag |= diff > self.tolerance_rel * np.abs(before)
        return flag & np.isfinite(diff)


def _spec(name: str, raw: dict[str, Any]) -> MetricSpec:
    spec = raw.get("spec") or {}
    tol = raw.get("tolerance") or {}
    rng = raw.get("range")
    return MetricSpec(
        name=name,
        label=raw["label"],
        unit=raw.get("unit", ""),
        section=raw["section"],
        dataset=None if raw.get("derived") else raw["dataset"],
        column=None if raw.get("derived") else raw["column"],
        spec_max=spec.get("max"),
        spec_min=spec.get("min"),
        spec_source=str(spec.get("source", "")),
        value_range=tuple(rng) if rng else None,
        log=bool(raw.get("log", False)),
        tolerance_abs=tol.get("abs"),
        tolerance_rel=tol.get("rel"),
        reduce=raw.get("reduce", "single"),
    )


@functools.cache
def _load() -> dict[str, Any]:
    with open(package_data("metrics.yaml")) as f:
        return yaml.safe_load(f)


def load_sections() -> list[Section]:
    """Report sections in order."""
    return [Section(s["key"], s["title"]) for s in _load()["sections"]]


def load_metrics(spec_overrides: str | None = None) -> list[MetricSpec]:
    """The metrics in report order, with specifications optionally overridden from a YAML file.

    Parameters
    ----------
    spec_overrides : `str`, optional
        YAML file with a ``metrics:`` mapping of metric name to ``{spec: {max|min: value}}`` and/or
        ``{tolerance: {abs|rel: value}}``.
    """
    raw = {k: dict(v) for k, v in _load()["metrics"].items()}
    if spec_overrides:
        with open(spec_overrides) as f:
            overrides = yaml.safe_load(f) or {}
        for name, values in (overrides.get("metrics") or {}).items():
            if name not in raw:
                raise KeyError(f"{spec_overrides}: unknown metric {name!r}; known: {sorted(raw)}")
            values = dict(values)
            if "spec" in values:
                spec = dict(values["spec"] or {})
                spec.setdefault("source", f"overridden by {spec_overrides}")
                values["spec"] = spec
            raw[name].update(values)
    return [_spec(name, values) for name, values in raw.items()]


def out_of_spec(metric: MetricSpec, values: np.ndarray) -> np.ndarray:
    """True where a value violates the metric's specification (NaN values never do)."""
    values = np.asarray(values, dtype=np.float64)
    bad = np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if metric.spec_max is not None:
            bad |= values > metric.spec_max
        if metric.spec_min is not None:
            bad |= values < metric.spec_min
    return bad
