"""Butler formatters for eo_baseline's own storage classes."""

from __future__ import annotations

__all__ = ["DefectsFitsFormatter", "RawCcdFormatter", "UncompressedImageFormatter"]

from typing import Any

from lsst.daf.butler import FormatterV2
from lsst.images.formatters import GenericFormatter
from lsst.resources import ResourcePath

from .camera import get_camera
from .defectsIo import read_defects_fits, write_defects_fits
from .rawdata import RawCcd
from .rawio import read_housekeeping, read_raw, write_raw_ccd


class RawCcdFormatter(FormatterV2):
    """Read LSSTCam raw files as `~lsst.eo.baseline.rawdata.RawCcd`.

    Supports the storage-class parameter ``amps`` (list of amplifier names: only those HDUs are
    decompressed) and the derived components ``header`` (primary header only) and ``housekeeping``
    (keywords of the housekeeping HDUs, ``REB_COND``, ``CONFIG_COND``... by EXTNAME, see
    `~lsst.eo.baseline.rawio.read_housekeeping`); for these no pixel is read.
    """

    default_extension = ".fits"
    supported_extensions = frozenset({".fits", ".fz", ".fits.fz"})
    can_read_from_local_file = True
    unsupported_parameters = frozenset()

    def _detector(self):
        try:
            detector_id = self.data_id["detector"]
        except (KeyError, AttributeError):
            return None
        return get_camera()[detector_id]

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        if component == "header":
            return read_raw(path, header_only=True)
        if component == "housekeeping":
            return read_housekeeping(path, detector=self._detector())
        params = self.file_descriptor.parameters or {}
        amps = params.get("amps")
        if isinstance(amps, str):
            amps = [amps]
        return read_raw(path, amps=amps, detector=self._detector())

    def write_local_file(self, in_memory_dataset: RawCcd, uri: ResourcePath) -> None:
        # Docstring inherited.
        write_raw_ccd(uri.ospath, in_memory_dataset)


class UncompressedImageFormatter(GenericFormatter):
    """lsst.images formatter that writes FITS without compression.

    lsst-images compresses with lossless GZIP by default, which costs seconds per full CCD; for
    intermediate products that are read back once, plain FITS is an order of magnitude faster.
    """

    def _get_compression_options(self) -> dict[str, Any]:
        # Private hook of GenericFormatter; pinned lsst-images version (requirements).
        return {"image": None, "mask": None, "variance": None}


class DefectsFitsFormatter(FormatterV2):
    """Read and write defect lists (astropy tables of boxes) in ip_isr's ``Defects`` FITS layout.

    See `lsst.eo.baseline.defectsIo`: a stack user reads the file with
    ``lsst.ip.isr.Defects.readFits``.
    """

    default_extension = ".fits"
    can_read_from_local_file = True
    unsupported_parameters = None

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        return read_defects_fits(path)

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        # Docstring inherited.
        write_defects_fits(in_memory_dataset, uri.ospath)
