"""Fixtures and helpers of the mailbox tests: the real SMTP server (see tests/support/smtp.py).

The hardening tests attack the server and, at the same time, send one ordinary message
as a well-behaved client from another loopback address: :func:`alongside` runs both
and fails unless the ordinary message gets its ``250``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlmodel import select

from canary.models import Message
from canary.store import Store
from tests.support.smtp import (  # noqa: F401  (smtp_server makes the fixture visible here)
    RawClient,
    Reply,
    RunningServer,
    message_bytes,
    smtp_server,
    to_wire,
)

T = TypeVar("T")

# The whole of 127.0.0.0/8 is loopback on Linux: a second client address without any
# network set-up, so per-address limits can be told apart from the total.
OTHER_CLIENT_IP = "127.0.0.2"
WELL_BEHAVED_RCPT = "ok@canary.test"


async def connect_from(host: str, port: int, source_ip: str) -> RawClient:
    """A raw client whose connection comes from ``source_ip`` (a loopback address)."""
    reader, writer = await asyncio.open_connection(
        host, port, local_addr=(source_ip, 0), limit=1 << 20
    )
    client = RawClient(reader, writer)
    greeting = await client.reply()
    assert greeting.code == 220, greeting
    return client


async def send_well_behaved(
    server: RunningServer, subject: str = "well-behaved", source_ip: str = OTHER_CLIENT_IP
) -> Reply:
    """One ordinary transaction from ``source_ip``; the reply to the end of DATA."""
    client = await connect_from(server.host, server.port, source_ip)
    try:
        assert (await client.cmd("EHLO good.example")).code == 250
        assert (await client.cmd("MAIL FROM:<news@shop.test>")).code == 250
        assert (await client.cmd(f"RCPT TO:<{WELL_BEHAVED_RCPT}>")).code == 250
        assert (await client.cmd("DATA")).code == 354
        await client.send(to_wire(message_bytes(subject)) + b".\r\n")
        reply = await client.reply()
        await client.cmd("QUIT")
        return reply
    finally:
        await client.close()


async def alongside(server: RunningServer, attack: Awaitable[T]) -> T:
    """Run ``attack`` while a well-behaved client sends; that client must get 250."""

    async def well_behaved() -> Reply:
        await asyncio.sleep(0)  # let the attack start first
        return await send_well_behaved(server)

    result, reply = await asyncio.gather(attack, well_behaved())
    assert reply.code == 250, f"the well-behaved client was not served: {reply}"
    return result


def stored(store: Store, rcpt: str | None = None) -> list[Message]:
    """Stored messages (oldest first), optionally only those to envelope ``rcpt``."""
    with store.session() as session:
        messages = list(session.exec(select(Message).order_by(Message.id)))
    return [m for m in messages if rcpt is None or rcpt in m.rcpt_to]


def attack_messages(store: Store) -> list[Message]:
    """Stored messages other than the well-behaved client's."""
    return [m for m in stored(store) if WELL_BEHAVED_RCPT not in m.rcpt_to]


async def read_all_replies(client: RawClient) -> list[int]:
    """Reply codes until the server closes the connection."""
    codes: list[int] = []
    while True:
        reply = await client.reply()
        if reply.code == 0:
            return codes
        codes.append(reply.code)


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for mx.canary.test, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=mx.canary.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key
