"""STARTTLS with a configured certificate, and the real-world malformed corpus end to end."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest
from sqlmodel import select

from canary.config import Settings
from canary.messages import show_message
from canary.models import Message, User
from canary.pipeline import Analyzer
from canary.store import Store
from tests.support.smtp import CORPUS, RunningServer, send_message, start_server, stored_form

SPAMSCOPE = CORPUS / "spamscope"


async def test_starttls_when_a_certificate_is_configured(
    store: Store, settings: Settings, tls_cert: tuple[Path, Path]
) -> None:
    cert, key = tls_cert
    running = await start_server(store, settings, smtp_tls_cert=cert, smtp_tls_key=key)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        client = aiosmtplib.SMTP(
            hostname=running.host, port=running.port, tls_context=context, start_tls=False
        )
        async with client:
            await client.ehlo()
            assert client.supports_extension("starttls")
            await client.starttls()
            errors, _ = await client.sendmail(
                "a@shop.test", ["a@canary.test"], b"Subject: secret\r\n\r\nx\r\n"
            )
            assert errors == {}
    finally:
        await running.stop()
    with store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.tls is True


@pytest.mark.slow
async def test_spamscope_corpus_is_received_stored_and_analysed(
    smtp_server: RunningServer, settings: Settings, owner: User
) -> None:
    if not SPAMSCOPE.is_dir():
        pytest.skip(f"mail corpus not found at {SPAMSCOPE} (it ships beside the repository)")
    files = sorted(SPAMSCOPE.glob("*.eml"))
    assert len(files) >= 20
    sent: dict[int, bytes] = {}
    for path in files:
        content = path.read_bytes()
        reply = await send_message(
            smtp_server.host, smtp_server.port, "spam@x.test", ["victim@canary.test"], content
        )
        assert reply.code == 250, (path.name, reply)
        sent[int(reply.text.rsplit(" ", 1)[1])] = stored_form(content)
    store = smtp_server.store
    with store.session() as session:
        stored = {m.id: m.raw for m in session.exec(select(Message))}
    assert stored == sent  # byte-exact, as received
    assert Analyzer(store, settings).drain() == len(files)
    with store.session() as session:
        states = [m.state for m in session.exec(select(Message))]
        assert set(states) <= {"analysed", "unparsable"}
        for message_id in sent:  # every one can be shown
            shown = show_message(session, owner, message_id)
            assert shown["deliveries"][0]["verdict"] == "unattributed"
