"""``canary serve`` as a separate process, as an operator runs it, on loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from canary.config import Settings
from tests.support.smtp import REPO_ROOT


def serve_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for ``canary serve`` matching ``settings``: free ports on 127.0.0.1
    and the test's DNS server, so nothing it does leaves the machine."""
    env = dict(os.environ)
    env.update(
        CANARY_DATABASE_URL=str(settings.database_url),
        CANARY_DATA_DIR=str(settings.data_dir),
        CANARY_DOMAINS=",".join(settings.domains),
        CANARY_SMTP_HOST="127.0.0.1",
        CANARY_SMTP_PORT="0",
        CANARY_SMTP_HOSTNAME="mx.canary.test",
        CANARY_HTTP_HOST="127.0.0.1",
        CANARY_HTTP_PORT="0",
        CANARY_DNS_SERVERS=",".join(f"{host}:{port}" for host, port in settings.dns_servers),
        CANARY_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def start_serve(settings: Settings, **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``python -m canary serve``; return the process and its SMTP port.

    The next line on the process's stdout names the dashboard's address
    (:func:`dashboard_port` reads it).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "canary", "serve"],
        cwd=REPO_ROOT,
        env=serve_environment(settings, **extra),
        stdout=subprocess.PIPE,
        stderr=None,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if "listening on" not in line:
        process.kill()
        pytest.fail(f"canary serve did not start: {line!r}")
    return process, int(line.rsplit(":", 1)[1])


def dashboard_port(process: subprocess.Popen[bytes]) -> int:
    """The dashboard port ``canary serve`` prints after its SMTP line."""
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if "dashboard on http://" not in line:
        pytest.fail(f"canary serve did not start its dashboard: {line!r}")
    return int(line.rstrip().rstrip("/").rsplit(":", 1)[1])


def children(pid: int) -> list[int]:
    """Process ids of the direct children of ``pid``."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (IPv4), from the kernel's table."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open."""
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out
