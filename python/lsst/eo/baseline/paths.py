"""Locations of the package's data files and of the source tree's ``config/`` and ``pipelines/``."""

from __future__ import annotations

__all__ = ["config_dir", "package_data", "pipelines_dir", "source_root"]

import os
from importlib import resources

_HERE = os.path.dirname(os.path.abspath(__file__))


def source_root() -> str:
    """Top of the eo_baseline source tree (the directory holding ``pipelines/`` and ``config/``).

    eo_baseline is installed in editable mode (``make setup``) or set up with eups, so the source
    tree is always next to the code; ``EO_BASELINE_DIR`` overrides it.
    """
    root = os.environ.get("EO_BASELINE_DIR") or os.path.normpath(os.path.join(_HERE, "..", "..", "..", ".."))
    if not os.path.isdir(os.path.join(root, "pipelines")):
        raise FileNotFoundError(
            f"eo_baseline source tree not found at {root!r} (no pipelines/ directory): install with "
            "'pip install -e' from a clone, or set EO_BASELINE_DIR to the clone"
        )
    return root


def config_dir(*parts: str) -> str:
    """Path inside the source tree's ``config/`` directory."""
    return os.path.join(source_root(), "config", *parts)


def pipelines_dir(*parts: str) -> str:
    """Path inside the source tree's ``pipelines/`` directory."""
    return os.path.join(source_root(), "pipelines", *parts)


def package_data(*parts: str) -> str:
    """Path of a file shipped in the package's ``data/`` directory."""
    return str(resources.files("lsst.eo.baseline").joinpath("data", *parts))
