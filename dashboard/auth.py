"""Who is asking: signed session cookies, CSRF tokens, login rate limits, bearer tokens.

Sessions need no table: the cookie holds the user id, a CSRF secret, the issue time and
a fingerprint of the password hash, signed with HMAC-SHA256. Changing the password
changes the fingerprint and so ends every session of that user; logging out clears the
cookie, and a copied cookie expires after ``SESSION_MAX_AGE``. The dashboard stays
stateless, so several dashboard processes can share one database.

Every visitor gets a session, anonymous until login, so the login form itself carries a
CSRF token. Logging in issues a new session with a new CSRF secret (no fixation).

Requests with ``Authorization: Bearer <token>`` are authenticated by API token instead
and carry no cookies, so they need no CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.db import run
from canary.dashboard.errors import ApiError, Handler, is_api

from canary.models import User
from canary.users import user_for_token

SESSION_COOKIE = "ct_session"
SESSION_MAX_AGE = 7 * 24 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without logging in.
PUBLIC_PATHS = frozenset({"/login", "/setup", "/healthz", "/api/v1/openapi.json"})
PUBLIC_PREFIXES = ("/static/", "/forwarding/verify/")
# Paths whose handlers check access themselves (Prometheus sends its own bearer token,
# which is not an API token): no session, no cookie, no CSRF.
SELF_AUTHENTICATED = frozenset({"/metrics"})


def load_secret(path: Path) -> bytes:
    """The signing key kept in ``path``, created (mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # O_EXCL: two processes starting at once never overwrite each other's key.
        try:
            fd = path.open("x")
        except FileExistsError:
            pass
        else:
            with fd:
                path.chmod(0o600)
                fd.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def password_fingerprint(user: User) -> str:
    """A short digest of the user's password hash; it changes with the password."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SessionData:
    """What the session cookie says."""

    csrf: str
    issued: float
    user_id: int | None = None
    fingerprint: str = ""

    @classmethod
    def anonymous(cls, now: float) -> SessionData:
        return cls(csrf=secrets.token_urlsafe(24), issued=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SessionCodec:
    """Signs and checks session cookies."""

    secret: bytes
    max_age: int = SESSION_MAX_AGE
    clock: Callable[[], float] = time.time

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.secret, body.encode(), hashlib.sha256).digest())

    def dumps(self, data: SessionData) -> str:
        payload = {"c": data.csrf, "t": data.issued, "u": data.user_id, "p": data.fingerprint}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def loads(self, value: str | None) -> SessionData | None:
        """The session in a cookie, or None when it is missing, forged or expired."""
        if not value or "." not in value:
            return None
        body, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            data = SessionData(
                csrf=str(payload["c"]),
                issued=float(payload["t"]),
                user_id=int(payload["u"]) if payload["u"] is not None else None,
                fingerprint=str(payload["p"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= self.clock() - data.issued <= self.max_age:
            return None
        return data


@dataclass
class LoginLimiter:
    """Failed logins allowed per (address, user name) and per address in a sliding window.

    Kept in memory: a restart forgets, and each dashboard process counts on its own,
    which still caps guessing at a few hundred tries per hour per process.
    """

    per_name: int = 5
    per_address: int = 30
    window: float = 15 * 60
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, address: str, name: str) -> int | None:
        """Seconds to wait before another try, or None when a try is allowed now."""
        waits = []
        for key, limit in (
            (f"{address}|{name.lower()}", self.per_name),
            (address, self.per_address),
        ):
            times = self._recent(key)
            if len(times) >= limit:
                waits.append(int(self.window - (self.clock() - times[0])) + 1)
        return max(waits) if waits else None

    def failed(self, address: str, name: str) -> None:
        now = self.clock()
        self._recent(f"{address}|{name.lower()}").append(now)
        self._recent(address).append(now)
        # Forget idle keys so a scan over many names cannot grow memory without bound.
        if len(self._failures) > 10_000:
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]

    def succeeded(self, address: str, name: str) -> None:
        self._failures.pop(f"{address}|{name.lower()}", None)


# ---------------------------------------------------------------------- request state


def current_user(request: web.Request) -> User:
    """The authenticated user (the middleware has already refused anonymous requests)."""
    user = request.get(keys.USER)
    if user is None:
        raise ApiError(401, "unauthorized", "log in or send an API token")
    return user


def csrf_token(request: web.Request) -> str:
    """The CSRF token to put in this page's forms."""
    return request[keys.SESSION].csrf


def start_session(request: web.Request, user: User) -> None:
    """Log ``user`` in: a fresh session (new CSRF secret) replaces the anonymous one."""
    codec: SessionCodec = request.app[keys.SESSION_CODEC]
    request[keys.SESSION] = SessionData(
        csrf=secrets.token_urlsafe(24),
        issued=codec.clock(),
        user_id=user.id,
        fingerprint=password_fingerprint(user),
    )
    request[keys.SESSION_CHANGED] = True
    request[keys.USER] = user


def end_session(request: web.Request) -> None:
    """Log out: back to a new anonymous session."""
    codec: SessionCodec = request.app[keys.SESSION_CODEC]
    request[keys.SESSION] = SessionData.anonymous(codec.clock())
    request[keys.SESSION_CHANGED] = True
    request[keys.USER] = None


def client_address(request: web.Request) -> str:
    """The peer address (proxy headers are not trusted)."""
    return request.remote or "unknown"


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or ""


async def _check_csrf(request: web.Request, session: SessionData) -> None:
    # Browsers label cross-site requests; refuse those outright. With our
    # Referrer-Policy no-referrer, Chromium sends "Origin: null" on same-origin form
    # posts, so a null Origin says nothing and the token below decides.
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if (origin not in (None, "null") and origin != f"{request.scheme}://{request.host}") or (
        fetch_site in ("cross-site", "same-site")
    ):
        raise ApiError(403, "csrf_failed", "cross-site request refused")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise ApiError(
            403, "csrf_failed", "the form expired or came from another site; reload and retry"
        )


def _refuse_repeated_parameters(request: web.Request) -> None:
    # Every API query parameter has one value. Taking the first of several would let a
    # proxy or log that reads the last one disagree with what was done (parameter
    # pollution), so a repeated one is refused instead.
    if not is_api(request):
        return
    query = request.query
    repeated = sorted(name for name in set(query) if len(query.getall(name)) > 1)
    if repeated:
        raise ApiError(400, "invalid_input", f"query parameter {repeated[0]!r} given twice")


def _set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    codec: SessionCodec = request.app[keys.SESSION_CODEC]
    response.set_cookie(
        SESSION_COOKIE,
        codec.dumps(request[keys.SESSION]),
        max_age=codec.max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure or request.app[keys.SECURE_COOKIES],
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate by bearer token or session cookie; enforce login and CSRF."""
    codec: SessionCodec = request.app[keys.SESSION_CODEC]
    store = request.app[keys.STORE]
    request[keys.USER] = None
    request[keys.SESSION_CHANGED] = False
    if request.path in SELF_AUTHENTICATED and request.method in SAFE_METHODS:
        return await handler(request)
    token = _bearer(request)
    if token is not None:
        # API tokens authenticate API calls only; a page never accepts one.
        user = await run(store, lambda s: user_for_token(s, token)) if token else None
        if user is None or not is_api(request):
            raise ApiError(
                401, "unauthorized", "invalid or revoked API token", {"WWW-Authenticate": "Bearer"}
            )
        request[keys.USER] = user
        request[keys.SESSION] = SessionData.anonymous(codec.clock())
        _refuse_repeated_parameters(request)
        return await handler(request)

    session = codec.loads(request.cookies.get(SESSION_COOKIE))
    if session is None:
        session = SessionData.anonymous(codec.clock())
        request[keys.SESSION_CHANGED] = True
    elif session.user_id is not None:
        user_id, fingerprint = session.user_id, session.fingerprint
        user = await run(store, lambda s: s.get(User, user_id))
        if user is not None and hmac.compare_digest(password_fingerprint(user), fingerprint):
            request[keys.USER] = user
        else:  # deleted user or changed password: the session is over
            session = SessionData.anonymous(codec.clock())
            request[keys.SESSION_CHANGED] = True
    request[keys.SESSION] = session

    if request[keys.USER] is None and not _is_public(request.path):
        if is_api(request):
            raise ApiError(
                401, "unauthorized", "log in or send an API token", {"WWW-Authenticate": "Bearer"}
            )
        raise web.HTTPSeeOther(location=f"/login?next={request.path_qs}")
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session)
    _refuse_repeated_parameters(request)

    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if request[keys.SESSION_CHANGED]:
            _set_cookie(request, exc)
        raise
    if request[keys.SESSION_CHANGED] and not response.prepared:
        _set_cookie(request, response)
    return response
