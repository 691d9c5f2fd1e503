"""The scheduler's jobs: registered, startable and stoppable; each runs on its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from canary import alerts, scheduler
from canary.config import Settings
from canary.models import Message, utcnow
from canary.store import Store
from tests.support.dashboard import seed_user
from tests.support.outbound import WebhookServer, webhook_server  # noqa: F401


async def test_build_scheduler_has_the_jobs_and_starts(settings: Settings, store: Store) -> None:
    built = scheduler.build_scheduler(settings, store)
    assert {job.id for job in built.get_jobs()} == {
        "alerts", "forwards", "digest-daily", "digest-weekly", "retention",
    }  # fmt: skip
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
