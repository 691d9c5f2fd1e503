"""The analysis worker: claims queued messages, authenticates, attributes, records findings.

Nothing here runs before the SMTP ``250``: the session only stores the raw bytes, and
this worker picks them up afterwards. Claiming is one statement per batch:

* PostgreSQL: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``, so several
  processes sharing one database never take the same message and never wait on each
  other's rows;
* SQLite: the same ``UPDATE ... RETURNING`` without the lock clause; SQLite runs one
  writer at a time, which makes the claim atomic.

Each batch is parsed and authenticated (DKIM, SPF, DMARC through the configured
resolver) before any transaction opens; then, in one transaction, every delivery is
attributed, its facts are stored, and the verdict engine's finding and the incident
roll-up are recorded (:mod:`canary.assessment`). When DNS failed temporarily the
findings are provisional and the message is analysed again later, at most
``max_dns_attempts`` times.

A claim older than ``claim_timeout`` (its worker died) is claimable again. A message
whose analysis raises is retried with a growing delay and, after ``max_attempts``,
marked ``unparsable`` with the error: it stays in the database, raw, and is shown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from canary.mailbox.intake import clean_text
from canary.mailbox.parse import ParsedMessage, parse_message
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import defer
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from canary import metrics
from canary.alerts import alert_on_incident
from canary.analysis_batch import BatchLookups
from canary.assessment import (
    IncidentEvent,
    auth_to_json,
    build_facts,
    delivery_facts_json,
    record_draft,
    roll_into_incident,
)
from canary.attribution import RecipientMatch, find_tagged, from_organisation, match_recipient
from canary.auth import AuthResult, authenticate
from canary.campaigns import content_fingerprint
from canary.catchall import issue_on_first_use, trust_first_sender
from canary.config import Settings
from canary.dns import Resolver
from canary.forwarding import queue_forward
from canary.models import Delivery, Message, Source, as_utc, utcnow
from canary.name_index import TaggedKeyIndex
from canary.signals import Attachment
from canary.signals import analyse as analyse_signals
from canary.store import Store
from canary.verdicts import AuthFacts, FindingDraft, evaluate

log = logging.getLogger(__name__)

CLAIMABLE = ("queued", "retry")
T = TypeVar("T")
IncidentHook = Callable[[Session, IncidentEvent], None]
"""Called inside the analysis transaction when an incident opens, grows or re-opens."""


def default_worker_id() -> str:
    """host:pid, so a claim names the process that holds it."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


@dataclass(frozen=True)
class Prepared:
    """One claimed message, parsed and authenticated outside any transaction."""

    message_id: int
    parsed: ParsedMessage
    auth: AuthResult | None
    auth_error: str | None = None


def _run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, on any thread.

    The worker usually runs in a thread of its own and gets a fresh event loop; called
    from a thread whose loop is running (an async test, say), it uses a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def assess_delivery(
    session: Session,
    message: Message,
    delivery: Delivery,
    parsed: ParsedMessage,
    auth: AuthFacts,
    domains: tuple[str, ...],
    catchall_daily_limit: int = 0,
    lookups: BatchLookups | None = None,
) -> tuple[FindingDraft | None, IncidentEvent | None]:
    """Attribute one delivery, keep its facts, and record the engine's verdict.

    Sets the delivery's identity, source and owner; role mailboxes (postmaster, abuse)
    are kept apart and get no finding. A first message to a catch-all subdomain issues
    its identity (:mod:`canary.catchall`). ``lookups`` are the stored facts of the
    delivery's batch, read once for all of it (:mod:`canary.analysis_batch`).
    """
    known = lookups.identities if lookups is not None else None
    sources = lookups.sources if lookups is not None else None
    match = match_recipient(session, delivery.recipient, known, sources)
    if match.kind == "unattributed" and catchall_daily_limit:
        first = issue_on_first_use(
            session, delivery.recipient, catchall_daily_limit, as_utc(delivery.received_at)
        )
        if first is not None:
            match = RecipientMatch("canary", first.identity, first.source)
            if lookups is not None:
                lookups.issued(first.identity, first.source)
    delivery.kind = match.kind
    if match.kind == "role":
        session.add(delivery)
        return None, None
    identity, source = match.identity, match.source
    cross: list[str] = []
    if identity is not None and source is not None:
        delivery.identity_id, delivery.source_id, delivery.owner_id = (
            identity.id,
            source.id,
            identity.owner_id,
        )
        trusted = trust_first_sender(session, identity, source, delivery.id, auth.sender_org)
        if trusted and lookups is not None and source.id is not None and auth.sender_org:
            lookups.authorise(source.id, auth.sender_org)
        index = lookups.index if lookups is not None else None
        others = {
            hit.source_id
            for hit in find_tagged(
                session, parsed, domains, owner_id=identity.owner_id, index=index, known=known
            )
            if hit.source_id != source.id
        }
        for other_id in sorted(others):
            other = session.get(Source, other_id)
            cross.append(other.name if other else str(other_id))
    signals = analyse_signals(
        parsed.headers,
        parsed.text,
        parsed.html,
        [Attachment(a.filename or "", a.content_type) for a in parsed.attachments],
        delivery.recipient_key,
        auth.sender_org,
    )
    delivery.facts = delivery_facts_json(signals, cross)
    facts = build_facts(session, delivery, message, identity, source, lookups)
    draft = evaluate(facts)
    finding = record_draft(session, delivery, draft, lookups=lookups)
    event = (
        roll_into_incident(session, delivery, draft, lookups=lookups)
        if finding is not None
        else None
    )
    if finding is not None:
        metrics.inc("verdicts_total", verdict=draft.verdict)
        if delivery.owner_id is not None:
            queue_forward(session, delivery, draft.verdict, draft.sender_org, lookups)
    return draft, event


def _fingerprint(parsed: ParsedMessage, recipients: list[str]) -> str:
    personal = [*recipients, *(name for name, _ in parsed.to if name)]
    return content_fingerprint(parsed.subject or "", parsed.text, personal)


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
        resolver: Resolver | None = None,
        max_dns_attempts: int = 5,
        dns_retry_delay: float = 60.0,
        on_incident: Sequence[IncidentHook] = (),
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.batch_size = batch_size
        self.claim_timeout = claim_timeout
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        # One resolver for the worker's life: its cache is what keeps DNS cheap.
        self.resolver = resolver or Resolver.from_settings(settings)
        self.max_dns_attempts = max_dns_attempts
        self.dns_retry_delay = dns_retry_delay
        self.on_incident: list[IncidentHook] = list(on_incident)
        self._wake: asyncio.Event | None = None
        # Kept for the worker's life and refreshed per batch: most messages name no
        # identity, and this tells so without asking the database.
        self.names = TaggedKeyIndex()

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

    def prepare(self, ids: list[int]) -> list[Prepared]:
        """Parse and authenticate claimed messages; no transaction is held meanwhile.

        Authentication of the whole batch runs concurrently, so DNS latency is paid once
        per batch rather than once per message.
        """
        with self.store.session() as session:
            rows = session.exec(
                sm_select(
                    Message.id, Message.raw, Message.peer_ip, Message.helo, Message.mail_from
                ).where(col(Message.id).in_(ids))
            ).all()
        parsed = {row[0]: parse_message(row[1]) for row in rows}

        async def authenticate_all() -> list[AuthResult | BaseException]:
            return await asyncio.gather(
                *(
                    authenticate(raw, peer_ip, helo, mail_from, self.resolver)
                    for _, raw, peer_ip, helo, mail_from in rows
                ),
                return_exceptions=True,
            )

        results = _run_coroutine(authenticate_all) if rows else []
        prepared = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("authentication of message %d failed: %r", row[0], result)
                prepared.append(Prepared(row[0], parsed[row[0]], None, repr(result)))
            else:
                prepared.append(Prepared(row[0], parsed[row[0]], result))
        return prepared

    def analyse(self, message_id: int) -> str:
        """Analyse one claimed message in its own transaction; return its new state."""
        (prepared,) = self.prepare([message_id]) or [None]
        if prepared is None:
            return "missing"
        with self.store.session() as session:
            messages, deliveries = self._load_batch(session, [message_id])
            lookups = BatchLookups.load(session, deliveries[message_id], self.names)
            loaded = (messages.get(message_id), deliveries[message_id])
            return self._analyse_in(session, prepared, loaded, lookups)

    def _load_batch(
        self, session: Session, ids: list[int]
    ) -> tuple[dict[int, Message], dict[int, list[Delivery]]]:
        """Load the batch's messages (without their raw bytes) and deliveries at once.

        Two statements per batch instead of two per message.
        """
        messages = {
            m.id: m
            for m in session.exec(
                sm_select(Message).where(col(Message.id).in_(ids)).options(defer(Message.raw))  # type: ignore[arg-type]
            )
        }
        by_message: dict[int, list[Delivery]] = {i: [] for i in ids}
        for delivery in session.exec(
            sm_select(Delivery).where(col(Delivery.message_id).in_(ids)).order_by(Delivery.id)
        ):
            by_message[delivery.message_id].append(delivery)
        return messages, by_message  # type: ignore[return-value]

    def _analyse_in(
        self,
        session: Session,
        prepared: Prepared,
        loaded: tuple[Message | None, list[Delivery]] | None = None,
        lookups: BatchLookups | None = None,
    ) -> str:
        """Attribute, judge and record one prepared message inside the caller's transaction.

        ``loaded`` is the message and its deliveries when the caller loaded them already;
        ``lookups`` the stored facts of its batch (read here when not given).
        """
        message, deliveries = loaded or (session.get(Message, prepared.message_id), None)
        if message is None:
            return "missing"
        parsed = prepared.parsed
        auth = (
            AuthFacts.from_result(prepared.auth)
            if prepared.auth
            else AuthFacts(temporary_error=True)
        )
        message.auth = auth_to_json(auth)
        if deliveries is None:
            deliveries = list(
                session.exec(
                    sm_select(Delivery)
                    .where(Delivery.message_id == message.id)
                    .order_by(Delivery.id)
                )
            )
        message.fingerprint = _fingerprint(parsed, [d.recipient_key for d in deliveries])
        if lookups is None:
            lookups = BatchLookups.load(session, deliveries, self.names)
        now = utcnow()
        for delivery in deliveries:
            _, event = assess_delivery(
                session,
                message,
                delivery,
                parsed,
                auth,
                self.settings.domains,
                self.settings.catchall_daily_limit,
                lookups,
            )
            if event is not None:
                alert_on_incident(session, event)
                for hook in self.on_incident:
                    hook(session, event)
        message.header_message_id = parsed.message_id[:998] if parsed.message_id else None
        message.subject = parsed.subject
        message.from_address = parsed.from_address
        message.sender_org = auth.sender_org or from_organisation(parsed)
        message.error = clean_text(parsed.error, 2000) or None
        message.claimed_at = None
        message.claimed_by = None
        message.analysed_at = now
        if auth.temporary_error and message.attempts < self.max_dns_attempts:
            # The verdict above is provisional: DNS could not answer. Decide again
            # later; the findings are superseded only if the answer changes them.
            message.state = "retry"
            message.next_attempt_at = now + timedelta(
                seconds=self.dns_retry_delay * 2 ** (message.attempts - 1)
            )
            message.error = clean_text(
                "DNS temporarily failed: "
                + "; ".join(prepared.auth.errors if prepared.auth else [prepared.auth_error or ""]),
                2000,
            )
        else:
            message.state = "analysed" if parsed.parsed else "unparsable"
        session.add(message)
        metrics.inc("messages_analysed_total", state=message.state)
        received = as_utc(message.received_at)
        metrics.observe("analysis_seconds", max(0.0, (now - received).total_seconds()))
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
            prepared = self.prepare(ids)
            with self.store.session() as session:
                messages, deliveries = self._load_batch(session, [p.message_id for p in prepared])
                every = [d for p in prepared for d in deliveries[p.message_id]]
                lookups = BatchLookups.load(session, every, self.names)
                for item in prepared:
                    loaded = (messages.get(item.message_id), deliveries[item.message_id])
                    self._analyse_in(session, item, loaded, lookups)
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
