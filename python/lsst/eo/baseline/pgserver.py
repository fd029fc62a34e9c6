"""A private PostgreSQL server on loopback for a shared-registry butler (demo, tests, benchmarks).

Production sites run their own PostgreSQL; this module starts a throwaway cluster from Debian's
``postgresql`` binaries so that the PostgreSQL registry option is exercised wherever eo_baseline
runs:

* ``initdb`` into a directory of ours (as the ``postgres`` user when running as root, since the
  server refuses to run as root), ``pg_ctl start`` on a free loopback port;
* a role with a password, a database with the ``btree_gist`` extension daf_butler requires;
* a ``db-auth.yaml`` (mode 600) holding the password, pointed to by ``LSST_DB_AUTH`` so that the
  password never appears in a repository's ``butler.yaml``, in a command line or in a log.

``eo-baseline postgres start DIR`` / ``stop DIR`` wrap it for the command line.
"""

from __future__ import annotations

__all__ = ["PostgresServer", "find_pg_bin"]

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from lsst.utils.logging import getLogger

_LOG = getLogger(__name__)


def find_pg_bin() -> str:
    """Directory of the PostgreSQL server binaries (Debian layout), newest version first."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        found = shutil.which("initdb")
        if found:
            return os.path.dirname(found)
        raise FileNotFoundError(
            "PostgreSQL server binaries not found: install Debian's postgresql package "
            "(apt-get install postgresql)"
        )
    return os.path.dirname(candidates[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A PostgreSQL cluster for ``root``, serving database ``database`` on loopback.

    ``root`` holds ``db-auth.yaml``, the port and ``server`` (the cluster's data directory, its log
    and socket).  PostgreSQL refuses to run as root, so under root the server runs as the
    ``postgres`` user; when that user cannot reach ``root`` (a parent such as ``/root`` or pytest's
    temporary directories is private), ``server`` is a symbolic link to a directory of its own
    under the ``postgres`` user's home.  `destroy` removes both.

    Attributes
    ----------
    root : `str`
        Directory holding ``db-auth.yaml``, ``port`` and ``server``.
    database, user : `str`
        Database and role created for the butler.
    port : `int`
        TCP port (0: choose a free one at `start`, kept across restarts).
    """

    root: str
    database: str = "eorepo"
    user: str = "butler"
    port: int = 0

    @property
    def server_dir(self) -> str:
        """Directory of the cluster (``root/server``, resolved if it is a link)."""
        return os.path.realpath(os.path.join(self.root, "server"))

    @property
    def data_dir(self) -> str:
        """Cluster data directory."""
        return os.path.join(self.server_dir, "data")

    @property
    def log_file(self) -> str:
        """The server's log."""
        return os.path.join(self.server_dir, "server.log")

    @property
    def auth_file(self) -> str:
        """``db-auth.yaml`` with this server's credentials."""
        return os.path.join(self.root, "db-auth.yaml")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database (no password: it is in `auth_file`)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL {what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )

    def _make_server_dir(self) -> None:
        """Create ``root/server`` where the server's user can work."""
        link = os.path.join(self.root, "server")
        if os.path.lexists(link):
            return
        if os.geteuid() != 0:
            os.makedirs(link, mode=0o700)
            return
        info = pwd.getpwnam("postgres")
        os.makedirs(link, mode=0o700)
        os.chown(link, info.pw_uid, info.pw_gid)
        if self._as_owner(["test", "-w", link]).returncode == 0:
            return
        os.rmdir(link)
        base = os.path.join(info.pw_dir, "eo_baseline")
        os.makedirs(base, exist_ok=True)
        os.chown(base, info.pw_uid, info.pw_gid)
        target = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(self.root)) + "-", dir=base)
        os.chown(target, info.pw_uid, info.pw_gid)
        os.symlink(target, link)

    def start(self) -> PostgresServer:
        """Create (first time) and start the cluster; write ``db-auth.yaml`` and set ``LSST_DB_AUTH``."""
        bin_dir = find_pg_bin()
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._make_server_dir()
        port_file = os.path.join(self.root, "port")
        if not os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
            self._check(
                self._as_owner(
                    [os.path.join(bin_dir, "initdb"), "-D", self.data_dir, "-A", "trust", "-U", "postgres"]
                ),
                "initdb",
            )
        elif os.path.exists(port_file):
            self.port = self.port or int(open(port_file).read())
        self.port = self.port or _free_port()
        options = f"-p {self.port} -k {self.server_dir} -c listen_addresses=127.0.0.1"
        proc = self._as_owner(
            [os.path.join(bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-o", options, "-w",
             "start"]
        )  # fmt: skip
        if proc.returncode != 0 and "another server might be running" not in proc.stderr:
            self._check(proc, "start")
        self._wait()
        with open(port_file, "w") as f:
            f.write(str(self.port))
        password = self._ensure_database()
        self._write_auth(password)
        return self

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess:
        return self._as_owner(
            [
                "psql",
                "-h",
                self.server_dir,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-c",
                sql,
            ]
        )

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._psql("SELECT 1").returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"PostgreSQL did not come up on port {self.port}; see {self.log_file}")

    def _ensure_database(self) -> str:
        """Create the role (new password each start) and the database with btree_gist."""
        password = secrets.token_urlsafe(18)
        exists = self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{self.user}'").stdout.strip() == "1"
        verb = "ALTER" if exists else "CREATE"
        self._check(self._psql(f"{verb} ROLE {self.user} LOGIN PASSWORD '{password}'"), "role creation")
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'").stdout.strip() != "1":
            self._check(self._psql(f"CREATE DATABASE {self.database} OWNER {self.user}"), "database creation")
        self._check(self._psql("CREATE EXTENSION IF NOT EXISTS btree_gist", self.database), "btree_gist")
        # Password authentication on TCP from now on (trust stays for the local socket only).
        hba = os.path.join(self.data_dir, "pg_hba.conf")
        self._as_owner(
            [
                "sh",
                "-c",
                f"grep -q 'eo_baseline' {hba} || printf '%s\\n' "
                f"'# eo_baseline' 'host all all 127.0.0.1/32 scram-sha-256' > {hba}.new && "
                f"grep -v '^host' {hba} >> {hba}.new && mv {hba}.new {hba}",
            ]
        )
        self._psql("SELECT pg_reload_conf()")
        return password

    def _write_auth(self, password: str) -> None:
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"- url: postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}\n"
                f"  username: {self.user}\n  password: {password}\n"
            )
        os.chmod(self.auth_file, 0o600)
        os.environ["LSST_DB_AUTH"] = self.auth_file
        _LOG.info(
            "PostgreSQL on 127.0.0.1:%d, database %s; credentials in %s",
            self.port,
            self.database,
            self.auth_file,
        )

    def stop(self) -> None:
        """Stop the server (the cluster stays on disk)."""
        proc = self._as_owner(
            [os.path.join(find_pg_bin(), "pg_ctl"), "-D", self.data_dir, "-m", "fast", "stop"]
        )
        if proc.returncode != 0 and "not running" not in (proc.stderr + proc.stdout):
            self._check(proc, "stop")

    def destroy(self) -> None:
        """Stop the server and delete the cluster, its credentials and ``root``."""
        if os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
            self.stop()
        server = self.server_dir
        if os.path.islink(os.path.join(self.root, "server")):
            shutil.rmtree(server, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)
