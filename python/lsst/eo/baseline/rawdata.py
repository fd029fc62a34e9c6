"""In-memory raw CCD exposure: what a task gets for the ``raw`` dataset type."""

from __future__ import annotations

__all__ = ["RawAmp", "RawCcd"]

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lsst.images import Box, Image

from .camera import AmpLayout, DetectorInfo


def _view(array: np.ndarray, full: Box, box: Box | None) -> np.ndarray:
    """Numpy view of ``box`` inside an array covering ``full``."""
    if box is None:
        return array[0:0, 0:0]
    return array[tuple(box.slice_within(full))]


@dataclass
class RawAmp:
    """One raw amplifier segment in readout orientation.

    The output node is at ``array[0, 0]``: the serial prescan is at low x, the serial overscan at
    high x and the parallel overscan at high y.  All region accessors return numpy *views* of
    `array`, so no pixel is copied.

    Attributes
    ----------
    layout : `~lsst.eo.baseline.camera.AmpLayout`
        Geometry of the amplifier (boxes, flips, placement in the assembled CCD).
    image : `lsst.images.Image`
        The whole raw segment (int32), with the raw bounding box.
    header : `dict`
        Header of the segment HDU.
    """

    layout: AmpLayout
    image: Image
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Amplifier name (``C10``)."""
        return self.layout.name

    @property
    def array(self) -> np.ndarray:
        """The whole raw segment as an int32 array ``[y, x]``."""
        return self.image.array

    def _region(self, box: Box | None) -> np.ndarray:
        return _view(self.image.array, self.layout.raw.bbox, box)

    @property
    def data(self) -> np.ndarray:
        """Imaging section (view)."""
        return self._region(self.layout.raw.data_bbox)

    @property
    def serial_prescan(self) -> np.ndarray:
        """Serial prescan columns over the data rows (view)."""
        return self._region(self.layout.raw.prescan_bbox)

    @property
    def serial_overscan(self) -> np.ndarray:
        """Serial overscan columns over the data rows (view)."""
        return self._region(self.layout.raw.serial_overscan_bbox)

    @property
    def serial_overscan_full(self) -> np.ndarray:
        """Serial overscan columns over all rows, parallel-overscan rows included (view).

        This is the region cp_pipe's serial overscan correction fits.
        """
        so = self.layout.raw.serial_overscan_bbox
        full = self.layout.raw.bbox
        return self.image.array[full.y.start : full.y.stop, so.x.start : so.x.stop]

    @property
    def parallel_overscan(self) -> np.ndarray:
        """Parallel overscan rows over the data columns (view)."""
        return self._region(self.layout.raw.parallel_overscan_bbox)

    def data_image(self) -> Image:
        """Imaging section as an `lsst.images.Image` carrying its raw bounding box."""
        return self.image[self.layout.raw.data_bbox]


@dataclass
class RawCcd(Mapping[str, RawAmp]):
    """A raw CCD exposure: primary header plus the amplifiers that were read.

    A `RawCcd` read with the ``amps`` parameter holds only those amplifiers; iterate over it or
    use `amp_names` to see which.

    Attributes
    ----------
    header : `dict`
        Primary header of the raw file.
    detector : `~lsst.eo.baseline.camera.DetectorInfo`
        The detector this exposure belongs to.
    amps : `dict` [`str`, `RawAmp`]
        Amplifiers by name, in raw HDU order.
    path : `str`, optional
        File the data were read from.
    housekeeping : `dict` [`str`, `dict`]
        Keywords of the file's housekeeping HDUs by EXTNAME (``REB_COND``: CCD and REB
        temperatures...; see `lsst.eo.baseline.rawio.read_housekeeping`); empty if none.
    """

    header: dict[str, Any]
    detector: DetectorInfo
    amps: dict[str, RawAmp]
    path: str | None = None
    housekeeping: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> RawAmp:
        try:
            return self.amps[name]
        except KeyError:
            raise KeyError(
                f"Amplifier {name!r} not in this RawCcd (read: {list(self.amps)}; "
                f"detector {self.detector.name} has {self.detector.amp_names})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.amps)

    def __len__(self) -> int:
        return len(self.amps)

    @property
    def amp_names(self) -> list[str]:
        """Names of the amplifiers held, in raw HDU order."""
        return list(self.amps)

    @property
    def vendor(self) -> str:
        """CCD vendor (``ITL`` or ``E2V``)."""
        return self.detector.vendor

    @property
    def exposure_time(self) -> float:
        """EXPTIME (s)."""
        return float(self.header.get("EXPTIME", float("nan")))

    @property
    def dark_time(self) -> float:
        """DARKTIME (s), falling back to EXPTIME."""
        value = self.header.get("DARKTIME")
        return float(value) if value is not None else self.exposure_time
