"""SMTP test helpers: the real server on a free 127.0.0.1 port, a raw client, identities.

Import the fixtures into a test module (``from tests.support.smtp import smtp_server``)
so pytest finds them; nothing here mocks the server or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from canary.mailbox.intake import Intake
from canary.mailbox.server import SmtpServer, create_smtp_server

from canary.config import Settings
from canary.models import AuthorisedSender, Identity, Source, User
from canary.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"


@dataclass
class RunningServer:
    """A started SMTP server with its intake, for one test."""

    server: SmtpServer
    intake: Intake
    store: Store
    settings: Settings

    @property
    def host(self) -> str:
        return self.server.address[0]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()
        await self.intake.stop()


async def start_server(store: Store, settings: Settings, **overrides: object) -> RunningServer:
    """Start intake and SMTP server on 127.0.0.1, port 0 (a free one)."""
    settings = settings.replace(
        smtp_host="127.0.0.1", smtp_port=0, smtp_hostname="mx.canary.test", **overrides
    )
    intake = Intake(store.engine)
    await intake.start()
    server = create_smtp_server(settings, intake)
    await server.start()
    return RunningServer(server=server, intake=intake, store=store, settings=settings)


@pytest.fixture
async def smtp_server(store: Store, settings: Settings) -> AsyncIterator[RunningServer]:
    """The real SMTP server for ``canary.test`` writing to the test store."""
    running = await start_server(store, settings)
    try:
        yield running
    finally:
        await running.stop()


# ---------------------------------------------------------------------- raw client


@dataclass
class Reply:
    code: int
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class RawClient:
    """A byte-level SMTP client: sends exactly what a test writes, reads replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        client = cls(reader, writer)
        greeting = await client.reply()
        assert greeting.code == 220, greeting
        return client

    async def reply(self) -> Reply:
        """One (possibly multi-line) reply; code 0 when the server closed the connection."""
        reply = Reply(code=0)
        while True:
            line = await self.reader.readline()
            if not line:
                return reply
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            reply.code = int(text[:3]) if text[:3].isdigit() else -1
            reply.lines.append(text)
            if text[3:4] != "-":
                return reply

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str | bytes) -> Reply:
        raw = line.encode() if isinstance(line, str) else line
        await self.send(raw + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def to_wire(content: bytes) -> bytes:
    """CRLF line endings and dot-stuffing, as a conforming client sends DATA."""
    crlf = re.sub(rb"\r?\n", b"\r\n", content)
    if not crlf.endswith(b"\r\n"):
        crlf += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", crlf)


def stored_form(content: bytes) -> bytes:
    """What the server must store for ``content`` sent through :func:`to_wire`."""
    crlf = re.sub(rb"\r?\n", b"\r\n", content)
    return crlf if crlf.endswith(b"\r\n") else crlf + b"\r\n"


async def send_message(
    host: str,
    port: int,
    mail_from: str,
    rcpts: Sequence[str],
    content: bytes,
    *,
    helo: str = "client.example",
) -> Reply:
    """One SMTP transaction on a new connection; the reply to DATA's end (or the failure)."""
    client = await RawClient.connect(host, port)
    try:
        reply = await client.cmd(f"EHLO {helo}")
        assert reply.code == 250, reply
        reply = await client.cmd(f"MAIL FROM:<{mail_from}>")
        if reply.code != 250:
            return reply
        accepted = 0
        for rcpt in rcpts:
            reply = await client.cmd(f"RCPT TO:<{rcpt}>")
            accepted += reply.code == 250
        if not accepted:
            return reply
        reply = await client.cmd("DATA")
        if reply.code != 354:
            return reply
        await client.send(to_wire(content) + b".\r\n")
        reply = await client.reply()
        await client.send(b"QUIT\r\n")
        return reply
    finally:
        await client.close()


async def receive(
    store: Store, settings: Settings, *messages: tuple[str, Sequence[str], bytes]
) -> list[Reply]:
    """Start the real server, send each ``(mail_from, rcpts, content)`` on its own
    connection, stop it; every message must be acknowledged with 250."""
    running = await start_server(store, settings)
    replies = []
    try:
        for mail_from, rcpts, content in messages:
            reply = await send_message(running.host, running.port, mail_from, rcpts, content)
            assert reply.code == 250, reply
            replies.append(reply)
    finally:
        await running.stop()
    return replies


def message_from(sender: str, subject: str, to: str = "x@canary.test") -> bytes:
    """A small message whose From line is ``sender``."""
    return message_bytes(subject, to=to).replace(b"news@shop.test", sender.encode())


def message_bytes(subject: str = "hello", to: str = "x@canary.test", body: str = "hi") -> bytes:
    """A small well-formed message with CRLF line endings."""
    return (
        f"From: Shop <news@shop.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash(subject))}@shop.test>\r\n\r\n{body}\r\n"
    ).encode()


# ---------------------------------------------------------------------- identities


def add_source(store: Store, owner: User, name: str, domains: Sequence[str] = ()) -> Source:
    """A source row with its authorised domains, inserted directly."""
    with store.session() as session:
        assert owner.id is not None
        source = Source(owner_id=owner.id, name=name, slug=name.lower().replace(" ", "-"))
        session.add(source)
        session.flush()
        for domain in domains:
            session.add(AuthorisedSender(source_id=source.id, domain=domain))
        return source


def add_identity(
    store: Store, owner: User, source: Source, local: str, display_name: str, **fields: object
) -> Identity:
    """An identity row (alias on canary.test), inserted directly."""
    from canary.attribution import fold_name

    with store.session() as session:
        assert owner.id is not None and source.id is not None
        identity = Identity(
            owner_id=owner.id,
            source_id=source.id,
            alias=f"{local}@canary.test".lower(),
            style="token",
            display_name=display_name,
            name_key=fold_name(display_name),
            **fields,
        )
        session.add(identity)
        session.flush()
        return identity
