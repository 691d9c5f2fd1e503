"""``canary serve`` as a separate process, as an operator runs it, on loopback only."""

from __future__ import annotations

import os
import subprocess
import sys

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
    """Start ``python -m canary serve``; return the process and its SMTP port."""
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
