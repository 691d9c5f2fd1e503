"""The container deployment: the compose file and Dockerfile agree with the code.

No Docker engine runs here, so the test checks what can be checked: the compose file
parses, every CANARY_* variable it or the Dockerfile sets is a real setting, and the
container's command, run with the compose environment, serves and passes its own
health check.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from canary.config import Settings, documented_settings
from tests.support.dns_server import TestDnsServer

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {name for name, _, _ in documented_settings()}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _interpolate(value: str) -> str:
    # Compose's ${NAME:-default}: the default stands in for an unset variable.
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def canary_environment() -> dict[str, str]:
    env = compose()["services"]["canary"]["environment"]
    return {key: _interpolate(str(value)) for key, value in env.items()}


def test_compose_has_postgres_and_canary_with_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "canary"}
    assert services["db"]["image"].startswith("postgres:")
    for service in services.values():
        assert service["healthcheck"]["test"]
    assert services["canary"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert any(v.endswith(":/var/lib/canarytrace") for v in services["canary"]["volumes"])


def test_every_variable_set_is_a_real_setting() -> None:
    compose_vars = set(canary_environment())
    docker_vars = set(re.findall(r"\b(CANARY_[A-Z_]+)=", dockerfile()))
    assert compose_vars and docker_vars
    assert compose_vars <= SETTINGS, compose_vars - SETTINGS
    assert docker_vars <= SETTINGS, docker_vars - SETTINGS
    # And they parse: the values in the file are valid settings.
    Settings.from_env(canary_environment())


def test_container_command_is_canary_serve_everywhere() -> None:
    assert compose()["services"]["canary"]["command"] == ["canary", "serve"]
    assert 'CMD ["canary", "serve"]' in dockerfile()
    assert compose()["services"]["canary"]["healthcheck"]["test"] == [
        "CMD",
        "canary",
        "healthcheck",
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_container_command_serves_and_passes_its_health_check(
    tmp_path: Path, db_url: str, dns_server: TestDnsServer
) -> None:
    env = {
        **os.environ,
        **canary_environment(),
        # Only what must differ on a test machine: the database, loopback, free ports.
        "CANARY_DATABASE_URL": db_url,
        "CANARY_DNS_SERVERS": ",".join(f"{h}:{p}" for h, p in dns_server.servers),
        "CANARY_DATA_DIR": str(tmp_path),
        "CANARY_SMTP_HOST": "127.0.0.1",
        "CANARY_HTTP_HOST": "127.0.0.1",
        "CANARY_SMTP_PORT": str(_free_port()),
        "CANARY_HTTP_PORT": str(_free_port()),
    }
    bindir = Path(sys.executable).parent
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([str(bindir / "canary"), "serve"], env=env, stderr=log)
    try:
        for _ in range(120):
            check = subprocess.run(
                [str(bindir / "canary"), "healthcheck", "--timeout", "2"],
                env=env,
                capture_output=True,
                text=True,
            )
            if check.returncode == 0 or serve.poll() is not None:
                break
            time.sleep(0.5)
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        assert check.returncode == 0, check.stderr
        assert "healthy" in check.stdout
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()
    assert serve.returncode == 0
