"""Never an open relay: a recipient is a local canary recipient or it gets a 5xx.

The forms are the classic relay tests (quoted addresses, UUCP bang paths, the percent
hack, source routes, address literals) and lookalikes of the canary domain: upper case
(which *is* the canary domain), IDNA forms, and Unicode characters that case folding or
IDNA mapping would turn into it.
"""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from tests.mailbox.conftest import RunningServer, alongside, attack_messages
from tests.support.smtp import RawClient, message_bytes, send_message, start_server

# Recipients that name another host, one way or another: always refused with 5xx.
RELAY_FORMS = [
    "victim@other.test",
    '"user@other.test"',
    '"user@other.test"@canary.test',
    '"user"@other.test',
    "other.test!user",
    "other.test!user@canary.test",
    "user%other.test@canary.test",
    "user%other.test",
    "@a.test,@b.test:user@other.test",
    "@canary.test:user@other.test",
    "@other.test:user@canary.test",
    "user@[127.0.0.1]",
    "user@[IPv6:::1]",
    "user@canary.test.other.test",
    "user@other.test.canary",
    "user@sub.canary.test",
    "user@canary.test@other.test",
    "user@other.test@canary.test",
    "user@canary.test%other.test",
    "user@other.test%canary.test",
    "user\\@other.test@canary.test",
    "user@canary-test",
    "user@canary.test..",
    "user@canary.test.",  # the address parser refuses a trailing dot (553)
    # Lookalikes of canary.test that are other names.
    "user@xn--canry-6ve.test",  # IDNA of "canäry.test"
    "user@can\u0430ry.test",  # Cyrillic a
    "user@canary\u3002test",  # ideographic full stop, a dot only to IDNA
    "user@\uff43\uff41\uff4e\uff41\uff52\uff59.test",  # full-width letters, NFKC "canary"
    "user@canary.tes\u0442",  # Cyrillic te
    "user@canary.test\u200b",  # zero-width space
    "user@\u212aanary.test",  # Kelvin sign: str.lower() makes it "k"
    "user@CANARY.TEST\u0130",  # dotted capital I: lower() adds a combining dot
]

# The canary domain in other letter case: the same name, so local recipients.
LOCAL_FORMS = [
    "user@CANARY.TEST",
    "user@Canary.Test",
    "USER+tag@CaNaRy.TeSt",
]


async def _try_relay(server: RunningServer, recipient: str) -> tuple[int, str, int]:
    client = await RawClient.connect(server.host, server.port)
    try:
        assert (await client.cmd("EHLO relay.example")).code == 250
        assert (await client.cmd("MAIL FROM:<spammer@canary.test> SMTPUTF8")).code == 250
        rcpt = await client.cmd(f"RCPT TO:<{recipient}>".encode())
        data = await client.cmd("DATA")
        if data.code == 354:
            await client.send(b"Subject: relay\r\n\r\nx\r\n.\r\n")
            await client.reply()
        return rcpt.code, rcpt.text, data.code
    finally:
        await client.close()


@pytest.mark.parametrize("recipient", RELAY_FORMS)
async def test_relay_forms_are_refused(smtp_server: RunningServer, recipient: str) -> None:
    code, text, data_code = await alongside(smtp_server, _try_relay(smtp_server, recipient))
    assert 500 <= code < 600, (recipient, text)
    if code == 550:
        assert "5.7.1" in text
    assert data_code == 503  # no recipient was accepted
    assert attack_messages(smtp_server.store) == []


@pytest.mark.parametrize("recipient", LOCAL_FORMS)
async def test_other_letter_case_is_the_canary_domain(
    smtp_server: RunningServer, recipient: str
) -> None:
    code, _, data_code = await _try_relay(smtp_server, recipient)
    assert (code, data_code) == (250, 354)
    [message] = attack_messages(smtp_server.store)
    assert message.rcpt_to == [recipient]


async def test_a_refused_recipient_does_not_taint_an_accepted_one(
    smtp_server: RunningServer,
) -> None:
    """Mixed envelope: only the local recipient is kept; nothing goes anywhere else."""
    reply = await send_message(
        smtp_server.host,
        smtp_server.port,
        "x@spam.test",
        ["victim@other.test", "user%other.test@canary.test", "k3m9@canary.test"],
        message_bytes("mixed"),
    )
    assert reply.code == 250
    [message] = attack_messages(smtp_server.store)
    assert message.rcpt_to == ["k3m9@canary.test"]


async def test_relay_denied_with_smtplib(smtp_server: RunningServer) -> None:
    def send() -> None:
        with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
            client.sendmail("a@canary.test", ["b@example.test"], message_bytes())

    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(send)
    code, text = info.value.recipients["b@example.test"]
    assert code == 550 and b"5.7.1" in text


async def test_kelvin_sign_is_not_a_k(store, settings) -> None:  # type: ignore[no-untyped-def]
    """``"\\u212a".lower() == "k"``: a domain with a k must not match its lookalike."""
    running = await start_server(store, settings, domains=("canary.test", "kanary.test"))
    try:
        assert (await _try_relay(running, "user@kanary.test"))[0] == 250
        code, text, _ = await _try_relay(running, "user@\u212aanary.test")
        assert code == 550 and "5.7.1" in text
    finally:
        await running.stop()
    assert [m.rcpt_to for m in attack_messages(store)] == [["user@kanary.test"]]
