"""A private PostgreSQL server for one test, which the test may stop and start at will.

Tests that take the database away (stop it under load, restart it) must never touch the
shared server other tests use. :class:`PrivatePostgres` runs ``initdb`` into a fresh
directory and starts its own ``postgres`` on a free 127.0.0.1 port with trust
authentication and no Unix socket. ``stop`` and ``start`` keep the same data directory
and port, so clients see the same server go away and come back.

PostgreSQL refuses to run as root; when the tests run as root, the cluster belongs to the
``postgres`` system user and lives in a directory of the system temporary directory that
this user can reach (pytest's own temporary directories are private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb, or the one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """One throw-away PostgreSQL cluster: ``start``, ``stop``, ``url``."""

    def __init__(self, base: Path) -> None:
        bindir = postgres_bin_dir()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (initdb) are not installed")
        self.bindir = bindir
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a postgres system user for initdb")
            self.user = "postgres"
            self.root = Path(tempfile.mkdtemp(prefix="canary-pg-"))
            shutil.chown(self.root, user="postgres")
        else:
            self.root = base
        self.datadir = self.root / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.root / "server.log"
        self._run([str(bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres"]
                  + ["-A", "trust", "--no-sync", "-E", "UTF8"])  # fmt: skip

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=self.user, cwd=self.root)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``postgres`` database of this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        assert self.process is None, "already running"
        log = open(self._log, "ab")  # noqa: SIM115 (the server keeps writing to it)
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
            + ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
            + ["-c", "synchronous_commit=on", "-c", "fsync=on"],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
            cwd=self.root,
        )
        log.close()
        for _ in range(600):
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self._log.read_text()[-2000:]}")
            if self._accepts():
                return
            time.sleep(0.05)
        raise RuntimeError("postgres did not start accepting connections")

    def _accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url.replace("+psycopg", ""), connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean shutdown) or ``immediate`` (like a crash)."""
        if self.process is None:
            return
        signals = {"fast": 2, "immediate": 3}  # SIGINT, SIGQUIT (see the postgres manual)
        self.process.send_signal(signals[mode])
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def close(self) -> None:
        """Stop the server and remove the cluster."""
        self.stop("immediate")
        if self.user is not None:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL cluster (see :class:`PrivatePostgres`), removed after."""
    cluster = PrivatePostgres(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.close()
