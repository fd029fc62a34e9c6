"""The LSSTCam instrument for butler registries, without obs_base/obs_lsst."""

from __future__ import annotations

__all__ = ["LsstCam", "RAW_DATASET_TYPE"]

import os
from typing import Any

from lsst.daf.butler import DataId, FormatterV2
from lsst.pipe.base import Instrument
from lsst.utils.introspection import get_full_type_name

from .camera import get_camera
from .formatters import RawCcdFormatter

RAW_DATASET_TYPE = ("raw", ("instrument", "exposure", "detector"), "EoRawCcd")
"""Name, dimensions and storage class of raw datasets."""

_CONFIG_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "config"))


class LsstCam(Instrument):
    """The Rubin Observatory LSST Camera, as needed for electro-optical testing.

    ``butler register-instrument REPO lsst.eo.baseline.LsstCam`` inserts the ``LSSTCam``
    instrument record, its 205 detectors (189 science CCDs, 8 guiders, 8 wavefront sensors) with
    obs_lsst's ids and names, and the physical filters seen in EO test data.  Registering again is
    a no-op.
    """

    raw_definition = RAW_DATASET_TYPE
    policyName = "lsstCam"
    configPaths = (os.path.join(_CONFIG_DIR, "LSSTCam"),) if os.path.isdir(_CONFIG_DIR) else ()

    @classmethod
    def getName(cls) -> str:
        # Docstring inherited.
        return "LSSTCam"

    def register(self, registry: Any, *, update: bool = False) -> None:
        # Docstring inherited.
        camera = get_camera()
        name = self.getName()
        with registry.transaction():
            registry.syncDimensionData(
                "instrument",
                {
                    "name": name,
                    "detector_max": 1000,
                    "exposure_max": 10**12,
                    "visit_max": 10**12,
                    "visit_system": 0,
                    "class_name": get_full_type_name(self),
                },
                update=update,
            )
            for detector in camera:
                registry.syncDimensionData(
                    "detector", {"instrument": name, **detector.dimension_record()}, update=update
                )
            for filter_name, band in camera.physical_filters:
                registry.syncDimensionData(
                    "physical_filter", {"instrument": name, "name": filter_name, "band": band}, update=update
                )

    def getRawFormatter(self, dataId: DataId) -> type[FormatterV2]:
        # Docstring inherited.
        return RawCcdFormatter
