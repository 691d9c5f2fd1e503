"""A generated corpus of hostile and broken messages, by class.

Each message is what a spammer, a phisher or a broken mailer really sends: nesting and
part counts meant to exhaust a parser, transfer encodings that do not decode, charsets
nobody knows, RFC 2047 encoded words that hide CR, LF or NUL, invalid UTF-8, NUL
bytes, huge headers, addresses that ``parseaddr`` and a mail client read differently,
and attachment names and Content-IDs that are paths. :func:`hostile_messages` returns
them as ``{class: {name: raw bytes}}``.

Every message uses CRLF line endings and keeps each line under the SMTP listener's
64 KiB line limit, so it is sent unchanged over SMTP and must be stored byte-exact.
"""

from __future__ import annotations

import base64

CRLF = b"\r\n"
HEAD = b"From: Sender <sender@hostile.test>\r\nTo: victim@canary.test\r\nMIME-Version: 1.0\r\n"


def _msg(headers: bytes, body: bytes = b"body\r\n") -> bytes:
    """A message: the common head, ``headers`` (CRLF-terminated lines), a blank line, body."""
    return HEAD + headers + CRLF + body


def _b64(text: bytes) -> bytes:
    return base64.b64encode(text)


def _multipart(boundary: bytes, parts: list[bytes], subtype: bytes = b"mixed") -> bytes:
    body = b"".join(b"--" + boundary + CRLF + part + CRLF for part in parts)
    return (
        b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"' + CRLF + CRLF
        + body + b"--" + boundary + b"--" + CRLF
    )  # fmt: skip


# ---------------------------------------------------------------------- structure


def deep_nesting() -> dict[str, bytes]:
    """Multiparts and attached messages nested far past any sane depth."""
    out: dict[str, bytes] = {}
    for depth in (20, 200, 2000):
        head = b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(depth)
        )
        tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
        out[f"multipart-{depth}"] = HEAD + head + b"Content-Type: text/plain\r\n\r\ndeep" + tail
    for depth in (50, 1000):
        nested = b"Subject: innermost\r\n\r\ninnermost body\r\n"
        for _ in range(depth):
            nested = b"Content-Type: message/rfc822\r\n\r\n" + nested
        out[f"rfc822-{depth}"] = HEAD + nested
    # Every level reuses one boundary, so each closing line closes all of them at once.
    same = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" * 500
    out["same-boundary-500"] = HEAD + same + b"\r\n--x--\r\n"
    # A boundary that never appears, and a part that claims to be multipart without one.
    out["boundary-missing"] = _msg(b"Content-Type: multipart/mixed; boundary=nowhere\r\n")
    out["multipart-no-boundary"] = _msg(b"Content-Type: multipart/alternative\r\n")
    return out


def many_parts() -> dict[str, bytes]:
    """Thousands of parts, tiny and empty."""
    out: dict[str, bytes] = {}
    for count in (1000, 5000, 20000):
        parts = [b"Content-Type: text/plain\r\n\r\npart %d" % i for i in range(count)]
        out[f"text-parts-{count}"] = HEAD + _multipart(b"P", parts)
    empty = [b"" for _ in range(10000)]
    out["empty-parts-10000"] = HEAD + _multipart(b"E", empty)
    attachments = [
        b"Content-Type: application/octet-stream; name=a%d.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAAA" % i
        for i in range(3000)
    ]
    out["attachments-3000"] = HEAD + _multipart(b"A", attachments)
    return out


# ---------------------------------------------------------------------- encodings


def broken_base64() -> dict[str, bytes]:
    """Base64 bodies that do not decode, in text and in attachments."""
    cte = b"Content-Transfer-Encoding: base64\r\n"
    bodies = {
        "invalid-chars": b"!!!!$$$$****\r\n",
        "bad-padding": b"QUJD=\r\nRA==\r\n=\r\n",
        "truncated": b"SGVsbG8gd29ybG\r\n",
        "only-padding": b"====\r\n" * 100,
        "no-newlines": _b64(b"x" * 40000) + b"\r\n",
        "mixed-binary": b"SGVs\x00\xff\xfebG8=\r\n",
        "whitespace-inside": b"S G V s b G 8 =\r\n",
    }
    out = {f"text-{n}": _msg(cte + b"Content-Type: text/plain\r\n", b) for n, b in bodies.items()}
    for name, body in bodies.items():
        part = b"Content-Type: application/pdf; name=x.pdf\r\n" + cte + CRLF + body
        out[f"attachment-{name}"] = HEAD + _multipart(b"B", [part])
    out["encoded-word-b"] = _msg(b"Subject: =?utf-8?b?!!!notbase64?=\r\n")
    out["encoded-word-b-padding"] = _msg(b"Subject: =?utf-8?b?QQ?= =?utf-8?b?QUJDRA===?=\r\n")
    return out


def broken_quoted_printable() -> dict[str, bytes]:
    """Quoted-printable with bad escapes, dangling soft breaks and raw 8-bit."""
    cte = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
    )
    bodies = {
        "bad-escape": b"a=ZZb=G1c\r\n",
        "lowercase-hex": b"caf=c3=a9\r\n",
        "dangling-equals": b"ends with =",
        "soft-break-at-end": b"line=\r\n",
        "equals-cr": b"a=\rb\r\n",
        "eight-bit": b"caf\xc3\xa9 \xff\r\n",
        "nul-escape": b"before=00after\r\n",
        "crlf-escape": b"line=0D=0ABcc: injected@x.test\r\n",
        "long-soft-breaks": b"=\r\n" * 20000 + b"end\r\n",
    }
    out = {name: _msg(cte, body) for name, body in bodies.items()}
    out["encoded-word-q"] = _msg(b"Subject: =?utf-8?q?=ZZ=G?= =?utf-8?q?=?=\r\n")
    return out


def unknown_charsets() -> dict[str, bytes]:
    """Charsets no codec knows, in bodies, encoded words and RFC 2231 parameters."""
    names = [b"x-no-such-charset", b"", b"utf-8\x00", b"../../etc/passwd", b"utf-7", b"\xff\xfe"]
    names += [b"cp-1252-ish", b"us-ascii; charset=utf-16", b"idna", b"rot13", b"base64_codec"]
    out: dict[str, bytes] = {}
    for i, name in enumerate(names):
        out[f"body-{i}"] = _msg(
            b'Content-Type: text/plain; charset="' + name + b'"\r\n', b"\xe9t\xe9\r\n"
        )
        out[f"word-{i}"] = _msg(b"Subject: =?" + name + b"?q?caf=E9?=\r\n")
    out["rfc2231-unknown"] = _msg(
        b"Content-Type: application/octet-stream;\r\n"
        b" name*=x-unknown'xx'%E9t%E9.txt\r\nContent-Disposition: attachment;\r\n"
        b" filename*=x-unknown''%FF%FE.txt\r\n"
    )
    out["utf16-declared-ascii-body"] = _msg(
        b"Content-Type: text/plain; charset=utf-16\r\n", b"plain ascii, odd length\r\n"
    )
    out["html-meta-charset"] = _msg(
        b"Content-Type: text/html\r\n", b'<meta charset="x-evil"><p>\xe9</p>\r\n'
    )
    return out


# ---------------------------------------------------------------------- headers


def encoded_control_characters() -> dict[str, bytes]:
    """RFC 2047 encoded words that decode to CR, LF, NUL and header injections."""
    payloads = {
        "crlf-bcc": b"hi\r\nBcc: injected@x.test",
        "lf-only": b"hi\nX-Injected: yes",
        "cr-only": b"hi\rX-Injected: yes",
        "nul": b"before\x00after",
        "crlf-crlf-body": b"hi\r\n\r\n<script>alert(1)</script>",
        "all-controls": bytes(range(32)),
    }
    out: dict[str, bytes] = {}
    for name, payload in payloads.items():
        b_word = b"=?utf-8?b?" + _b64(payload) + b"?="
        q_word = b"=?utf-8?q?" + b"".join(b"=%02X" % c for c in payload) + b"?="
        out[f"subject-b-{name}"] = _msg(b"Subject: " + b_word + CRLF)
        out[f"subject-q-{name}"] = _msg(b"Subject: " + q_word + CRLF)
        out[f"from-name-{name}"] = (
            b"From: " + b_word + b" <sender@hostile.test>\r\nTo: victim@canary.test\r\n\r\nx\r\n"
        )
        out[f"to-name-{name}"] = (
            b"From: sender@hostile.test\r\nTo: " + q_word + b" <victim@canary.test>\r\n\r\nx\r\n"
        )
        out[f"filename-{name}"] = HEAD + _multipart(
            b"F",
            [b'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="'
             + b_word + b'"\r\n\r\nx'],
        )  # fmt: skip
    out["message-id-nul"] = _msg(b"Message-ID: <a\x00b@hostile.test>\r\n")
    out["raw-cr-in-header"] = _msg(b"Subject: one\rBcc: raw-cr@x.test\r\n")
    return out


def invalid_utf8() -> dict[str, bytes]:
    """Bytes that are not UTF-8, in headers, bodies and addresses."""
    samples = {
        "latin1": b"J\xfcrgen M\xfcller",
        "overlong-slash": b"\xc0\xaf\xe0\x80\xaf",
        "surrogate": b"\xed\xa0\x80\xed\xbf\xbf",
        "truncated": b"caf\xc3",
        "continuation-only": b"\x80\x81\x82\xbf",
        "beyond-unicode": b"\xf4\x90\x80\x80\xf8\x88\x80\x80\x80",
        "bom-garbage": b"\xef\xbb\xbf\xff\xfe\x00",
    }
    out: dict[str, bytes] = {}
    for name, data in samples.items():
        out[f"subject-{name}"] = _msg(b"Subject: " + data + CRLF)
        out[f"from-{name}"] = (
            b"From: " + data + b" <" + data + b"@hostile.test>\r\nTo: victim@canary.test\r\n\r\n"
        )
        out[f"body-{name}"] = _msg(b"Content-Type: text/plain; charset=utf-8\r\n", data + CRLF)
        out[f"header-name-{name}"] = _msg(b"X-" + data + b": value\r\n")
    return out


def nul_bytes() -> dict[str, bytes]:
    """NUL bytes where C code would stop reading."""
    return {
        "body": _msg(b"", b"before\x00after\r\n" * 100),
        "subject": _msg(b"Subject: a\x00b\r\n"),
        "from": b"From: a\x00b@hostile.test\r\nTo: victim@canary.test\r\n\r\nx\r\n",
        "header-name": _msg(b"X-N\x00ul: value\r\n"),
        "boundary": HEAD + _multipart(b"a\x00b", [b"Content-Type: text/plain\r\n\r\nx"]),
        "filename": HEAD
        + _multipart(
            b"N", [b'Content-Disposition: attachment; filename="evil.pdf\x00.txt"\r\n\r\nx']
        ),
        "only-nuls": b"\x00" * 5000 + CRLF,
        "nul-lines": (b"\x00" * 100 + CRLF) * 100,
    }


def huge_headers() -> dict[str, bytes]:
    """Headers of absurd size and number (folded, so every line stays under 64 KiB)."""
    folded = b"Subject: start" + b"".join(b"\r\n word%06d" % i for i in range(60000)) + CRLF
    return {
        "one-line-60k": _msg(b"Subject: " + b"S" * 60000 + CRLF),
        "folded-1mb-subject": _msg(folded),
        "ten-thousand-headers": _msg(b"".join(b"X-H%d: v\r\n" % i for i in range(10000))),
        "received-5000": _msg(b"Received: from a.test by b.test; now\r\n" * 5000),
        "dkim-signature-2000": _msg(
            b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; b=\r\n" * 2000
        ),
        "to-10000-addresses": _msg(
            b"Cc: " + b",\r\n ".join(b"u%d@canary.test" % i for i in range(10000)) + CRLF
        ),
        "message-id-brackets": _msg(b"Message-ID: " + b"<" * 50000 + CRLF),
        "received-parens": _msg(b"Received: " + b"(" * 50000 + CRLF),
        "no-colon-line": _msg(b"this header line has no colon at all " * 1000 + CRLF),
        "folded-without-header": b" continuation first\r\n" + _msg(b""),
        "no-body-separator": HEAD + b"Subject: no blank line follows",
    }


# ---------------------------------------------------------------------- addresses


def address_ambiguities() -> dict[str, bytes]:
    """From lines that parsers (``email.utils.parseaddr`` among them) read differently."""
    froms = [
        b'"trusted@good.test" <evil@bad.test>',
        b"evil@bad.test <trusted@good.test>",
        b"trusted@good.test, evil@bad.test",
        b"<trusted@good.test>@bad.test",
        b"trusted@good.test (comment <evil@bad.test>)",
        b'"a\\"@good.test" <evil@bad.test>',
        b"evil@bad.test@good.test",
        b"alice@good.test)<evil@bad.test>",  # CVE-2023-27043
        b"alice@good.test, <evil@bad.test>",
        b"<evil@bad.test",
        b"evil@bad.test>",
        b"=?utf-8?q?trusted=40good.test?= <evil@bad.test>",
        b'"=?utf-8?b?' + _b64(b"trusted@good.test") + b'?=" <evil@bad.test>',
        b"@good.test:evil@bad.test",
        b"trusted@[127.0.0.1]",
        b"trusted@good.test\x00@bad.test",
        b"undisclosed-recipients:;",
        b"group: a@good.test, b@bad.test;",
        b"",
        b"<>",
        b'"unterminated@good.test <evil@bad.test>',
        b"(((((((((( nested comments " * 200,
    ]
    return {
        f"from-{i}": b"From: " + f + b"\r\nTo: victim@canary.test\r\nSubject: x\r\n\r\nx\r\n"
        for i, f in enumerate(froms)
    } | {
        "two-from-headers": b"From: a@good.test\r\nFrom: evil@bad.test\r\n\r\nx\r\n",
        "reply-to-list": _msg(b"Reply-To: a@good.test, evil@bad.test, ,,;;\r\n"),
        "return-path-garbage": _msg(b"Return-Path: <<<>>>@@@\r\n"),
    }


# ---------------------------------------------------------------------- names as paths


def attachment_paths() -> dict[str, bytes]:
    """Attachment names and Content-IDs that are paths (traversal, absolute, Windows)."""
    names = [
        b"../../../../etc/passwd",
        b"..\\..\\..\\Windows\\win.ini",
        b"/etc/passwd",
        b"C:\\Windows\\System32\\evil.exe",
        b"C:/Users/Public/evil.exe",
        b"\\\\server\\share\\evil.exe",
        b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        b"....//....//etc/passwd",
        b"evil.pdf\r\nContent-Type: text/html",
        b".htaccess",
        b"CON",
        b"a" * 5000 + b".exe",
        b"file:///etc/passwd",
        b"~/.ssh/authorized_keys",
        b"report.pdf\xe2\x80\xaeexe.txt",  # right-to-left override
    ]
    out: dict[str, bytes] = {}
    for i, name in enumerate(names):
        part = (
            b'Content-Type: application/octet-stream; name="' + name + b'"\r\n'
            b'Content-Disposition: attachment; filename="' + name + b'"\r\n'
            b"Content-ID: <" + name + b">\r\nContent-Location: " + name + b"\r\n\r\ndata"
        )
        out[f"name-{i}"] = HEAD + _multipart(b"N", [part])
    out["rfc2231-traversal"] = HEAD + _multipart(
        b"R",
        [b"Content-Disposition: attachment;\r\n filename*=utf-8''..%2F..%2F..%2Fetc%2Fpasswd"
         b"\r\n\r\nx"],
    )  # fmt: skip
    out["rfc2231-continuations"] = HEAD + _multipart(
        b"R",
        [b"Content-Disposition: attachment;\r\n filename*0=\"../../\";\r\n filename*1=\"etc/\";"
         b"\r\n filename*2=\"passwd\"\r\n\r\nx"],
    )  # fmt: skip
    out["cid-html-reference"] = HEAD + _multipart(
        b"C",
        [
            b'Content-Type: text/html\r\n\r\n<img src="cid:../../etc/passwd">',
            b"Content-Type: image/png\r\nContent-ID: <../../etc/passwd>\r\n\r\npng",
        ],
        b"related",
    )
    return out


GENERATORS = {
    "deep_nesting": deep_nesting,
    "many_parts": many_parts,
    "broken_base64": broken_base64,
    "broken_quoted_printable": broken_quoted_printable,
    "unknown_charsets": unknown_charsets,
    "encoded_control_characters": encoded_control_characters,
    "invalid_utf8": invalid_utf8,
    "nul_bytes": nul_bytes,
    "huge_headers": huge_headers,
    "address_ambiguities": address_ambiguities,
    "attachment_paths": attachment_paths,
}


def hostile_messages() -> dict[str, dict[str, bytes]]:
    """Every hostile message, as ``{class: {name: raw bytes}}``."""
    return {name: generate() for name, generate in GENERATORS.items()}
