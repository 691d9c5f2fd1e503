"""Group commit: concurrent messages share transactions; one bad message fails alone."""

from __future__ import annotations

import asyncio

import pytest
from canary.mailbox.intake import IncomingMessage, Intake
from sqlmodel import select

from canary.models import Delivery, Message
from canary.store import Store


@pytest.mark.parametrize("writers", [1, 2])
async def test_concurrent_submissions_share_commits(store: Store, writers: int) -> None:
    intake = Intake(store.engine, writers=writers)
    await intake.start()
    try:
        messages = [
            IncomingMessage(
                raw=b"m%d\r\n" % i, mail_from="a@x.test", rcpt_tos=[f"r{i}@canary.test"]
            )
            for i in range(60)
        ]
        ids = await asyncio.gather(*(intake.submit(m) for m in messages))
    finally:
        await intake.stop()
    assert len(set(ids)) == 60 and intake.committed == 60
    assert intake.batches < 60  # several messages per transaction
    with store.session() as session:
        raws = {m.id: m.raw for m in session.exec(select(Message))}
        recipients = {d.message_id: d.recipient for d in session.exec(select(Delivery))}
    for i, message_id in enumerate(ids):
        assert raws[message_id] == b"m%d\r\n" % i
        assert recipients[message_id] == f"r{i}@canary.test"


async def test_a_bad_message_fails_alone(store: Store) -> None:
    intake = Intake(store.engine)
    await intake.start()
    try:
        good = [IncomingMessage(raw=b"ok", mail_from="", rcpt_tos=["a@canary.test"])] * 5
        bad = IncomingMessage(raw=b"bad", mail_from="", rcpt_tos=[12345])  # type: ignore[list-item]
        results = await asyncio.gather(
            *(intake.submit(m) for m in [*good[:2], bad, *good[2:]]), return_exceptions=True
        )
    finally:
        await intake.stop()
    assert isinstance(results[2], Exception)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 2)


async def test_submit_needs_a_running_intake(store: Store) -> None:
    intake = Intake(store.engine)
    with pytest.raises(RuntimeError):
        await intake.submit(IncomingMessage(raw=b"x", mail_from="", rcpt_tos=[]))
