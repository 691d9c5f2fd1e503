"""The dashboard and API application factory.

``create_app(settings, store)`` builds a fresh :class:`aiohttp.web.Application`; there
is no module-level app, so tests and ``canary serve`` each build their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from canary.dashboard import (
    api,
    catchallapi,
    forwardpages,
    keys,
    pages,
    scrape,
    studyapi,
    studypages,
)
from canary.dashboard.auth import LoginLimiter, SessionCodec, auth_middleware, load_secret
from canary.dashboard.errors import error_middleware
from canary.dashboard.templating import setup_filters

from canary.config import Settings
from canary.review import SourceChanged
from canary.store import Store

HERE = Path(__file__).resolve().parent

# Pages: only our own origin, no inline script or style, framed by no one. The message
# body frame sets its own, stricter policy (pages.body_frame).
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    if "frame-ancestors 'self'" not in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        # Pages and API answers hold personal data: never keep them in shared caches.
        headers.setdefault("Cache-Control", "no-store")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. (Database trouble shows as 503 on real requests.)"""
    return web.json_response({"ok": True})


def create_app(
    settings: Settings,
    store: Store,
    *,
    secret: bytes | None = None,
    secure_cookies: bool = False,
    reevaluate: SourceChanged | None = None,
    limiter: LoginLimiter | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """Build the dashboard and API.

    ``secret`` signs session cookies (default: a key kept in the data directory);
    ``secure_cookies`` marks cookies Secure even when TLS ends at a proxy (they are
    always Secure on a TLS connection); ``reevaluate`` is called after a user correction
    so the verdict engine can re-evaluate the source's findings.
    """
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[keys.SETTINGS] = settings
    app[keys.STORE] = store
    if secret is None and settings.secret_key:
        secret = settings.secret_key.encode()
    codec = SessionCodec(secret or load_secret(settings.resolved_data_dir / "dashboard.key"))
    if clock is not None:
        codec.clock = clock
    app[keys.SESSION_CODEC] = codec
    app[keys.SECURE_COOKIES] = secure_cookies or settings.http_secure_cookies
    app[keys.REEVALUATE] = reevaluate
    app[keys.LOGIN_LIMITER] = limiter or LoginLimiter()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    setup_filters(env)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", HERE / "static", append_version=True)
    api.add_routes(app)
    studyapi.add_routes(app)
    catchallapi.add_routes(app)
    pages.add_routes(app)
    studypages.add_routes(app)
    forwardpages.add_routes(app)
    scrape.add_routes(app)
    return app


async def start_dashboard(
    settings: Settings, store: Store, *, reuse_port: bool = False, **options: object
) -> web.AppRunner:
    """Serve the dashboard on ``http_host:http_port``; the caller awaits ``runner.cleanup()``.

    For the composition root (``canary serve``); ``options`` go to :func:`create_app`.
    With ``reuse_port`` several processes bind the same port and the kernel spreads
    connections over them. ``runner.addresses`` holds the address actually bound.
    """
    runner = web.AppRunner(create_app(settings, store, **options), access_log=None)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_port=reuse_port)
    await site.start()
    return runner
