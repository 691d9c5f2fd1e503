"""``canary messages`` and ``canary message show`` on received, analysed mail."""

from __future__ import annotations

import json

import pytest

from canary.cli import main
from canary.config import Settings
from canary.models import User
from canary.pipeline import Analyzer
from canary.store import Store
from tests.support.dns_server import TestDnsServer
from tests.support.smtp import (
    add_identity,
    add_source,
    message_bytes,
    message_from,
    receive,
    send_message,
    start_server,
)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("CANARY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CANARY_DOMAINS", "canary.test")
    servers = ",".join(f"{host}:{port}" for host, port in settings.dns_servers)
    monkeypatch.setenv("CANARY_DNS_SERVERS", servers)


@pytest.fixture
def shop_identity(store: Store, owner: User, dns_server: TestDnsServer) -> None:
    """Alice's source Shop (shop.test, which passes SPF from loopback) and its identity
    k3m9abc@canary.test."""
    dns_server.spf_pass_from_loopback("shop.test")
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")


async def test_messages_list_and_show(
    store: Store,
    settings: Settings,
    shop_identity: None,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await receive(
        store,
        settings,
        *(("b@shop.test", [rcpt], message_bytes(rcpt)) for rcpt in
          ("k3m9abc@canary.test", "guess@canary.test")),
    )  # fmt: skip
    Analyzer(store, settings).drain()

    assert main(["messages", "--user", "alice", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["deliveries"][0]["verdict"] for r in rows] == ["unattributed", "expected"]

    assert main(["messages", "--user", "alice", "--source", "shop", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["subject"] == "k3m9abc@canary.test"

    assert main(["message", "show", str(row["id"]), "--user", "alice"]) == 0
    text = capsys.readouterr().out
    assert "expected" in text and "Marc Q Kollier" in text and "mail from b@shop.test" in text

    assert main(["message", "show", str(row["id"]), "--user", "alice", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["envelope"]["rcpt_to"] == ["k3m9abc@canary.test"]
    assert shown["deliveries"][0]["source"] == "Shop"

    assert main(["message", "show", "99999", "--user", "alice"]) == 1
    assert main(["messages", "--user", "alice"]) == 0
    assert "guess@canary.test=unattributed" in capsys.readouterr().out


async def test_terminal_escapes_in_headers_are_neutralised(
    store: Store,
    settings: Settings,
    owner: User,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = await start_server(store, settings)
    try:
        evil = (
            b"Subject: =?utf-8?q?=1B]0;pwned=07=1B[2J?= hi\r\nFrom: a\x1b[31m@x.test\r\n\r\nx\r\n"
        )
        reply = await send_message(running.host, running.port, "a@x.test", ["a@canary.test"], evil)
        assert reply.code == 250
    finally:
        await running.stop()
    Analyzer(store, settings).drain()
    assert main(["messages", "--user", "alice"]) == 0
    listing = capsys.readouterr().out
    assert main(["message", "show", "1", "--user", "alice"]) == 0
    shown = capsys.readouterr().out
    for text in (listing, shown):
        assert "\x1b" not in text and "\x07" not in text
    assert "pwned" in shown


async def test_worker_once_analyses_the_queue(
    store: Store, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    running = await start_server(store, settings)
    try:
        reply = await send_message(running.host, running.port, "a@x.test", ["q@canary.test"], b"x")
        assert reply.code == 250
    finally:
        await running.stop()
    assert main(["worker", "--once"]) == 0
    assert "analysed 1 message(s)" in capsys.readouterr().out


async def test_findings_and_incidents_lists_and_acting_on_an_incident(
    store: Store,
    settings: Settings,
    shop_identity: None,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    dns_server: TestDnsServer,
) -> None:
    dns_server.spf_pass_from_loopback("brokerx.test")
    await receive(
        store,
        settings,
        *((sender, ["k3m9abc@canary.test"], message_from(sender, sender)) for sender in
          ("b@shop.test", "b@brokerx.test")),
    )  # fmt: skip
    Analyzer(store, settings).drain()

    assert main(["findings", "--user", "alice", "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert sorted(f["verdict"] for f in findings) == ["expected", "shared"]
    assert main(["findings", "--user", "alice", "--verdict", "shared"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert "shared" in line and "Shop" in line and "brokerx.test" in line

    assert main(["incidents", "--user", "alice", "--source", "shop", "--json"]) == 0
    [incident] = json.loads(capsys.readouterr().out)
    assert incident["kind"] == "shared" and incident["organisations"] == ["brokerx.test"]
    assert main(["incident", "dismiss", str(incident["id"]), "--user", "alice"]) == 0
    assert f"incident {incident['id']} is dismissed" in capsys.readouterr().out
    assert main(["incidents", "--user", "alice", "--status", "open"]) == 0
    assert capsys.readouterr().out.strip() == "no incidents"
