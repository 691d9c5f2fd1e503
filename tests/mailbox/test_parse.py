"""MIME parsing of hostile and broken messages never raises and caps what it reads."""

from __future__ import annotations

import hashlib

import pytest
from canary.mailbox import parse
from canary.mailbox.parse import parse_message

GOOD = (
    b"Return-Path: <bounce@mailer.shop.test>\r\n"
    b"Received: from a.test by mx.canary.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Received: from b.test by a.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=shop.test; s=s1; b=abc\r\n"
    b"From: Shop <news@shop.test>\r\nSender: agent@esp.test\r\n"
    b"Reply-To: help@shop.test\r\nTo: Marc Kollier <k3m9@canary.test>\r\n"
    b"Message-ID: <1@shop.test>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"List-Unsubscribe: <mailto:u@shop.test>\r\nList-Id: News <news.shop.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n"
    b"--X\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n"
    b"--Y\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Marc\r\n"
    b"--Y\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--Y--\r\n"
    b"--X\r\nContent-Type: application/pdf; name=a.pdf\r\n"
    b'Content-Disposition: attachment; filename="../../etc/a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--X--\r\n"
)


def test_facts_of_a_well_formed_message() -> None:
    p = parse_message(GOOD)
    assert p.parsed and p.error is None
    assert p.from_ == (("Shop", "news@shop.test"),) and p.from_address == "news@shop.test"
    assert p.sender == "agent@esp.test" and p.reply_to == (("", "help@shop.test"),)
    assert p.to == (("Marc Kollier", "k3m9@canary.test"),)
    assert p.return_path == "<bounce@mailer.shop.test>"
    assert p.message_id == "<1@shop.test>" and p.date == "2024-01-02T10:00:00+01:00"
    assert p.subject == "Grüße" and p.list_id == "News <news.shop.test>"
    assert p.list_unsubscribe == "<mailto:u@shop.test>"
    assert len(p.received) == 2 and p.dkim_signatures[0].startswith("v=1")
    assert p.text.strip() == "Hello Marc" and "<p>Hello</p>" in p.html
    [attachment] = p.attachments
    assert attachment.filename == "../../etc/a.pdf"  # recorded only, never used as a path
    assert attachment.size == 5 and attachment.sha256 == hashlib.sha256(b"%PDF-").hexdigest()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"no headers at all, just text",
        b"From: <<<@@@>>>\r\nTo: ,,,;;;\r\nDate: yesterday\r\n\r\nx",
        b"Subject: =?utf-8?b?!!!notbase64?= =?x-unknown?q?abc?= =?utf-8?q?=FF=FE?=\r\n\r\n",
        b"Subject: \xff\xfe\xfd invalid utf-8\r\nFrom: J\xfcrgen <j@x.test>\r\n\r\n\xff\r\n",
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nbody\r\n",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\n!!!\r\n",
        b"Message-ID: " + b"<" * 5000 + b"\r\nReceived: " + b"(" * 3000 + b"\r\n\r\n",
        bytes(range(256)) * 10,
    ],
)
def test_broken_messages_never_raise(raw: bytes) -> None:
    p = parse_message(raw)
    assert isinstance(p.text, str) and "\x00" not in (p.subject or "")
    for value in (p.subject, p.message_id, p.text, p.html, *p.received):
        if value:
            value.encode("utf-8")  # storable and printable


def test_deep_nesting_is_capped() -> None:
    depth = 300
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    p = parse_message(head + b"Content-Type: text/plain\r\n\r\ndeep text" + tail)
    assert p.truncated
    assert "deep text" not in p.text


def test_part_count_and_body_size_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "MAX_PARTS", 3)
    parts = b"".join(
        b"--Z\r\nContent-Type: application/octet-stream\r\n\r\nx%d\r\n" % i for i in range(10)
    )
    raw = b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n" + parts + b"--Z--\r\n"
    p = parse_message(raw)
    assert len(p.attachments) == 3 and p.truncated
    big = parse_message(b"Subject: big\r\n\r\n" + b"a" * (parse.MAX_BODY_CHARS + 10))
    assert len(big.text) == parse.MAX_BODY_CHARS and big.truncated
