"""Making an email's HTML safe to look at: nh3 sanitising and no remote resources.

The result is shown only inside a sandboxed frame under a CSP that forbids scripts and
every remote load, so this is the second of three walls, not the only one. Its own job
is the one the CSP cannot do well: keep the message readable while removing every URL,
so a tracking pixel or remote stylesheet never tells the sender the canary was read.
Only ``data:image/...`` sources on ``<img>`` survive; links keep their text, lose their
target.
"""

from __future__ import annotations

import re

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
