"""Matching flat exposures into pairs, as cp_pipe's PTC extraction does (section 2.1)."""

from __future__ import annotations

__all__ = ["pair_exposures"]

import math
from collections.abc import Sequence


def pair_exposures(
    exposures: Sequence[tuple[int, float]],
    mode: str = "TIME",
    atol: float = 5e-3,
    rtol: float = 1e-5,
) -> tuple[list[tuple[int, int]], list[int]]:
    """Group flat exposures into pairs.

    Parameters
    ----------
    exposures : sequence of (`int`, `float`)
        ``(exposure id, key)`` where the key is the exposure time (``TIME``) or the source flux
        setting (``FLUX``); ignored for ``EXPID``.
    mode : `str`
        ``TIME`` or ``FLUX``: walking the exposures in id order, an exposure whose key matches the
        previous unpaired exposure's (``isclose`` with ``atol``/``rtol``) completes a pair (cp_pipe's
        rule: only consecutive exposures pair).  Deliberate deviation: a third exposure with the
        same key starts a new pair instead of being dropped, so four equal exposures give two
        pairs.
        ``EXPID``: exposures 2k and 2k+1 of the id-sorted list pair.
    atol, rtol : `float`
        Tolerances of the key comparison (cp_pipe: 5e-3 s and 1e-5).

    Returns
    -------
    pairs : `list` [(`int`, `int`)]
        ``(first id, second id)``; a pair is identified by its first exposure.
    unpaired : `list` [`int`]
        Exposure ids left without a partner.
    """
    ordered = sorted(exposures, key=lambda e: e[0])
    pairs: list[tuple[int, int]] = []
    unpaired: list[int] = []
    if mode == "EXPID":
        for i in range(0, len(ordered) - 1, 2):
            pairs.append((ordered[i][0], ordered[i + 1][0]))
        if len(ordered) % 2:
            unpaired.append(ordered[-1][0])
        return pairs, unpaired
    if mode not in ("TIME", "FLUX"):
        raise ValueError(f"Unknown pairing mode {mode!r}: use TIME, FLUX or EXPID")
    anchor: tuple[int, float] | None = None
    for exp_id, key in ordered:
        if anchor is not None and math.isclose(key, anchor[1], rel_tol=rtol, abs_tol=atol):
            pairs.append((anchor[0], exp_id))
            anchor = None
            continue
        if anchor is not None:
            unpaired.append(anchor[0])
        anchor = (exp_id, key)
    if anchor is not None:
        unpaired.append(anchor[0])
    return pairs, unpaired
