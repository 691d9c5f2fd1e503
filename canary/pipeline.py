"""The analysis worker: claims queued messages, parses, attributes, records first findings.

Nothing here runs before the SMTP ``250``: the session only stores the raw bytes, and
this worker picks them up afterwards. Claiming is one statement per batch:

* PostgreSQL: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``, so several
  processes sharing one database never take the same message and never wait on each
  other's rows;
* SQLite: the same ``UPDATE ... RETURNING`` without the lock clause; SQLite runs one
  writer at a time, which makes the claim atomic.

A claim older than ``claim_timeout`` (its worker died) is claimable again. A message
whose analysis raises is retried with a growing delay and, after ``max_attempts``,
marked ``unparsable`` with the error: it stays in the database, raw, and is shown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from canary.mailbox.intake import clean_text
from canary.mailbox.parse import ParsedMessage, parse_message
from sqlalchemy import and_, or_, select, update
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from canary.attribution import (
    authorised_domains,
    days_between,
    find_tagged,
    from_organisation,
    match_recipient,
)
from canary.config import Settings
from canary.models import Delivery, Finding, Message, Source, utcnow
from canary.store import Store

log = logging.getLogger(__name__)

CLAIMABLE = ("queued", "retry")


def default_worker_id() -> str:
    """host:pid, so a claim names the process that holds it."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


@dataclass(frozen=True)
class FirstVerdict:
    """The verdict this issue can give honestly, before sender authentication."""

    verdict: str | None  # None: pending until the sender is authenticated
    evidence: list[dict[str, str]]
    sentence: str


def _ev(code: str, detail: object = "") -> dict[str, str]:
    return {"code": code, "detail": str(detail)}


def first_verdict(
    session: Session,
    delivery: Delivery,
    parsed: ParsedMessage,
    domains: tuple[str, ...],
) -> FirstVerdict:
    """Attribute ``delivery`` (sets its identity, source and owner) and judge it.

    ``expected`` when the From organisation is authorised for the source,
    ``after_retirement`` for a retired identity, ``cross_source`` when the message
    carries another source's tagged name or alias, ``unattributed`` for addresses
    never issued. Anything else waits for the authenticated engine (verdict None).
    """
    match = match_recipient(session, delivery.recipient)
    delivery.kind = match.kind
    if match.kind == "role":
        return FirstVerdict(None, [], "")
    if match.identity is None or match.source is None:
        hits = find_tagged(session, parsed, domains)
        evidence = [_ev("recipient_not_issued", delivery.recipient_key)]
        evidence += [_ev(f"tagged_{h.where}", f"identity={h.identity_id}") for h in hits]
        return FirstVerdict(
            "unattributed",
            evidence,
            f"{delivery.recipient_key} was never issued; counted, not blamed on a source.",
        )
    identity, source = match.identity, match.source
    delivery.identity_id, delivery.source_id, delivery.owner_id = (
        identity.id,
        source.id,
        identity.owner_id,
    )
    evidence: list[dict[str, str]] = []
    org = from_organisation(parsed)
    if org:
        evidence.append(_ev("from_org", org))
    days = days_between(identity.given_at or identity.created_at, delivery.received_at)
    if days is not None:
        evidence.append(_ev("first_mail_days_after_issue", days))
    if parsed.list_unsubscribe:
        evidence.append(_ev("list_unsubscribe_present"))
    if identity.retired_at is not None and _aware(identity.retired_at) <= _aware(
        delivery.received_at
    ):
        days_after = days_between(identity.retired_at, delivery.received_at)
        evidence.append(_ev("retired_days_before", days_after))
        return FirstVerdict(
            "after_retirement",
            evidence,
            f"Mail to {identity.alias} (issued to {source.name}) arrived {days_after} "
            "day(s) after the identity was retired.",
        )
    foreign = [
        h
        for h in find_tagged(session, parsed, domains, owner_id=identity.owner_id)
        if h.source_id != source.id
    ]
    if foreign:
        names = {}
        for hit in foreign:
            other = session.get(Source, hit.source_id)
            label = other.slug if other else str(hit.source_id)
            names[label] = hit.where
            evidence.append(_ev(f"tagged_{hit.where}", f"identity={hit.identity_id} {label}"))
        listed = ", ".join(f"{label} (in {where})" for label, where in names.items())
        return FirstVerdict(
            "cross_source",
            evidence,
            f"Mail to {source.name}'s identity carries the tagged name or alias issued to "
            f"{listed}: the lists were merged.",
        )
    assert source.id is not None
    if org and org in authorised_domains(session, source.id):
        evidence.append(_ev("from_org_authorised", org))
        evidence.append(_ev("from_not_authenticated"))
        return FirstVerdict(
            "expected",
            evidence,
            f"From {org}, an authorised sender of {source.name} (From line not yet authenticated).",
        )
    evidence.append(_ev("not_authorised_for_source" if org else "from_missing", org or ""))
    return FirstVerdict(
        None,
        evidence,
        f"From {org or 'an unreadable address'}, not authorised for {source.name}; "
        "the verdict waits for sender authentication.",
    )


def _dead_here(worker_id: str, host: str) -> bool:
    """True when ``worker_id`` (host:pid) names a process of this host that is gone."""
    claim_host, _, pid_text = worker_id.rpartition(":")
    if claim_host != host or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Analyzer:
    """Claims and analyses queued messages; usable from tests (``run_once``) and ``serve``."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        worker_id: str | None = None,
        batch_size: int = 20,
        claim_timeout: float = 300.0,
        max_attempts: int = 5,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.batch_size = batch_size
        self.claim_timeout = claim_timeout
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------ claiming

    def claim(self, limit: int | None = None) -> list[int]:
        """Atomically claim up to ``limit`` messages for this worker; return their ids."""
        now = utcnow()
        table = Message.__table__  # type: ignore[attr-defined]
        c = table.c
        stale = now - timedelta(seconds=self.claim_timeout)
        ready = and_(
            c.state.in_(CLAIMABLE),
            or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
        )
        abandoned = and_(c.state == "analysing", c.claimed_at < stale)
        pick = select(c.id).where(or_(ready, abandoned)).order_by(c.id)
        pick = pick.limit(limit or self.batch_size)
        if self.store.backend == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        statement = (
            update(table)
            .where(c.id.in_(pick.scalar_subquery()))
            .values(
                state="analysing",
                claimed_at=now,
                claimed_by=self.worker_id,
                attempts=c.attempts + 1,
            )
            .returning(c.id)
        )
        with self.store.engine.begin() as conn:
            return sorted(row[0] for row in conn.execute(statement))

    def release_dead_claims(self) -> int:
        """Make claims of dead processes on this host claimable now; return how many.

        A process killed mid-analysis leaves its messages ``analysing``. Claims from
        other hosts wait for ``claim_timeout``; on this host we can ask the kernel
        whether the claiming pid still lives, so a restart picks them up at once.
        """
        host = socket.gethostname()
        table = Message.__table__  # type: ignore[attr-defined]
        c = table.c
        with self.store.engine.begin() as conn:
            holders = conn.execute(
                select(c.claimed_by).where(c.state == "analysing").distinct()
            ).scalars()
            dead = [h for h in holders if h and h != self.worker_id and _dead_here(h, host)]
            if not dead:
                return 0
            result = conn.execute(
                update(table)
                .where(c.state == "analysing", c.claimed_by.in_(dead))
                .values(state="queued", claimed_at=None, claimed_by=None)
            )
            return int(result.rowcount or 0)

    # ------------------------------------------------------------------ analysis

    def analyse(self, message_id: int) -> str:
        """Parse and attribute one claimed message in its own transaction; return its state."""
        with self.store.session() as session:
            return self._analyse_in(session, message_id)

    def _analyse_in(self, session: Session, message_id: int) -> str:
        """The work of :meth:`analyse` inside the caller's transaction."""
        message = session.get(Message, message_id)
        if message is None:
            return "missing"
        parsed = parse_message(message.raw)
        deliveries = session.exec(
            sm_select(Delivery).where(Delivery.message_id == message_id).order_by(Delivery.id)
        ).all()
        now = utcnow()
        for delivery in deliveries:
            result = first_verdict(session, delivery, parsed, self.settings.domains)
            delivery.verdict = result.verdict
            session.add(delivery)
            # Re-analysis supersedes, never edits: the history stays readable.
            for old in session.exec(
                sm_select(Finding).where(
                    Finding.delivery_id == delivery.id, col(Finding.superseded_at).is_(None)
                )
            ):
                old.superseded_at = now
                session.add(old)
            if result.verdict is not None:
                assert delivery.id is not None
                session.add(
                    Finding(
                        delivery_id=delivery.id,
                        owner_id=delivery.owner_id,
                        source_id=delivery.source_id,
                        verdict=result.verdict,
                        sender_org=from_organisation(parsed),
                        evidence=result.evidence,
                        sentence=result.sentence,
                    )
                )
        message.header_message_id = parsed.message_id[:998] if parsed.message_id else None
        message.subject = parsed.subject
        message.from_address = parsed.from_address
        message.sender_org = from_organisation(parsed)
        message.state = "analysed" if parsed.parsed else "unparsable"
        message.error = clean_text(parsed.error, 2000) or None
        message.analysed_at = now
        message.claimed_at = None
        message.claimed_by = None
        session.add(message)
        return message.state

    def _failed(self, message_id: int, exc: BaseException) -> None:
        """Record a failed attempt: retry later, or give up as unparsable."""
        with self.store.session() as session:
            message = session.get(Message, message_id)
            if message is None:
                return
            message.error = clean_text(f"{type(exc).__name__}: {exc}", 2000)
            message.claimed_at = None
            message.claimed_by = None
            if message.attempts >= self.max_attempts:
                message.state = "unparsable"
            else:
                message.state = "retry"
                message.next_attempt_at = utcnow() + timedelta(seconds=30 * 2**message.attempts)
            session.add(message)

    def run_once(self) -> int:
        """Claim one batch and analyse it; return how many messages were handled.

        The batch is written in one transaction (one fsync for all its messages). If any
        message of it fails, that transaction is rolled back and the batch is redone one
        message per transaction, so a bad message is recorded alone and never stops the
        worker.
        """
        ids = self.claim()
        if not ids:
            return 0
        try:
            # No autoflush: the batch is read and computed first and written at the
            # commit, so on SQLite the write lock (which the intake needs for its
            # commits) is held only for the final flush, not while parsing.
            with self.store.session() as session, session.no_autoflush:
                for message_id in ids:
                    self._analyse_in(session, message_id)
            return len(ids)
        except Exception:
            log.info("batch of %d failed; analysing its messages one by one", len(ids))
        for message_id in ids:
            try:
                self.analyse(message_id)
            except Exception as exc:  # one bad message never stops the worker
                log.exception("analysis of message %d failed", message_id)
                try:
                    self._failed(message_id, exc)
                except Exception:
                    log.exception("could not record the failure of message %d", message_id)
        return len(ids)

    def drain(self) -> int:
        """Analyse until nothing claimable is left (tests and the CLI)."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    # ------------------------------------------------------------------ background loop

    def wake(self, _ids: object = None) -> None:
        """Ask the loop to look for work now (called by the intake after a commit)."""
        if self._wake is not None:
            self._wake.set()

    async def run(
        self,
        stop: asyncio.Event,
        *,
        yield_to: Callable[[], bool] | None = None,
        max_defer: float = 10.0,
    ) -> None:
        """Analyse in a worker thread until ``stop`` is set; poll when idle.

        ``yield_to`` says whether ingest is busy. Analysis is CPU-bound Python and, in the
        same process, takes the interpreter lock from the SMTP sessions, so while mail
        is arriving it waits (at most ``max_defer`` seconds at a time, so it is never
        starved) and catches up when the flow pauses. Nothing is lost meanwhile: the
        messages are committed and queued.
        """
        self._wake = asyncio.Event()
        try:
            released = await asyncio.to_thread(self.release_dead_claims)
            if released:
                log.info("took over %d message(s) from dead workers", released)
        except Exception:
            log.exception("analysis worker: could not release dead claims")
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            if yield_to is not None:
                deadline = loop.time() + max_defer
                while yield_to() and loop.time() < deadline and not stop.is_set():
                    await asyncio.sleep(0.05)
                if stop.is_set():
                    break
            try:
                handled = await asyncio.to_thread(self.run_once)
            except Exception:  # e.g. the database is down: try again after a pause
                log.exception("analysis worker: claim failed")
                handled = 0
            if handled:
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=self.poll_interval, return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
            stopper.cancel()
