"""Butler repository helpers: configuration, repository creation, environment hooks."""

from __future__ import annotations

__all__ = [
    "butler_config_dir",
    "create_repo",
    "install_hooks",
    "seed_config",
]

import os
import site
import sysconfig
from importlib import resources

import yaml
from lsst.daf.butler import Butler, Config
from lsst.utils.logging import getLogger

from .instrument import LsstCam
from .paths import source_root

_LOG = getLogger(__name__)


def butler_config_dir() -> str:
    """Directory holding eo_baseline's butler configuration (for DAF_BUTLER_CONFIG_PATH)."""
    return str(resources.files("lsst.eo.baseline").joinpath("configs"))


def seed_config(registry_db: str | None = None, namespace: str | None = None) -> Config:
    """Seed configuration for a new repository with eo_baseline's storage classes and formatters.

    Parameters
    ----------
    registry_db : `str`, optional
        SQLAlchemy URL of the registry database (e.g. ``postgresql://user@127.0.0.1:5432/db``);
        default: SQLite inside the repository.
    namespace : `str`, optional
        PostgreSQL schema, so that several repositories can share one database.

    Returns
    -------
    config : `lsst.daf.butler.Config`
        Configuration to pass to `lsst.daf.butler.Butler.makeRepo`.
    """
    base = butler_config_dir()
    with open(os.path.join(base, "storageClasses.yaml")) as f:
        storage_classes = yaml.safe_load(f)
    with open(os.path.join(base, "datastores", "formatters.yaml")) as f:
        formatters = yaml.safe_load(f)
    data: dict = {
        "storageClasses": storage_classes["storageClasses"],
        "datastore": {"formatters": formatters},
    }
    if registry_db:
        data["registry"] = {"db": registry_db}
        if namespace:
            data["registry"]["namespace"] = namespace
    return Config(data)


def create_repo(root: str, registry_db: str | None = None, namespace: str | None = None) -> Butler:
    """Create a repository (if it does not exist) and register LSSTCam in it.

    Parameters
    ----------
    root : `str`
        Repository directory.
    registry_db, namespace : `str`, optional
        See `seed_config`.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        Writeable butler on the repository.
    """
    if not os.path.exists(os.path.join(root, "butler.yaml")):
        Butler.makeRepo(root, config=seed_config(registry_db, namespace))
        _LOG.info("Created butler repository %s", root)
    butler = Butler.from_config(root, writeable=True)
    LsstCam().register(butler.registry)
    return butler


def _site_packages() -> str:
    purelib = sysconfig.get_paths()["purelib"]
    return purelib if os.path.isdir(purelib) else site.getsitepackages()[0]


def install_hooks(target: str | None = None) -> list[str]:
    """Install the interpreter start-up hook into an environment's site-packages.

    The hook (a ``.pth`` file and a tiny module) adds eo_baseline's butler configuration to
    ``DAF_BUTLER_CONFIG_PATH`` and patches CPython's zipfile bug gh-127847 where present, in every
    process of the environment (pipetask, bps, parsl workers, notebooks).

    Parameters
    ----------
    target : `str`, optional
        site-packages directory; default: that of the running interpreter.

    Returns
    -------
    paths : `list` [`str`]
        Files written.
    """
    target = target or _site_packages()
    template = resources.files("lsst.eo.baseline").joinpath("data", "eo_baseline_startup.py").read_text()
    module_path = os.path.join(target, "eo_baseline_startup.py")
    pth_path = os.path.join(target, "eo_baseline_startup.pth")
    with open(module_path, "w") as f:
        try:
            source = source_root()
        except FileNotFoundError:
            source = ""  # installed without its source tree: pipelines are not available
        f.write(template.replace("@CONFIG_DIR@", butler_config_dir()).replace("@SOURCE_DIR@", source))
    with open(pth_path, "w") as f:
        f.write("import eo_baseline_startup\n")
    return [module_path, pth_path]
