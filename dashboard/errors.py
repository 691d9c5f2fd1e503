"""The one place where errors become HTTP responses.

``canary.errors`` classes map to status codes here and nowhere else. API requests (paths
under ``/api/``) get ``{"error": {"code": ..., "message": ...}}``; pages get a short
HTML page. Unexpected exceptions are logged and answered with a generic 500 that leaks
no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from canary.errors import (
    CanaryError,
    ConfigError,
    Conflict,
    IdentityExhausted,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

STATUS: dict[type[CanaryError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    IdentityExhausted: 409,
    ConfigError: 500,
    StoreUnavailable: 503,
}

# Codes for errors raised by the web layer itself (aiohttp's HTTP exceptions).
# Headers of an error that the client needs to act on: when to retry, how to
# authenticate, which methods the resource has.
PASSED_HEADERS = ("Retry-After", "WWW-Authenticate", "Allow")

HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "store_unavailable",
}


class ApiError(Exception):
    """An HTTP error raised by the web layer, with our own machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = code
        self.error_message = message
        self.headers = headers or {}


def status_for(error: CanaryError) -> int:
    """The HTTP status of a core error (the nearest mapped base class)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 400


def is_api(request: web.Request) -> bool:
    """True for JSON API requests."""
    return request.path.startswith("/api/")


def error_json(status: int, code: str, message: str) -> web.Response:
    """The JSON error body every API error uses."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    from canary.dashboard.templating import render

    try:
        return render(request, "error.html", {"status": status, "message": message}, status)
    except Exception:  # the error page itself failed: plain text is still safe
        log.exception("error page failed")
        return web.Response(status=status, text=message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into the right response for an API call or a page."""
    headers: Mapping[str, str] = {}
    try:
        return await handler(request)
    except CanaryError as exc:
        status, code, message = status_for(exc), exc.code, str(exc)
        if status >= 500:
            log.error("%s on %s %s: %s", code, request.method, request.path, exc)
        if status == 500:
            message = "the server is misconfigured; see its log"
    except ApiError as exc:
        status, code, message = exc.status, exc.error_code, exc.error_message
        headers = exc.headers
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like pass through
            raise
        status = exc.status
        code = HTTP_CODES.get(status, "error")
        message = exc.text if exc.text and not exc.text.startswith(f"{status}:") else exc.reason
        headers = exc.headers  # a 405 names the methods that are allowed (Allow)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        status, code, message = 500, "internal_error", "internal error"
    if is_api(request):
        response = error_json(status, code, message)
    else:
        response = await _error_page(request, status, message)
    for name in PASSED_HEADERS:
        if name in headers:
            response.headers[name] = headers[name]
    return response
