"""The environment start-up hook: butler config path and the CPython zipfile fix (gh-127847)."""

import os
import subprocess
import sys
import textwrap

from lsst.eo.baseline.repo import butler_config_dir

# Reproducer of gh-127847: seeking (SEEK_CUR) inside one member of a stored zip while another member
# of the same archive is open lands at the wrong offset on CPython 3.12.0-3.12.8 / 3.13.0-3.13.1.
REPRODUCER = textwrap.dedent(
    """
    import io, os, sys, zipfile
    rng = bytes(range(256)) * 2000
    a, b = rng[:300_000], rng[7:200_007]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("A", a)
        z.writestr("B", b)
    buf.seek(0)
    with zipfile.ZipFile(buf) as z, z.open("A") as fa, z.open("B") as fb:
        fa.read(50_000)
        fb.seek(9313, os.SEEK_CUR)
        got = fb.read(624)
    print("OK" if got == b[9313:9313 + 624] else "BROKEN")
    """
)


def test_zipfile_seek_is_correct_in_every_interpreter():
    proc = subprocess.run([sys.executable, "-c", REPRODUCER], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "OK"


def test_butler_config_path_is_set_in_new_processes():
    env = {k: v for k, v in os.environ.items() if k != "DAF_BUTLER_CONFIG_PATH"}
    code = "import os; print(os.environ.get('DAF_BUTLER_CONFIG_PATH', ''))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert butler_config_dir() in proc.stdout.strip().split(os.pathsep)
