"""Template helpers: rendering with the common context, and display filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from canary.dashboard import keys

VERDICT_LABELS = {
    "expected": "expected",
    "shared": "shared",
    "breach": "breach",
    "after_retirement": "after retirement",
    "cross_source": "lists merged",
    "unattributed": "never issued",
}


def when(value: Any) -> str:
    """A timestamp as ``2026-03-01 14:05 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def day(value: Any) -> str:
    """A timestamp as its date."""
    text = when(value)
    return text[:10]


def verdict_label(verdict: str | None) -> str:
    """A verdict as a person reads it."""
    if not verdict:
        return "pending"
    return VERDICT_LABELS.get(verdict, verdict)


def setup_filters(env: jinja2.Environment) -> None:
    """Register the filters the templates use."""
    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["verdict"] = verdict_label


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a page with the user, the CSRF token and the active section."""
    base = {
        "user": request.get(keys.USER),
        "csrf": request[keys.SESSION].csrf if keys.SESSION in request else "",
        "path": request.path,
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
