"""LSSTCam camera geometry: detectors, vendors and raw amplifier layout.

Everything here is derived from one data file, ``data/lsstcam_camera.yaml``; no geometry number
lives in code.  Amplifiers are described with the `lsst.images.cameras` pydantic models so that
other stack code can consume them.

Amplifier placement and flips are the stack's cameraGeom (obs_lsst ``policy/cameraHeader.yaml``):
C1x in the top row, C0x in the bottom row.  The camera's DETSEC/DTV/DTM header keywords follow a
vertically mirrored layout (obs_lsst DM-36115); they are available as `AmpLayout.raw_header_detsec`
and `AmpLayout.raw_header_dtv_dtm` for writing headers as the camera does, and are never used to
place pixels.
"""

from __future__ import annotations

__all__ = [
    "AmpLayout",
    "Camera",
    "CcdType",
    "DetectorInfo",
    "HeaderPlacement",
    "NominalAmp",
    "get_camera",
    "nominal_amps",
]

import csv
import functools
import math
from dataclasses import dataclass, field
from importlib import resources

import yaml
from lsst.images import Box
from lsst.images.cameras import Amplifier, AmplifierRawGeometry, ReadoutCorner

_CAMERA_FILE = "lsstcam_camera.yaml"


def _box(spec: list[int]) -> Box:
    """Make a `~lsst.images.Box` from an ``[x0, y0, nx, ny]`` list."""
    x0, y0, nx, ny = spec
    return Box.factory[y0 : y0 + ny, x0 : x0 + nx]


def _cos_sin(degrees: float) -> tuple[float, float]:
    """Cosine and sine of an angle given in degrees, exact for multiples of 90 degrees."""
    quarter, rest = divmod(float(degrees), 90.0)
    if rest == 0.0:
        return [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(quarter) % 4]
    rad = math.radians(degrees)
    return math.cos(rad), math.sin(rad)


def _assembled_readout_corner(flip_x: bool, flip_y: bool) -> ReadoutCorner:
    """Readout corner of an amplifier in the assembled CCD.

    The raw array has its output node at the lower left; flipping it in x moves the node to the
    right, flipping it in y moves it to the top.
    """
    return {
        (False, False): ReadoutCorner.LL,
        (True, False): ReadoutCorner.LR,
        (False, True): ReadoutCorner.UL,
        (True, True): ReadoutCorner.UR,
    }[(flip_x, flip_y)]


@dataclass(frozen=True)
class HeaderPlacement:
    """Place and flips of an amplifier in the layout of the camera's DETSEC header keywords.

    This is *not* cameraGeom: the camera writes DETSEC as the vertical mirror of the cameraGeom
    layout (Segment1x in the bottom row), which obs_lsst records as incorrect (DM-36115).  It is
    kept only to write headers as the real camera does.

    Attributes
    ----------
    ix, iy : `int`
        Grid position of the segment in the header layout.
    flip_x, flip_y : `bool`
        Whether the header's DTM1_1 / DTM2_2 are -1.
    """

    ix: int
    iy: int
    flip_x: bool
    flip_y: bool


@dataclass(frozen=True)
class AmpLayout:
    """One amplifier of a CCD type: where its raw HDU is and where it goes.

    Attributes
    ----------
    name : `str`
        Amplifier name (``C10``).
    extname : `str`
        EXTNAME of its raw HDU (``Segment10``).
    hdu : `int`
        1-based HDU index in the raw file.
    ix, iy : `int`
        Position in the 8 x 2 grid of the assembled CCD (cameraGeom ``ixy``).
    half : `str`
        ``top`` (C1x, iy = 1) or ``bottom`` (C0x, iy = 0); the wavefront sensors' C1x are ``top``.
    flip_x, flip_y : `bool`
        Flips applied to the raw data box when it is placed in the assembled CCD (cameraGeom
        ``flipXY``).
    amplifier : `lsst.images.cameras.Amplifier`
        Full geometry: assembled bbox, readout corner, unassembled raw geometry.
    header : `HeaderPlacement`
        Place of the segment in the camera's DETSEC header layout (header writing only).
    """

    name: str
    extname: str
    hdu: int
    ix: int
    iy: int
    half: str
    flip_x: bool
    flip_y: bool
    amplifier: Amplifier
    header: HeaderPlacement

    @property
    def raw(self) -> AmplifierRawGeometry:
        """Raw-amplifier geometry (boxes in raw readout orientation)."""
        assert self.amplifier.unassembled_raw_geometry is not None
        return self.amplifier.unassembled_raw_geometry

    @property
    def bbox(self) -> Box:
        """Box of this amplifier's data in the trimmed, assembled CCD."""
        return self.amplifier.bbox

    @property
    def readout_corner(self) -> ReadoutCorner:
        """Corner of the assembled CCD block nearest the output node (from the cameraGeom flips)."""
        return self.amplifier.readout_corner

    def raw_header_detsec(self) -> str:
        """DETSEC value the camera writes in this segment's raw header.

        1-based, inclusive, a reversed range for a flipped axis, in the camera's header layout
        (`HeaderPlacement`), which is the vertical mirror of cameraGeom: e.g. e2v Segment10 gives
        ``'[512:1,1:2002]'``.  Do not use it to place pixels; use `bbox`.
        """
        (x0, x1), (y0, y1) = self._header_span()
        xs = (x1, x0 + 1) if self.header.flip_x else (x0 + 1, x1)
        ys = (y1, y0 + 1) if self.header.flip_y else (y0 + 1, y1)
        return f"[{xs[0]}:{xs[1]},{ys[0]}:{ys[1]}]"

    def raw_header_dtv_dtm(self) -> tuple[int, int, float, float]:
        """DTV1, DTV2, DTM1_1, DTM2_2 the camera writes in this segment's raw header.

        They map 1-based raw pixels onto the header DETSEC: ``x = DTM1_1 * x_raw + DTV1``,
        ``y = DTM2_2 * y_raw + DTV2`` (DTM1_2 = DTM2_1 = 0).
        """
        data = self.raw.data_bbox
        (x0, x1), (y0, y1) = self._header_span()
        # First data column/row (1-based) goes to the block's low edge, or its high edge if flipped.
        rx, ry = data.x.start + 1, data.y.start + 1
        if self.header.flip_x:
            dtm1, dtv1 = -1.0, x1 + rx
        else:
            dtm1, dtv1 = 1.0, x0 + 1 - rx
        if self.header.flip_y:
            dtm2, dtv2 = -1.0, y1 + ry
        else:
            dtm2, dtv2 = 1.0, y0 + 1 - ry
        return int(dtv1), int(dtv2), dtm1, dtm2

    def _header_span(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """0-based half-open (x, y) ranges of the data block in the header layout."""
        ny, nx = self.raw.data_bbox.shape
        h = self.header
        return (h.ix * nx, (h.ix + 1) * nx), (h.iy * ny, (h.iy + 1) * ny)

    def datasec(self) -> str:
        """DATASEC header value (1-based, inclusive) of the raw data box."""
        d = self.raw.data_bbox
        return f"[{d.x.start + 1}:{d.x.stop},{d.y.start + 1}:{d.y.stop}]"


@dataclass(frozen=True)
class CcdType:
    """Geometry shared by all CCDs of one type (ITL, E2V, ITL_G, ITL_WF).

    Attributes
    ----------
    name : `str`
        Type name as in ``lsstcam_amps.csv`` (``ITL``, ``E2V``, ``ITL_G``, ``ITL_WF``).
    vendor : `str`
        CCD manufacturer as written in the CCD_MANU header keyword (``ITL`` or ``E2V``).
    model : `str`
        CCD model (CCD_TYPE keyword).
    purpose : `str`
        ``SCIENCE``, ``GUIDER`` or ``WAVEFRONT``.
    raw_shape : `tuple` [`int`, `int`]
        ``(ny, nx)`` of each raw amplifier array.
    amps : `list` [`AmpLayout`]
        Amplifiers in HDU order.
    header_size : `tuple` [`int`, `int`]
        ``(nx, ny)`` the camera writes in DETSIZE (for the wavefront half-CCDs this is the size of
        a full CCD, larger than `shape`).
    """

    name: str
    vendor: str
    model: str
    purpose: str
    raw_shape: tuple[int, int]
    amps: list[AmpLayout]
    header_size: tuple[int, int]

    @property
    def amp_names(self) -> list[str]:
        """Amplifier names in HDU order."""
        return [a.name for a in self.amps]

    @property
    def data_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of one amplifier's data box."""
        return tuple(self.amps[0].raw.data_bbox.shape)  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the trimmed, assembled CCD."""
        ny, nx = self.data_shape
        return (ny * (1 + max(a.iy for a in self.amps)), nx * (1 + max(a.ix for a in self.amps)))

    def detsize(self) -> str:
        """DETSIZE value of the camera's raw headers (not necessarily `shape`: see ``header_size``)."""
        nx, ny = self.header_size
        return f"[1:{nx},1:{ny}]"

    def amp(self, name: str) -> AmpLayout:
        """Return the layout of amplifier ``name``."""
        for a in self.amps:
            if a.name == name:
                return a
        raise KeyError(f"No amplifier {name!r} in CCD type {self.name}; known: {self.amp_names}")


@dataclass(frozen=True)
class DetectorInfo:
    """One LSSTCam detector.

    Attributes
    ----------
    id : `int`
        obs_lsst detector id.
    name : `str`
        Full name ``Rxy_Sab``.
    raft, slot : `str`
        Raft (``R22``) and slot (``S11``) names.
    ccd_type : `CcdType`
        Geometry of the CCD.
    focal_plane_mm : `tuple` [`float`, `float`]
        Nominal centre in the focal plane (mm), for plots.
    yaw_deg : `float`
        Counter-clockwise rotation of the detector's pixel axes in the focal plane (degrees; 0
        for science CCDs, 0-270 for corner-raft sensors, as obs_lsst's cameraGeom).
    """

    id: int
    name: str
    raft: str
    slot: str
    ccd_type: CcdType
    focal_plane_mm: tuple[float, float] = field(default=(0.0, 0.0))
    yaw_deg: float = 0.0

    @property
    def yaw_cos_sin(self) -> tuple[float, float]:
        """Cosine and sine of `yaw_deg` (exact for quarter turns)."""
        return _cos_sin(self.yaw_deg)

    @property
    def vendor(self) -> str:
        """CCD manufacturer (``ITL`` or ``E2V``)."""
        return self.ccd_type.vendor

    @property
    def purpose(self) -> str:
        """Detector purpose (``SCIENCE``, ``GUIDER``, ``WAVEFRONT``)."""
        return self.ccd_type.purpose

    @property
    def amp_names(self) -> list[str]:
        """Amplifier names in raw HDU order."""
        return self.ccd_type.amp_names

    def dimension_record(self) -> dict:
        """Fields of the butler ``detector`` dimension record (without instrument)."""
        return {
            "id": self.id,
            "full_name": self.name,
            "name_in_raft": self.slot,
            "raft": self.raft,
            "purpose": self.purpose,
        }


class Camera:
    """The LSSTCam detectors with lookup by id or name.

    Parameters
    ----------
    spec : `dict`
        Parsed camera data file.
    """

    def __init__(self, spec: dict):
        self.name: str = spec["instrument"]
        nx, ny = spec["raw_amp_shape"]
        self.ccd_types: dict[str, CcdType] = {
            name: self._make_ccd_type(name, tspec, spec[tspec["segments"]], (ny, nx))
            for name, tspec in spec["ccd_types"].items()
        }
        self.physical_filters: list[tuple[str, str]] = [
            (f["name"], f["band"]) for f in spec["physical_filters"]
        ]
        detectors: list[DetectorInfo] = []
        raft_pitch = spec["raft_pitch_mm"]
        ccd_pitch = spec["ccd_pitch_mm"]

        def raft_centre(raft: str) -> tuple[float, float]:
            row, col = int(raft[1]), int(raft[2])
            return ((col - 2) * raft_pitch, (row - 2) * raft_pitch)

        for raft_spec in spec["science_rafts"]:
            raft = raft_spec["raft"]
            cx, cy = raft_centre(raft)
            for slot in spec["science_slots"]:
                row, col = int(slot[1]), int(slot[2])
                detectors.append(
                    DetectorInfo(
                        id=len(detectors),
                        name=f"{raft}_{slot}",
                        raft=raft,
                        slot=slot,
                        ccd_type=self.ccd_types[raft_spec["ccd_type"]],
                        focal_plane_mm=(cx + (col - 1) * ccd_pitch, cy + (row - 1) * ccd_pitch),
                    )
                )
        for raft in spec["corner_rafts"]:
            cx, cy = raft_centre(raft)
            raft_yaw = float(spec["corner_raft_yaw_deg"][raft])
            cos, sin = _cos_sin(raft_yaw)
            for slot_spec in spec["corner_slots"]:
                slot = slot_spec["slot"]
                geom = spec["corner_slot_geometry"][slot]
                ox, oy = geom["offset"]
                detectors.append(
                    DetectorInfo(
                        id=len(detectors),
                        name=f"{raft}_{slot}",
                        raft=raft,
                        slot=slot,
                        ccd_type=self.ccd_types[slot_spec["ccd_type"]],
                        focal_plane_mm=(cx + cos * ox - sin * oy, cy + sin * ox + cos * oy),
                        yaw_deg=(float(geom["yaw"]) + raft_yaw) % 360.0,
                    )
                )
        self._by_id = {d.id: d for d in detectors}
        self._by_name = {d.name: d for d in detectors}

    @staticmethod
    def _make_ccd_type(name: str, tspec: dict, segments: list[dict], raw_shape: tuple[int, int]) -> CcdType:
        ny, nx = raw_shape
        raw_bbox = Box.factory[0:ny, 0:nx]
        data = _box(tspec["data"])
        dny, dnx = data.shape
        amps = []
        for hdu, seg in enumerate(segments, start=1):
            flip_x, flip_y = tspec["flips"][seg["half"]]
            hx, hy = seg["detsec_ixy"]
            header = HeaderPlacement(hx, hy, *tspec["detsec_flips"][seg["half"]])
            raw_geom = AmplifierRawGeometry(
                bbox=raw_bbox,
                data_bbox=data,
                flip_x=flip_x,
                flip_y=flip_y,
                serial_overscan_bbox=_box(tspec["serial_overscan"]),
                parallel_overscan_bbox=_box(tspec["parallel_overscan"]),
                prescan_bbox=_box(tspec["serial_prescan"]),
                readout_corner=ReadoutCorner.LL,
            )
            ix, iy = seg["ix"], seg["iy"]
            amplifier = Amplifier(
                name=seg["amp"],
                bbox=Box.factory[iy * dny : (iy + 1) * dny, ix * dnx : (ix + 1) * dnx],
                readout_corner=_assembled_readout_corner(flip_x, flip_y),
                unassembled_raw_geometry=raw_geom,
            )
            amps.append(
                AmpLayout(
                    name=seg["amp"],
                    extname=seg["extname"],
                    hdu=hdu,
                    ix=ix,
                    iy=iy,
                    half=seg["half"],
                    flip_x=flip_x,
                    flip_y=flip_y,
                    amplifier=amplifier,
                    header=header,
                )
            )
        return CcdType(
            name=name,
            vendor=tspec["vendor"],
            model=str(tspec["model"]),
            purpose=tspec["purpose"],
            raw_shape=raw_shape,
            amps=amps,
            header_size=tuple(tspec["detsec_size"]),
        )

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(self._by_id.values())

    def __getitem__(self, key: int | str) -> DetectorInfo:
        try:
            if isinstance(key, str):
                return self._by_name[key]
            return self._by_id[int(key)]
        except KeyError:
            raise KeyError(f"No LSSTCam detector {key!r}") from None

    def __contains__(self, key: int | str) -> bool:
        return (key in self._by_name) if isinstance(key, str) else (key in self._by_id)

    @property
    def science_detectors(self) -> list[DetectorInfo]:
        """The 189 science CCDs."""
        return [d for d in self if d.purpose == "SCIENCE"]

    @property
    def rafts(self) -> list[str]:
        """Raft names in detector-id order."""
        return list(dict.fromkeys(d.raft for d in self))

    def select(self, spec: str) -> list[DetectorInfo]:
        """Select detectors from a comma-separated list of names, rafts, ids or ``all``.

        Parameters
        ----------
        spec : `str`
            E.g. ``"R22_S11,R01_S01"``, ``"R22"`` (a whole raft), ``"94,95"``, ``"all"``
            (every detector), ``"science"`` (the 189 science CCDs).

        Returns
        -------
        detectors : `list` [`DetectorInfo`]
            Selected detectors in id order, without duplicates.
        """
        chosen: dict[int, DetectorInfo] = {}
        for token in (t.strip() for t in spec.split(",")):
            if not token:
                continue
            if token == "all":
                chosen.update((d.id, d) for d in self)
            elif token == "science":
                chosen.update((d.id, d) for d in self.science_detectors)
            elif token.isdigit():
                d = self[int(token)]
                chosen[d.id] = d
            elif token in self._by_name:
                chosen[self._by_name[token].id] = self._by_name[token]
            elif any(d.raft == token for d in self):
                chosen.update((d.id, d) for d in self if d.raft == token)
            else:
                raise ValueError(
                    f"Unknown detector selection {token!r}: expected a detector name (R22_S11), "
                    "a raft (R22), a detector id, 'science' or 'all'."
                )
        return [chosen[k] for k in sorted(chosen)]


@functools.cache
def get_camera() -> Camera:
    """Return the LSSTCam camera, parsed once from the package data file."""
    text = resources.files("lsst.eo.baseline").joinpath("data", _CAMERA_FILE).read_text()
    return Camera(yaml.safe_load(text))


@dataclass(frozen=True)
class NominalAmp:
    """Camera-model values of one amplifier, as recorded from EO testing (obs_lsst).

    Attributes
    ----------
    lsst_num : `str`
        CCD serial (``LSST_NUM``).
    gain : `float`
        Gain (e-/adu).
    read_noise : `float`
        Read noise (e-).
    saturation : `float`
        Saturation level (adu).
    """

    lsst_num: str
    gain: float
    read_noise: float
    saturation: float


@functools.cache
def _nominal_table() -> dict[str, dict[str, NominalAmp]]:
    text = resources.files("lsst.eo.baseline").joinpath("data", "lsstcam_amps.csv").read_text()
    table: dict[str, dict[str, NominalAmp]] = {}
    for row in csv.DictReader(text.splitlines()):
        table.setdefault(f"{row['raft']}_{row['slot']}", {})[row["amp"]] = NominalAmp(
            lsst_num=row["lsst_num"],
            gain=float(row["gain"]),
            read_noise=float(row["read_noise"]),
            saturation=float(row["saturation"]),
        )
    return table


def nominal_amps(detector: str) -> dict[str, NominalAmp]:
    """Camera-model gain, read noise and saturation of every amplifier of a detector.

    These are the values obs_lsst's camera carries (``data/lsstcam_amps.csv``); they are what ISR
    uses when no PTC gain is available ("camera-model gains" in cp_pipe's terms).

    Parameters
    ----------
    detector : `str`
        Detector name (``R22_S11``).
    """
    try:
        return _nominal_table()[detector]
    except KeyError:
        raise KeyError(f"No nominal amplifier values for detector {detector!r}") from None
