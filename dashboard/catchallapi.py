"""API routes for catch-all subdomains and for tidying the sources they create.

``/api/v1/catchall`` lists and claims subdomains; a source can be renamed, merged into
another, or lose an authorised sender (a wrong first-use guess). The rules are in
:mod:`canary.catchall`, :mod:`canary.source_merge` and :mod:`canary.review`.
"""

from __future__ import annotations

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
from canary.models import CatchAllDomain
from canary.source_merge import merge_sources, rename_source


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def claim_json(claim: CatchAllDomain) -> dict[str, Any]:
    """The JSON form of a claimed subdomain."""
    return {"domain": claim.domain, "created_at": claim.created_at}


async def _text_field(request: web.Request, name: str, meaning: str) -> str:
    value = (await json_body(request)).get(name)
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
    text = await _text_field(request, "domain", "a subdomain of a canary domain")
    claim = await run(_store(request), lambda s: claim_subdomain(s, user, text, domains))
    return json_response(claim_json(claim), status=201)


async def release_claim(request: web.Request) -> web.Response:
    user = current_user(request)
    domain = request.match_info["domain"]
    claim = await run(_store(request), lambda s: release_subdomain(s, user, domain))
    return json_response(claim_json(claim))


async def rename(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)
    name = await _text_field(request, "name", "the new name")

    def work(session: Session) -> dict[str, Any]:
        return source_json(session, rename_source(session, user, source_id, name))

    return json_response(await run(_store(request), work))


async def merge(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)
    into = await _text_field(request, "into", "the id of the source that remains")
    if not into.isdigit():
        raise InvalidInput("into must be a source id")
    reevaluate = request.app[keys.REEVALUATE]

    def work(session: Session) -> dict[str, Any]:
        kept = merge_sources(session, user, source_id, int(into), reevaluate)
        return source_json(session, kept)

    return json_response(await run(_store(request), work))


async def revoke_sender(request: web.Request) -> web.Response:
    user = current_user(request)
    source_id = path_id(request)
    domain = await _text_field(request, "domain", "the authorised domain to remove")
    reevaluate = request.app[keys.REEVALUATE]

    def work(session: Session) -> dict[str, Any]:
        return source_json(
            session, review.revoke_sender(session, user, source_id, domain, reevaluate)
        )

    return json_response(await run(_store(request), work))


def add_routes(app: web.Application) -> None:
    """Register the catch-all and source-tidying API routes."""
    p = PREFIX
    app.router.add_get(f"{p}/catchall", list_claims)
    app.router.add_post(f"{p}/catchall", create_claim)
    app.router.add_post(f"{p}/catchall/{{domain}}/release", release_claim)
    app.router.add_post(f"{p}/sources/{{id}}/rename", rename)
    app.router.add_post(f"{p}/sources/{{id}}/merge", merge)
    app.router.add_post(f"{p}/sources/{{id}}/senders/remove", revoke_sender)
