"""Graceful shutdown: SIGTERM lets a transaction in flight finish and be stored.

A sender in the middle of DATA when the service is asked to stop gets its ``250`` (and
the message is committed), idle sessions are told ``421``, and no new connection is
accepted. This is what a restart during a deploy looks like to the internet.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.store import Store
from tests.support.processes import start_serve
from tests.support.smtp import RawClient, message_bytes, start_server


async def _begin_transaction(host: str, port: int) -> RawClient:
    """A client that has sent MAIL, RCPT, DATA and half of the message."""
    client = await RawClient.connect(host, port)
    assert (await client.cmd("EHLO sender.example")).code == 250
    assert (await client.cmd("MAIL FROM:<news@shop.test>")).code == 250
    assert (await client.cmd("RCPT TO:<k3m9abc@canary.test>")).code == 250
    assert (await client.cmd("DATA")).code == 354
    await client.send(message_bytes("in flight")[:40])
    return client


async def _idle(host: str, port: int) -> RawClient:
    client = await RawClient.connect(host, port)
    assert (await client.cmd("EHLO idle.example")).code == 250
    return client


async def _connect_refused(host: str, port: int) -> bool:
    try:
        client = await RawClient.connect(host, port)
    except OSError:
        return True
    await client.close()
    return False


async def test_stopping_the_server_finishes_the_transaction_in_flight(
    store: Store, settings: Settings
) -> None:
    running = await start_server(store, settings)
    host, port = running.host, running.port
    sending = await _begin_transaction(host, port)
    idle = await _idle(host, port)

    stopping = asyncio.create_task(running.server.stop(grace=10))
    assert (await idle.reply()).code == 421  # told at once, not left hanging
    assert await _connect_refused(host, port)
    assert not stopping.done()  # still waiting for the message being sent

    await sending.send(message_bytes("in flight")[40:] + b".\r\n")
    assert (await sending.reply()).code == 250
    await stopping
    await running.intake.stop()
    with store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.raw == message_bytes("in flight")
    await sending.close()
    await idle.close()


async def test_a_stalled_transaction_does_not_hold_the_stop_forever(
    store: Store, settings: Settings
) -> None:
    running = await start_server(store, settings)
    stalled = await _begin_transaction(running.host, running.port)
    await running.server.stop(grace=0.5)
    # Cut off without an acknowledgement, so the sender will try again later.
    assert (await stalled.reply()).code == 421
    await running.intake.stop()
    with store.session() as session:
        assert session.exec(select(Message)).all() == []
    await stalled.close()


@pytest.mark.slow
async def test_sigterm_to_canary_serve_is_a_graceful_stop(store: Store, settings: Settings) -> None:
    process, port = start_serve(settings)
    try:
        sending = await _begin_transaction("127.0.0.1", port)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # the signal is handled and the listener closed
        assert process.poll() is None
        await sending.send(message_bytes("in flight")[40:] + b".\r\n")
        assert (await sending.reply()).code == 250
        await sending.close()
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.raw == message_bytes("in flight")
