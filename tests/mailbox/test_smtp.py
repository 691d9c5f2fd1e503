"""The SMTP server over real sockets: recipients, storage, durability (limits, relaying
and smuggling have their own modules)."""

from __future__ import annotations

import aiosmtplib
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


async def test_postmaster_abuse_and_bounces_are_accepted_as_role_mail(
    smtp_server: RunningServer,
) -> None:
    reply = await send_message(
        smtp_server.host,
        smtp_server.port,
        "someone@example.test",
        ["postmaster@canary.test", "Abuse@CANARY.TEST", "Postmaster@canary.test."],
        message_bytes("complaint"),
    )
    assert reply.code == 250
    # Delivery reports for forwarded mail come back to the envelope sender, bounces@.
    report = await send_message(
        smtp_server.host, smtp_server.port, "", ["bounces@canary.test"], message_bytes("dsn")
    )
    assert report.code == 250
    kinds = [d.kind for d in _deliveries(smtp_server.store)]
    assert kinds == ["role", "role", "role"]  # the third of the first is postmaster again


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
