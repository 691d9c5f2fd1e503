"""API routes for catch-all subdomains and for tidying the sources they create.

``/api/v1/catchall`` lists and claims subdomains; a source can be renamed, merged into
another, or lose an authorised sender (a wrong first-use guess). The rules are in
:mod:`canary.catchall`, :mod:`canary.source_merge` and :mod:`canary.review`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.api import PREFIX
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.serialize import json_body, json_response, path_id, source_json
from sqlmodel import Session

from canary import review
from canary.catchall import claim_subdomain, list_subdomains, release_subdomain
from canary.errors import InvalidInput
from canary.models import CatchAllDomain, Source, User
from canary.ownership import as_id
from canary.source_merge import merge_sources, rename_source
from canary.sources import get_source


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def claim_json(claim: CatchAllDomain) -> dict[str, Any]:
    """The JSON form of a claimed subdomain."""
    return {"domain": claim.domain, "created_at": claim.created_at}


def _text(body: dict[str, Any], name: str, meaning: str) -> str:
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} ({meaning}) is required")
    return value.strip()


async def list_claims(request: web.Request) -> web.Response:
    user = current_user(request)
    claims = await run(_store(request), lambda s: list_subdomains(s, user))
    return json_response({"items": [claim_json(c) for c in claims]})


async def create_claim(request: web.Request) -> web.Response:
    user = current_user(request)
    domains = request.app[keys.SETTINGS].domains
    text = _text(await json_body(request), "domain", "a subdomain of a canary domain")
    claim = await run(_store(request), lambda s: claim_subdomain(s, user, text, domains))
    return json_response(claim_json(claim), status=201)


async def release_claim(request: web.Request) -> web.Response:
    user = current_user(request)
    domain = request.match_info["domain"]
    claim = await run(_store(request), lambda s: release_subdomain(s, user, domain))
    return json_response(claim_json(claim))


SourceChange = Callable[[Session, User, Source, dict[str, Any], Any], Source]


def _source_change(change: SourceChange) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler applying ``change`` to one of the user's sources.

    The source is looked up before the body is checked, so another user's id is not
    found whatever the request carries.
    """

    async def handler(request: web.Request) -> web.Response:
        user = current_user(request)
        source_id = path_id(request)
        body = await json_body(request)
        reevaluate = request.app[keys.REEVALUATE]

        def work(session: Session) -> dict[str, Any]:
            source = get_source(session, user, source_id)
            return source_json(session, change(session, user, source, body, reevaluate))

        return json_response(await run(_store(request), work))

    handler.__name__ = change.__name__
    return handler


def _rename(session: Session, user: User, source: Source, body: dict[str, Any], _: Any) -> Source:
    return rename_source(session, user, source.id, _text(body, "name", "the new name"))  # type: ignore[arg-type]


def _merge(
    session: Session, user: User, source: Source, body: dict[str, Any], reevaluate: Any
) -> Source:
    into = as_id(_text(body, "into", "the id of the source that remains"))
    if into is None:
        raise InvalidInput("into must be a source id")
    return merge_sources(session, user, source.id, into, reevaluate)  # type: ignore[arg-type]


def _revoke(
    session: Session, user: User, source: Source, body: dict[str, Any], reevaluate: Any
) -> Source:
    domain = _text(body, "domain", "the authorised domain to remove")
    return review.revoke_sender(session, user, source.id, domain, reevaluate)  # type: ignore[arg-type]


def add_routes(app: web.Application) -> None:
    """Register the catch-all and source-tidying API routes."""
    p = PREFIX
    app.router.add_get(f"{p}/catchall", list_claims)
    app.router.add_post(f"{p}/catchall", create_claim)
    app.router.add_post(f"{p}/catchall/{{domain}}/release", release_claim)
    app.router.add_post(f"{p}/sources/{{id}}/rename", _source_change(_rename))
    app.router.add_post(f"{p}/sources/{{id}}/merge", _source_change(_merge))
    app.router.add_post(f"{p}/sources/{{id}}/senders/remove", _source_change(_revoke))
