"""Reading, validating and writing LSSTCam raw FITS files.

A raw file holds one CCD exposure: an empty primary HDU with the exposure header, one image HDU per
amplifier (``Segment10`` ... ``Segment00``), each a 576 x 2048 int32 array, normally
Rice-compressed with one tile per row, and, as the camera control system writes them, header-only
housekeeping HDUs after the segments (``REB_COND`` with the REB and CCD temperatures, voltages and
currents, ``CONFIG_COND`` with configuration checksums; older test stands also ``CCD_COND`` and
``TEST_COND``, or housekeeping tables without EXTNAME).  Segments are located by EXTNAME, without
regard to case, as FITS readers do; any HDU that holds no pixels is housekeeping.  cfitsio (through
``fitsio``) is used for speed: it decompresses a full CCD about twice as fast as astropy and can read
a single HDU without touching the others.
"""

from __future__ import annotations

__all__ = [
    "RawFileError",
    "RawFileSummary",
    "check_raw_file",
    "housekeeping_temperatures",
    "locate_hdus",
    "read_housekeeping",
    "detector_from_header",
    "read_primary_header",
    "read_raw",
    "write_raw",
    "write_raw_ccd",
]

import os
import re
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
_TABLE_STRUCTURAL = re.compile(r"^(T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+|THEAP)$")
"""Column-description cards of a binary table, structural as well (housekeeping tables have none)."""


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
    layout : `HduLayout`
        Where the segments and the housekeeping HDUs are.
    """

    path: str
    header: dict[str, Any]
    detector: DetectorInfo
    layout: HduLayout | None = None


@dataclass(frozen=True)
class HduLayout:
    """Where the parts of a raw file are.

    Attributes
    ----------
    segments : `dict` [`str`, `int`]
        HDU index of each amplifier segment, by the camera's EXTNAME (``Segment10``), whatever the
        case of the EXTNAME in the file.
    housekeeping : `list` [(`int`, `str`)]
        ``(HDU index, name)`` of every HDU that holds no pixels: its EXTNAME as written, or
        ``HDU<index>`` when it has none.
    """

    segments: dict[str, int]
    housekeeping: list[tuple[int, str]]


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


def _hdu_label(name: str) -> str:
    return repr(name) if name else "<no EXTNAME>"


def locate_hdus(fits: fitsio.FITS, detector: DetectorInfo, path: str) -> HduLayout:
    """Find the amplifier segments and the housekeeping HDUs of an open raw file.

    Only what cfitsio read when it opened the file (HDU types, EXTNAMEs, dimensions) is used: no
    pixel is decompressed.  A segment is an image HDU whose EXTNAME is one of the detector type's
    segment names, compared without regard to case (as FITS readers match EXTNAME); an HDU that
    holds no pixels (a binary table or a header-only image with NAXIS = 0) is housekeeping,
    wherever it is.

    Parameters
    ----------
    fits : `fitsio.FITS`
        The open file.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        Its detector.
    path : `str`
        File name, for error messages.

    Returns
    -------
    layout : `HduLayout`
        Segment and housekeeping HDU indices.

    Raises
    ------
    RawFileError
        For a segment that is a table or holds no pixels, a duplicated segment, an image HDU with
        pixels that is not a segment, or missing segments.
    """
    ccd_type = detector.ccd_type
    expected = [a.extname for a in ccd_type.amps]
    canonical = {e.lower(): e for e in expected}
    segments: dict[str, int] = {}
    housekeeping: list[tuple[int, str]] = []
    for index in range(1, len(fits)):
        hdu = fits[index]
        name = (hdu.get_extname() or "").strip()
        is_image = hdu.get_exttype() == "IMAGE_HDU"
        dims = list(hdu.get_dims()) if is_image else []
        segment = canonical.get(name.lower())
        if segment is not None:
            if not is_image:
                raise RawFileError(
                    path, f"amplifier segment {name} is a {hdu.get_exttype()}, not an image", index
                )
            if not dims:
                raise RawFileError(path, f"amplifier segment {name} holds no pixels (NAXIS = 0)", index)
            if segment in segments:
                raise RawFileError(
                    path,
                    f"duplicate amplifier segment {segment}: HDU {segments[segment]} and HDU {index} "
                    "both have this EXTNAME",
                    index,
                )
            segments[segment] = index
        elif dims:
            raise RawFileError(
                path,
                f"image HDU {_hdu_label(name)} holds {tuple(dims)} (ny, nx) pixels but is not an "
                f"amplifier segment of a {ccd_type.name} detector (EXTNAMEs {expected[0]} ... "
                f"{expected[-1]})",
                index,
            )
        else:
            housekeeping.append((index, name or f"HDU{index}"))
    missing = [e for e in expected if e not in segments]
    if missing:
        raise RawFileError(
            path,
            f"has {len(segments)} of the {len(expected)} amplifier segments of {ccd_type.name} detector "
            f"{detector.name}; missing: {', '.join(missing)}"
            + (f" (housekeeping HDUs: {', '.join(n for _, n in housekeeping)})" if housekeeping else ""),
        )
    return HduLayout(segments=segments, housekeeping=housekeeping)


def check_raw_file(path: str) -> RawFileSummary:
    """Check the structure of a raw file without decompressing any pixel.

    Verified: the file opens as FITS and is not truncated; the primary header names an LSSTCam
    detector; the file has exactly one image HDU per amplifier of that detector type, found by
    EXTNAME without regard to case (missing or duplicated segments are named), each with 2-d
    integer (not floating-point) data of the raw amplifier shape; every other HDU holds no pixels
    (housekeeping: binary tables or header-only images, in any number and at any place).  Pixel
    values are not looked at: an amplifier that is all zero, saturated or stuck at the bias level
    is a valid raw, for the analysis tasks to flag.

    Parameters
    ----------
    path : `str`
        File to check.

    Returns
    -------
    summary : `RawFileSummary`
        Primary header, detector and HDU layout.

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
        # Truncation first: a file cut short also lacks HDUs, and "truncated" is the useful word.
        last = len(fits) - 1
        end = fits[last].get_offsets()["data_end"]
        if end > size:
            raise RawFileError(
                path, f"file is truncated: {size} bytes on disk, {end} needed by the last HDU", last
            )
        layout = locate_hdus(fits, detector, path)
        want_shape = list(ccd_type.raw_shape)
        for extname, index in layout.segments.items():
            hdu = fits[index]
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
    return RawFileSummary(path=path, header=header, detector=detector, layout=layout)


def _housekeeping_cards(hdr: fitsio.FITSHDR) -> dict[str, Any]:
    """Keywords of a housekeeping HDU, without those that describe the HDU itself."""
    return {
        k: v
        for k, v in _header_to_dict(hdr).items()
        if k not in _STRUCTURAL and not _TABLE_STRUCTURAL.match(k)
    }


def _read_housekeeping(fits: fitsio.FITS, layout: HduLayout, path: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for index, name in layout.housekeeping:
        try:
            cards = _housekeeping_cards(fits[index].read_header())
        except OSError as err:
            reason = f"unreadable housekeeping header {name} ({_short(err)})"
            raise RawFileError(path, reason, index) from None
        # Two HDUs of one name (never seen in camera files) are kept apart rather than merged.
        key = name if name not in out else f"{name}@HDU{index}"
        out[key] = cards
    return out


def read_housekeeping(path: str, detector: DetectorInfo | None = None) -> dict[str, dict[str, Any]]:
    """Read the keywords of the housekeeping HDUs of a raw file (no pixel is read).

    Parameters
    ----------
    path : `str`
        Raw file.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`, optional
        Detector, if known; else taken from the primary header.

    Returns
    -------
    housekeeping : `dict` [`str`, `dict`]
        Keyword -> value of each housekeeping HDU (``REB_COND``, ``CONFIG_COND``...; ``HDU<n>`` for
        one without EXTNAME), in file order; structural keywords (NAXIS, TFIELDS, CHECKSUM...) are
        left out.  Empty for a file without housekeeping HDUs.

    Raises
    ------
    RawFileError
        If the file or its HDU structure is bad.
    """
    try:
        fits = fitsio.FITS(path)
    except OSError as err:
        raise RawFileError(path, f"not a readable FITS file ({_short(err)})") from None
    with fits:
        if detector is None:
            detector = detector_from_header(_header_to_dict(fits[0].read_header()), path)
        return _read_housekeeping(fits, locate_hdus(fits, detector, path), path)


def _finite_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out if np.isfinite(out) else float("nan")


def housekeeping_temperatures(housekeeping: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """CCD and REB temperatures (C) from the housekeeping keywords of a raw file.

    ``ccd_temp_c`` is ``CCDTEMP`` (the CCD temperature sensor read by the REB) and ``reb_temp_c``
    the mean of the REB board temperatures ``TEMP1``, ``TEMP2``... (6 on the 2019 REBs, 10 on the
    current ones), both from ``REB_COND`` or, for files whose housekeeping HDUs have no EXTNAME,
    from the first housekeeping HDU that has them.

    Parameters
    ----------
    housekeeping : mapping
        As returned by `read_housekeeping` (or ``RawCcd.housekeeping``).

    Returns
    -------
    temperatures : `dict` [`str`, `float`]
        ``ccd_temp_c`` and ``reb_temp_c``; NaN when the file does not record them.
    """
    hdus = sorted(housekeeping.items(), key=lambda item: item[0] != "REB_COND")
    ccd = next((_finite_float(c["CCDTEMP"]) for _, c in hdus if "CCDTEMP" in c), float("nan"))
    reb = float("nan")
    for _, cards in hdus:
        boards = [_finite_float(v) for k, v in cards.items() if re.fullmatch(r"TEMP\d+", k)]
        boards = [v for v in boards if np.isfinite(v)]
        if boards:
            reb = float(np.mean(boards))
            break
    return {"ccd_temp_c": ccd, "reb_temp_c": reb}


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
        The exposure, with the keywords of its housekeeping HDUs (see `read_housekeeping`) in
        ``housekeeping``; or its primary header if ``header_only``.

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
        hdus = locate_hdus(fits, detector, path)
        housekeeping = _read_housekeeping(fits, hdus, path)
        result: dict[str, RawAmp] = {}
        for layout in ccd_type.amps:
            if layout.name not in wanted:
                continue
            hdu = fits[hdus.segments[layout.extname]]
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
    return RawCcd(header=header, detector=detector, amps=result, path=str(path), housekeeping=housekeeping)


def _cards(header: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    cards = []
    for name, value in header.items():
        if name in _STRUCTURAL or _TABLE_STRUCTURAL.match(name):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        card: dict[str, Any] = {"name": name, "value": value}
        if comments and name in comments:
            card["comment"] = comments[name]
        cards.append(card)
    return cards


def write_raw(
    path: str,
    header: Mapping[str, Any],
    segments: Iterable[tuple[str, np.ndarray, Mapping[str, Any]]],
    compress: bool = True,
    housekeeping: Iterable[tuple[str, Mapping[str, Any]]] = (),
    comments: Mapping[str, str] | None = None,
    checksum: bool = False,
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
    housekeeping : iterable of (`str`, mapping), optional
        ``(EXTNAME, keywords)`` of housekeeping HDUs, written after the segments as header-only
        binary tables (no column, no row), as the camera writes ``REB_COND`` and ``CONFIG_COND``;
        an empty EXTNAME writes none (older test stands).
    comments : mapping, optional
        Keyword -> comment, for the housekeeping keywords (the camera documents each one).
    checksum : `bool`, optional
        Write CHECKSUM/DATASUM in every extension, as the camera does.
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
                if checksum:
                    fits[-1].write_checksum()
            for extname, cards in housekeeping:
                # create_table_hdu writes only the structural cards: the keywords go in after.
                fits.create_table_hdu(names=[], formats=[], extname=extname or None)
                fits[-1].write_keys(_cards(cards, comments))
                if checksum:
                    fits[-1].write_checksum()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_raw_ccd(path: str, raw: RawCcd, compress: bool = True) -> None:
    """Write a `~lsst.eo.baseline.rawdata.RawCcd` holding all its amplifiers (and housekeeping) to ``path``.

    Housekeeping HDUs named ``HDU<n>`` (read from HDUs without EXTNAME) are written without one.
    """
    missing = [a for a in raw.detector.amp_names if a not in raw.amps]
    if missing:
        raise ValueError(f"Cannot write a partial RawCcd: amplifiers {missing} were not read")
    housekeeping = [
        ("" if re.fullmatch(r"HDU\d+", name) else name.split("@HDU")[0], cards)
        for name, cards in raw.housekeeping.items()
    ]
    write_raw(
        path,
        raw.header,
        ((raw.amps[a].layout.extname, raw.amps[a].array, raw.amps[a].header) for a in raw.detector.amp_names),
        compress=compress,
        housekeeping=housekeeping,
    )
