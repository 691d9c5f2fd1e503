"""SMTP limits under abuse, each while a well-behaved client is served (``alongside``).

What the listener does at each limit:

- a command line over 512 bytes (RFC 5321 section 4.5.3.1.4) gets ``500``; the session
  goes on;
- a DATA line over 1000 bytes is kept (real-world senders and spam exceed it, and a
  canary wants the evidence) up to 64 KiB; one line beyond that makes the whole message
  ``500`` after the final dot, nothing is stored, the session goes on;
- a message over ``CANARY_SMTP_MAX_MESSAGE_BYTES`` gets ``552``, at MAIL when ``SIZE=``
  says so, otherwise after the final dot (the excess is read and discarded);
- recipients beyond ``CANARY_SMTP_MAX_RECIPIENTS`` get ``452 4.5.3``;
- commands that do nothing (NOOP, HELP, VRFY, EHLO...) and unknown commands have small
  per-connection budgets, every other command 10 000; beyond the budget ``421`` and the
  connection is closed;
- connections beyond ``CANARY_SMTP_MAX_CONNECTIONS_PER_IP`` from one address, or beyond
  ``CANARY_SMTP_MAX_CONNECTIONS`` in all, get ``421 4.7.0`` instead of the greeting.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from canary.config import Settings
from canary.store import Store
from tests.mailbox.conftest import (
    OTHER_CLIENT_IP,
    alongside,
    attack_messages,
    connect_from,
    read_all_replies,
    send_well_behaved,
)
from tests.support.smtp import RawClient, RunningServer, start_server

BODY = b"Subject: fine\r\n\r\nfine\r\n.\r\n"


async def _transaction(client: RawClient, rcpt: str = "a@canary.test", body: bytes = BODY) -> int:
    """MAIL, RCPT, DATA and ``body`` on an open session; the final reply code."""
    assert (await client.cmd("MAIL FROM:<x@sender.test>")).code == 250
    assert (await client.cmd(f"RCPT TO:<{rcpt}>")).code == 250
    assert (await client.cmd("DATA")).code == 354
    await client.send(body)
    return (await client.reply()).code


# ---------------------------------------------------------------------- line lengths


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<" + b"a" * 600 + b"@x.test>",
        b"RCPT TO:<" + b"r" * 600 + b"@canary.test>",
        b"EHLO " + b"h" * 600,
        b"NOOP " + b"n" * 2000,
        b"X" * 600,
        b"MAIL FROM:<a@x.test> " + b"SIZE=1 " * 100,
        b"RCPT TO:<a@canary.test>" + b" " * 100_000,  # past the 64 KiB read buffer
    ],
    ids=["mail", "rcpt", "ehlo", "noop", "junk", "options", "100k"],
)
async def test_overlong_command_gets_500_and_the_session_goes_on(
    smtp_server: RunningServer, line: bytes
) -> None:
    async def attack() -> tuple[int, int]:
        client = await RawClient.connect(smtp_server.host, smtp_server.port)
        try:
            assert (await client.cmd("EHLO long.example")).code == 250
            if line.startswith(b"RCPT"):
                assert (await client.cmd("MAIL FROM:<x@sender.test>")).code == 250
            code = (await client.cmd(line)).code
            await client.cmd("RSET")
            return code, await _transaction(client)
        finally:
            await client.close()

    assert await alongside(smtp_server, attack()) == (500, 250)
    [message] = attack_messages(smtp_server.store)
    assert message.rcpt_to == ["a@canary.test"]  # not the over-long recipient


async def test_data_lines_over_1000_bytes_are_kept_up_to_64_kib(
    smtp_server: RunningServer,
) -> None:
    lines = [b"a" * 1001, b"b" * 4000, b"c" * 65_000]
    body = b"Subject: long lines\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"

    async def attack() -> int:
        client = await RawClient.connect(smtp_server.host, smtp_server.port)
        try:
            await client.cmd("EHLO long.example")
            return await _transaction(client, body=body + b".\r\n")
        finally:
            await client.close()

    assert await alongside(smtp_server, attack()) == 250
    [message] = attack_messages(smtp_server.store)
    assert message.raw == body


@pytest.mark.parametrize("length", [65_537, 200_000, 2_000_000])
async def test_a_data_line_over_64_kib_refuses_the_message_only(
    smtp_server: RunningServer, length: int
) -> None:
    async def attack() -> tuple[int, int]:
        client = await RawClient.connect(smtp_server.host, smtp_server.port)
        try:
            await client.cmd("EHLO long.example")
            huge = b"Subject: huge\r\n\r\nstart\r\n" + b"z" * length + b"\r\nend\r\n.\r\n"
            refused = await _transaction(client, body=huge)
            return refused, await _transaction(client, rcpt="after@canary.test")
        finally:
            await client.close()

    assert await alongside(smtp_server, attack()) == (500, 250)
    assert [m.rcpt_to for m in attack_messages(smtp_server.store)] == [["after@canary.test"]]


# ---------------------------------------------------------------------- size and count


@pytest.mark.parametrize("declared", [None, "SIZE=5000", "SIZE=100"], ids=["none", "true", "lie"])
async def test_oversize_message_gets_552_and_the_session_goes_on(
    store: Store, settings: Settings, declared: str | None
) -> None:
    running = await start_server(store, settings, smtp_max_message_bytes=2000)

    async def attack() -> list[int]:
        client = await RawClient.connect(running.host, running.port)
        try:
            await client.cmd("EHLO big.example")
            mail = await client.cmd("MAIL FROM:<x@big.test>" + (f" {declared}" if declared else ""))
            codes = [mail.code]
            if mail.code == 250:
                assert (await client.cmd("RCPT TO:<big@canary.test>")).code == 250
                assert (await client.cmd("DATA")).code == 354
                await client.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 100)
                await client.send(b".\r\n")
                codes.append((await client.reply()).code)
            codes.append(await _transaction(client, rcpt="small@canary.test"))
            return codes
        finally:
            await client.close()

    try:
        codes = await alongside(running, attack())
    finally:
        await running.stop()
    assert codes == ([552, 250] if declared == "SIZE=5000" else [250, 552, 250])
    assert [m.rcpt_to for m in attack_messages(store)] == [["small@canary.test"]]


async def test_recipients_beyond_the_cap_get_452_4_5_3(store: Store, settings: Settings) -> None:
    running = await start_server(store, settings, smtp_max_recipients=3)

    async def attack() -> list[str]:
        client = await RawClient.connect(running.host, running.port)
        try:
            await client.cmd("EHLO many.example")
            await client.cmd("MAIL FROM:<x@list.test>")
            replies = [(await client.cmd(f"RCPT TO:<r{i}@canary.test>")).text for i in range(6)]
            assert (await client.cmd("DATA")).code == 354
            await client.send(BODY)
            assert (await client.reply()).code == 250
            return replies
        finally:
            await client.close()

    try:
        replies = await alongside(running, attack())
    finally:
        await running.stop()
    assert [r[:3] for r in replies] == ["250"] * 3 + ["452"] * 3
    assert all("4.5.3" in r for r in replies[3:])
    [message] = attack_messages(store)
    assert message.rcpt_to == ["r0@canary.test", "r1@canary.test", "r2@canary.test"]


# ---------------------------------------------------------------------- talkers and floods


async def test_commands_before_the_greeting_are_answered_after_it(
    smtp_server: RunningServer,
) -> None:
    """An early talker is served in order, like pipelining: its mail is evidence too."""

    async def attack() -> list[int]:
        reader, writer = await asyncio.open_connection(smtp_server.host, smtp_server.port)
        writer.write(
            b"HELO early.example\r\nMAIL FROM:<a@early.test>\r\nRCPT TO:<early@canary.test>\r\n"
            b"DATA\r\nSubject: early\r\n\r\nbefore the greeting\r\n.\r\nQUIT\r\n"
        )
        await writer.drain()
        return await read_all_replies(RawClient(reader, writer))

    assert await alongside(smtp_server, attack()) == [220, 250, 250, 250, 354, 250, 221]
    [message] = attack_messages(smtp_server.store)
    assert message.raw == b"Subject: early\r\n\r\nbefore the greeting\r\n"


# Pipelined command floods: (lines, the budget, the last reply before the server hangs up).
FLOODS = {
    "noop": (b"NOOP\r\n", 50, 421),
    "help": (b"HELP\r\n", 10, 421),
    "vrfy": (b"VRFY a@canary.test\r\n", 10, 421),
    "ehlo": (b"EHLO again.example\r\n", 50, 421),
    "rset": (b"RSET\r\n", 10_000, 421),
    "unknown": (b"XYZZY\r\n", 5, 502),  # "502 5.5.1 Too many unrecognized commands"
    "rcpt-without-mail": (b"RCPT TO:<a@canary.test>\r\n", 10_000, 421),
    "mail-rset": (b"MAIL FROM:<a@x.test>\r\nRSET\r\n", 10_000, 421),
}


@pytest.mark.parametrize("line,budget,last", FLOODS.values(), ids=FLOODS.keys())
async def test_pipelined_flood_is_cut_off(
    smtp_server: RunningServer, line: bytes, budget: int, last: int
) -> None:
    async def attack() -> list[int]:
        client = await RawClient.connect(smtp_server.host, smtp_server.port)
        await client.send(b"EHLO flood.example\r\n" + line * (budget + 20))
        codes = await read_all_replies(client)
        await client.close()
        return codes

    codes = await alongside(smtp_server, attack())
    assert codes[0] == 250 and codes[-1] == last  # the budget ran out and the server hung up
    assert len(codes) <= 1 + line.count(b"\r\n") * (budget + 1) + 1
    assert attack_messages(smtp_server.store) == []


async def test_client_silent_mid_data_is_dropped(store: Store, settings: Settings) -> None:
    running = await start_server(store, settings, smtp_timeout=0.5)

    async def attack() -> int:
        silent = await RawClient.connect(running.host, running.port)
        await silent.cmd("EHLO slow.example")
        await silent.cmd("MAIL FROM:<a@slow.test>")
        await silent.cmd("RCPT TO:<a@canary.test>")
        assert (await silent.cmd("DATA")).code == 354
        await silent.send(b"Subject: never finished\r\n\r\npart of a bo")
        # The server's idle timeout disconnects it (EOF, no reply); no test clock.
        reply = await silent.reply()
        await silent.close()
        return reply.code

    try:
        assert await alongside(running, attack()) == 0
    finally:
        await running.stop()
    assert attack_messages(store) == []  # half a message is never stored


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
    assert b"line 19" in attack_messages(store)[0].raw


# ---------------------------------------------------------------------- connection caps


async def _open_idle(host: str, port: int, source_ip: str, n: int) -> list[tuple[bytes, object]]:
    """``n`` connections from ``source_ip`` that read the first line and then say nothing."""
    out = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source_ip, 0))
        out.append((await reader.readline(), (reader, writer)))
    return out


async def _close_all(conns: list[tuple[bytes, object]]) -> None:
    for _, (_, writer) in conns:  # type: ignore[misc]
        writer.close()


async def test_idle_connections_from_one_address_are_capped(smtp_server: RunningServer) -> None:
    cap = smtp_server.settings.smtp_max_connections_per_ip
    assert cap == 50  # the documented default

    async def attack() -> list[bytes]:
        conns = await _open_idle(smtp_server.host, smtp_server.port, "127.0.0.1", cap + 10)
        greetings = [line for line, _ in conns]
        # The refused ones are closed by the server; the admitted ones stay open.
        for line, (reader, _) in conns:  # type: ignore[misc]
            if line.startswith(b"421"):
                assert await reader.read() == b""
        await _close_all(conns)
        return greetings

    greetings = await alongside(smtp_server, attack())
    assert sum(g.startswith(b"220") for g in greetings) == cap
    refused = [g for g in greetings if not g.startswith(b"220")]
    assert refused == [b"421 4.7.0 Too many connections, try again later\r\n"] * 10


async def test_the_per_address_cap_frees_up_when_a_session_ends(
    store: Store, settings: Settings
) -> None:
    running = await start_server(store, settings, smtp_max_connections_per_ip=2)
    try:
        first = await connect_from(running.host, running.port, "127.0.0.1")
        second = await connect_from(running.host, running.port, "127.0.0.1")
        [(line, conn)] = await _open_idle(running.host, running.port, "127.0.0.1", 1)
        assert line.startswith(b"421 4.7.0")
        await _close_all([(line, conn)])
        assert (await first.cmd("QUIT")).code == 221
        await first.close()
        # The server notices the end of the session when the socket closes; wait for it
        # by retrying the connection, not by a clock.
        for _ in range(200):
            [(line, conn)] = await _open_idle(running.host, running.port, "127.0.0.1", 1)
            await _close_all([(line, conn)])
            if line.startswith(b"220"):
                break
            await asyncio.sleep(0.01)
        assert line.startswith(b"220")
        await second.close()
    finally:
        await running.stop()


async def test_total_connection_cap_and_recovery(store: Store, settings: Settings) -> None:
    running = await start_server(
        store, settings, smtp_max_connections=4, smtp_max_connections_per_ip=50
    )
    try:
        conns = []
        for i in range(4):  # four different addresses fill the server
            conns += await _open_idle(running.host, running.port, f"127.0.0.{10 + i}", 1)
        assert all(line.startswith(b"220") for line, _ in conns)
        [(line, extra)] = await _open_idle(running.host, running.port, OTHER_CLIENT_IP, 1)
        assert line == b"421 4.7.0 Too many connections, try again later\r\n"
        await _close_all([*conns, (line, extra)])
        for _ in range(200):  # the slots come back as the server sees the closes
            if running.server.sessions == 0:
                break
            await asyncio.sleep(0.01)
        assert (await send_well_behaved(running)).code == 250
    finally:
        await running.stop()


# ---------------------------------------------------------------------- STARTTLS


async def test_plaintext_injected_after_starttls_is_discarded(
    store: Store, settings: Settings, tls_cert: tuple[Path, Path]
) -> None:
    """CVE-2011-0411 style: commands sent with STARTTLS must not run inside TLS."""
    cert, key = tls_cert
    running = await start_server(store, settings, smtp_tls_cert=cert, smtp_tls_key=key)

    async def attack() -> list[int]:
        reader, writer = await asyncio.open_connection(running.host, running.port)
        client = RawClient(reader, writer)
        assert (await client.reply()).code == 220
        assert (await client.cmd("EHLO inject.example")).code == 250
        await client.send(
            b"STARTTLS\r\nMAIL FROM:<evil@inject.test>\r\nRCPT TO:<injected@canary.test>\r\n"
        )
        assert (await client.reply()).code == 220
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        await writer.start_tls(context)
        codes = [(await client.cmd("EHLO inject.example")).code]
        # Had the injected MAIL run, this RCPT would be accepted: it must find no MAIL.
        codes.append((await client.cmd("RCPT TO:<a@canary.test>")).code)
        codes.append(await _transaction(client, rcpt="tls@canary.test"))
        await client.close()
        return codes

    try:
        assert await alongside(running, attack()) == [250, 503, 250]
    finally:
        await running.stop()
    [message] = attack_messages(store)
    assert message.rcpt_to == ["tls@canary.test"] and message.tls is True
