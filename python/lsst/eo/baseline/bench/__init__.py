"""Benchmarks of eo_baseline components (each module runnable with ``python -m``)."""

from __future__ import annotations

__all__ = ["write_figures"]

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
