"""JSON shapes of sources and identities, and request parsing shared by API and pages."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from aiohttp import web
from sqlmodel import Session, select

from canary import sources as source_service
from canary.config import Settings
from canary.errors import InvalidInput, NotFound
from canary.identity import ALIAS_STYLES, IdentityRequest
from canary.models import AuthorisedSender, Identity, Source, User


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(data: Any) -> str:
    """JSON text with datetimes in ISO 8601."""
    return json.dumps(data, default=_default, ensure_ascii=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response using :func:`dumps`."""
    return web.json_response(data, status=status, dumps=dumps)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; InvalidInput for anything else."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body


# Ids are 32-bit integers in every supported database: a larger number names nothing,
# and PostgreSQL refuses to compare an integer column with it.
MAX_INT = 2**31 - 1


def path_id(request: web.Request, name: str = "id") -> int:
    """An integer id from the URL; anything else is simply not found."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() is true
        raise NotFound(f"no such {name}")
    if int(raw) > MAX_INT:
        raise NotFound(f"no such {name}")
    return int(raw)


def int_param(value: Any, name: str, default: int | None = None) -> int | None:
    """An optional integer parameter; InvalidInput when it is not one."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a whole number") from None
    if not -MAX_INT - 1 <= number <= MAX_INT:
        raise InvalidInput(f"{name} is out of range")
    return number


def date_param(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or date-time query parameter."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 date, e.g. 2026-01-31") from None
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def identity_json(identity: Identity, source: Source | None = None) -> dict[str, Any]:
    """The JSON form of an identity."""
    return {
        "id": identity.id,
        "source_id": identity.source_id,
        "source": source.name if source else None,
        "alias": identity.alias,
        "display_name": identity.display_name,
        "style": identity.style,
        "postal_line": identity.postal_line,
        "reference": identity.reference,
        "created_at": identity.created_at,
        "given_at": identity.given_at,
        "retired_at": identity.retired_at,
    }


def source_json(session: Session, source: Source, status: str | None = None) -> dict[str, Any]:
    """The JSON form of a source with its authorised senders."""
    senders = session.exec(
        select(AuthorisedSender)
        .where(AuthorisedSender.source_id == source.id)
        .order_by(AuthorisedSender.domain)
    )
    return {
        "id": source.id,
        "name": source.name,
        "slug": source.slug,
        "url": source.url,
        "notes": source.notes,
        "created_at": source.created_at,
        "status": status,
        "authorised_senders": [
            {"domain": s.domain, "reason": s.reason, "added_at": s.added_at} for s in senders
        ],
    }


def pick_or_create_source(
    session: Session, owner: User, source_id: Any = None, name: Any = None
) -> Source:
    """The owner's source by id, else by name, creating it when the name is new."""
    if source_id not in (None, ""):
        return source_service.get_source(session, owner, int_param(source_id, "source_id") or 0)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("give source_id or the name of a source")
    try:
        return source_service.get_source(session, owner, name.strip())
    except NotFound:
        return source_service.add_source(session, owner, name)


def identity_request(settings: Settings, data: dict[str, Any], count: int = 1) -> IdentityRequest:
    """An IdentityRequest from user input, with the settings' defaults."""
    style = data.get("style") or settings.identity_style
    if style not in ALIAS_STYLES:
        raise InvalidInput(f"style must be one of {', '.join(ALIAS_STYLES)}")
    domain = data.get("domain") or settings.default_domain or ""
    if domain and domain not in settings.domains:
        raise InvalidInput(f"{domain!r} is not a canary domain of this service")
    real_name = data.get("real_name") or None
    if real_name is not None and not isinstance(real_name, str):
        raise InvalidInput("real_name must be text")
    return IdentityRequest(
        count=count,
        style=str(style),
        domain=str(domain),
        real_name=real_name,
        locale=settings.faker_locale,
    )
