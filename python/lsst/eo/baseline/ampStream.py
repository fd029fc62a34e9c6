"""Reading a set of raw exposures of one detector amplifier by amplifier.

Per-detector tasks that need every exposure of an amplifier at once (calibration stacks, pair
differences) read the amplifiers in small groups: each raw HDU is still decompressed exactly once
per quantum, while memory holds only ``n_exposures x group`` amplifiers instead of whole CCDs.
"""

from __future__ import annotations

__all__ = ["RawFileHandle", "amp_groups", "exposure_id_of", "read_amp_group"]

from collections.abc import Iterator, Sequence
from typing import Any

from .rawdata import RawCcd


def amp_groups(amp_names: Sequence[str], group_size: int) -> Iterator[list[str]]:
    """Split amplifier names into consecutive groups of ``group_size`` (>= 1)."""
    size = max(1, int(group_size))
    for start in range(0, len(amp_names), size):
        yield list(amp_names[start : start + size])


def read_amp_group(handles: Sequence[Any], amps: Sequence[str]) -> list[RawCcd]:
    """Read the same amplifiers from several raw exposures.

    Parameters
    ----------
    handles : sequence
        Deferred dataset handles of ``raw`` datasets (anything with ``get(parameters=...)``).
    amps : sequence of `str`
        Amplifier names.

    Returns
    -------
    raws : `list` [`~lsst.eo.baseline.rawdata.RawCcd`]
        One partial `RawCcd` per handle, in the same order.
    """
    return [h.get(parameters={"amps": list(amps)}) for h in handles]


class RawFileHandle:
    """Minimal stand-in for a butler deferred handle of a raw file on disk.

    Lets tasks' ``run`` methods be used on plain files (tests, notebooks) exactly as in a quantum.

    Parameters
    ----------
    path : `str`
        Raw FITS file.
    """

    def __init__(self, path: str):
        self.path = str(path)

    def get(self, *, component: str | None = None, parameters: dict[str, Any] | None = None) -> Any:
        """Read the raw (``amps`` parameter honoured) or its ``header`` component."""
        from .rawio import read_raw

        if component == "header":
            return read_raw(self.path, header_only=True)
        amps = (parameters or {}).get("amps")
        return read_raw(self.path, amps=amps)

    def __repr__(self) -> str:
        return f"RawFileHandle({self.path!r})"


def exposure_id_of(handle: Any, raw: RawCcd) -> int:
    """Exposure id from a butler handle's data ID, else from the header (DAYOBS * 100000 + SEQNUM)."""
    data_id = getattr(handle, "dataId", None)
    if data_id is not None:
        try:
            return int(data_id["exposure"])
        except (KeyError, TypeError):
            pass
    return int(raw.header["DAYOBS"]) * 100000 + int(raw.header["SEQNUM"])
