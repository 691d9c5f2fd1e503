"""Hostile and broken clients get a correct reply and the server keeps serving others."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.smtp import RawClient, RunningServer, message_bytes, send_message, start_server


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


async def test_pipelining_flood_is_cut_off(smtp_server: RunningServer) -> None:
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    await client.send(b"EHLO flood.example\r\n" + b"NOOP\r\n" * 5000)
    codes = []
    while True:
        reply = await client.reply()
        if reply.code == 0:
            break
        codes.append(reply.code)
    await client.close()
    assert codes[0] == 250 and codes[-1] == 421  # the budget of NOOPs ran out
    await _still_serving(smtp_server, "after flood")


async def test_client_silent_mid_data_is_dropped_and_others_are_served(
    store: Store, settings: Settings
) -> None:
    running = await start_server(store, settings, smtp_timeout=0.5)
    try:
        silent = await RawClient.connect(running.host, running.port)
        await silent.cmd("EHLO slow.example")
        await silent.cmd("MAIL FROM:<a@slow.test>")
        await silent.cmd("RCPT TO:<a@canary.test>")
        assert (await silent.cmd("DATA")).code == 354
        await silent.send(b"Subject: never finished\r\n\r\npart of a bo")
        # Meanwhile another client is served normally.
        await _still_serving(running, "meanwhile")
        # The silent client is disconnected by the server's timeout (EOF, no reply).
        reply = await asyncio.wait_for(silent.reply(), 30)
        assert reply.code == 0
        await silent.close()
    finally:
        await running.stop()
    raws = _raws(store)
    assert len(raws) == 1 and b"meanwhile" in raws[0]


async def test_slow_but_steady_data_is_not_cut_off(store: Store, settings: Settings) -> None:
    """The timeout counts silence, not the length of the whole DATA transfer."""
    running = await start_server(store, settings, smtp_timeout=1.0)
    try:
        client = await RawClient.connect(running.host, running.port)
        await client.cmd("EHLO slow.example")
        await client.cmd("MAIL FROM:<a@slow.test>")
        await client.cmd("RCPT TO:<a@canary.test>")
        assert (await client.cmd("DATA")).code == 354
        await client.send(b"Subject: trickle\r\n\r\n")
        for i in range(20):  # about two timeouts in total, never one of silence
            await client.send(b"line %d\r\n" % i)
            await asyncio.sleep(0.1)
        await client.send(b".\r\n")
        assert (await client.reply()).code == 250
        await client.close()
    finally:
        await running.stop()
    assert b"line 19" in _raws(store)[0]


async def test_connection_flood_gets_421_beyond_the_session_limit(
    store: Store, settings: Settings
) -> None:
    from canary.mailbox.intake import Intake
    from canary.mailbox.server import create_smtp_server

    intake = Intake(store.engine)
    await intake.start()
    server = create_smtp_server(
        settings.replace(smtp_host="127.0.0.1", smtp_port=0), intake, max_sessions=2
    )
    await server.start()
    host, port = server.address
    try:
        first = await RawClient.connect(host, port)
        second = await RawClient.connect(host, port)
        reader, writer = await asyncio.open_connection(host, port)
        assert (await reader.readline()).startswith(b"421 4.7.0")
        assert await reader.read() == b""  # and closed
        writer.close()
        await first.cmd("QUIT")
        await first.close()
        # Once a session ends, new ones are served again.
        for _ in range(100):
            reader, writer = await asyncio.open_connection(host, port)
            greeting = await reader.readline()
            writer.close()
            if greeting.startswith(b"220"):
                break
            await asyncio.sleep(0.02)
        assert greeting.startswith(b"220")
        await second.close()
    finally:
        await server.stop()
        await intake.stop()
