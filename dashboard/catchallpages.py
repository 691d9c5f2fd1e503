"""The catch-all page: claim a subdomain where any alias is issued on first use.

The rules (what may be claimed, who holds what) live in :mod:`canary.catchall`; this
module reads the form and renders.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.templating import render
from sqlalchemy import func
from sqlmodel import Session, col, select

from canary.catchall import CATCHALL_STYLE, claim_subdomain, list_subdomains, release_subdomain
from canary.errors import CanaryError
from canary.models import Identity, User


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def _claims(session: Session, user: User) -> list[dict[str, Any]]:
    """The user's subdomains with how many identities each has issued."""
    out = []
    for claim in list_subdomains(session, user):
        issued = session.exec(
            select(func.count())
            .select_from(Identity)
            .where(
                Identity.owner_id == user.id,
                Identity.style == CATCHALL_STYLE,
                col(Identity.alias).endswith("@" + claim.domain),
            )
        ).one()
        out.append({"claim": claim, "issued": issued})
    return out


async def catchall_page(
    request: web.Request, message: str | None = None, error: str | None = None
) -> web.Response:
    user = current_user(request)
    settings = request.app[keys.SETTINGS]
    claims = await run(_store(request), lambda s: _claims(s, user))
    context = {
        "claims": claims,
        "domains": settings.domains,
        "daily_limit": settings.catchall_daily_limit,
        "message": message,
        "error": error,
    }
    return render(request, "catchall.html", context, 400 if error else 200)


async def _form_domain(request: web.Request) -> str:
    value = (await request.post()).get("domain", "")
    return value.strip() if isinstance(value, str) else ""


async def claim(request: web.Request) -> web.Response:
    user = current_user(request)
    domains = request.app[keys.SETTINGS].domains
    text = await _form_domain(request)
    try:
        record = await run(_store(request), lambda s: claim_subdomain(s, user, text, domains))
    except CanaryError as exc:
        return await catchall_page(request, error=str(exc))
    return await catchall_page(request, message=f"{record.domain} is yours.")


async def release(request: web.Request) -> web.Response:
    user = current_user(request)
    text = await _form_domain(request)
    record = await run(_store(request), lambda s: release_subdomain(s, user, text))
    return await catchall_page(request, message=f"{record.domain} released.")


def add_routes(app: web.Application) -> None:
    """Register the catch-all pages."""
    app.router.add_get("/catchall", catchall_page)
    app.router.add_post("/catchall", claim)
    app.router.add_post("/catchall/release", release)
