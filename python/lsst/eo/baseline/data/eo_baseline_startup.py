"""Interpreter start-up hook installed by ``eo-baseline install-hooks`` (loaded from a .pth file).

It must stay tiny and import nothing heavy: it runs in every Python process of the environment
(pipetask, bps, parsl workers, notebooks).

1. Makes eo_baseline's butler configuration (storage classes, formatters) visible to every butler
   by adding its directory to DAF_BUTLER_CONFIG_PATH, and sets EO_BASELINE_DIR (the source tree,
   as eups would) so that pipeline files can import each other with $EO_BASELINE_DIR/pipelines/.
2. Works around CPython gh-127847 (fixed in 3.12.9 / 3.13.2): ``zipfile._SharedFile.seek`` with
   SEEK_CUR seeks relative to the shared file position instead of the handle's own, which corrupts
   random-access reads of BPS quantum-graph files when two members are open at once.
"""

import os
import sys

_CONFIG_DIR = "@CONFIG_DIR@"
_SOURCE_DIR = "@SOURCE_DIR@"


def _add_butler_config_path() -> None:
    current = os.environ.get("DAF_BUTLER_CONFIG_PATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    if _CONFIG_DIR not in parts:
        os.environ["DAF_BUTLER_CONFIG_PATH"] = os.pathsep.join([_CONFIG_DIR, *parts])


def _zipfile_needs_fix() -> bool:
    v = sys.version_info
    if v[:2] == (3, 12):
        return v < (3, 12, 9)
    if v[:2] == (3, 13):
        return v < (3, 13, 2)
    return False


def _patch_zipfile() -> None:
    import zipfile

    def seek(self, offset, whence=0):
        with self._lock:
            if self._writing():
                raise ValueError(
                    "Can't reposition in the ZIP file while there is an open writing handle on it. "
                    "Close the writing handle before trying to read."
                )
            if whence == os.SEEK_CUR:
                # Relative to this handle's own position, not the shared file's.
                self._file.seek(self._pos + offset)
            else:
                self._file.seek(offset, whence)
            self._pos = self._file.tell()
            return self._pos

    zipfile._SharedFile.seek = seek
    zipfile._SharedFile._eo_baseline_patched = True


_add_butler_config_path()
if _SOURCE_DIR and os.path.isdir(_SOURCE_DIR):
    os.environ.setdefault("EO_BASELINE_DIR", _SOURCE_DIR)
if _zipfile_needs_fix():
    _patch_zipfile()
