"""Making an email's HTML safe to look at: nh3 sanitising and no remote resources.

The result is shown only inside a sandboxed frame under a CSP that forbids scripts and
every remote load, so this is the second of three walls, not the only one. Its own job
is the one the CSP cannot do well: keep the message readable while removing every URL,
so a tracking pixel or remote stylesheet never tells the sender the canary was read.
Only ``data:image/...`` sources on ``<img>`` survive; links keep their text, lose their
target.

Attachment names get the same suspicion: :func:`download_name` turns whatever a sender
wrote (``../``, absolute and ``C:\\`` paths, control and bidi characters, RFC 2231
encoded tricks, device names) into one harmless file name, and
:func:`content_disposition` states it in a header no browser can misread.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

import nh3

# Tags that carry text or layout; no style, script, form, media or embedding tags.
TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup",
    "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u",
    "ul",
}  # fmt: skip
LAYOUT = {"align", "valign", "width", "height", "colspan", "rowspan", "bgcolor", "color"}
ATTRIBUTES = {
    "*": {"style", "title", "dir", "lang"} | LAYOUT,
    "a": {"href"},
    "img": {"src", "alt"},
    "font": {"face", "size"},
    "table": {"border", "cellpadding", "cellspacing"},
}
# Anything in CSS that can fetch or run: url(), image-set(), @import, old IE expressions,
# and escapes that could spell those.
_CSS_DANGER = re.compile(r"url\s*\(|image-set|@import|expression|behavior|\\|/\*", re.I)
_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpe?g|webp);base64,[a-z0-9+/=\s]+$", re.I)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return None  # a click would load the remote page from inside the frame
    if attribute == "src":
        return value if tag == "img" and _DATA_IMAGE.match(value.strip()) else None
    if attribute == "style" and _CSS_DANGER.search(value):
        return None
    return value


def clean_html(markup: str) -> str:
    """The message HTML with scripts, handlers, remote URLs and active CSS removed."""
    return nh3.clean(
        markup,
        tags=TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes={"data"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


# Characters that are path syntax or special on some file system, and Windows device
# names, which mean the device whatever the extension ("NUL.txt").
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*;%\x00-\x1f\x7f]')
_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)", re.I)
MAX_NAME = 120


def download_name(name: str | None, fallback: str) -> str:
    """A file name safe to offer for download: the last path component of ``name`` without
    control, bidi or path characters, no leading dots, at most ``MAX_NAME`` characters;
    ``fallback`` when nothing usable is left."""
    text = unicodedata.normalize("NFC", name or "")
    # Categories C* are control, format (bidi overrides, zero-width), surrogate, private.
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = re.split(r"[/\\]", text)[-1]  # only the last component of any path
    text = _UNSAFE_CHARS.sub("_", text)
    text = " ".join(text.split()).strip(" .")  # no hidden files, no trailing dots
    if _DEVICE.match(text):
        text = f"_{text}"
    if len(text) > MAX_NAME:
        _, dot, ext = text.rpartition(".")
        ext = ext if dot and 0 < len(ext) <= 10 else ""
        text = text[: MAX_NAME - len(ext) - 1].rstrip(" .") + (f".{ext}" if ext else "")
    return text or fallback


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact ``filename*`` (RFC 6266)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()+,=@~-]", "_", ascii_name).strip(" .") or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
