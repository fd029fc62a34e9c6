"""Benchmarks of eo_baseline components (each module runnable with ``python -m``)."""

from __future__ import annotations

__all__ = ["write_figures", "write_plan"]

import json
import os
from typing import Any


def write_figures(figures: dict[str, Any], out: str, echo: bool = True) -> None:
    """Write benchmark figures to the JSON file ``out`` (directories created), and print them."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(figures, f, indent=2)
    if echo:
        print(json.dumps(figures, indent=2))


def write_plan(directory: str, name: str, text: str) -> str:
    """Write a simulator plan into ``directory`` (created) as ``name``; return its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path
