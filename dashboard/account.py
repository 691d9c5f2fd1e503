"""Account pages: login, logout, the first-run page, and settings (API tokens, password)."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import client_address, current_user, end_session, start_session
from canary.dashboard.db import run
from canary.dashboard.errors import ApiError
from canary.dashboard.serialize import path_id
from canary.dashboard.templating import render
from sqlmodel import Session, col, select

from canary.errors import InvalidInput, NotFound
from canary.models import ApiToken, User
from canary.users import add_user, hash_password, new_token, revoke_token, verify_password

# Verified against when the user name is unknown, so a wrong name costs as long as a
# wrong password and response times do not reveal which names exist.
_DUMMY = User(name="-", password_hash=hash_password("not a password, only for timing"))


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go to after a form; anything else (other sites) becomes ``default``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def is_local_request(request: web.Request) -> bool:
    """True for a direct connection from this machine (not through a proxy)."""
    if any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP")):
        return False  # a reverse proxy on localhost would make every visitor look local
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _needs_setup(session: Session) -> bool:
    return session.exec(select(User.id).where(col(User.password_hash).is_not(None))).first() is None


# ---------------------------------------------------------------------- login, logout


async def login_form(request: web.Request) -> web.Response:
    if request[keys.USER] is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    setup = is_local_request(request) and await run(request.app[keys.STORE], _needs_setup)
    return render(request, "login.html", {"next": request.query.get("next", ""), "setup": setup})


async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = _field(form, "name").strip(), _field(form, "password")
    target = safe_next(_field(form, "next"))
    limiter = request.app[keys.LOGIN_LIMITER]
    address = client_address(request)
    wait = limiter.retry_after(address, name)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too many failed logins; try again in {wait // 60 + 1} minutes",
            {"Retry-After": str(wait)},
        )

    def check(session: Session) -> User | None:
        user = session.exec(select(User).where(User.name == name)).first()
        ok = verify_password(user or _DUMMY, password)
        return user if ok and user is not None else None

    user = await run(request.app[keys.STORE], check)
    if user is None:
        limiter.failed(address, name)
        context = {"next": target, "setup": False, "error": "Wrong name or password.", "name": name}
        return render(request, "login.html", context, status=401)
    limiter.succeeded(address, name)
    start_session(request, user)
    raise web.HTTPSeeOther(target)


async def logout(request: web.Request) -> web.Response:
    end_session(request)
    raise web.HTTPSeeOther("/login")


# ---------------------------------------------------------------------- first run


async def _setup_allowed(request: web.Request) -> None:
    # Not found rather than forbidden: the page does not exist once set up, or remotely.
    if not is_local_request(request) or not await run(request.app[keys.STORE], _needs_setup):
        raise NotFound("no such page")


async def setup_form(request: web.Request) -> web.Response:
    await _setup_allowed(request)
    return render(request, "setup.html", {})


async def setup_submit(request: web.Request) -> web.Response:
    await _setup_allowed(request)
    form = await request.post()
    name, password = _field(form, "name").strip(), _field(form, "password")
    if password != _field(form, "password2"):
        return render(request, "setup.html", {"error": "The passwords differ.", "name": name}, 400)

    def create(session: Session) -> User:
        if not _needs_setup(session):  # a second tab got there first
            raise NotFound("no such page")
        existing = session.exec(select(User).where(User.name == name)).first()
        if existing is not None:
            # The CLI makes a password-less admin on first use; give it the password
            # so the web account sees the sources made on the command line.
            if len(password) < 8:
                raise InvalidInput("password too short: use at least 8 characters")
            existing.password_hash = hash_password(password)
            existing.is_admin = True
            session.add(existing)
            return existing
        return add_user(session, name, password=password, admin=True)

    try:
        user = await run(request.app[keys.STORE], create)
    except InvalidInput as exc:
        return render(request, "setup.html", {"error": str(exc), "name": name}, 400)
    start_session(request, user)
    raise web.HTTPSeeOther("/")


# ---------------------------------------------------------------------- settings


def _tokens(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.exec(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(col(ApiToken.id).desc())
        )
    )


async def settings_page(request: web.Request, extra: dict[str, Any] | None = None) -> web.Response:
    user = current_user(request)
    tokens = await run(request.app[keys.STORE], lambda s: _tokens(s, user))
    context = {"tokens": tokens, "new_token": None, "message": None, "error": None}
    status = 200
    if extra:
        status = extra.pop("status", 200)
        context.update(extra)
    return render(request, "settings.html", context, status)


async def settings_get(request: web.Request) -> web.Response:
    return await settings_page(request)


async def token_create(request: web.Request) -> web.Response:
    user = current_user(request)
    label = _field(await request.post(), "label").strip()[:100]
    _, secret = await run(request.app[keys.STORE], lambda s: new_token(s, user, label))
    # Shown once, in this response only; the database keeps just its hash.
    return await settings_page(request, {"new_token": secret})


async def token_revoke(request: web.Request) -> web.Response:
    user = current_user(request)
    token_id = path_id(request)
    await run(request.app[keys.STORE], lambda s: revoke_token(s, user, token_id))
    raise web.HTTPSeeOther("/settings")


async def password_change(request: web.Request) -> web.Response:
    user = current_user(request)
    form = await request.post()
    current, new = _field(form, "current"), _field(form, "password")
    if new != _field(form, "password2"):
        return await settings_page(request, {"error": "The new passwords differ.", "status": 400})
    if len(new) < 8:
        return await settings_page(request, {"error": "Use at least 8 characters.", "status": 400})

    def change(session: Session) -> User | None:
        fresh = session.get(User, user.id)
        if fresh is None or not verify_password(fresh, current):
            return None
        fresh.password_hash = hash_password(new)
        session.add(fresh)
        return fresh

    changed = await run(request.app[keys.STORE], change)
    if changed is None:
        return await settings_page(
            request, {"error": "The current password is wrong.", "status": 400}
        )
    # The password is part of every session's signature: other sessions end here, and
    # this one continues under the new password.
    start_session(request, changed)
    return await settings_page(request, {"message": "Password changed; other sessions ended."})


def add_routes(app: web.Application) -> None:
    """Register the account pages."""
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/setup", setup_form)
    app.router.add_post("/setup", setup_submit)
    app.router.add_get("/settings", settings_get)
    app.router.add_post("/settings/tokens", token_create)
    app.router.add_post("/settings/tokens/{id}/revoke", token_revoke)
    app.router.add_post("/settings/password", password_change)
