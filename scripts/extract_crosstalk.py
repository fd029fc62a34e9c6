#!/usr/bin/env python
"""Build ``python/lsst/eo/baseline/data/crosstalk/lsstcam_crosstalk.ecsv`` from lsst/obs_lsst_data.

Usage: ``extract_crosstalk.py OBS_LSST_DATA_GIT_DIR COMMIT OUTPUT``.  Reads every
``lsstCam/crosstalk/<det>/19700101T000000.ecsv`` at COMMIT (ip_isr CrosstalkCalib tables), keeps the
linear (CT_COEFFS) and quadratic (CT_COEFFS_SQR) matrices of the detectors listed in ``SHIPPED`` and
writes, per CCD type, the element-wise median over all detectors of that type as fallback.
Invalid coefficients (CT_VALID false) are written as 0, as ip_isr ignores them.
"""

import subprocess
import sys

import numpy as np
from astropy.table import Table

from lsst.eo.baseline.camera import get_camera

SHIPPED = ["R22_S11", "R01_S01", "R12_S10", "R22_S22", "R01_S00", "R22_S12", "R10_S02", "R22_S01"]
"""Detectors of the demo, the plans' defaults and the tests."""


def _matrices(git_dir: str, commit: str, det: str) -> tuple[np.ndarray, np.ndarray]:
    raft, slot = det.lower().split("_")
    path = f"lsstCam/crosstalk/{raft}_{slot}/19700101T000000.ecsv"
    text = subprocess.run(
        ["git", "-C", git_dir, "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    table = Table.read(text, format="ascii.ecsv")
    assert table.meta["CROSSTALK_RATIOS_UNITS"] == "electron"
    n = int(table.meta["NAMP"])
    valid = np.asarray(table["CT_VALID"][0], dtype=bool).reshape(n, n)
    c0 = np.where(valid, np.asarray(table["CT_COEFFS"][0]).reshape(n, n), 0.0)
    c1 = np.where(valid, np.asarray(table["CT_COEFFS_SQR"][0]).reshape(n, n), 0.0)
    return c0, c1


def main(git_dir: str, commit: str, output: str) -> None:
    """Write the shipped table from the obs_lsst_data git directory at ``commit``."""
    camera = get_camera()
    by_type: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    rows = []
    for det in camera.select("all"):
        c0, c1 = _matrices(git_dir, commit, det.name)
        by_type.setdefault(det.ccd_type.name, []).append((c0, c1))
        if det.name in SHIPPED:
            rows.append((det.name, det.amp_names, c0, c1))
    for type_name, mats in sorted(by_type.items()):
        amps = next(d.amp_names for d in camera.select("all") if d.ccd_type.name == type_name)
        c0 = np.median([m[0] for m in mats], axis=0)
        c1 = np.median([m[1] for m in mats], axis=0)
        rows.append((f"MEDIAN_{type_name}", amps, c0, c1))
    out = {"detector": [], "source": [], "target": [], "coeff": [], "coeff_sqr": []}
    for name, amps, c0, c1 in rows:
        for i, source in enumerate(amps):
            for j, target in enumerate(amps):
                if i == j:
                    continue
                out["detector"].append(name)
                out["source"].append(source)
                out["target"].append(target)
                out["coeff"].append(float(f"{c0[i, j]:.6e}"))
                out["coeff_sqr"].append(float(f"{c1[i, j]:.6e}"))
    table = Table(out)
    table["coeff"].unit = "electron / electron"
    table["coeff_sqr"].unit = "1 / electron"
    table.meta.update(
        {
            "description": "LSSTCam intra-CCD crosstalk: target += coeff * source + coeff_sqr * source**2 "
            "(electrons, both amplifiers in readout orientation). MEDIAN_<type>: element-wise median over "
            "all detectors of that CCD type, the fallback for detectors not listed.",
            "source_repository": "https://github.com/lsst/obs_lsst_data",
            "source_path": "lsstCam/crosstalk/<raft>_<slot>/19700101T000000.ecsv (CT_COEFFS, CT_COEFFS_SQR)",
            "source_commit": commit,
            "source_units": "CROSSTALK_RATIOS_UNITS = electron",
            "matrix_convention": "ip_isr CrosstalkCalib coeffs[source, target], amplifiers in HDU order",
            "invalid_coefficients": "CT_VALID false written as 0",
        }
    )
    table.write(output, format="ascii.ecsv", overwrite=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
