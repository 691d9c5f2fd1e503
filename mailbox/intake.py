"""Durable raw-message intake with group commit.

An SMTP session may answer ``250`` only once the message is committed (RFC 5321
section 6.1). Committing each message on its own would make every concurrent session
wait for its own fsync, one after the other. Instead each DATA handler hands its
message to :class:`Intake` and awaits a future; one writer task takes *everything*
waiting at that moment, writes it in one transaction (executemany inserts of the
``message`` and ``delivery`` rows) and resolves all the futures after the single
commit. While one batch is being written the next one gathers, so the batch size grows
with the load by itself and no timer is needed.

The blocking database work runs in a worker thread so the event loop keeps serving
the SMTP sessions. Any database error fails every future of the batch; the SMTP layer
turns that into ``451 4.3.0`` and the sender retries later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from canary.alias import normalise_address
from canary.models import Delivery, Message, utcnow

log = logging.getLogger(__name__)

# Local parts every canary domain accepts for people, not for canaries (RFC 5321
# section 4.5.1 requires postmaster; RFC 2142 names abuse; bounces is the envelope
# sender of forwarded mail and alerts, where delivery reports come back). Kept apart
# as kind "role": they are never an identity and get no finding.
ROLE_MAILBOXES = frozenset({"postmaster", "abuse", "bounces"})

# A batch stops growing at this many messages or bytes, which bounds the size of one
# transaction (and the memory held while it is written).
MAX_BATCH = 256
MAX_BATCH_BYTES = 64 * 1024 * 1024


def clean_text(value: str | None, limit: int = 4096) -> str:
    """Envelope text made storable: valid UTF-8, no NUL, bounded length.

    aiosmtpd decodes command arguments with ``surrogateescape`` (8-bit bytes survive as
    lone surrogates), which neither SQLite nor PostgreSQL can store, and PostgreSQL
    refuses NUL in text. The raw bytes of the message itself are stored untouched.
    """
    if not value:
        return ""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\x00", "\ufffd")[:limit]


def delivery_kind(recipient: str) -> str:
    """``role`` for postmaster@/abuse@, otherwise ``canary`` until attribution decides."""
    key = normalise_address(recipient)
    # A bare <Postmaster> (no domain, RFC 5321 section 4.1.1.3) is its own local part.
    local = key.rpartition("@")[0] or key
    return "role" if local in ROLE_MAILBOXES else "canary"


@dataclass(frozen=True)
class IncomingMessage:
    """One SMTP transaction as received: the envelope and the raw bytes, byte-exact."""

    raw: bytes
    mail_from: str
    rcpt_tos: Sequence[str]
    peer_ip: str = ""
    helo: str = ""
    tls: bool = False
    received_at: datetime = field(default_factory=utcnow)


def write_batch(engine: Engine, batch: Sequence[IncomingMessage]) -> list[int]:
    """Insert messages and one delivery per recipient in one transaction; return ids.

    One commit for the whole batch: on SQLite in WAL mode with ``synchronous=FULL``
    that is one fsync of the log, on PostgreSQL one WAL flush.
    """
    message_table = Message.__table__  # type: ignore[attr-defined]
    delivery_table = Delivery.__table__  # type: ignore[attr-defined]
    message_rows = [
        {
            "received_at": m.received_at,
            "peer_ip": clean_text(m.peer_ip, 64),
            "helo": clean_text(m.helo),
            "mail_from": clean_text(m.mail_from),
            "rcpt_to": [clean_text(r, 320) for r in m.rcpt_tos],
            "tls": m.tls,
            "size": len(m.raw),
            "raw": m.raw,
            "state": "queued",
            "attempts": 0,
        }
        for m in batch
    ]
    with engine.begin() as conn:
        if len(message_rows) == 1:
            result = conn.execute(insert(message_table).returning(message_table.c.id), message_rows)
            ids = [result.scalar_one()]
        else:
            # insertmanyvalues: one multi-row INSERT ... RETURNING, ids in parameter order.
            result = conn.execute(
                insert(message_table).returning(message_table.c.id, sort_by_parameter_order=True),
                message_rows,
            )
            ids = [row[0] for row in result]
        delivery_rows = []
        for message_id, m in zip(ids, batch, strict=True):
            # One delivery per recipient key: a sender naming the same mailbox twice
            # (repeated RCPT, other case, another +tag) delivers one copy, and the
            # identity's verdict is not counted twice.
            seen: set[str] = set()
            for recipient in (clean_text(r, 320) for r in m.rcpt_tos):
                key = normalise_address(recipient)[:320]
                if key in seen:
                    continue
                seen.add(key)
                delivery_rows.append(
                    {
                        "message_id": message_id,
                        "recipient": recipient,
                        "recipient_key": key,
                        "kind": delivery_kind(recipient),
                        "received_at": m.received_at,
                    }
                )
        if delivery_rows:
            conn.execute(insert(delivery_table), delivery_rows)
    return ids


_Item = tuple[IncomingMessage, "asyncio.Future[int]"]


class Intake:
    """Accepts messages from SMTP sessions and commits them in shared transactions."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[list[int]], None] | None = None,
        writers: int | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        # Batches written at the same time. One is right for SQLite (a single writer)
        # and measured best for PostgreSQL on a small machine too (bench/ingest.py:
        # three writers made smaller batches, more commits and GIL contention).
        self.writers = writers or 1
        # Called on the event loop after each commit (the analysis worker's wake-up).
        self.on_commit = on_commit
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.committed = 0
        self._last_submit = float("-inf")

    def busy(self, within: float = 0.25) -> bool:
        """True when a message was submitted in the last ``within`` seconds."""
        return asyncio.get_running_loop().time() - self._last_submit < within

    async def start(self) -> None:
        """Start the writer tasks on the running loop."""
        if self._tasks:
            return
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._writer(), name=f"intake-{i}") for i in range(self.writers)
        ]

    async def stop(self) -> None:
        """Write what is already queued, then stop the writer tasks."""
        if not self._tasks or self._queue is None:
            return
        for _ in self._tasks:  # one stop mark per writer, behind everything queued
            await self._queue.put(None)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def submit(self, message: IncomingMessage) -> int:
        """Queue ``message`` and wait until it is committed; return its id.

        Raises whatever the database raised when the commit failed (the caller replies
        451), or RuntimeError when the intake is not running.
        """
        if self._queue is None or not any(not t.done() for t in self._tasks):
            raise RuntimeError("intake is not running")
        loop = asyncio.get_running_loop()
        self._last_submit = loop.time()
        future: asyncio.Future[int] = loop.create_future()
        await self._queue.put((message, future))
        return await future

    async def _writer(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                break
            batch: list[_Item] = [first]
            size = len(first[0].raw)
            # Everything that arrived while the previous batch was being written.
            while len(batch) < self.max_batch and size < MAX_BATCH_BYTES and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += len(item[0].raw)
            # A session whose client vanished no longer waits for its reply, but the
            # message was received completely, so it is still written.
            await self._commit(batch)

    async def _commit(self, batch: list[_Item]) -> None:
        """Write one batch and resolve its futures (a DB error fails them: 451)."""
        messages = [m for m, _ in batch]
        try:
            ids = await asyncio.to_thread(write_batch, self.engine, messages)
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, OperationalError):
                # Not an outage but something about one message: write them one by
                # one so that only the offending sender is asked to retry.
                log.warning("intake: batch of %d failed (%s); writing singly", len(batch), exc)
                for item in batch:
                    await self._commit([item])
                return
            log.warning("intake: could not commit %d message(s): %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.committed += len(ids)
        for (_, future), message_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(message_id)
        if self.on_commit is not None:
            try:
                self.on_commit(ids)
            except Exception:  # a wake-up hook must never stop the intake
                log.exception("intake: on_commit hook failed")
