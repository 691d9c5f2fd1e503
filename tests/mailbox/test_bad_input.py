"""Hostile and broken clients get a correct reply and the server keeps serving others."""

from __future__ import annotations

from sqlmodel import select

from canary.models import Message
from canary.store import Store
from tests.support.smtp import RawClient, RunningServer, message_bytes, send_message


def _raws(store: Store) -> list[bytes]:
    with store.session() as session:
        return [m.raw for m in session.exec(select(Message).order_by(Message.id))]


async def _still_serving(server: RunningServer, subject: str) -> None:
    reply = await send_message(
        server.host, server.port, "a@b.test", ["ok@canary.test"], message_bytes(subject)
    )
    assert reply.code == 250


async def test_malformed_commands(smtp_server: RunningServer) -> None:
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    assert (await client.cmd("MAIL FROM:<a@b.test>")).code == 503  # before HELO
    assert (await client.cmd("EHLO client.example")).code == 250
    assert (await client.cmd("RCPT TO:<a@canary.test>")).code == 503  # before MAIL
    assert (await client.cmd("DATA")).code == 503
    assert (await client.cmd("MAIL FROM:<<<broken")).code in (501, 553)
    assert (await client.cmd("MAIL FROM:<a@b.test> BOGUS=1")).code == 555
    assert (await client.cmd("MAIL FROM:<a@b.test>")).code == 250
    assert (await client.cmd("MAIL FROM:<a@b.test>")).code == 503  # nested
    assert (await client.cmd("RCPT TO:<a@canary.test> NOTIFY=NEVER")).code == 555
    assert (await client.cmd("RCPT TO:a@@canary.test")).code in (501, 553)
    assert (await client.cmd("X" * 600)).code == 500  # line too long
    assert (await client.cmd(b"\xff\xfe")).code == 500  # not a command
    assert (await client.cmd("RSET")).code == 250
    assert (await client.cmd("QUIT")).code == 221
    await client.close()
    await _still_serving(smtp_server, "after malformed")


async def test_nul_bytes(smtp_server: RunningServer) -> None:
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    await client.cmd("EHLO client.example")
    assert (await client.cmd(b"MAIL FROM:<a\x00b@x.test>")).code == 501
    assert (await client.cmd("MAIL FROM:<a@x.test>")).code == 250
    assert (await client.cmd(b"RCPT TO:<a\x00@canary.test>")).code == 501
    assert (await client.cmd("RCPT TO:<a@canary.test>")).code == 250
    assert (await client.cmd("DATA")).code == 354
    # A NUL inside the message is data: stored byte-exact as evidence.
    await client.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
    assert (await client.reply()).code == 250
    await client.close()
    assert _raws(smtp_server.store) == [b"Subject: nul\r\n\r\nbefore\x00after\r\n"]


async def test_eight_bit_headers_without_smtputf8_are_kept(smtp_server: RunningServer) -> None:
    """RFC 6531 lets a server accept them; a canary keeps the evidence, byte-exact."""
    content = "Subject: Grüße aus Köln\r\nFrom: Jürgen <j@x.test>\r\n\r\nbody\r\n".encode()
    reply = await send_message(
        smtp_server.host, smtp_server.port, "j@x.test", ["a@canary.test"], content
    )
    assert reply.code == 250
    # Latin-1 bytes that are not UTF-8 at all, too.
    reply = await send_message(
        smtp_server.host, smtp_server.port, "j@x.test", ["a@canary.test"], b"Subject: \xe9\r\n\r\n"
    )
    assert reply.code == 250
    assert _raws(smtp_server.store) == [content, b"Subject: \xe9\r\n\r\n"]


async def test_smtputf8_addresses(smtp_server: RunningServer) -> None:
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    await client.cmd("EHLO client.example")
    assert (await client.cmd("MAIL FROM:<jürgen@köln.test> SMTPUTF8 BODY=8BITMIME")).code == 250
    assert (await client.cmd("RCPT TO:<müller@canary.test>".encode())).code == 250
    assert (await client.cmd("RCPT TO:<müller@bücher.test>".encode())).code == 550
    assert (await client.cmd("DATA")).code == 354
    await client.send("Subject: ünïcödé\r\n\r\nx\r\n.\r\n".encode())
    assert (await client.reply()).code == 250
    await client.close()
    with smtp_server.store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.mail_from == "jürgen@köln.test" and message.rcpt_to == ["müller@canary.test"]
