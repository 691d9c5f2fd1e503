"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA, so a hidden second message stays data.

Each variant sends one DATA whose body contains a fake end of data followed by a whole
second transaction (MAIL, RCPT to another canary, DATA, body). A server that took the
fake end for the real one would store two messages, the second one "from" the bank.
Exactly one message must be stored, and it carries the hidden transaction as data.
"""

from __future__ import annotations

import pytest

from tests.mailbox.conftest import RunningServer, alongside, attack_messages
from tests.support.smtp import RawClient

# Every fake end-of-data sequence of the issue (and SMTP smuggling write-ups): bare LF
# and bare CR on either side of the dot, mixed with CRLF, and NUL next to the dot.
FAKE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-lf": b"\r.\n",
    "lf-dot-cr": b"\n.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
    "crlf-dot-nul-crlf": b"\r\n.\x00\r\n",
    "lf-nul-dot-lf": b"\n\x00.\n",
    "lf-dot-nul-lf": b"\n.\x00\n",
    "crlf-dot-space-crlf": b"\r\n. \r\n",
    "crlf-crlf-dot-lf": b"\r\n\r\n.\n",
}

HIDDEN = (
    b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<second@canary.test>\r\nDATA\r\n"
    b"From: admin@bank.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
)


async def _smuggle(server: RunningServer, fake_end: bytes) -> list[int]:
    client = await RawClient.connect(server.host, server.port)
    try:
        await client.cmd("EHLO smuggler.example")
        await client.cmd("MAIL FROM:<a@shop.test>")
        await client.cmd("RCPT TO:<first@canary.test>")
        assert (await client.cmd("DATA")).code == 354
        await client.send(b"Subject: first\r\n\r\nfirst body" + fake_end + HIDDEN + b".\r\n")
        codes = [(await client.reply()).code]
        # Whatever the server made of it, the connection is now between transactions.
        codes.append((await client.cmd("QUIT")).code)
        return codes
    finally:
        await client.close()


@pytest.mark.parametrize("fake_end", FAKE_ENDS.values(), ids=FAKE_ENDS.keys())
async def test_a_fake_end_of_data_never_makes_a_second_message(
    smtp_server: RunningServer, fake_end: bytes
) -> None:
    codes = await alongside(smtp_server, _smuggle(smtp_server, fake_end))
    messages = attack_messages(smtp_server.store)
    if codes[0] == 250:
        [message] = messages
        assert message.rcpt_to == ["first@canary.test"]
        # Stored as data, byte-exact; a dot opening a CRLF line is transparency, removed.
        assert fake_end.replace(b"\r\n.", b"\r\n") + HIDDEN in message.raw
    else:  # rejecting the whole message is the other acceptable outcome
        assert 500 <= codes[0] < 600 and messages == []
    assert codes[1] == 221  # the hidden MAIL/RCPT/DATA were never taken as commands


async def test_pipelined_second_transaction_after_the_real_end_is_separate(
    smtp_server: RunningServer,
) -> None:
    """The control case: after a real <CRLF>.<CRLF> a second message is legitimate."""
    client = await RawClient.connect(smtp_server.host, smtp_server.port)
    await client.cmd("EHLO pipeliner.example")
    await client.cmd("MAIL FROM:<a@shop.test>")
    await client.cmd("RCPT TO:<first@canary.test>")
    assert (await client.cmd("DATA")).code == 354
    await client.send(b"Subject: first\r\n\r\nfirst body\r\n.\r\n" + HIDDEN + b".\r\n")
    codes = [(await client.reply()).code for _ in range(5)]
    await client.close()
    assert codes == [250, 250, 250, 354, 250]
    assert [m.rcpt_to for m in attack_messages(smtp_server.store)] == [
        ["first@canary.test"],
        ["second@canary.test"],
    ]
