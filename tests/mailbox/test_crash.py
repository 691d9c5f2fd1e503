"""Crash safety: SIGKILL ``canary serve`` while 20 clients send; every 250 survives.

After the restart every acknowledged message is present byte-exact, no message is
stored twice, and the analysis the dead process left queued is completed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest
from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.processes import start_serve
from tests.support.smtp import send_message

TOTAL = 2000
CONCURRENCY = 20
KILL_AFTER = 500  # acknowledged messages before the kill
RCPT = "a@canary.test"


def _content(i: int) -> bytes:
    body = (f"message {i} " * 40 + "\r\n") * 5
    return f"From: load@x.test\r\nSubject: crash {i}\r\n\r\n{body}".encode()


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_no_acknowledged_message(
    store: Store, settings: Settings, record_property: Callable[[str, object], None]
) -> None:
    process, port = start_serve(settings)
    acknowledged: dict[int, bytes] = {}
    killed = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TOTAL):
        queue.put_nowait(i)

    async def sender() -> None:
        while not queue.empty() and not killed.is_set():
            i = queue.get_nowait()
            content = _content(i)
            try:
                reply = await send_message(
                    "127.0.0.1", port, "l@x.test", ["a@canary.test"], content
                )
            except (OSError, AssertionError, asyncio.IncompleteReadError, ValueError):
                continue  # the server is gone: this sender never saw 250
            if reply.code == 250:
                acknowledged[int(reply.text.rsplit(" ", 1)[1])] = content
                if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                    process.send_signal(signal.SIGKILL)
                    killed.set()

    try:
        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
        assert killed.is_set(), "the load ended before the kill"
    finally:
        process.kill()
        process.wait()

    # Restart: the new process serves again and analyses what the dead one left queued.
    process, port = start_serve(settings)
    try:
        reply = await send_message("127.0.0.1", port, "l@x.test", ["a@canary.test"], b"after\r\n")
        assert reply.code == 250
        for _ in range(600):
            with store.session() as session:
                pending = session.exec(
                    select(Message.id).where(Message.state != "analysed")
                ).first()
            if pending is None:
                break
            await asyncio.sleep(0.1)
        assert pending is None, "queued messages were not analysed after the restart"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    with store.session() as session:
        stored = {m.id: m.raw for m in session.exec(select(Message))}
    missing = [i for i in acknowledged if i not in stored]
    assert missing == []
    assert all(stored[i] == content for i, content in acknowledged.items())
    assert len(acknowledged) >= KILL_AFTER
    # Every content is unique, so a message written twice would show up here.
    assert len(set(stored.values())) == len(stored)
    record_property("acknowledged", len(acknowledged))
    record_property("found", sum(1 for i in acknowledged if i in stored))
    record_property("stored_in_all", len(stored))
