"""The scheduler's jobs: registered, startable and stoppable; each runs on its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlmodel import select

from canary import alerts, confirm, scheduler
from canary.config import Settings
from canary.models import ConfirmationAttempt, Message, User, utcnow
from canary.store import Store
from tests.support.dashboard import seed_user
from tests.support.dns_server import TestDnsServer
from tests.support.outbound import WebhookServer, webhook_server  # noqa: F401
from tests.support.study import SIGNED_UP_DAYS_AGO, WELCOMES, send_study_mail

LOOPBACK = lambda host, port: ["127.0.0.1"]  # noqa: E731


async def test_build_scheduler_has_the_jobs_and_starts(settings: Settings, store: Store) -> None:
    built = scheduler.build_scheduler(settings, store)
    assert {job.id for job in built.get_jobs()} == {
        "alerts", "forwards", "digest-daily", "digest-weekly", "retention", "confirm",
    }  # fmt: skip
    confirm_trigger = built.get_job("confirm").trigger
    assert confirm_trigger.interval == timedelta(seconds=settings.confirm_interval)
    built.start()
    try:
        assert built.running
        assert all(job.next_run_time is not None for job in built.get_jobs())
    finally:
        built.shutdown(wait=False)


async def test_jobs_run_directly(
    make_settings: Callable[..., Settings],
    store: Store,
    webhook_server: WebhookServer,  # noqa: F811
) -> None:
    settings = make_settings(webhook_allow_private=True, retention_days=30)
    seeded = seed_user(store, "alice", admin=True)
    with store.session() as session:
        alerts.add_channel(session, seeded.user, "webhook", webhook_server.url, digest="weekly")
        message = session.get(Message, seeded.message.id)
        assert message is not None
        message.received_at = utcnow() - timedelta(days=60)
        session.add(message)

    assert await scheduler.digest_job(settings, store, "weekly") == 1
    assert len(webhook_server.requests) == 1  # the digest was sent right away
    assert await scheduler.deliver_alerts_job(settings, store) == 0
    assert await scheduler.deliver_forwards_job(settings, store) == 0
    # The message is old but an open incident rests on it: kept.
    assert await scheduler.purge_job(settings, store) == 0
    assert await scheduler.purge_job(settings.replace(retention_days=None), store) == 0


async def test_confirm_job_fetches_each_link_once_without_blocking_the_loop(
    settings: Settings, store: Store, owner: User, dns_server: TestDnsServer, aiohttp_server: Any
) -> None:
    # The sites' confirmation pages are served on this test's own event loop: had the
    # job fetched on the loop, no page could have answered and every attempt would be
    # an error (timeout) instead of a 200.
    hits: list[str] = []

    async def confirm_page(request: web.Request) -> web.Response:
        hits.append(f"{request.host.split(':')[0]}{request.path_qs}")
        return web.Response(text="Thanks, your address is confirmed.")

    app = web.Application()
    app.router.add_get("/confirm", confirm_page)
    server = await aiohttp_server(app, host="127.0.0.1")
    await send_study_mail(
        store, settings, owner, dns_server, auto_confirm=True, confirm_port=server.port
    )
    options: dict[str, Any] = {
        "resolve": LOOPBACK, "allow_private": True, "allowed_ports": None, "timeout": 5.0,
    }  # fmt: skip

    # Site 04 signed up 40 days before its welcome came: links that old have expired.
    fresh = [n for n in WELCOMES if SIGNED_UP_DAYS_AGO.get(n, 7) <= confirm.WINDOW_DAYS]
    assert fresh == [1, 2, 5]
    assert await scheduler.confirm_job(settings, store, **options) == len(fresh)
    assert sorted(hits) == [f"site{n:02d}.test/confirm?persona={n}" for n in fresh]
    with store.session() as session:
        attempts = session.exec(select(ConfirmationAttempt)).all()
    assert {(a.outcome, a.status_code) for a in attempts} == {("fetched", 200)}
    # Each persona's link is fetched once: the next run has nothing to do.
    assert await scheduler.confirm_job(settings, store, **options) == 0
    assert len(hits) == len(fresh)


async def test_confirm_job_does_nothing_for_studies_not_opted_in(
    settings: Settings, store: Store, owner: User, dns_server: TestDnsServer
) -> None:
    await send_study_mail(store, settings, owner, dns_server, auto_confirm=False)
    assert await scheduler.confirm_job(settings, store, resolve=LOOPBACK) == 0
    with store.session() as session:
        assert session.exec(select(ConfirmationAttempt)).all() == []
