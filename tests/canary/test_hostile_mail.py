"""Hostile and broken messages through the whole path: SMTP, storage, analysis.

Every message of the generated corpus (tests/support/hostile_mail.py) is sent over a
real SMTP connection, must be stored byte-exact, and must then be analysed, or marked
unparsable, by the real :class:`~canary.pipeline.Analyzer`, one message per claim, each
within :data:`PER_MESSAGE_BOUND` seconds. The bound is a stall detector, generous on a
busy machine, not a performance figure. Afterwards the same worker still analyses an
ordinary message, and the raw bytes are unchanged by analysis. A Hypothesis property
does the same for arbitrary bytes handed straight to the intake.
"""

from __future__ import annotations

import asyncio

import pytest
from canary.mailbox.intake import IncomingMessage, write_batch
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlmodel import select

from canary.config import Settings
from canary.models import Message
from canary.pipeline import Analyzer
from canary.store import Store
from tests.support.hostile_mail import hostile_messages
from tests.support.smtp import (  # noqa: F401  (smtp_server makes the fixture visible)
    RunningServer,
    message_bytes,
    send_message,
    smtp_server,
    stored_form,
)

HOSTILE = hostile_messages()
PER_MESSAGE_BOUND = 60.0


def _stored(server: RunningServer) -> dict[int, Message]:
    with server.store.session() as session:
        return {m.id: m for m in session.exec(select(Message))}  # type: ignore[misc]


async def _analyse_one_at_a_time(analyzer: Analyzer) -> int:
    """Run the worker until the queue is empty, one claimed message per step."""
    handled = 0
    while True:
        try:
            step = await asyncio.wait_for(asyncio.to_thread(analyzer.run_once), PER_MESSAGE_BOUND)
        except TimeoutError:
            pytest.fail(f"the worker stalled on a message for {PER_MESSAGE_BOUND} s")
        if step == 0:
            return handled
        handled += step


@pytest.mark.slow
@pytest.mark.parametrize("kind", HOSTILE)
async def test_hostile_messages_are_stored_and_analysed(
    smtp_server: RunningServer,  # noqa: F811 (the fixture imported above)
    settings: Settings,
    kind: str,
) -> None:
    sent: dict[int, bytes] = {}
    for name, raw in HOSTILE[kind].items():
        reply = await send_message(
            smtp_server.host, smtp_server.port, "sender@hostile.test", ["victim@canary.test"], raw
        )
        assert reply.code == 250, (name, reply)
        sent[int(reply.text.rsplit(" ", 1)[1])] = stored_form(raw)

    # Byte-exact (stored_form: SMTP itself ends the last line with CRLF).
    assert {i: m.raw for i, m in _stored(smtp_server).items()} == sent

    analyzer = Analyzer(smtp_server.store, settings, batch_size=1)
    assert await _analyse_one_at_a_time(analyzer) == len(sent)
    stored = _stored(smtp_server)
    states = {i: m.state for i, m in stored.items()}
    assert set(states.values()) <= {"analysed", "unparsable"}, states
    assert {i: m.raw for i, m in stored.items()} == sent  # analysis never rewrites evidence
    for message in stored.values():
        if message.subject is not None:
            assert not any(c in message.subject for c in "\r\n\x00")

    # The worker is still healthy: an ordinary message after the hostile ones.
    reply = await send_message(
        smtp_server.host, smtp_server.port, "news@shop.test", ["a@canary.test"], message_bytes()
    )
    assert reply.code == 250
    assert await _analyse_one_at_a_time(analyzer) == 1
    last = max(_stored(smtp_server).values(), key=lambda m: m.id or 0)
    assert last.state == "analysed"


_any_message = st.one_of(
    st.binary(max_size=4000),
    st.lists(
        st.sampled_from(
            [b"From: a@b.test\r\n", b"To: =?utf-8?b?AA0K?= <v@canary.test>\r\n", b"\r\n",
             b"Content-Type: multipart/mixed; boundary=z\r\n", b"--z\r\n", b"--z--\r\n",
             b"Content-Transfer-Encoding: base64\r\n", b"Content-Type: text/html\r\n",
             b"DKIM-Signature: v=1; d=b.test; s=s; b=AA\r\n", b"\x00\xff\r\n", b"x"]
        ),
        max_size=60,
    ).map(b"".join),
)  # fmt: skip


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=_any_message)
def test_any_bytes_are_kept_exactly_and_analysed(
    store: Store, settings: Settings, raw: bytes
) -> None:
    """Whatever the bytes, intake keeps them exactly and the worker reaches a final state."""
    [message_id] = write_batch(
        store.engine, [IncomingMessage(raw=raw, mail_from="x@hyp.test", rcpt_tos=["v@canary.test"])]
    )
    analyzer = Analyzer(store, settings, batch_size=1)
    assert analyzer.run_once() == 1
    with store.session() as session:
        message = session.get(Message, message_id)
        assert message is not None
        assert message.raw == raw and message.size == len(raw)
        assert message.state in ("analysed", "unparsable"), message.error
