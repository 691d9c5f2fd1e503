"""``GET /metrics``: Prometheus text format, for scrapers that do not log in.

Access (no session, no CSRF; the auth middleware leaves this path to us):

* with ``CANARY_METRICS_TOKEN`` set: only requests with ``Authorization: Bearer <token>``;
* otherwise, with ``CANARY_METRICS_PUBLIC=true``: anyone;
* otherwise: only direct connections from this machine (a scraper on the same host,
  or a port forwarded over SSH), never through a reverse proxy.

The numbers say how much mail arrives and what verdicts it gets, but nothing about who
or which source, so a token is enough protection.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.account import is_local_request
from canary.dashboard.db import run

from canary import metrics

PATH = "/metrics"


def allowed(request: web.Request) -> bool:
    """Whether this request may read the metrics (see the module docstring)."""
    settings = request.app[keys.SETTINGS]
    if settings.metrics_token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            sent.strip().encode(), settings.metrics_token.encode()
        )
    return settings.metrics_public or is_local_request(request)


async def metrics_page(request: web.Request) -> web.Response:
    """The Prometheus exposition: this process's counters, then database gauges."""
    if not allowed(request):
        headers = {"WWW-Authenticate": "Bearer"} if request.app[keys.SETTINGS].metrics_token else {}
        raise web.HTTPUnauthorized(text="metrics need a token\n", headers=headers)
    families = await run(request.app[keys.STORE], metrics.database_snapshot)
    body = metrics.render(families)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    """Register ``/metrics``."""
    app.router.add_get(PATH, metrics_page)
