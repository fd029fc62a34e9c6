"""Reading, validating and writing LSSTCam raw FITS files.

A raw file holds one CCD exposure: an empty primary HDU with the exposure header and one image HDU
per amplifier (``Segment10`` ... ``Segment00``), each a 576 x 2048 int32 array, normally
Rice-compressed with one tile per row.  cfitsio (through ``fitsio``) is used for speed: it
decompresses a full CCD about twice as fast as astropy and can read a single HDU without touching
the others.
"""

from __future__ import annotations

__all__ = [
    "RawFileError",
    "RawFileSummary",
    "check_raw_file",
    "detector_from_header",
    "read_primary_header",
    "read_raw",
    "write_raw",
    "write_raw_ccd",
]

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fitsio
import numpy as np
from lsst.images import Image

from .camera import DetectorInfo, get_camera
from .rawdata import RawAmp, RawCcd

# Header cards that describe the HDU structure itself; never copied between files.
_STRUCTURAL = frozenset(
    {
        "SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
        "TFIELDS", "TTYPE1", "TFORM1", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2",
        "ZTILE1", "ZTILE2", "ZCMPTYPE", "ZNAME1", "ZVAL1", "ZNAME2", "ZVAL2", "ZTENSION",
        "ZPCOUNT", "ZGCOUNT", "ZQUANTIZ", "ZDITHER0", "ZSIMPLE", "ZEXTEND", "CHECKSUM", "DATASUM",
        "ZHECKSUM", "ZDATASUM", "COMMENT", "HISTORY", "BSCALE", "BZERO", "EXTNAME",
    }
)  # fmt: skip


class RawFileError(ValueError):
    """A raw file that cannot be used, with the file, the HDU and the reason.

    Parameters
    ----------
    path : `str`
        Offending file.
    reason : `str`
        What is wrong, in words a camera scientist can act on.
    hdu : `int` or `str`, optional
        HDU index or EXTNAME concerned, if any.
    """

    def __init__(self, path: str, reason: str, hdu: int | str | None = None):
        self.path = str(path)
        self.reason = reason
        self.hdu = hdu
        where = f" (HDU {hdu})" if hdu is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")


@dataclass(frozen=True)
class RawFileSummary:
    """What a structural check of a raw file found.

    Attributes
    ----------
    path : `str`
        Absolute path of the file.
    header : `dict`
        Primary header.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Detector identified from RAFTBAY/CCDSLOT.
    """

    path: str
    header: dict[str, Any]
    detector: DetectorInfo


def _header_to_dict(hdr: fitsio.FITSHDR) -> dict[str, Any]:
    """Convert a fitsio header to a plain dict (COMMENT/HISTORY dropped, FITS nulls -> None)."""
    out: dict[str, Any] = {}
    for rec in hdr.records():
        name = rec.get("name")
        if not name or name in ("COMMENT", "HISTORY", "CONTINUE"):
            continue
        out[name] = rec.get("value")
    return out


def read_primary_header(path: str) -> dict[str, Any]:
    """Read only the primary header of a raw file.

    Raises
    ------
    RawFileError
        If the file is not a readable FITS file.
    """
    try:
        return _header_to_dict(fitsio.read_header(path, ext=0))
    except OSError as err:
        raise RawFileError(path, f"not a readable FITS file ({_short(err)})", hdu=0) from None


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text if len(text) < 200 else text[:200] + "..."


def detector_from_header(header: Mapping[str, Any], path: str = "<header>") -> DetectorInfo:
    """Identify the LSSTCam detector of a raw file from RAFTBAY and CCDSLOT.

    Raises
    ------
    RawFileError
        If the keywords are missing or name no LSSTCam detector.
    """
    raft = header.get("RAFTBAY")
    slot = header.get("CCDSLOT")
    if not raft or not slot:
        missing = [k for k, v in (("RAFTBAY", raft), ("CCDSLOT", slot)) if not v]
        raise RawFileError(
            path, f"missing header keyword(s) {', '.join(missing)}: cannot tell the detector", 0
        )
    name = f"{str(raft).strip()}_{str(slot).strip()}"
    camera = get_camera()
    if name not in camera:
        raise RawFileError(path, f"RAFTBAY/CCDSLOT give {name!r}, which is not an LSSTCam detector", 0)
    return camera[name]


def check_raw_file(path: str) -> RawFileSummary:
    """Check the structure of a raw file without decompressing any pixel.

    Verified: the file opens as FITS and is not truncated; the primary header names an LSSTCam
    detector; the file has exactly one image HDU per amplifier of that detector type (missing or
    unexpected EXTNAMEs are named), with the expected EXTNAMEs, 2-d integer (not floating-point)
    data and the raw amplifier shape.  Pixel values are not looked at: an amplifier that is all
    zero, saturated or stuck at the bias level is a valid raw, for the analysis tasks to flag.

    Parameters
    ----------
    path : `str`
        File to check.

    Returns
    -------
    summary : `RawFileSummary`
        Primary header and detector.

    Raises
    ------
    RawFileError
        Describing the first problem found (file, HDU, reason).
    """
    path = os.path.abspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise RawFileError(path, f"cannot access file ({err.strerror})") from None
    if size < 2880:
        raise RawFileError(path, f"file is {size} bytes, too short to be FITS (truncated or empty)")
    try:
        fits = fitsio.FITS(path)
    except OSError as err:
        raise RawFileError(path, f"not a readable FITS file ({_short(err)})") from None
    with fits:
        try:
            header = _header_to_dict(fits[0].read_header())
        except OSError as err:
            raise RawFileError(path, f"unreadable primary header ({_short(err)})", 0) from None
        detector = detector_from_header(header, path)
        ccd_type = detector.ccd_type
        expected = [a.extname for a in ccd_type.amps]
        # Truncation first: a file cut short also has too few HDUs, and "truncated" is the useful word.
        last = len(fits) - 1
        end = fits[last].get_offsets()["data_end"]
        if end > size:
            raise RawFileError(
                path, f"file is truncated: {size} bytes on disk, {end} needed by the last HDU", last
            )
        n_img = len(fits) - 1
        if n_img != len(expected):
            names = [fits[i].get_extname() for i in range(1, len(fits))]
            missing = [e for e in expected if e not in names]
            extra = [n or "<no EXTNAME>" for n in names if n not in expected]
            detail = f"; missing: {', '.join(missing)}" if missing else ""
            detail += f"; unexpected: {', '.join(extra)}" if extra else ""
            raise RawFileError(
                path,
                f"has {n_img} extension HDUs, expected {len(expected)} amplifier segments for "
                f"{ccd_type.name} detector {detector.name}{detail}",
            )
        want_shape = list(ccd_type.raw_shape)
        for index, extname in enumerate(expected, start=1):
            hdu = fits[index]
            got = hdu.get_extname()
            if got != extname:
                raise RawFileError(path, f"EXTNAME is {got!r}, expected {extname!r}", index)
            if hdu.get_exttype() != "IMAGE_HDU":
                raise RawFileError(path, f"{extname} is not an image HDU", index)
            dims = hdu.get_dims()
            if list(dims) != want_shape:
                raise RawFileError(
                    path,
                    f"{extname} has shape {tuple(dims)} (ny, nx), expected {tuple(want_shape)}"
                    + (f" (NAXIS = {len(dims)}, expected 2)" if len(dims) != 2 else ""),
                    index,
                )
            info = hdu.get_info()
            bitpix = info.get("img_equiv_type", info.get("img_type"))
            if bitpix is not None and bitpix < 0:
                raise RawFileError(
                    path, f"{extname} holds floating-point pixels (BITPIX {bitpix}), expected integers", index
                )
    return RawFileSummary(path=path, header=header, detector=detector)


def read_raw(
    path: str,
    amps: Sequence[str] | None = None,
    detector: DetectorInfo | None = None,
    header_only: bool = False,
) -> RawCcd | dict[str, Any]:
    """Read a raw file, decompressing only the requested amplifiers.

    Parameters
    ----------
    path : `str`
        Raw FITS file.
    amps : sequence of `str`, optional
        Amplifier names to read (default: all of the detector's amplifiers).
    detector : `~lsst.eo.baseline.camera.DetectorInfo`, optional
        Detector, if known (e.g. from the butler data ID); else taken from the header.
    header_only : `bool`, optional
        Return just the primary header (a `dict`).

    Returns
    -------
    raw : `~lsst.eo.baseline.rawdata.RawCcd` or `dict`
        The exposure, or its primary header if ``header_only``.

    Raises
    ------
    RawFileError
        If the file, an HDU, or an amplifier name is bad.
    """
    try:
        fits = fitsio.FITS(path)
    except OSError as err:
        raise RawFileError(path, f"not a readable FITS file ({_short(err)})") from None
    with fits:
        header = _header_to_dict(fits[0].read_header())
        if header_only:
            return header
        if detector is None:
            detector = detector_from_header(header, path)
        ccd_type = detector.ccd_type
        wanted = list(ccd_type.amp_names) if amps is None else list(amps)
        unknown = [a for a in wanted if a not in ccd_type.amp_names]
        if unknown:
            raise RawFileError(path, f"no amplifier(s) {unknown} on {ccd_type.name} detector {detector.name}")
        result: dict[str, RawAmp] = {}
        for layout in ccd_type.amps:
            if layout.name not in wanted:
                continue
            try:
                hdu = fits[layout.extname]
            except (OSError, ValueError):
                raise RawFileError(path, f"missing amplifier HDU {layout.extname}", layout.extname) from None
            try:
                array = hdu.read()
                seg_header = _header_to_dict(hdu.read_header())
            except OSError as err:
                raise RawFileError(
                    path,
                    f"cannot decompress {layout.extname} ({_short(err)}); file truncated?",
                    layout.extname,
                ) from None
            if array is None or array.shape != ccd_type.raw_shape:
                shape = None if array is None else array.shape
                raise RawFileError(
                    path,
                    f"{layout.extname} has shape {shape}, expected {ccd_type.raw_shape}",
                    layout.extname,
                )
            if array.dtype != np.int32:
                if not np.issubdtype(array.dtype, np.integer):
                    raise RawFileError(
                        path,
                        f"{layout.extname} holds {array.dtype} pixels, expected integers",
                        layout.extname,
                    )
                array = array.astype(np.int32)
            result[layout.name] = RawAmp(layout=layout, image=Image(array, yx0=(0, 0)), header=seg_header)
    return RawCcd(header=header, detector=detector, amps=result, path=str(path))


def _cards(header: Mapping[str, Any]) -> list[dict[str, Any]]:
    cards = []
    for name, value in header.items():
        if name in _STRUCTURAL:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        cards.append({"name": name, "value": value})
    return cards


def write_raw(
    path: str,
    header: Mapping[str, Any],
    segments: Iterable[tuple[str, np.ndarray, Mapping[str, Any]]],
    compress: bool = True,
) -> None:
    """Write a raw file in the LSSTCam format.

    Parameters
    ----------
    path : `str`
        Output file; written to a temporary name and renamed, so a reader never sees a partial
        file.
    header : mapping
        Primary header keywords.
    segments : iterable of (`str`, `numpy.ndarray`, mapping)
        ``(EXTNAME, int32 array, segment header)`` in HDU order.
    compress : `bool`, optional
        Rice-compress each segment with one tile per row, as the camera does.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with fitsio.FITS(tmp, "rw", clobber=True) as fits:
            fits.write(None, header=_cards(header))
            for extname, array, seg_header in segments:
                array = np.ascontiguousarray(array, dtype=np.int32)
                kwargs: dict[str, Any] = {"extname": extname, "header": _cards(seg_header)}
                if compress:
                    kwargs.update(compress="RICE", tile_dims=[1, array.shape[1]])
                fits.write(array, **kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_raw_ccd(path: str, raw: RawCcd, compress: bool = True) -> None:
    """Write a `~lsst.eo.baseline.rawdata.RawCcd` holding all its amplifiers to ``path``."""
    missing = [a for a in raw.detector.amp_names if a not in raw.amps]
    if missing:
        raise ValueError(f"Cannot write a partial RawCcd: amplifiers {missing} were not read")
    write_raw(
        path,
        raw.header,
        ((raw.amps[a].layout.extname, raw.amps[a].array, raw.amps[a].header) for a in raw.detector.amp_names),
        compress=compress,
    )
