"""The SMTP server over real sockets: recipients, relaying, limits, durability, bad input."""

from __future__ import annotations

import asyncio
import smtplib

import aiosmtplib
import pytest
from sqlmodel import select

from canary.models import Delivery, Message
from canary.store import Store
from tests.support.smtp import (
    RawClient,
    RunningServer,
    message_bytes,
    send_message,
    start_server,
)


def _messages(store: Store) -> list[Message]:
    with store.session() as session:
        return list(session.exec(select(Message).order_by(Message.id)))


def _deliveries(store: Store) -> list[Delivery]:
    with store.session() as session:
        return list(session.exec(select(Delivery).order_by(Delivery.id)))


async def test_accepted_message_is_stored_byte_exact_with_envelope(
    smtp_server: RunningServer,
) -> None:
    content = message_bytes("byte exact", body="caf\xe9 line\r\n.leading dot\r\n\tend")
    reply = await send_message(
        smtp_server.host, smtp_server.port, "bounce@shop.test", ["K3M9@Canary.Test"], content
    )
    assert reply.code == 250 and "queued as" in reply.text
    [message] = _messages(smtp_server.store)
    assert message.raw == content
    assert message.state == "queued"
    assert message.peer_ip == "127.0.0.1"
    assert message.helo == "client.example"
    assert message.mail_from == "bounce@shop.test"
    assert message.rcpt_to == ["K3M9@Canary.Test"]
    assert message.tls is False and message.size == len(content)
    [delivery] = _deliveries(smtp_server.store)
    assert delivery.recipient_key == "k3m9@canary.test" and delivery.kind == "canary"


async def test_aiosmtplib_client_and_extensions(smtp_server: RunningServer) -> None:
    async with aiosmtplib.SMTP(hostname=smtp_server.host, port=smtp_server.port) as client:
        await client.ehlo()
        assert client.supports_extension("8bitmime")
        assert client.supports_extension("smtputf8")
        assert client.supports_extension("size")
        assert not client.supports_extension("starttls")  # no certificate configured
        errors, _ = await client.sendmail(
            "sender@shop.test", ["a@canary.test"], message_bytes("via aiosmtplib")
        )
        assert errors == {}
    assert len(_messages(smtp_server.store)) == 1


@pytest.mark.parametrize(
    "recipient",
    [
        "victim@other.test",
        "user@canary.test.other.test",
        "user@sub.canary.test",
        "user@[127.0.0.1]",
        "user%victim.test@canary.test",
        "victim.test!user@canary.test",
        '"user@victim.test"@canary.test',
        '"user"@victim.test',
        "@canary.test:user@victim.test",
        "@victim.test:user@canary.test",
    ],
)
async def test_relay_attempts_are_denied(smtp_server: RunningServer, recipient: str) -> None:
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    try:
        assert (await client.cmd("EHLO relay.example")).code == 250
        assert (await client.cmd("MAIL FROM:<spammer@canary.test>")).code == 250
        reply = await client.cmd(f"RCPT TO:<{recipient}>")
        assert reply.code in (550, 553), reply
        if reply.code == 550:
            assert "5.7.1" in reply.text
        reply = await client.cmd("DATA")
        assert reply.code == 503  # no recipient was accepted
    finally:
        await client.close()
    assert _messages(smtp_server.store) == []


async def test_relay_denied_with_smtplib(smtp_server: RunningServer) -> None:
    def send() -> None:
        with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
            client.sendmail("a@canary.test", ["b@example.test"], message_bytes())

    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(send)
    code, text = info.value.recipients["b@example.test"]
    assert code == 550 and b"5.7.1" in text


async def test_postmaster_and_abuse_are_accepted_as_role_mail(smtp_server: RunningServer) -> None:
    reply = await send_message(
        smtp_server.host,
        smtp_server.port,
        "someone@example.test",
        ["postmaster@canary.test", "Abuse@CANARY.TEST", "Postmaster@canary.test."],
        message_bytes("complaint"),
    )
    assert reply.code == 250
    kinds = [d.kind for d in _deliveries(smtp_server.store)]
    assert kinds == ["role", "role"]  # the third is postmaster again


async def test_bare_postmaster_is_accepted(smtp_server: RunningServer) -> None:
    """RFC 5321 section 4.1.1.3: RCPT TO:<Postmaster> without a domain must be accepted."""
    reply = await send_message(
        smtp_server.host, smtp_server.port, "a@x.test", ["PostMaster"], message_bytes("bare")
    )
    assert reply.code == 250
    [delivery] = _deliveries(smtp_server.store)
    assert delivery.kind == "role" and delivery.recipient == "PostMaster"
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    await client.cmd("EHLO x.example")
    await client.cmd("MAIL FROM:<a@x.test>")
    assert (await client.cmd("RCPT TO:<someone>")).code == 553  # other bare names are not
    await client.close()


async def test_unknown_local_part_is_accepted(smtp_server: RunningServer) -> None:
    reply = await send_message(
        smtp_server.host, smtp_server.port, "x@spam.test", ["never-issued@canary.test"], b"x"
    )
    assert reply.code == 250
    [delivery] = _deliveries(smtp_server.store)
    assert delivery.recipient == "never-issued@canary.test"


async def test_several_recipients_one_message_one_delivery_each(
    smtp_server: RunningServer,
) -> None:
    rcpts = ["a@canary.test", "b@canary.test", "c+tag@canary.test", "A+x@canary.test"]
    reply = await send_message(smtp_server.host, smtp_server.port, "x@list.test", rcpts, b"hi")
    assert reply.code == 250
    assert len(_messages(smtp_server.store)) == 1
    keys = [d.recipient_key for d in _deliveries(smtp_server.store)]
    assert keys == ["a@canary.test", "b@canary.test", "c@canary.test"]


async def test_recipient_limit(store: Store, settings) -> None:  # type: ignore[no-untyped-def]
    running = await start_server(store, settings, smtp_max_recipients=3)
    try:
        client = await RawClient.connect(running.host, running.port)
        await client.cmd("EHLO x.example")
        await client.cmd("MAIL FROM:<x@list.test>")
        codes = [(await client.cmd(f"RCPT TO:<r{i}@canary.test>")).code for i in range(5)]
        assert codes == [250, 250, 250, 452, 452]
        assert (await client.cmd("DATA")).code == 354
        await client.send(b"Subject: limit\r\n\r\nbody\r\n.\r\n")
        assert (await client.reply()).code == 250
        await client.close()
    finally:
        await running.stop()
    assert len(_deliveries(store)) == 3


async def test_size_limit(store: Store, settings) -> None:  # type: ignore[no-untyped-def]
    running = await start_server(store, settings, smtp_max_message_bytes=2000)
    try:
        client = await RawClient.connect(running.host, running.port)
        await client.cmd("EHLO x.example")
        reply = await client.cmd("MAIL FROM:<x@big.test> SIZE=5000")
        assert reply.code == 552
        assert (await client.cmd("MAIL FROM:<x@big.test>")).code == 250
        assert (await client.cmd("RCPT TO:<a@canary.test>")).code == 250
        assert (await client.cmd("DATA")).code == 354
        await client.send(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n")
        await client.send((b"y" * 70 + b"\r\n") * 60 + b".\r\n")
        assert (await client.reply()).code == 552
        # The session goes on: a small message on the same connection is accepted.
        assert (await client.cmd("MAIL FROM:<x@big.test>")).code == 250
        assert (await client.cmd("RCPT TO:<a@canary.test>")).code == 250
        assert (await client.cmd("DATA")).code == 354
        await client.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
        assert (await client.reply()).code == 250
        await client.close()
    finally:
        await running.stop()
    [message] = _messages(store)
    assert b"small" in message.raw


@pytest.mark.parametrize(
    "smuggle",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"],
    ids=["lf-dot-lf", "cr-dot-cr", "lf-dot-crlf", "crlf-dot-lf", "cr-dot-crlf"],
)
async def test_bare_line_endings_do_not_split_a_message(
    smtp_server: RunningServer, smuggle: bytes
) -> None:
    """SMTP smuggling: only CRLF.CRLF ends DATA, so the hidden second message stays data."""
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    await client.cmd("EHLO smuggler.example")
    await client.cmd("MAIL FROM:<a@shop.test>")
    await client.cmd("RCPT TO:<first@canary.test>")
    assert (await client.cmd("DATA")).code == 354
    hidden = (
        b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<second@canary.test>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nsmuggled body\r\n"
    )
    await client.send(b"Subject: first\r\n\r\nfirst body" + smuggle + hidden + b".\r\n")
    reply = await client.reply()
    assert reply.code == 250
    assert (await client.cmd("QUIT")).code == 221
    await client.close()
    [message] = _messages(smtp_server.store)
    # Stored as data; a dot opening a CRLF-delimited line is transparency and removed.
    assert smuggle.replace(b"\r\n.", b"\r\n") + hidden in message.raw
    assert [d.recipient for d in _deliveries(smtp_server.store)] == ["first@canary.test"]


async def test_database_unavailable_gives_451_and_recovers(
    store: Store,
    settings,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """The intake's database cannot be opened: 451 4.3.0, then 250 once it is back."""
    broken_dir = tmp_path / "gone"
    broken = Store(f"sqlite:///{broken_dir / 'canary.db'}")  # creates the directory
    broken_dir.rmdir()
    broken_dir.write_text("a file where the database directory should be")
    running = await start_server(broken, settings)
    try:
        reply = await send_message(running.host, running.port, "a@x.test", ["a@canary.test"], b"1")
        assert reply.code == 451 and "4.3.0" in reply.text
        # The server keeps serving, and the sender's retry succeeds once the store is back.
        broken_dir.unlink()
        broken_dir.mkdir()
        broken.upgrade()
        reply = await send_message(running.host, running.port, "a@x.test", ["a@canary.test"], b"2")
        assert reply.code == 250
    finally:
        await running.stop()
        broken.close()
    assert [m.raw for m in _messages(broken)] == [b"2\r\n"]


async def test_postgres_unreachable_gives_451(settings) -> None:  # type: ignore[no-untyped-def]
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    unreachable = Store("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_pre_ping=False)
    running = await start_server(unreachable, settings)
    try:
        reply = await send_message(running.host, running.port, "a@x.test", ["a@canary.test"], b"1")
        assert reply.code == 451 and "4.3.0" in reply.text
    finally:
        await running.stop()
        unreachable.close()
