"""eo_baseline: LSSTCam electro-optical baseline characterization for the LSST Science Pipelines."""

from .camera import get_camera
from .instrument import LsstCam
from .version import __version__

__all__ = ["LsstCam", "__version__", "get_camera"]
