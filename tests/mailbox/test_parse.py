"""MIME parsing of hostile and broken messages never raises and caps what it reads."""

from __future__ import annotations

import hashlib

import pytest
from canary.mailbox import parse
from canary.mailbox.parse import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile_mail import hostile_messages

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


# ---------------------------------------------------------------------- hostile corpus

HOSTILE = hostile_messages()
SINGLE_LINE_CONTROLS = ("\r", "\n", "\x00", "\x1b")


def _single_line_values(p: parse.ParsedMessage) -> list[str]:
    values = [p.subject or "", p.message_id or "", p.sender or "", p.list_id or ""]
    for display, address in p.from_ + p.to + p.cc + p.reply_to:
        values += [display, address]
    values += [a.filename or "" for a in p.attachments]
    return values


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_messages_parse_within_the_caps(kind: str) -> None:
    for name, raw in HOSTILE[kind].items():
        p = parse_message(raw)
        assert p.parsed, (name, p.error)
        assert len(p.text) <= parse.MAX_BODY_CHARS and len(p.html) <= parse.MAX_BODY_CHARS
        assert len(p.attachments) <= parse.MAX_PARTS
        for value in _single_line_values(p):
            # Decoded words never smuggle a line break, NUL or terminal escape out.
            assert not any(c in value for c in SINGLE_LINE_CONTROLS), (name, value)
            value.encode("utf-8")
        for value in (p.text, p.html, *p.received, *p.headers.values()):
            assert "\x00" not in value
            value.encode("utf-8")


def test_thousands_of_parts_and_deep_nesting_stop_early() -> None:
    """The parser is stopped once it has built more parts than are ever read."""
    many = parse_message(HOSTILE["many_parts"]["text-parts-20000"])
    assert many.truncated and many.text.count("part ") == parse.MAX_PARTS
    deep = parse_message(HOSTILE["deep_nesting"]["multipart-2000"])
    assert deep.truncated and deep.subject is None and deep.from_address


@pytest.mark.parametrize("name", sorted(HOSTILE["attachment_paths"]))
def test_attachment_names_that_are_paths_are_recorded_as_text(name: str) -> None:
    p = parse_message(HOSTILE["attachment_paths"][name])
    assert p.attachments or name == "cid-html-reference"
    for attachment in p.attachments:
        assert attachment.filename is None or len(attachment.filename) <= 255


def test_encoded_crlf_in_a_subject_is_flattened() -> None:
    p = parse_message(HOSTILE["encoded_control_characters"]["subject-b-crlf-bcc"])
    assert p.subject == "hi Bcc: injected@x.test"
    assert "bcc" not in p.headers  # the decoded text never became a header


def test_address_ambiguities_keep_the_address_not_the_display_name() -> None:
    p = parse_message(HOSTILE["address_ambiguities"]["from-0"])
    assert p.from_address == "evil@bad.test"
    assert p.from_ == (("trusted@good.test", "evil@bad.test"),)


# ---------------------------------------------------------------------- properties

_HEADER_NAMES = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "Content-Type", "Received",
     "Content-Transfer-Encoding", "Content-Disposition", "Reply-To", "X-Junk"]
)  # fmt: skip
_header_line = st.builds(
    lambda name, value: name.encode() + b": " + value + b"\r\n",
    _HEADER_NAMES,
    st.binary(max_size=200),
)
_structured = st.builds(
    lambda headers, body: b"".join(headers) + b"\r\n" + body,
    st.lists(_header_line, max_size=12),
    st.binary(max_size=2000),
)
_boundary_soup = st.lists(
    st.sampled_from(
        [b"--b\r\n", b"--b--\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n", b"\r\n",
         b"Content-Transfer-Encoding: base64\r\n", b"=?utf-8?b?AA==?=", b"x\r\n", b"\x00"]
    ),
    max_size=80,
).map(b"".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=3000), _structured, _boundary_soup))
def test_any_bytes_parse_without_raising(raw: bytes) -> None:
    p = parse_message(raw)
    for value in _single_line_values(p):
        assert "\r" not in value and "\n" not in value and "\x00" not in value
        value.encode("utf-8")
    assert "\x00" not in p.text + p.html


@pytest.mark.parametrize(
    "disposition,expected",
    [
        (b'filename="=?utf-8?q?../encoded.html?="', "../encoded.html"),
        ('filename="ФНС_РФ558.zip"'.encode(), "ФНС_РФ558.zip"),
        (b"filename*=utf-8''%D0%A4%D0%9D%D0%A1.zip", "ФНС.zip"),
        (b'filename="=?utf-8?b?' + b"aGkNCkJjYzogeEB5LnRlc3Q=" + b'?="', "hi  Bcc: x@y.test"),
    ],
    ids=["encoded-word", "raw-utf8", "rfc2231", "encoded-crlf"],
)
def test_attachment_names_are_decoded_as_mail_clients_show_them(
    disposition: bytes, expected: str
) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        + disposition
        + b"\r\n\r\ndata\r\n--Q--\r\n"
    )
    [attachment] = parse_message(raw).attachments
    assert attachment.filename == expected


def test_a_long_attachment_name_keeps_its_extension() -> None:
    long_name = "invoice-" + "x" * 400 + ".pdf.exe"
    raw = (
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
        b' filename="' + long_name.encode() + b'"\r\n\r\ndata\r\n--Q--\r\n'
    )
    [attachment] = parse_message(raw).attachments
    assert attachment.filename is not None and len(attachment.filename) == parse.MAX_FILENAME
    assert attachment.filename.startswith("invoice-xxx") and attachment.filename.endswith(".exe")
