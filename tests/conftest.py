"""Shared fixtures."""

import os

import pytest

from lsst.eo.baseline.pgserver import PostgresServer


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    """A private PostgreSQL server on loopback (Debian's postgresql), removed after the module.

    ``LSST_DB_AUTH`` points at the server's ``db-auth.yaml`` while it runs, so pipetask subprocesses
    authenticate the way a user's would.
    """
    previous = os.environ.get("LSST_DB_AUTH")
    server = PostgresServer(str(tmp_path_factory.mktemp("postgres"))).start()
    yield server
    server.destroy()
    if previous is None:
        os.environ.pop("LSST_DB_AUTH", None)
    else:
        os.environ["LSST_DB_AUTH"] = previous
