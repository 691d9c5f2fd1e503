"""MIME facts of a raw message, extracted with the standard library and never raising.

Spam and hostile mail is full of broken encodings, RFC 2047 abuse, invalid UTF-8,
absurd nesting and missing headers. :func:`parse_message` reads what it can with
``email.policy.default``, falls back to the raw header text where a header cannot be
parsed, caps nesting, part count and body sizes, and reports a message it cannot read
at all as ``parsed=False`` with the reason, instead of raising. Attachments are only
measured and hashed: nothing is executed or written to disk.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from email import policy
from email.feedparser import BytesFeedParser
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime

log = logging.getLogger(__name__)

MAX_DEPTH = 16  # nesting of multiparts; deeper parts are not read
MAX_PARTS = 500  # leaf parts looked at
MAX_BODY_CHARS = 256 * 1024  # of the text body and of the HTML body, each
MAX_HEADER_CHARS = 8192  # of one header value
MAX_HEADERS = 200  # of one name (Received, DKIM-Signature)
MAX_OBJECTS = 2 * MAX_PARTS  # MIME parts (leaves and containers) built before parsing stops
# Nesting at which parsing stops: the parser tests every line against the boundary of
# every open level, so deep nesting costs depth squared; _walk reads only MAX_DEPTH.
MAX_PARSE_DEPTH = 2 * MAX_DEPTH
_FEED_CHUNK = 16 * 1024  # bytes fed to the parser between checks of the two caps


@dataclass(frozen=True)
class Attachment:
    """One attached part: what it claims to be and what it measures."""

    filename: str | None
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ParsedMessage:
    """The facts later steps need, from one raw message."""

    parsed: bool
    error: str | None = None
    from_: tuple[tuple[str, str], ...] = ()  # (display name, address)
    sender: str | None = None
    reply_to: tuple[tuple[str, str], ...] = ()
    to: tuple[tuple[str, str], ...] = ()
    cc: tuple[tuple[str, str], ...] = ()
    return_path: str | None = None
    message_id: str | None = None
    date: str | None = None  # ISO 8601 when the Date header can be read
    subject: str | None = None
    list_unsubscribe: str | None = None
    list_id: str | None = None
    received: tuple[str, ...] = ()
    dkim_signatures: tuple[str, ...] = ()
    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()
    truncated: bool = False  # a cap was hit: nesting, parts or body size
    headers: dict[str, str] = field(default_factory=dict)  # first value of each name

    @property
    def from_address(self) -> str | None:
        """The first From address, or None."""
        return self.from_[0][1] if self.from_ and self.from_[0][1] else None


def _clean(value: object, limit: int = MAX_HEADER_CHARS) -> str:
    text = str(value)
    # Lone surrogates (undecodable bytes) cannot be stored or printed.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\x00", "\ufffd")[:limit]


# C0 controls and DEL. RFC 2047 encoded words can decode to CR, LF or NUL; a name or a
# file name carrying them could split a header wherever it is written out again.
_CONTROLS = str.maketrans({c: " " for c in [*range(32), 127]})


def _one_line(value: object, limit: int = MAX_HEADER_CHARS) -> str:
    """Like :func:`_clean`, and with control characters (CR, LF, TAB...) made spaces."""
    return _clean(value, limit).translate(_CONTROLS)


def _header_values(msg: Message, name: str) -> list[str]:
    """Every value of header ``name``, parsed when possible, raw text otherwise."""
    values: list[str] = []
    wanted = name.lower()
    for key, raw in msg.raw_items():  # type: ignore[attr-defined]
        if key.lower() != wanted:
            continue
        if len(values) >= MAX_HEADERS:
            break
        if len(raw) > MAX_HEADER_CHARS:
            # The header parser takes seconds on a folded megabyte; only the start is kept.
            values.append(_clean(raw))
            continue
        try:
            # One value at a time, so one broken header does not hide the others.
            values.append(_clean(msg.policy.header_fetch_parse(key, raw)))
        except Exception:  # a header policy.default cannot parse: keep the raw text
            values.append(_clean(raw))
    return values


def _first(msg: Message, name: str) -> str | None:
    values = _header_values(msg, name)
    return " ".join(values[0].translate(_CONTROLS).split()) if values else None


def _addresses(msg: Message, name: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    wanted = name.lower()
    first_raw = next((v for k, v in msg.raw_items() if k.lower() == wanted), "")  # type: ignore[attr-defined]
    try:
        # Ten thousand addresses take the modern parser seconds: huge ones use the fallback.
        header = msg[name] if len(first_raw) <= MAX_HEADER_CHARS else None
        if header is not None and hasattr(header, "addresses"):
            for address in header.addresses:
                assert isinstance(address, Address)
                out.append((_one_line(address.display_name), _one_line(address.addr_spec)))
            return tuple(out)
    except Exception:
        pass
    # Fallback for headers the modern parser refuses: the compat32 splitter on raw text.
    values = _header_values(msg, name)
    try:
        pairs = getaddresses(values)
    except (Exception, RecursionError):  # nested comments recurse once per "("
        return ()
    for display, address in pairs:
        if display or address:
            out.append((_one_line(display), _one_line(address)))
    return tuple(out)


def _date(msg: Message) -> str | None:
    raw = _first(msg, "Date")
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw).isoformat()
    except Exception:
        return None


def _decoded_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):  # an unknown charset, or a codec without "replace"
        return payload.decode("utf-8", "replace")


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    try:
        has_name = part.get_filename() is not None
    except Exception:
        has_name = False
    return has_name or part.get_content_maintype() not in ("text", "multipart", "message")


def _structure(raw: bytes) -> tuple[Message, bool]:
    """The MIME tree of ``raw``, and whether building it stopped at :data:`MAX_OBJECTS`.

    The tree is built with the ``compat32`` policy, which is an order of magnitude faster
    than ``policy.default`` (whose header objects cost about a millisecond per part).
    The parser is fed in chunks and stopped once it has made more parts than are ever
    read, so thousands of parts or deep nesting cost a bounded amount of work; what it
    has read so far is kept.
    """
    made = 0
    deepest = 0
    parsers: list[BytesFeedParser] = []

    def factory(**kwargs: object) -> Message:
        nonlocal made, deepest
        if parsers:  # not the parser's own trial call while it is being made
            made += 1
            # The parser's stack of open parts (private, but stable since Python 2).
            deepest = max(deepest, len(getattr(parsers[0], "_msgstack", ())))
        return Message(**kwargs)  # type: ignore[arg-type]

    parser = BytesFeedParser(factory, policy=policy.compat32)
    parsers.append(parser)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(bytes(view[start : start + _FEED_CHUNK]))
        if made > MAX_OBJECTS or deepest > MAX_PARSE_DEPTH:
            return parser.close(), True
    return parser.close(), False


def _walk(msg: Message) -> tuple[list[Message], bool]:
    """Leaf parts in document order, iteratively, with the nesting and part caps."""
    leaves: list[Message] = []
    truncated = False
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if part.is_multipart():
            if depth >= MAX_DEPTH:
                truncated = True
                continue
            payload = part.get_payload()
            children = payload if isinstance(payload, list) else []
            stack.extend((child, depth + 1) for child in reversed(children))
            continue
        if len(leaves) >= MAX_PARTS:
            truncated = True
            break
        leaves.append(part)
    return leaves, truncated


MAX_FILENAME = 255


def _filename(part: Message) -> str | None:
    """The part's file name, RFC 2231 and RFC 2047 decoded, on one line; None if absent.

    The compat32 tree says cheaply whether there is a name, but turns 8-bit names into
    replacement characters; the modern header parser then reads the name properly (raw
    UTF-8, RFC 2231, and encoded words inside the quotes, which break RFC 2047 but are
    sent by mailers and shown decoded by mail clients).
    """
    filename = None
    try:
        filename = part.get_filename()
        if filename is None:
            return None
        for header, param in (("content-disposition", "filename"), ("content-type", "name")):
            raw = next((v for k, v in part.raw_items() if k.lower() == header), "")
            if raw and len(raw) <= MAX_HEADER_CHARS:
                value = policy.default.header_fetch_parse(header, raw).params.get(param)
                if value:
                    filename = value
                    break
        if "=?" in filename:
            filename = str(make_header(decode_header(filename)))
    except Exception:  # an undecodable name is kept as far as it was read, or dropped
        pass
    if not filename:
        return None
    name = _one_line(filename, len(filename))
    if len(name) <= MAX_FILENAME:
        return name
    # Keep the extension: it is what the dashboard's download name and the malware
    # signal (executable or double extension) look at.
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > 16:
        return name[:MAX_FILENAME]
    return stem[: MAX_FILENAME - len(extension) - 1] + "." + extension


def _attachment(part: Message) -> tuple[Attachment, bytes]:
    """An attached part's description and its decoded bytes (empty when undecodable)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    data = payload if isinstance(payload, bytes) else b""
    attachment = Attachment(
        filename=_filename(part),
        content_type=_clean(part.get_content_type(), 255),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return attachment, data


def _bodies(raw: bytes) -> tuple[str, str, tuple[Attachment, ...], bool, tuple[str, ...]]:
    msg, stopped = _structure(raw)
    leaves, truncated = _walk(msg)
    truncated = truncated or stopped
    text: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    for part in leaves:
        content_type = _clean(part.get_content_type(), 255)
        if _is_attachment(part):
            attachments.append(_attachment(part)[0])
        elif content_type == "text/html":
            html.append(_decoded_text(part))
        elif part.get_content_maintype() == "text":
            text.append(_decoded_text(part))
    text_body = _clean("\n".join(text), MAX_BODY_CHARS + 1)
    html_body = _clean("\n".join(html), MAX_BODY_CHARS + 1)
    if len(text_body) > MAX_BODY_CHARS or len(html_body) > MAX_BODY_CHARS:
        truncated = True
    return (
        text_body[:MAX_BODY_CHARS],
        html_body[:MAX_BODY_CHARS],
        tuple(attachments),
        truncated,
        _defects(msg),
    )


def _headers(msg: Message) -> ParsedMessage:
    """The header facts (shared by the full parse and the header-only fallback)."""
    first_values: dict[str, str] = {}
    for name, value in list(msg.raw_items())[:MAX_HEADERS]:  # type: ignore[attr-defined]
        first_values.setdefault(_clean(name, 200).lower(), _clean(value))
    return ParsedMessage(
        parsed=True,
        from_=_addresses(msg, "From"),
        sender=_first(msg, "Sender"),
        reply_to=_addresses(msg, "Reply-To"),
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        return_path=_first(msg, "Return-Path"),
        message_id=_first(msg, "Message-ID"),
        date=_date(msg),
        subject=_first(msg, "Subject"),
        list_unsubscribe=_first(msg, "List-Unsubscribe"),
        list_id=_first(msg, "List-Id"),
        received=tuple(_header_values(msg, "Received")),
        dkim_signatures=tuple(_header_values(msg, "DKIM-Signature")),
        headers=first_values,
    )


def _defects(msg: Message) -> tuple[str, ...]:
    names = [type(d).__name__ for d in getattr(msg, "defects", [])]
    return tuple(dict.fromkeys(names))[:50]


def parse_message(raw: bytes) -> ParsedMessage:
    """The facts of ``raw`` (an RFC 5322 message as received). Never raises."""
    try:
        # The top-level headers with the modern policy (decoded words, address lists),
        # the body structure with the fast one (see _structure).
        head_msg = BytesHeaderParser(policy=policy.default).parsebytes(raw)
        head = _headers(head_msg)
        text, html, attachments, truncated, defects = _bodies(raw)
        return _replace(
            head,
            text=text,
            html=html,
            attachments=attachments,
            truncated=truncated,
            defects=defects,
        )
    except (Exception, RecursionError) as exc:
        log.info("full parse failed (%s); trying the headers alone", exc)
        error = f"{type(exc).__name__}: {_clean(exc, 500)}"
    try:
        head_only = BytesHeaderParser(policy=policy.default).parsebytes(raw)
        return _replace(_headers(head_only), error=f"body not readable: {error}", truncated=True)
    except (Exception, RecursionError) as exc:
        return ParsedMessage(parsed=False, error=f"{error}; headers: {type(exc).__name__}: {exc}")


def _replace(message: ParsedMessage, **changes: object) -> ParsedMessage:
    from dataclasses import replace

    return replace(message, **changes)  # type: ignore[arg-type]


def attachment_content(raw: bytes, index: int) -> tuple[Attachment, bytes] | None:
    """The ``index``-th attachment of ``raw`` (as numbered in ``parse_message(raw)``) and
    its decoded bytes, or None when there is no such attachment. Never raises."""
    if index < 0:
        return None
    try:
        msg, _ = _structure(raw)  # the same tree parse_message numbers attachments in
        leaves, _ = _walk(msg)
        parts = [part for part in leaves if _is_attachment(part)]
        return _attachment(parts[index]) if index < len(parts) else None
    except (Exception, RecursionError):
        return None
