"""Scheduled work (APScheduler 3, on the asyncio loop of ``canary serve``).

:func:`build_scheduler` returns an unstarted ``AsyncIOScheduler`` with the jobs below;
the composition root starts it (``scheduler.start()``, inside the running loop) and
stops it on shutdown (``scheduler.shutdown(wait=False)``). Each job is a plain async
function of ``(settings, store)``, so tests and the CLI can run one directly. Database
work inside the jobs runs in worker threads, never on the loop that serves SMTP.

Jobs may run in several processes sharing one database: outbox rows are claimed with a
lease (:mod:`canary.outbox`), digests skip channels that had one recently, purging
twice purges nothing more, and a confirmation link is reserved in the database before
its one fetch (:func:`canary.confirm.confirm_link`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from canary import alerts, confirm, forwarding, metrics, retention
from canary.config import Settings
from canary.models import utcnow
from canary.store import Store

log = logging.getLogger(__name__)

OUTBOX_INTERVAL_SECONDS = 30


async def deliver_alerts_job(settings: Settings, store: Store) -> int:
    """Send due alerts (webhooks, email)."""
    return await alerts.deliver_alerts(settings, store, resolve=confirm.resolver_for(settings))


async def deliver_forwards_job(settings: Settings, store: Store) -> int:
    """Send due forwards through the relay."""
    return await forwarding.deliver_forwards(settings, store)


async def digest_job(
    settings: Settings, store: Store, frequency: str = "daily", now: datetime | None = None
) -> int:
    """Queue daily or weekly digests, then send what is due; returns digests queued."""

    def queue() -> int:
        with store.session() as session:
            return alerts.queue_digests(session, frequency, now or utcnow())

    count = await asyncio.to_thread(queue)
    if count:
        await alerts.deliver_alerts(settings, store, now=now)
    return count


async def purge_job(settings: Settings, store: Store, now: datetime | None = None) -> int:
    """Apply the retention policy; returns how many raw messages were purged."""
    policy = retention.RetentionPolicy.from_settings(settings)
    if not policy.enabled:
        return 0

    def purge() -> int:
        with store.session() as session:
            return retention.purge(session, now or utcnow(), policy)

    count = await asyncio.to_thread(purge)
    if count:
        metrics.inc("messages_purged_total", count)
        log.info("retention purged %d raw message(s)", count)
    return count


async def confirm_job(
    settings: Settings,
    store: Store,
    *,
    resolve: confirm.Resolver | None = None,
    allow_private: bool = False,
    allowed_ports: Sequence[int] | None = confirm.DEFAULT_PORTS,
    timeout: float = confirm.DEFAULT_TIMEOUT,
) -> int:
    """Fetch pending confirmation links of opted-in studies; returns the attempts made.

    The fetches are blocking HTTP requests, so the whole run happens in a worker thread;
    SMTP and the dashboard on the loop keep answering meanwhile. The keyword arguments
    exist for tests on 127.0.0.1 only: the scheduler always uses the safe defaults.
    """

    def fetch() -> list[tuple[str, int | None]]:
        with store.session() as session:
            attempts = confirm.run_confirmations(
                session,
                resolve=resolve or confirm.resolver_for(settings),
                allow_private=allow_private,
                allowed_ports=allowed_ports,
                timeout=timeout,
            )
            return [(a.outcome, a.status_code) for a in attempts]

    outcomes = await asyncio.to_thread(fetch)
    if outcomes:
        fetched = sum(1 for outcome, _ in outcomes if outcome == "fetched")
        log.info("confirmation links: %d attempted, %d fetched", len(outcomes), fetched)
    return len(outcomes)


def build_scheduler(settings: Settings, store: Store) -> AsyncIOScheduler:
    """An unstarted scheduler with the outbox, digest, retention and confirmation jobs.

    Times are in UTC; the confirmation job runs every ``settings.confirm_interval``
    seconds.

    More jobs (campaign detection, re-claiming) can be added with ``add_job`` before
    ``start()``.
    """
    scheduler = AsyncIOScheduler(
        timezone="UTC",
        # A job still running when its next run is due is not started twice, and runs
        # missed while the process was down are run once, not once per missed slot.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    args = (settings, store)
    every = IntervalTrigger(seconds=OUTBOX_INTERVAL_SECONDS)
    scheduler.add_job(deliver_alerts_job, every, args=args, id="alerts", name="deliver alerts")
    scheduler.add_job(
        deliver_forwards_job, every, args=args, id="forwards", name="deliver forwards"
    )
    scheduler.add_job(
        digest_job,
        CronTrigger(hour=7, minute=0, timezone="UTC"),
        args=(*args, "daily"),
        id="digest-daily",
        name="daily digests",
    )
    scheduler.add_job(
        digest_job,
        CronTrigger(day_of_week="mon", hour=7, minute=5, timezone="UTC"),
        args=(*args, "weekly"),
        id="digest-weekly",
        name="weekly digests",
    )
    scheduler.add_job(
        purge_job,
        CronTrigger(hour=3, minute=30, timezone="UTC"),
        args=args,
        id="retention",
        name="retention purge",
    )
    scheduler.add_job(
        confirm_job,
        IntervalTrigger(seconds=settings.confirm_interval),
        args=args,
        id="confirm",
        name="study confirmation links",
    )
    return scheduler
