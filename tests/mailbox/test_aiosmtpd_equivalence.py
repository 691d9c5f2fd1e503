"""Where ``CanarySMTP`` replaces aiosmtpd's code for speed, it behaves exactly the same.

``CanarySMTP`` reads DATA in large pieces, parses common addresses with a regular
expression, and builds each connection's protocol from a prototype (see
mailbox/server.py). Each DATA case is sent, byte for byte and in the same pieces, to the
canary server and to aiosmtpd's stock protocol with the same limits; the replies and the
stored content must be the same.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import weakref
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP
from canary.mailbox.server import CanarySMTP, ProtocolFactory
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.processes import start_serve
from tests.support.smtp import RawClient, start_server

SIZE_LIMIT = 100_000
LINE_LIMIT = CanarySMTP.line_length_limit  # 64 KiB, with the CRLF

CASES: dict[str, list[bytes]] = {
    "empty": [b".\r\n"],
    "dot-stuffing": [b"..x\r\n..\r\n...\r\nA sentence.\r\nB.\r\n.\r\n"],
    "end-split-bytewise": [b"a\r", b"\n", b".", b"\r", b"\n"],
    "stuffed-dot-split": [b"x\r\n", b".", b".y\r\n.", b"\r\n"],
    "bare-cr-and-lf": [b"a\rb\nc\r\n\n.\r\n\r.\r\n.\n\r\n.\r\n"],
    "pipelined-after-end": [b"one\r\n.\r\nMAIL FROM:<b@shop.test>\r\nRSET\r\n"],
    "size-at-limit": [(b"s" * 98 + b"\r\n") * (SIZE_LIMIT // 100) + b".\r\n"],
    "size-over-limit": [(b"s" * 98 + b"\r\n") * (SIZE_LIMIT // 100) + b"t\r\n.\r\n"],
    "line-at-limit": [b"l" * (LINE_LIMIT - 2) + b"\r\n.\r\n"],
    "line-over-limit": [b"l" * (LINE_LIMIT - 1) + b"\r\n.\r\n"],
    "line-at-limit-in-pieces": [b"p" * 1000] * 65 + [b"p" * (LINE_LIMIT - 65_002), b"\r\n.\r\n"],
    "cr-at-limit-lf-after": [b"c" * (LINE_LIMIT - 1) + b"\r", b"\n.\r\n"],
    "line-over-limit-then-next": [b"o" * 70_000 + b"\r\n", b"next\r\n.\r\n"],
    "false-ends-across-64k": [(b"x" * 60 + b".\r\n") * 2000 + b".\r\n"],
}


class _Recorder:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(envelope.original_content)
        return "250 OK stored"


class _StockSMTP(SMTP):
    line_length_limit = LINE_LIMIT


async def _exchange(port: int, pieces: list[bytes]) -> list[int]:
    """One transaction whose content is sent in ``pieces``; every reply code after DATA."""
    client = await RawClient.connect("127.0.0.1", port)
    try:
        assert (await client.cmd("EHLO pieces.example")).code == 250
        assert (await client.cmd("MAIL FROM:<a@shop.test>")).code == 250
        assert (await client.cmd("RCPT TO:<x@canary.test>")).code == 250
        assert (await client.cmd("DATA")).code == 354
        for piece in pieces:
            await client.send(piece)
            await asyncio.sleep(0)  # separate writes, so pieces arrive as pieces
        await client.send(b"QUIT\r\n")
        codes = []
        while (reply := await client.reply()).code != 0:
            codes.append(reply.code)
        return codes
    finally:
        await client.close()


@pytest.mark.parametrize("pieces", CASES.values(), ids=CASES.keys())
async def test_data_is_read_as_aiosmtpd_reads_it(
    store: Store, settings: Settings, pieces: list[bytes]
) -> None:
    recorder = _Recorder()
    loop = asyncio.get_running_loop()
    stock = await loop.create_server(
        lambda: _StockSMTP(
            recorder,
            data_size_limit=SIZE_LIMIT,
            enable_SMTPUTF8=True,
            hostname="stock.example",
            loop=loop,
        ),
        "127.0.0.1",
        0,
    )
    running = await start_server(store, settings, smtp_max_message_bytes=SIZE_LIMIT)
    try:
        expected = await _exchange(stock.sockets[0].getsockname()[1], pieces)
        got = await _exchange(running.port, pieces)
    finally:
        stock.close()
        await running.stop()
    assert got == expected
    with store.session() as session:
        stored = [m.raw for m in session.exec(select(Message).order_by(Message.id)).all()]
    assert stored == recorder.contents


ADDRESS_PIECES = st.sampled_from(
    [
        "<",
        ">",
        "@",
        ".",
        "a",
        "Z",
        "0",
        "-",
        "+",
        "_",
        " ",
        "\t",
        "(",
        ")",
        '"',
        "\\",
        "[",
        "]",
        ":",
        ",",
        ";",
        "!",
        "%",
        "=",
        "SIZE=1",
        "BODY=8BITMIME",
        "\u00e9",
        "x.y",
        "@host.test",
    ]
)


@hypothesis_settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.lists(ADDRESS_PIECES, max_size=12).map("".join),
        st.builds(
            lambda local, domain, rest: f"<{local}@{domain}>{rest}",
            st.lists(ADDRESS_PIECES, min_size=1, max_size=5).map("".join),
            st.lists(ADDRESS_PIECES, min_size=1, max_size=5).map("".join),
            st.lists(ADDRESS_PIECES, max_size=5).map("".join),
        ),
    )
)
@example("<k3m9abc@canary.test>")
@example("<a.b+c@x-y.test> SIZE=100 BODY=8BITMIME")
@example("<a@b.test>\t SIZE=1 ")
@example("<a@b.test> (comment) SIZE=1")
def test_addresses_parse_as_aiosmtpd_parses_them(arg: str) -> None:
    class Limits:
        local_part_limit = 0

    def outcome(parse: Any) -> Any:
        try:
            return parse(Limits(), arg)
        except Exception as exc:  # the email parser fails on some input; so must we
            return type(exc)

    assert outcome(CanarySMTP._getaddr) == outcome(SMTP._getaddr)


def _shape(value: Any, owner: object) -> Any:
    """``value`` with what must differ per connection replaced by a description of it."""
    if getattr(value, "__self__", None) is owner:
        return ("method of the protocol itself", value.__func__)
    if isinstance(value, dict):
        return {k: _shape(v, owner) for k, v in value.items()}
    if isinstance(value, tuple):
        return (type(value), tuple(_shape(v, owner) for v in value))
    if isinstance(value, (asyncio.Future, asyncio.StreamReader, weakref.ref)):
        return type(value)
    return value


async def test_each_connection_gets_what_aiosmtpd_would_build(
    store: Store, settings: Settings
) -> None:
    """Guards the factory against a future aiosmtpd that sets up something new."""
    running = await start_server(store, settings)
    try:
        build = running.server._protocol
        factory = ProtocolFactory(build)
        assert factory.fast
        copied, built = factory(), build()
        assert copied is not factory() and copied._smtp_methods["DATA"].__self__ is copied
        assert set(vars(copied)) == set(vars(built))
        for key in vars(built):
            assert _shape(vars(copied)[key], copied) == _shape(vars(built)[key], built), key
    finally:
        await running.stop()


async def test_canary_serve_receives_over_starttls(
    settings: Settings, store: Store, tls_cert: tuple[Path, Path]
) -> None:
    """``canary serve`` runs on uvloop where installed; aiosmtpd's STARTTLS works there."""
    cert, key = tls_cert
    process, port = start_serve(
        settings, CANARY_SMTP_TLS_CERT=str(cert), CANARY_SMTP_TLS_KEY=str(key)
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, tls_context=context, start_tls=False
        )
        async with client:
            await client.ehlo()
            await client.starttls()
            errors, _ = await client.sendmail(
                "a@shop.test", ["a@canary.test"], b"Subject: over tls\r\n\r\nx\r\n"
            )
            assert errors == {}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
    with store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.tls is True
