"""Content signals of one message: list headers, phishing and malware hints, address leaks.

Everything here is pure: the pipeline passes primitive facts (headers, the text and
HTML bodies, attachment names and types, the recipient address, the authenticated
sender organisation) and gets evidence items back. Links are read from HTML with the
standard library's :class:`html.parser.HTMLParser` (never regular expressions over
HTML) and from plain text by a URL pattern.

Address leaks: a link or image URL that carries the recipient's address to a host
outside the sender's organisation tells that third party who opened the mail (or lets
it sync the address into its own list). The address is looked for in clear, URL-encoded,
base64 (standard and URL-safe, with and without padding, also inside longer base64
tokens) and as the MD5, SHA-1 and SHA-256 hex digest of the lower-case address: the
forms tracking pixels and "hashed email" ad-tech use.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, unquote_plus, urlsplit

from canary.evidence_items import Evidence, details
from canary.orgs import registrable_domain

EXECUTABLE_EXTENSIONS = frozenset(
    {"exe", "scr", "js", "jse", "vbs", "vbe", "bat", "cmd", "com", "pif", "jar", "msi"}
    | {"ps1", "hta", "wsf", "cpl", "lnk", "reg"}
)
EXECUTABLE_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-dosexec",
        "application/x-msdos-program",
        "application/x-ms-installer",
        "application/x-msi",
        "application/java-archive",
        "application/hta",
        "application/x-javascript",
        "text/javascript",
        "application/javascript",
        "application/x-vbscript",
    }
)
# Wording that asks for credentials or account action: what phishing mail says and
# what legitimate newsletters almost never do. Matched on whitespace-folded lower case.
CREDENTIAL_PHRASES = (
    "verify your password",
    "confirm your password",
    "update your password",
    "reset your password immediately",
    "verify your account",
    "confirm your account",
    "validate your account",
    "confirm your identity",
    "verify your identity",
    "your account has been suspended",
    "your account will be suspended",
    "your account has been locked",
    "unusual sign-in activity",
    "unusual login activity",
    "update your payment information",
    "update your billing information",
    "enter your password",
    "log in to restore",
    "login to restore",
)

_URL_IN_TEXT = re.compile(r"""(?:https?:)?//[^\s<>"'()\[\]{}]+""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""", re.IGNORECASE)
_DOMAIN_TEXT = re.compile(
    r"^(?:https?://)?(?:www\.)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})"
    r"(?::\d+)?(?:[/?#]\S*)?$",
    re.IGNORECASE,
)
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Link:
    """One URL found in the message: where it came from and, for anchors, its text."""

    url: str
    kind: str
    """``a`` (anchor), ``image``, ``form``, ``resource`` or ``text``."""
    text: str = ""


@dataclass(frozen=True)
class Attachment:
    """What the pipeline knows about an attachment without opening it."""

    filename: str
    content_type: str = ""


@dataclass(frozen=True)
class Signals:
    """All content signals of one message, each list already as evidence."""

    list_unsubscribe: bool
    list_id: str | None
    phishing: tuple[Evidence, ...]
    address_leaks: tuple[Evidence, ...]

    @property
    def bulk(self) -> bool:
        """Mailing-list headers present: the mail was sent to a list."""
        return self.list_unsubscribe or self.list_id is not None

    def evidence(self) -> tuple[Evidence, ...]:
        """Every signal as evidence items."""
        items: list[Evidence] = []
        if self.list_unsubscribe:
            items.append(Evidence("list_unsubscribe_present"))
        if self.list_id is not None:
            items.append(Evidence("list_id_present", self.list_id[:200]))
        return (*items, *self.phishing, *self.address_leaks)


def analyse(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    text: str,
    html: str,
    attachments: Iterable[Attachment],
    recipient: str,
    sender_org: str | None,
) -> Signals:
    """Compute every content signal of one message (the pipeline's entry point)."""
    links = extract_links(html) + text_links(text)
    unsubscribe, list_id = list_headers(headers)
    phishing = (
        link_text_mismatches(links)
        + credential_wording(text, html)
        + password_forms(html)
        + executable_attachments(attachments)
    )
    return Signals(unsubscribe, list_id, phishing, address_leaks(recipient, links, sender_org))


# ---------------------------------------------------------------------- headers


def list_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[bool, str | None]:
    """(List-Unsubscribe present, List-Id value or None)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    unsubscribe, list_id = False, None
    for name, value in pairs:
        key = str(name).strip().lower()
        if key == "list-unsubscribe" and str(value).strip():
            unsubscribe = True
        elif key == "list-id" and list_id is None:
            list_id = _SPACES.sub(" ", str(value)).strip()
    return unsubscribe, list_id


# ---------------------------------------------------------------------- links


class _LinkParser(HTMLParser):
    """Collects URLs from attributes that fetch or point somewhere, and anchor texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.password_inputs = 0
        self._anchor: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "a" and values.get("href"):
            self._close_anchor()
            self._anchor = (values["href"].strip(), [])
        elif tag in ("area", "link") and values.get("href"):
            self.links.append(Link(values["href"].strip(), "resource"))
        if values.get("src"):
            kind = "image" if tag in ("img", "image", "input") else "resource"
            self.links.append(Link(values["src"].strip(), kind))
        for candidate in values.get("srcset", "").split(","):
            if candidate.strip():
                self.links.append(Link(candidate.split()[0], "image"))
        if values.get("background"):
            self.links.append(Link(values["background"].strip(), "image"))
        for url in _CSS_URL.findall(values.get("style", "")):
            self.links.append(Link(url, "image"))
        if tag == "form" and values.get("action"):
            self.links.append(Link(values["action"].strip(), "form"))
        if tag == "input" and values.get("type", "").lower() == "password":
            self.password_inputs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close_anchor()

    def handle_data(self, data: str) -> None:
        if self._anchor is not None:
            self._anchor[1].append(data)

    def _close_anchor(self) -> None:
        if self._anchor is not None:
            href, parts = self._anchor
            self.links.append(Link(href, "a", _SPACES.sub(" ", "".join(parts)).strip()))
            self._anchor = None

    def finish(self) -> None:
        # Truncated markup at the end must not lose what was already read.
        with contextlib.suppress(Exception):
            self.close()
        self._close_anchor()


def _parse(html: str) -> _LinkParser:
    parser = _LinkParser()
    # HTMLParser can trip over pathological markup; keep what it read.
    with contextlib.suppress(Exception):
        parser.feed(html or "")
    parser.finish()
    return parser


def extract_links(html: str) -> tuple[Link, ...]:
    """Anchors (with their text), images (src, srcset, background, CSS url()), forms."""
    return tuple(_parse(html).links)


def text_links(text: str) -> tuple[Link, ...]:
    """http(s) URLs written out in a plain-text body."""
    return tuple(Link(m.rstrip(".,;:!?"), "text") for m in _URL_IN_TEXT.findall(text or ""))


def url_host(url: str) -> str | None:
    """The lower-case host of an absolute http(s) or scheme-relative URL, else None."""
    url = url.strip()
    try:
        parts = urlsplit(url if not url.startswith("//") else "https:" + url)
        if parts.scheme.lower() not in ("http", "https"):
            return None
        host = parts.hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


# ---------------------------------------------------------------------- phishing


def link_text_mismatches(links: Iterable[Link]) -> tuple[Evidence, ...]:
    """Anchors whose visible text names one domain while the href goes to another."""
    found: list[Evidence] = []
    for link in links:
        if link.kind != "a" or not link.text:
            continue
        match = _DOMAIN_TEXT.match(link.text)
        href_org = registrable_domain(url_host(link.url))
        text_org = registrable_domain(match.group(1)) if match else None
        if text_org and href_org and text_org != href_org:
            item = Evidence("link_text_mismatch", details({"text": text_org, "href": href_org}))
            if item not in found:
                found.append(item)
    return tuple(found)


def credential_wording(text: str, html: str) -> tuple[Evidence, ...]:
    """Phrases asking the reader to hand over or 'verify' credentials."""
    visible = " ".join(_HtmlText.of(html)) if html else ""
    folded = _SPACES.sub(" ", f"{text or ''} {visible}").lower()
    return tuple(Evidence("credential_wording", p) for p in CREDENTIAL_PHRASES if p in folded)


def password_forms(html: str) -> tuple[Evidence, ...]:
    """A password field inside the mail itself."""
    count = _parse(html).password_inputs if html else 0
    return (Evidence("password_form", f"fields={count}"),) if count else ()


def executable_attachments(attachments: Iterable[Attachment]) -> tuple[Evidence, ...]:
    """Executable attachments, and the ``invoice.pdf.exe`` double-extension disguise."""
    found: list[Evidence] = []
    for att in attachments:
        name = (att.filename or "").strip().lower().rstrip(". ")
        parts = name.rsplit("/", 1)[-1].split(".")
        ext = parts[-1] if len(parts) > 1 else ""
        ctype = (att.content_type or "").split(";")[0].strip().lower()
        if ext in EXECUTABLE_EXTENSIONS and len(parts) > 2 and parts[-2]:
            found.append(Evidence("double_extension", details({"name": att.filename})))
        elif ext in EXECUTABLE_EXTENSIONS or ctype in EXECUTABLE_TYPES:
            found.append(
                Evidence("executable_attachment", details({"name": att.filename, "type": ctype}))
            )
    return tuple(found)


class _HtmlText(HTMLParser):
    """Visible text of HTML (script and style skipped), for wording checks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> list[str]:
        parser = cls()
        with contextlib.suppress(Exception):  # see _parse
            parser.feed(html)
            parser.close()
        return parser.parts


# ---------------------------------------------------------------------- address leaks


def address_forms(address: str) -> dict[str, tuple[str, ...]]:
    """Encoding name -> the strings that encoding turns the address into."""
    addr = address.strip().lower()
    raw = addr.encode()
    b64 = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return {
        "base64": tuple(dict.fromkeys([b64, b64.rstrip("="), urlsafe, urlsafe.rstrip("=")])),
        "md5": (hashlib.md5(raw).hexdigest(),),
        "sha1": (hashlib.sha1(raw).hexdigest(),),
        "sha256": (hashlib.sha256(raw).hexdigest(),),
    }


def _b64_decodes_to(token: str, addr: str) -> bool:
    """Whether a base64 token (either alphabet, padding optional) decodes to text with addr."""
    token = token.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return addr in decoded.decode("utf-8", "ignore").lower()


def find_address(url: str, address: str) -> str | None:
    """The encoding in which ``address`` appears in ``url``, or None."""
    addr = address.strip().lower()
    if not addr or "@" not in addr:
        return None
    lowered = url.lower()
    if addr in lowered:
        return "clear"
    decoded = unquote_plus(url)
    twice = unquote(decoded)  # some trackers double-encode
    if addr in decoded.lower() or addr in twice.lower():
        return "url-encoded"
    forms = address_forms(addr)
    for candidate in (url, decoded):
        if any(f in candidate for f in forms["base64"]):
            return "base64"
        if any(_b64_decodes_to(t, addr) for t in _BASE64_TOKEN.findall(candidate)):
            return "base64"
    for name in ("sha256", "sha1", "md5"):  # longest first: a sha256 never hides an md5
        if forms[name][0] in lowered:
            return name
    return None


def address_leaks(
    recipient: str, links: Iterable[Link], sender_org: str | None
) -> tuple[Evidence, ...]:
    """``address_in_third_party_url`` for each (host, encoding) outside the sender's org.

    With no authenticated sender organisation every host counts as a third party.
    """
    found: dict[tuple[str, str], Evidence] = {}
    for link in links:
        host = url_host(link.url)
        if host is None:
            continue
        if sender_org and registrable_domain(host) == sender_org:
            continue
        encoding = find_address(link.url, recipient)
        if encoding and (host, encoding) not in found:
            found[(host, encoding)] = Evidence(
                "address_in_third_party_url", f"host={host} encoding={encoding}"
            )
    return tuple(found.values())
