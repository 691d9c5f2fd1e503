"""Message pages: search, one message, its sanitised HTML body frame, raw and attachment
downloads.

Nothing a sender wrote is ever rendered from the dashboard's origin: the HTML body only
in a sandboxed frame, attachments only as downloads (``attachment`` disposition,
``application/octet-stream``, ``nosniff`` and a ``sandbox`` CSP, so even a browser that
displayed one would give it an opaque origin with no script and no network).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.api import message_filter, raw_response
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.sanitize import clean_html, content_disposition, download_name
from canary.dashboard.serialize import int_param, path_id
from canary.dashboard.templating import render
from canary.mailbox.parse import attachment_content
from multidict import MultiDict
from sqlmodel import Session

from canary import inbox
from canary import sources as source_service
from canary.errors import NotFound
from canary.models import VERDICTS, Source, User

# The body frame: no script, no remote anything, a unique origin (sandbox), framed only
# by our own pages. This is the policy that keeps a tracking pixel from firing even if
# the sanitiser missed something.
BODY_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
)
# Downloads: should a browser ever display one, it runs and loads nothing.
DOWNLOAD_CSP = "default-src 'none'; sandbox"
SOURCE_MENU_LIMIT = 200
FILTER_KEYS = ("source_id", "verdict", "sender_org", "since", "until", "message_id", "recipient")


async def messages_page(request: web.Request) -> web.Response:
    user = current_user(request)
    q = request.query
    name = (q.get("source") or "").strip()
    if name and not q.get("source_id"):
        # The source typed by name: its id, or a search that finds nothing.
        found = await run(
            request.app[keys.STORE],
            lambda s: _source_id_named(s, user, name),
        )
        q = MultiDict({**q, "source_id": str(found)})
    where = message_filter(q)
    before = int_param(q.get("before"), "before")

    def work(session: Session) -> dict[str, Any]:
        # A menu of every source stops being usable (and cheap to render) long before a
        # researcher's ten thousand: past that, the filter is a name typed in.
        sources = source_service.list_sources(session, user, SOURCE_MENU_LIMIT + 1)
        chosen = None
        if where.source_id is not None:
            chosen = session.get(Source, where.source_id)
            chosen = chosen if chosen is not None and chosen.owner_id == user.id else None
        return {
            "page": inbox.search_messages(session, user, where, before, 50),
            "sources": sources if len(sources) <= SOURCE_MENU_LIMIT else None,
            "chosen_source": chosen,
        }

    data = await run(request.app[keys.STORE], work)
    kept = {k: q[k] for k in FILTER_KEYS if q.get(k)}
    page = data["page"]
    data.update(
        filters=kept,
        verdicts=VERDICTS,
        next_url=(
            "/messages?" + urlencode({**kept, "before": page.next_before})
            if page.next_before
            else None
        ),
        first_url=("/messages?" + urlencode(kept)) if before else None,
    )
    return render(request, "messages.html", data)


def _source_id_named(session: Session, user: User, name: str) -> int:
    try:
        source = source_service.get_source(session, user, name)
    except NotFound:
        return 0  # no source has id 0: the list is empty, as for any filter without match
    assert source.id is not None
    return source.id


def _fallback_name(message_id: int, index: int) -> str:
    return f"attachment-{message_id}-{index}"


async def message_page(request: web.Request) -> web.Response:
    user = current_user(request)
    message_id = path_id(request)
    detail = await run(request.app[keys.STORE], lambda s: inbox.message_detail(s, user, message_id))
    for index, attachment in enumerate(detail["attachments"]):
        # The name the download will get, shown instead of the sender's (which may hide
        # its real extension behind a right-to-left override, for one).
        attachment["download_name"] = download_name(
            attachment["filename"], _fallback_name(message_id, index)
        )
    return render(request, "message.html", {"m": detail})


async def message_body(request: web.Request) -> web.Response:
    """The sanitised HTML body, as its own sandboxed document for an iframe."""
    user = current_user(request)
    message_id = path_id(request)
    html = await run(request.app[keys.STORE], lambda s: inbox.html_body(s, user, message_id))
    document = (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<style>body{font:14px/1.5 system-ui,sans-serif;color:#1d2433;margin:12px;"
        "word-wrap:break-word}img{max-width:100%}</style></head><body>"
        f"{clean_html(html)}</body></html>"
    )
    return web.Response(
        text=document,
        content_type="text/html",
        headers={"Content-Security-Policy": BODY_CSP, "X-Content-Type-Options": "nosniff"},
    )


async def message_raw(request: web.Request) -> web.Response:
    user = current_user(request)
    message_id = path_id(request)
    raw = await run(request.app[keys.STORE], lambda s: inbox.raw_message(s, user, message_id))
    return raw_response(raw, message_id)


async def message_attachment(request: web.Request) -> web.Response:
    """One attachment's decoded bytes, as a download only (see the module docstring)."""
    user = current_user(request)
    message_id = path_id(request)
    index = path_id(request, "index")
    raw = await run(request.app[keys.STORE], lambda s: inbox.raw_message(s, user, message_id))
    found = attachment_content(raw, index)
    if found is None:
        raise NotFound(f"message {message_id} has no attachment {index}")
    attachment, data = found
    name = download_name(attachment.filename, _fallback_name(message_id, index))
    return web.Response(
        body=data,
        content_type="application/octet-stream",  # never the type the sender claimed
        headers={
            "Content-Disposition": content_disposition(name),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": DOWNLOAD_CSP,
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


def add_routes(app: web.Application) -> None:
    """Register the message pages."""
    app.router.add_get("/messages", messages_page)
    app.router.add_get("/messages/{id}", message_page)
    app.router.add_get("/messages/{id}/body", message_body)
    app.router.add_get("/messages/{id}/raw", message_raw)
    app.router.add_get("/messages/{id}/attachments/{index}", message_attachment)
