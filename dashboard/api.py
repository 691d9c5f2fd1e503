"""The JSON API under ``/api/v1``.

Every handler acts as the authenticated user and passes that user to the service
functions in ``canary/``, which treat anyone else's ids as not found. Errors are raised
as ``canary.errors`` classes and turned into JSON by :mod:`dashboard.errors`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.serialize import (
    date_param,
    identity_json,
    identity_request,
    int_param,
    json_body,
    json_response,
    path_id,
    pick_or_create_source,
    source_json,
)
from sqlmodel import Session, col, select

from canary import inbox, review
from canary import sources as source_service
from canary.errors import InvalidInput
from canary.identity import create_identities, find_identity, retire_identity
from canary.models import INCIDENT_STATUSES, VERDICTS, Identity, Source
from canary.overview import source_status, source_statuses
from canary.trace import trace

PREFIX = "/api/v1"
MAX_API_BULK = 10_000  # larger batches belong to the CLI, which streams progress


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def _page(page: inbox.Page) -> dict[str, Any]:
    return {"items": page.items, "next_before": page.next_before}


def _limit(request: web.Request) -> int:
    return int_param(request.query.get("limit"), "limit", 50) or 50


def _choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    if value and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}")
    return value or None


# ---------------------------------------------------------------------- sources


async def list_sources(request: web.Request) -> web.Response:
    user = current_user(request)

    def work(session: Session) -> list[dict[str, Any]]:
        counts = source_service.identity_counts(session, user)
        out = []
        for s in source_statuses(session, user):
            item = source_json(session, s.source, s.status)
            item["identity_count"] = counts.get(s.source.id or 0, 0)
            item["leak_count"] = s.leak_count
            out.append(item)
        return out

    return json_response({"items": await run(_store(request), work)})


async def create_source(request: web.Request) -> web.Response:
    user = current_user(request)
    body = await json_body(request)
    name, domains = body.get("name"), body.get("domains") or []
    if not isinstance(name, str) or not isinstance(domains, list):
        raise InvalidInput("name (text) is required; domains is a list of domain names")

    def work(session: Session) -> dict[str, Any]:
        source = source_service.add_source(
            session,
            user,
            name,
            domains=[str(d) for d in domains],
            url=body.get("url") or None,
            notes=str(body.get("notes") or ""),
        )
        return source_json(session, source, "clean")

    return json_response(await run(_store(request), work), status=201)


async def read_source(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        source = source_service.get_source(session, user, source_id)
        status = source_status(session, user, source).status
        data = source_json(session, source, status)
        counts = source_service.identity_counts(session, user, source)
        data["identity_count"] = counts.get(source_id, 0)
        data["organisations"] = inbox.source_organisations(session, source)
        return data

    return json_response(await run(_store(request), work))


async def authorise_sender(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)
    body = await json_body(request)
    domain = body.get("domain")
    if not isinstance(domain, str):
        raise InvalidInput("domain is required")
    reevaluate = request.app[keys.REEVALUATE]

    def work(session: Session) -> dict[str, Any]:
        review.authorise_sender(
            session, user, source_id, domain, str(body.get("reason") or "user"), reevaluate
        )
        return source_json(session, source_service.get_source(session, user, source_id))

    return json_response(await run(_store(request), work), status=201)


# ---------------------------------------------------------------------- identities


async def list_identities(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = int_param(request.query.get("source_id"), "source_id")
    before = int_param(request.query.get("before"), "before")
    limit = max(1, min(_limit(request), inbox.MAX_PAGE))

    def work(session: Session) -> dict[str, Any]:
        query = select(Identity).where(Identity.owner_id == user.id)
        if source_id is not None:
            query = query.where(Identity.source_id == source_id)
        if before is not None:
            query = query.where(col(Identity.id) < before)
        rows = list(session.exec(query.order_by(col(Identity.id).desc()).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [identity_json(i) for i in rows],
            "next_before": rows[-1].id if more and rows else None,
        }

    return json_response(await run(_store(request), work))


async def _create(request: web.Request, count_from_body: bool) -> web.Response:
    user = current_user(request)
    body = await json_body(request)
    count = 1
    if count_from_body:
        count = int_param(body.get("count"), "count", 1) or 0
        if not 1 <= count <= MAX_API_BULK:
            raise InvalidInput(f"count must be between 1 and {MAX_API_BULK}")
    wanted = identity_request(request.app[keys.SETTINGS], body, count)

    def work(session: Session) -> dict[str, Any]:
        source = pick_or_create_source(session, user, body.get("source_id"), body.get("source"))
        made = create_identities(session, user, source, wanted)
        return {
            "source": source_json(session, source),
            "items": [identity_json(i, source) for i in made],
        }

    data = await run(_store(request), work)
    if not count_from_body:
        data = {**data["items"][0], "source": data["source"]}
    return json_response(data, status=201)


async def create_identity(request: web.Request) -> web.Response:
    return await _create(request, count_from_body=False)


async def bulk_create_identities(request: web.Request) -> web.Response:
    return await _create(request, count_from_body=True)


async def read_identity(request: web.Request) -> web.Response:
    user = current_user(request)
    identity_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        identity = find_identity(session, user, str(identity_id))
        return identity_json(identity, session.get(Source, identity.source_id))

    return json_response(await run(_store(request), work))


async def retire(request: web.Request) -> web.Response:
    user = current_user(request)
    identity_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        return identity_json(retire_identity(session, user, str(identity_id)))

    return json_response(await run(_store(request), work))


# ---------------------------------------------------------------------- messages


def message_filter(query: Any) -> inbox.MessageFilter:
    """Search filters from query parameters (shared with the messages page)."""
    return inbox.MessageFilter(
        source_id=int_param(query.get("source_id"), "source_id"),
        verdict=_choice(query.get("verdict"), "verdict", VERDICTS),
        sender_org=query.get("sender_org") or None,
        since=date_param(query.get("since"), "since"),
        until=date_param(query.get("until"), "until"),
        header_message_id=query.get("message_id") or None,
        recipient=query.get("recipient") or None,
    )


async def list_messages(request: web.Request) -> web.Response:
    user = current_user(request)
    where = message_filter(request.query)
    before = int_param(request.query.get("before"), "before")
    limit = _limit(request)
    page = await run(
        _store(request), lambda s: inbox.search_messages(s, user, where, before, limit)
    )
    return json_response(_page(page))


async def read_message(request: web.Request) -> web.Response:
    user = current_user(request)
    message_id = path_id(request)
    data = await run(_store(request), lambda s: inbox.message_detail(s, user, message_id))
    return json_response(data)


def raw_response(raw: bytes, message_id: int) -> web.Response:
    """The byte-exact message as a download that no browser renders."""
    return web.Response(
        body=raw,
        content_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


async def raw_message(request: web.Request) -> web.Response:
    user = current_user(request)
    message_id = path_id(request)
    raw = await run(_store(request), lambda s: inbox.raw_message(s, user, message_id))
    return raw_response(raw, message_id)


# ---------------------------------------------------------------------- findings, incidents


async def list_findings(request: web.Request) -> web.Response:
    user = current_user(request)
    q = request.query
    source_id = int_param(q.get("source_id"), "source_id")
    verdict = _choice(q.get("verdict"), "verdict", VERDICTS)
    before, limit = int_param(q.get("before"), "before"), _limit(request)
    page = await run(
        _store(request),
        lambda s: inbox.list_findings(s, user, source_id, verdict, before, limit),
    )
    return json_response(_page(page))


async def list_incidents(request: web.Request) -> web.Response:
    user = current_user(request)
    q = request.query
    source_id = int_param(q.get("source_id"), "source_id")
    status = _choice(q.get("status"), "status", INCIDENT_STATUSES)
    before, limit = int_param(q.get("before"), "before"), _limit(request)
    page = await run(
        _store(request),
        lambda s: inbox.list_incidents(s, user, source_id, status, before, limit),
    )
    return json_response(_page(page))


def _incident_action(status: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        user = current_user(request)
        incident_id = path_id(request)
        reevaluate = request.app[keys.REEVALUATE]

        def work(session: Session) -> dict[str, Any]:
            incident = review.set_incident_status(session, user, incident_id, status, reevaluate)
            source = session.get(Source, incident.source_id)
            return inbox.incident_dict(incident, source.name if source else None)

        return json_response(await run(_store(request), work))

    handler.__name__ = f"incident_{status}"
    return handler


# ---------------------------------------------------------------------- trace


async def trace_query(request: web.Request) -> web.Response:
    user = current_user(request)
    if request.method == "POST":
        text = (await json_body(request)).get("q")
    else:
        text = request.query.get("q")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("q (a name, address or code) is required")

    def work(session: Session) -> dict[str, Any]:
        result = trace(session, user, text)
        return {
            "query": result.query,
            "note": result.note,
            "matches": [m.as_dict() for m in result.matches],
        }

    return json_response(await run(_store(request), work))


def add_routes(app: web.Application) -> None:
    """Register every API route."""
    from canary.dashboard.openapi import openapi_json

    p = PREFIX
    app.router.add_get(f"{p}/openapi.json", openapi_json)
    app.router.add_get(f"{p}/sources", list_sources)
    app.router.add_post(f"{p}/sources", create_source)
    app.router.add_get(f"{p}/sources/{{id}}", read_source)
    app.router.add_post(f"{p}/sources/{{id}}/senders", authorise_sender)
    app.router.add_get(f"{p}/identities", list_identities)
    app.router.add_post(f"{p}/identities", create_identity)
    app.router.add_post(f"{p}/identities/bulk", bulk_create_identities)
    app.router.add_get(f"{p}/identities/{{id}}", read_identity)
    app.router.add_post(f"{p}/identities/{{id}}/retire", retire)
    app.router.add_get(f"{p}/messages", list_messages)
    app.router.add_get(f"{p}/messages/{{id}}", read_message)
    app.router.add_get(f"{p}/messages/{{id}}/raw", raw_message)
    app.router.add_get(f"{p}/findings", list_findings)
    app.router.add_get(f"{p}/incidents", list_incidents)
    for action, status in (("confirm", "confirmed"), ("dismiss", "dismissed"), ("reopen", "open")):
        app.router.add_post(f"{p}/incidents/{{id}}/{action}", _incident_action(status))
    app.router.add_get(f"{p}/trace", trace_query)
    app.router.add_post(f"{p}/trace", trace_query)
