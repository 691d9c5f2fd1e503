"""Server-rendered pages: overview, new identity, sources, identities, trace.

Message pages are in :mod:`dashboard.mailpages`, account pages in
:mod:`dashboard.account`. Every page calls the same owner-scoped service functions as
the API, so access rules live in one place (``canary/``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from canary.dashboard import account, catchallpages, keys, mailpages
from canary.dashboard.auth import current_user
from canary.dashboard.charts import bar_chart
from canary.dashboard.db import run
from canary.dashboard.mailpages import SOURCE_MENU_LIMIT
from canary.dashboard.serialize import identity_request, path_id, pick_or_create_source
from canary.dashboard.templating import render
from sqlmodel import Session, select

from canary import inbox, review
from canary import sources as source_service
from canary.errors import CanaryError, InvalidInput
from canary.identity import create_identities, find_identity, list_identities, retire_identity
from canary.models import AuthorisedSender, Source
from canary.overview import leaks_per_week, recent_findings, source_status, status_summary
from canary.source_merge import merge_sources, rename_source
from canary.trace import trace

OVERVIEW_SOURCES = 100  # rows of the overview's source table


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


async def overview(request: web.Request) -> web.Response:
    user = current_user(request)

    def work(session: Session) -> dict[str, Any]:
        summary = status_summary(session, user, OVERVIEW_SOURCES)
        counts = source_service.identity_counts(
            session, user, source_ids=[s.source.id for s in summary.worst if s.source.id]
        )
        open_incidents = inbox.list_incidents(session, user, status="open", limit=200).items
        return {
            # Worst first: the sources that need a look; the clean rest is counted.
            "statuses": summary.worst,
            "more_sources": max(0, summary.total - OVERVIEW_SOURCES),
            "identity_counts": counts,
            "tally": summary.tally,
            "findings": recent_findings(session, user, 8),
            "weeks": leaks_per_week(session, user),
            "open_incidents": open_incidents,
        }

    data = await run(_store(request), work)
    data["chart"] = bar_chart(data["weeks"], label="Leak findings per week, last 12 weeks")
    return render(request, "overview.html", data)


# ---------------------------------------------------------------------- new identity


async def new_identity_form(request: web.Request, error: str | None = None) -> web.Response:
    user = current_user(request)
    sources = await run(_store(request), lambda s: source_service.list_sources(s, user))
    settings = request.app[keys.SETTINGS]
    context = {
        "sources": sources,
        "error": error,
        "domains": settings.domains,
        "style": settings.identity_style,
        "preset": request.query.get("source", ""),
    }
    return render(request, "new_identity.html", context, 400 if error else 200)


async def new_identity_submit(request: web.Request) -> web.Response:
    user = current_user(request)
    form = await request.post()
    data = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        wanted = identity_request(request.app[keys.SETTINGS], data)

        def work(session: Session) -> int:
            source = pick_or_create_source(session, user, None, data.get("source"))
            made = create_identities(session, user, source, wanted)
            assert made[0].id is not None
            return made[0].id

        identity_id = await run(_store(request), work)
    except CanaryError as exc:  # show the problem next to the form, keep the input
        return await new_identity_form(request, str(exc))
    raise web.HTTPSeeOther(f"/identities/{identity_id}?new=1")


async def identity_page(request: web.Request) -> web.Response:
    user = current_user(request)
    identity_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        identity = find_identity(session, user, str(identity_id))
        return {
            "identity": identity,
            "source": session.get(Source, identity.source_id),
            "messages": inbox.search_messages(
                session, user, inbox.MessageFilter(recipient=identity.alias), limit=20
            ).items,
        }

    data = await run(_store(request), work)
    data["new"] = request.query.get("new") == "1"
    return render(request, "identity.html", data)


async def identity_retire(request: web.Request) -> web.Response:
    user = current_user(request)
    identity_id = path_id(request)
    await run(_store(request), lambda s: retire_identity(s, user, str(identity_id)))
    raise web.HTTPSeeOther(f"/identities/{identity_id}")


# ---------------------------------------------------------------------- sources


async def source_page(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)

    def work(session: Session) -> dict[str, Any]:
        source = source_service.get_source(session, user, source_id)
        status = source_status(session, user, source)
        authorised = source_service.authorised_domains(session, source)
        organisations = inbox.source_organisations(session, source)
        for org in organisations:
            org["authorised"] = org["organisation"] in authorised
        others = [
            s
            for s in source_service.list_sources(session, user, SOURCE_MENU_LIMIT + 2)
            if s.id != source.id
        ]
        senders = session.exec(
            select(AuthorisedSender)
            .where(AuthorisedSender.source_id == source.id)
            .order_by(AuthorisedSender.domain)
        ).all()
        return {
            "source": source,
            "status": status,
            "identities": list_identities(session, user, source, limit=200),
            "authorised": authorised,
            "senders": senders,
            # The merge target: a menu while there are few sources, a name typed in after.
            "others": others if len(others) <= SOURCE_MENU_LIMIT else None,
            "organisations": organisations,
            "findings": inbox.list_findings(session, user, source_id=source.id, limit=50).items,
            "incidents": inbox.list_incidents(session, user, source_id=source.id).items,
        }

    return render(request, "source.html", await run(_store(request), work))


async def _change_sender(request: web.Request, authorise: bool) -> web.Response:
    """Authorise or stop authorising the form's domain for the page's source."""
    user = current_user(request)
    source_id = path_id(request)
    domain = str((await request.post()).get("domain") or "")
    reevaluate = request.app[keys.REEVALUATE]

    def work(session: Session) -> object:
        if authorise:
            return review.authorise_sender(session, user, source_id, domain, "user", reevaluate)
        return review.revoke_sender(session, user, source_id, domain, reevaluate)

    await run(_store(request), work)
    raise web.HTTPSeeOther(f"/sources/{source_id}")


async def sender_authorise(request: web.Request) -> web.Response:
    return await _change_sender(request, authorise=True)


async def sender_revoke(request: web.Request) -> web.Response:
    return await _change_sender(request, authorise=False)


async def source_rename(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)
    name = str((await request.post()).get("name") or "")
    await run(_store(request), lambda s: rename_source(s, user, source_id, name))
    raise web.HTTPSeeOther(f"/sources/{source_id}")


async def source_merge(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)
    # An id from the menu, or a name typed in when there are too many for a menu.
    into = str((await request.post()).get("into") or "").strip()
    reevaluate = request.app[keys.REEVALUATE]

    def work(session: Session) -> Source:
        source_service.get_source(session, user, source_id)  # another user's: not found
        if not into:
            raise InvalidInput("choose the source to merge into")
        return merge_sources(session, user, source_id, into, reevaluate)

    kept = await run(_store(request), work)
    raise web.HTTPSeeOther(f"/sources/{kept.id}")


async def incident_action(request: web.Request) -> web.Response:
    user = current_user(request)
    incident_id = path_id(request)
    status = {"confirm": "confirmed", "dismiss": "dismissed", "reopen": "open"}.get(
        request.match_info["action"]
    )
    if status is None:
        raise web.HTTPNotFound()
    reevaluate = request.app[keys.REEVALUATE]
    incident = await run(
        _store(request),
        lambda s: review.set_incident_status(s, user, incident_id, status, reevaluate),
    )
    raise web.HTTPSeeOther(f"/sources/{incident.source_id}#incidents")


# ---------------------------------------------------------------------- trace


async def trace_page(request: web.Request) -> web.Response:
    user = current_user(request)
    text = request.query.get("q", "").strip()
    result = await run(_store(request), lambda s: trace(s, user, text)) if text else None
    return render(request, "trace.html", {"q": text, "result": result})


def add_routes(app: web.Application) -> None:
    """Register every page."""
    app.router.add_get("/", overview)
    app.router.add_get("/new", new_identity_form)
    app.router.add_post("/new", new_identity_submit)
    app.router.add_get("/identities/{id}", identity_page)
    app.router.add_post("/identities/{id}/retire", identity_retire)
    app.router.add_get("/sources/{id}", source_page)
    app.router.add_post("/sources/{id}/senders", sender_authorise)
    app.router.add_post("/sources/{id}/senders/remove", sender_revoke)
    app.router.add_post("/sources/{id}/rename", source_rename)
    app.router.add_post("/sources/{id}/merge", source_merge)
    app.router.add_post("/incidents/{id}/{action}", incident_action)
    app.router.add_get("/trace", trace_page)
    mailpages.add_routes(app)
    account.add_routes(app)
    catchallpages.add_routes(app)
