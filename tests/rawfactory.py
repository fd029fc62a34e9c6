"""Write small, valid LSSTCam raw files for tests that do not need the simulator's physics.

Files are built from the real headers in ``tests/data/headers`` so that ingest sees real keyword
sets; pixels are a flat level plus Gaussian noise (fast to compress).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import yaml

from lsst.eo.baseline.camera import get_camera
from lsst.eo.baseline.rawio import write_raw

HEADER_DIR = os.path.join(os.path.dirname(__file__), "data", "headers")
ITL_HEADER = "lsstCam-MC_C_20231107_000078_R01_S01.json"
E2V_HEADER = "lsstCam_MC_C_20231125_000600_R12_S10.yaml"


def load_real_header(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (primary, segment) keyword dicts of a real header dump."""
    path = os.path.join(HEADER_DIR, name)
    with open(path) as f:
        data = json.load(f) if name.endswith(".json") else yaml.safe_load(f)
    data.pop("__CONTENT__", None)
    primary: dict[str, Any] = {}
    segment: dict[str, Any] = {}
    target = primary
    for key, value in data.items():
        if key == "XTENSION":
            target = segment
        target[key] = value
    return primary, segment


def make_raw(
    path: str,
    *,
    detector: str = "R22_S11",
    seqnum: int = 1,
    dayobs: int = 20261125,
    imgtype: str = "BIAS",
    testtype: str | None = "BIAS",
    runnum: str | None = "13600",
    exptime: float = 0.0,
    filter: str = "NONE",
    level: float = 20000.0,
    noise: float = 5.0,
    signal: float = 0.0,
    overrides: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    seed: int = 0,
) -> str:
    """Write one raw file with a real header's keyword set, adjusted to the arguments.

    ``level`` is the bias (adu) everywhere, ``signal`` is added to the imaging area, ``noise`` is
    the Gaussian read noise (adu) in every pixel.  Returns ``path``.
    """
    det = get_camera()[detector]
    template = E2V_HEADER if det.vendor == "E2V" else ITL_HEADER
    primary, _ = load_real_header(template)
    obsid = f"MC_C_{dayobs}_{seqnum:06d}"
    date = f"{str(dayobs)[:4]}-{str(dayobs)[4:6]}-{str(dayobs)[6:]}"
    t0 = 3600.0 + 30.0 * seqnum
    beg = f"{date}T{int(t0 // 3600):02d}:{int(t0 % 3600 // 60):02d}:{t0 % 60:06.3f}"
    t1 = t0 + exptime + 0.1
    end = f"{date}T{int(t1 // 3600):02d}:{int(t1 % 3600 // 60):02d}:{t1 % 60:06.3f}"
    primary.update(
        {
            "OBSID": obsid,
            "DAYOBS": str(dayobs),
            "SEQNUM": seqnum,
            "IMGTYPE": imgtype,
            "TESTTYPE": testtype,
            "RUNNUM": runnum,
            "EXPTIME": exptime,
            "FILTER": filter,
            "DARKTIME": exptime + 0.1,
            "DATE-BEG": beg,
            "DATE-END": end,
            "RAFTBAY": det.raft,
            "CCDSLOT": det.slot,
            "CCD_MANU": det.vendor,
            "DETSIZE": det.ccd_type.detsize(),
            "FILENAME": f"{obsid}_{det.name}.fits",
        }
    )
    if testtype is None:
        primary.pop("TESTTYPE")
    if runnum is None:
        primary.pop("RUNNUM")
    primary.update(overrides or {})
    for key in drop:
        primary.pop(key, None)
    rng = np.random.default_rng(seed)
    segments = []
    for amp in det.ccd_type.amps:
        array = level + noise * rng.standard_normal(det.ccd_type.raw_shape)
        d = amp.raw.data_bbox
        array[d.y.start : d.y.stop, d.x.start : d.x.stop] += signal
        seg_header = {
            "EXTNAME": amp.extname,
            "DATASEC": amp.datasec(),
            "DETSEC": amp.raw_header_detsec(),
            "DETSIZE": det.ccd_type.detsize(),
        }
        segments.append((amp.extname, np.rint(array).astype(np.int32), seg_header))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_raw(path, primary, segments)
    return path
