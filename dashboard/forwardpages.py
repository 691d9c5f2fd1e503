"""Pages for forwarding (addresses, verification, rules, the forward log) and alerts
(channels and their delivery log).

All rules live in ``canary/`` (:mod:`canary.forward_addresses`, :mod:`canary.forwarding`,
:mod:`canary.alerts`); these handlers only read forms and render. The verification page
is public (the link is opened from a mailbox, maybe on another device) and confirms with
a POST, so a mail scanner that prefetches links does not verify anything by itself.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from canary.dashboard import keys
from canary.dashboard.auth import current_user
from canary.dashboard.db import run
from canary.dashboard.serialize import path_id
from canary.dashboard.templating import render
from sqlmodel import Session

from canary import alerts, forward_addresses, forwarding, outbox
from canary.errors import CanaryError, NotFound
from canary.mailer import RelayError, require_relay
from canary.models import Alert, Forward, Identity, Source, User, utcnow
from canary.ownership import owned
from canary.sources import list_sources


def _store(request: web.Request) -> Any:
    return request.app[keys.STORE]


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


# ---------------------------------------------------------------------- forwarding


def _forwarding_data(session: Session, user: User) -> dict[str, Any]:
    assert user.id is not None
    addresses = forward_addresses.list_addresses(session, user)
    by_id = {a.id: a.address for a in addresses}
    rules = []
    for rule in forward_addresses.list_rules(session, user):
        if rule.identity_id is not None:
            identity = session.get(Identity, rule.identity_id)
            target = f"identity {identity.alias}" if identity else "identity ?"
        else:
            source = session.get(Source, rule.source_id)
            target = f"source {source.name}" if source else "source ?"
        rules.append({"rule": rule, "target": target, "address": by_id.get(rule.address_id)})
    return {
        "addresses": addresses,
        "rules": rules,
        "forwards": forwarding.forward_log(session, user.id, 50),
        "sources": list_sources(session, user),
    }


async def forwarding_page(
    request: web.Request, message: str | None = None, error: str | None = None
) -> web.Response:
    user = current_user(request)
    data = await run(_store(request), lambda s: _forwarding_data(s, user))
    data.update(message=message, error=error)
    return render(request, "forwarding.html", data, 400 if error else 200)


async def address_add(request: web.Request) -> web.Response:
    user = current_user(request)
    settings = request.app[keys.SETTINGS]
    address = _text(await request.post(), "address")
    try:
        require_relay(settings)
        record, token = await run(
            _store(request),
            lambda s: forward_addresses.request_verification(s, settings, user, address),
        )
    except CanaryError as exc:
        return await forwarding_page(request, error=f"Not sent: {exc}")
    try:
        await forward_addresses.send_verification(settings, user, record.address, token)
    except RelayError as exc:
        assert record.id is not None
        address_id = record.id
        await run(_store(request), lambda s: forward_addresses.verification_not_sent(s, address_id))
        return await forwarding_page(request, error=f"Not sent: {exc}")
    return await forwarding_page(
        request, message=f"A verification mail went to {record.address}; open its link."
    )


async def address_remove(request: web.Request) -> web.Response:
    user = current_user(request)
    address_id = path_id(request)
    await run(_store(request), lambda s: forward_addresses.remove_address(s, user, address_id))
    raise web.HTTPSeeOther("/forwarding")


async def rule_add(request: web.Request) -> web.Response:
    user = current_user(request)
    form = await request.post()
    target, address = _text(form, "target"), _text(form, "address")
    drop = _text(form, "drop_breach") == "on"
    try:
        await run(
            _store(request),
            lambda s: forward_addresses.set_rule(s, user, target, address, drop_breach=drop),
        )
    except CanaryError as exc:
        return await forwarding_page(request, error=str(exc))
    raise web.HTTPSeeOther("/forwarding")


async def rule_remove(request: web.Request) -> web.Response:
    user = current_user(request)
    rule_id = path_id(request)
    await run(_store(request), lambda s: forward_addresses.remove_rule(s, user, rule_id))
    raise web.HTTPSeeOther("/forwarding")


async def forward_retry(request: web.Request) -> web.Response:
    user = current_user(request)
    forward_id = path_id(request)

    def retry(session: Session) -> None:
        row = owned(session, Forward, forward_id, user, "forward")
        outbox.retry_now(row, utcnow())
        session.add(row)

    await run(_store(request), retry)
    raise web.HTTPSeeOther("/forwarding")


async def verify_form(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        record = await run(
            _store(request), lambda s: forward_addresses.pending_verification(s, token)
        )
    except NotFound as exc:
        return render(request, "forwarding_verify.html", {"error": str(exc), "done": False}, 404)
    context = {"address": record.address, "token": token, "done": False, "error": None}
    return render(request, "forwarding_verify.html", context)


async def verify_submit(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        record = await run(_store(request), lambda s: forward_addresses.verify(s, token))
    except NotFound as exc:
        return render(request, "forwarding_verify.html", {"error": str(exc), "done": False}, 404)
    context = {"address": record.address, "done": True, "error": None}
    return render(request, "forwarding_verify.html", context)


# ---------------------------------------------------------------------- alerts


async def alerts_page(
    request: web.Request, extra: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    user = current_user(request)

    def work(session: Session) -> dict[str, Any]:
        return {
            "channels": alerts.list_channels(session, user),
            "log": alerts.delivery_log(session, user, 50),
            "verified": [
                a.address
                for a in forward_addresses.list_addresses(session, user)
                if forward_addresses.is_verified(a)
            ],
        }

    data = await run(_store(request), work)
    data.update({"message": None, "error": None, "new_secret": None, **(extra or {})})
    return render(request, "alerts.html", data, status)


async def channel_add(request: web.Request) -> web.Response:
    user = current_user(request)
    form = await request.post()
    kind, target, digest = _text(form, "kind"), _text(form, "target"), _text(form, "digest")

    def add(session: Session) -> Any:
        return alerts.add_channel(
            session,
            user,
            kind,
            target,
            digest=digest or "none",
            immediate=_text(form, "immediate") == "on",
            include_subjects=_text(form, "include_subjects") == "on",
        )

    try:
        channel = await run(_store(request), add)
    except CanaryError as exc:
        return await alerts_page(request, {"error": str(exc)}, 400)
    # The signing secret is shown here once, to paste into the receiving end.
    return await alerts_page(request, {"new_secret": channel.secret, "message": "Channel added."})


async def channel_action(request: web.Request) -> web.Response:
    user = current_user(request)
    channel_id = path_id(request)
    action = request.match_info["action"]

    def act(session: Session) -> None:
        if action in ("enable", "disable"):
            alerts.set_enabled(session, user, channel_id, action == "enable")
        elif action == "test":
            alerts.queue_test_alert(session, user, channel_id)
        else:
            raise NotFound("no such action")

    await run(_store(request), act)
    raise web.HTTPSeeOther("/alerts")


async def alert_retry(request: web.Request) -> web.Response:
    user = current_user(request)
    alert_id = path_id(request)

    def retry(session: Session) -> None:
        row = owned(session, Alert, alert_id, user, "alert")
        outbox.retry_now(row, utcnow())
        session.add(row)

    await run(_store(request), retry)
    raise web.HTTPSeeOther("/alerts")


def add_routes(app: web.Application) -> None:
    """Register the forwarding and alert pages."""
    app.router.add_get("/forwarding", forwarding_page)
    app.router.add_post("/forwarding/addresses", address_add)
    app.router.add_post("/forwarding/addresses/{id}/remove", address_remove)
    app.router.add_post("/forwarding/rules", rule_add)
    app.router.add_post("/forwarding/rules/{id}/remove", rule_remove)
    app.router.add_post("/forwarding/forwards/{id}/retry", forward_retry)
    app.router.add_get(forward_addresses.VERIFY_PATH + "{token}", verify_form)
    app.router.add_post(forward_addresses.VERIFY_PATH + "{token}", verify_submit)
    app.router.add_get("/alerts", alerts_page)
    app.router.add_post("/alerts/channels", channel_add)
    app.router.add_post("/alerts/channels/{id}/{action}", channel_action)
    app.router.add_post("/alerts/{id}/retry", alert_retry)
