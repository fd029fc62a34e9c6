"""Helpers of the reliability tests: corrupting amplifiers of raw files, a failing task, polling.

`EoAlwaysFailsTask` is imported by ``pipetask`` subprocesses: they need the repository root on
``PYTHONPATH`` (`ROOT`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping

from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections
from lsst.pipe.base import connectionTypes as cT

from lsst.eo.baseline.ampFlags import ADC_MAX
from lsst.eo.baseline.rawio import read_raw, write_raw_ccd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""Repository root (holds the ``tests`` package)."""

DEAD_LEVEL = 15000
"""Constant value written into a dead amplifier (a plausible bias level, no signal, no noise)."""


def corrupt_amps(paths: Iterable[str], changes: Mapping[str, str]) -> None:
    """Rewrite raw files with some amplifiers broken, in place.

    Parameters
    ----------
    paths : iterable of `str`
        Raw files.
    changes : mapping [`str`, `str`]
        Amplifier name -> ``zero`` (all pixels 0), ``saturated`` (all pixels at the ADC maximum) or
        ``dead`` (all pixels at `DEAD_LEVEL`).
    """
    values = {"zero": 0, "saturated": ADC_MAX, "dead": DEAD_LEVEL}
    for path in paths:
        raw = read_raw(path)
        for amp, kind in changes.items():
            raw[amp].array[:] = values[kind]
        write_raw_ccd(path, raw)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed; return its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class EoAlwaysFailsConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Connections of `EoAlwaysFailsTask`."""

    raws = cT.Input(
        name="raw",
        doc="Raw exposures of one detector.",
        storageClass="EoRawCcd",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
        deferLoad=True,
    )
    out = cT.Output(
        name="eoTestNeverWritten",
        doc="Never written.",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "detector"),
    )


class EoAlwaysFailsConfig(PipelineTaskConfig, pipelineConnections=EoAlwaysFailsConnections):
    """Configuration of `EoAlwaysFailsTask` (no options)."""


class EoAlwaysFailsTask(PipelineTask):
    """A task whose every quantum raises: a step in which some quanta fail."""

    ConfigClass = EoAlwaysFailsConfig
    _DefaultName = "eoAlwaysFails"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        raise RuntimeError("EoAlwaysFailsTask fails on purpose")
