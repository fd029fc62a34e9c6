"""Write small, valid LSSTCam raw files for tests that do not need the simulator's physics.

Files are built from the real headers in ``tests/data/headers`` so that ingest sees real keyword
sets; pixels are a flat level plus Gaussian noise (fast to compress).
"""

from __future__ import annotations

import gzip
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


# Header dumps (every HDU, 80-character cards, each HDU closed by an END card) of real LSSTCam raw
# files from lsst/obs_lsst tests/data/input/lsstCam/raw/ (pixels stripped there, so only headers).
REAL_2021_DUMP = "30211212000310-R22-S22-det098.hdr.txt.gz"
"""E2V R22_S22 flat, 2021: Rice-compressed segments, then REB_COND and CONFIG_COND tables."""
REAL_2019_DUMP = "3019031900001-R10-S02-det029.hdr.txt.gz"
"""ITL R10_S02 bias, 2019 (HEADVER 1): uncompressed segments, then two housekeeping tables without
EXTNAME."""
_IMAGE_STRUCTURAL = frozenset(
    {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE1", "TFORM1",
     "CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM"}
)  # fmt: skip


def real_header_blocks(name: str) -> list:
    """The headers (`astropy.io.fits.Header`) of every HDU of a real raw file's header dump."""
    from astropy.io import fits

    with gzip.open(os.path.join(HEADER_DIR, name), "rt") as f:
        text = f.read()
    blocks, cards = [], []
    for line in text.splitlines():
        if line.rstrip() == "END":
            blocks.append(fits.Header.fromstring("\n".join(cards), sep="\n"))
            cards = []
        else:
            cards.append(line)
    return blocks


def real_raw_hdus(
    name: str = REAL_2021_DUMP,
    *,
    level: float = 20000.0,
    noise: float = 5.0,
    seed: int = 0,
    compress: bool | None = None,
    primary_overrides: dict[str, Any] | None = None,
):
    """HDUs of a real raw file re-filled with pixels, every header card as the camera wrote it.

    Written with astropy (not with the package's own writer), so that reading them tests the reader
    against an independent FITS implementation.  Segments are Gaussian noise of ``noise`` adu about
    ``level``; housekeeping tables are rebuilt from their header only (they have no rows).

    Parameters
    ----------
    name : `str`
        Header dump in ``tests/data/headers``.
    compress : `bool`, optional
        Rice-compress segments (one tile per row); default: as in the real file.
    primary_overrides : `dict`, optional
        Primary keywords to change (e.g. CCDSLOT, to make another detector's file).

    Returns
    -------
    hdus : `astropy.io.fits.HDUList`
        Not yet written; the truth pixels are the ``.data`` of the segment HDUs.
    """
    from astropy.io import fits

    blocks = real_header_blocks(name)
    rng = np.random.default_rng(seed)
    primary = blocks[0].copy()
    for key, value in (primary_overrides or {}).items():
        primary[key] = value
    hdus = fits.HDUList([fits.PrimaryHDU(header=primary)])
    for block in blocks[1:]:
        if str(block.get("EXTNAME", "")).lower().startswith("segment"):
            compressed = bool(block.get("ZIMAGE", False))
            shape = (block["ZNAXIS2"], block["ZNAXIS1"]) if compressed else (block["NAXIS2"], block["NAXIS1"])
            data = np.rint(level + noise * rng.standard_normal(shape)).astype(np.int32)
            cards = [
                c for c in block.cards if c.keyword not in _IMAGE_STRUCTURAL and not c.keyword.startswith("Z")
            ]
            header = fits.Header(cards)
            if compress if compress is not None else compressed:
                hdu = fits.CompImageHDU(
                    data, header=header, compression_type="RICE_1", tile_shape=(1, shape[1])
                )
            else:
                hdu = fits.ImageHDU(data, header=header)
            hdus.append(hdu)
        else:
            hdus.append(fits.BinTableHDU(header=block.copy()))
    return hdus


def segment_truth(hdus) -> dict[str, np.ndarray]:
    """Pixels of each segment of `real_raw_hdus` output, by EXTNAME as the camera spells it."""
    out = {}
    for hdu in hdus[1:]:
        if hdu.data is not None and hdu.header.get("EXTNAME", "").lower().startswith("segment"):
            out[hdu.header["EXTNAME"][:7].title() + hdu.header["EXTNAME"][7:]] = np.asarray(hdu.data)
    return out
