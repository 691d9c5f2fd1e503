"""``canary forward`` and ``canary alert`` run as a user runs them, with a local relay."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.outbound import RecordingRelay, free_port, relay  # noqa: F401


def _runner(tmp_path: Path, db_url: str, **extra: str):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "CANARY_DATA_DIR": str(tmp_path / "data"),
        "CANARY_DATABASE_URL": db_url,
        "CANARY_DOMAINS": "canary.test",
        "CANARY_PUBLIC_URL": "https://canary.example",
        **extra,
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "canary", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    return run


def test_forward_and_alert_commands(
    tmp_path: Path,
    db_url: str,
    relay: RecordingRelay,  # noqa: F811
) -> None:
    run = _runner(
        tmp_path, db_url, CANARY_RELAY_HOST="127.0.0.1", CANARY_RELAY_PORT=str(relay.port),
        CANARY_RELAY_STARTTLS="false",
    )  # fmt: skip
    assert run("source", "add", "Shop X", "--domain", "shopx.test").returncode == 0
    added = run("forward", "add", "me@home.example", "--json")
    assert added.returncode == 0, added.stderr
    (mail,) = relay.messages
    link = re.search(rb"https://canary\.example/forwarding/verify/\S+", mail.data)
    assert link is not None
    assert link.group(0).decode().rsplit("/", 1)[1] not in added.stdout  # never printed

    rule = run("forward", "rule", "shop-x", "me@home.example", "--drop-breach")
    assert rule.returncode == 0 and "not verified yet" in rule.stdout
    refused = run("alert", "add", "email", "me@home.example")
    assert refused.returncode == 1 and "not a verified address" in refused.stderr

    verified = run("forward", "verify", link.group(0).decode())
    assert verified.returncode == 0 and "me@home.example is verified" in verified.stdout
    listing = json.loads(run("forward", "list", "--json").stdout)
    assert listing["addresses"][0]["verified_at"]
    assert listing["rules"] == [
        {"id": 1, "target": "Shop X", "address": "me@home.example", "drop_breach": True}
    ]

    channel = json.loads(run("alert", "add", "webhook", "https://hooks.example/c", "--json").stdout)
    assert len(channel["secret"]) == 64
    assert run("alert", "add", "email", "me@home.example").returncode == 0
    assert run("alert", "test", str(channel["id"])).returncode == 0
    alerts = json.loads(run("alert", "list", "--json").stdout)
    assert [c["kind"] for c in alerts["channels"]] == ["webhook", "email"]
    assert alerts["log"][0]["event"] == "test" and alerts["log"][0]["state"] == "pending"


def test_forward_add_needs_a_relay(tmp_path: Path, db_url: str) -> None:
    result = _runner(tmp_path, db_url)("forward", "add", "me@home.example")
    assert result.returncode == 2 and "CANARY_RELAY_HOST" in result.stderr
    down = _runner(
        tmp_path, db_url, CANARY_RELAY_HOST="127.0.0.1", CANARY_RELAY_PORT=str(free_port()),
        CANARY_RELAY_STARTTLS="false",
    )  # fmt: skip
    first = down("forward", "add", "me@home.example")
    assert first.returncode == 1 and "not sent" in first.stderr
    # The failed send is undone: trying again is not refused as "sent just now".
    second = down("forward", "add", "me@home.example")
    assert "just now" not in second.stderr
