"""Benchmark: analysis throughput with sender authentication, next to parsing alone.

    python bench/analysis.py [--messages 2000] [--senders 50] [--workers 2]
                             [--burst 10000] [--database-url URL]

Queues messages as the SMTP intake would (rows in state ``queued``), each DKIM-signed by
one of ``--senders`` organisations whose keys, SPF and DMARC records a DNS server on
127.0.0.1 serves. Then it measures, in the same run:

* parsing alone: ``parse_message`` over every raw message (the reference);
* the full analysis: the real ``Analyzer`` draining the queue (parse, DKIM, SPF, DMARC
  through the resolver and its cache, attribution, verdict, incidents), once with a cold
  DNS cache and once more, re-queued, with a warm one;
* with ``--workers N`` (N > 1): N analysis processes sharing the database, each with its
  own resolver, draining the same messages re-queued (PostgreSQL claims with
  ``FOR UPDATE SKIP LOCKED``; on SQLite the processes take turns at the write lock);
* with ``--burst B``: B messages queued at once (the signed messages repeated), and the
  time the ``--workers`` processes take to drain them.

It prints messages per second for each, their ratios to parsing, and, given the durable
ingest rate of bench/ingest.py (``--ingest-rate``), whether analysis keeps up with it.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canary.mailbox.parse import parse_message  # noqa: E402

from canary.config import Settings  # noqa: E402
from canary.identity import IdentityRequest, create_identities  # noqa: E402
from canary.models import Delivery, Finding, Incident, Message, utcnow  # noqa: E402
from canary.pipeline import Analyzer  # noqa: E402
from canary.sources import add_source  # noqa: E402
from canary.store import Store  # noqa: E402
from canary.users import add_user  # noqa: E402
from tests.support.dns_server import (  # noqa: E402
    TestDnsServer,
    dkim_sign,
    generate_dkim_key,
    publish_dkim_key,
)

QUEUE_CHUNK = 2000  # rows per INSERT when queueing a burst


def _message(org: str, to: str, n: int) -> bytes:
    body = "".join(f"Line {i} of our weekly offers for you.\r\n" for i in range(60))
    return (
        f"From: Offers <news@{org}>\r\nTo: {to}\r\nSubject: Offer {n}\r\n"
        f"Message-ID: <{n}@{org}>\r\nList-Unsubscribe: <https://{org}/u>\r\n\r\n{body}"
    ).encode()


def _queue(store: Store, raws: list[tuple[bytes, str, str]]) -> None:
    for start in range(0, len(raws), QUEUE_CHUNK):
        chunk = raws[start : start + QUEUE_CHUNK]
        with store.session() as session:
            ids = session.scalars(
                insert(Message).returning(Message.id, sort_by_parameter_order=True),
                [
                    {"raw": raw, "size": len(raw), "peer_ip": "127.0.0.1", "helo": "mx.test",
                     "mail_from": f"bounce@{org}", "rcpt_to": [to], "state": "queued",
                     "received_at": utcnow()}
                    for raw, org, to in chunk
                ],
            ).all()  # fmt: skip
            session.execute(
                insert(Delivery),
                [
                    {"message_id": mid, "recipient": to, "recipient_key": to, "kind": "canary",
                     "received_at": utcnow()}
                    for mid, (_, _, to) in zip(ids, chunk, strict=True)
                ],
            )  # fmt: skip


def _requeue(store: Store) -> None:
    """Make every message claimable again, as if it had just arrived."""
    with store.session() as session:
        session.execute(update(Message).values(state="queued", attempts=0))
        session.execute(update(Finding).values(superseded_at=utcnow()))
        session.execute(Incident.__table__.delete())  # type: ignore[attr-defined]


def _settings(url: str, tmp: str, servers: tuple[tuple[str, int], ...]) -> Settings:
    # A generous DNS timeout: the loopback DNS server is Python, slow on a busy machine.
    return Settings(
        data_dir=Path(tmp), database_url=url, domains=("canary.test",),
        dns_servers=servers, dns_timeout=5.0,
    )  # fmt: skip


def _worker(settings: Settings, ready: object, go: object, done: object) -> None:
    """Child process: one Analyzer with its own engine and resolver, draining the queue."""
    store = Store.from_settings(settings)
    analyzer = Analyzer(store, settings, batch_size=50)
    ready.release()  # type: ignore[attr-defined]
    go.wait()  # type: ignore[attr-defined]
    done.put(analyzer.drain())  # type: ignore[attr-defined]
    store.close()


def drain_in_processes(settings: Settings, workers: int) -> tuple[int, float]:
    """Drain the queue with ``workers`` processes; return (messages, seconds).

    The clock starts once every process has imported and connected, so start-up is
    not counted.
    """
    ctx = multiprocessing.get_context("spawn")
    ready, go, done = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(settings, ready, go, done)) for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    start = time.perf_counter()
    go.set()
    total = sum(done.get() for _ in procs)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    return total, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="distinct signed messages")
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="analysis processes")
    parser.add_argument("--burst", type=int, default=0, help="queue this many, time the drain")
    parser.add_argument(
        "--ingest-rate",
        type=float,
        default=0.0,
        help="durable ingest rate measured by bench/ingest.py, to compare with",
    )
    parser.add_argument("--database-url")
    args = parser.parse_args()

    dns = TestDnsServer()
    tmp = tempfile.mkdtemp(prefix="canary-bench-")
    url = args.database_url or f"sqlite:///{tmp}/bench.db"
    settings = _settings(url, tmp, dns.servers)
    store = Store.from_settings(settings)
    store.upgrade()
    orgs = [f"sender{i}.test" for i in range(args.senders)]
    keys = {}
    for org in orgs:
        keys[org] = generate_dkim_key()
        publish_dkim_key(dns, org, "s1", keys[org])
        dns.txt(org, "v=spf1 ip4:127.0.0.0/8 -all")
        dns.txt(f"_dmarc.{org}", "v=DMARC1; p=reject")
    with store.session() as session:
        owner = add_user(session, "bench")
        source = add_source(session, owner, "Shop", ["sender0.test"])
        identities = create_identities(
            session, owner, source, IdentityRequest(count=200, domain="canary.test")
        )
    raws = []
    for n in range(args.messages):
        org = orgs[n % len(orgs)]
        to = identities[n % len(identities)].alias
        raws.append((dkim_sign(_message(org, to, n), org, "s1", keys[org]), org, to))
    _queue(store, raws)

    start = time.perf_counter()
    for raw, _, _ in raws:
        parse_message(raw)
    parse_rate = args.messages / (time.perf_counter() - start)

    analyzer = Analyzer(store, settings, batch_size=50)
    rates: list[tuple[str, float]] = []
    start = time.perf_counter()
    done = analyzer.drain()
    rates.append(("1 process, cold DNS", done / (time.perf_counter() - start)))
    _requeue(store)  # the same messages again, warm cache
    start = time.perf_counter()
    done = analyzer.drain()
    rates.append(("1 process, warm DNS", done / (time.perf_counter() - start)))
    if args.workers > 1:
        _requeue(store)
        done, seconds = drain_in_processes(settings, args.workers)
        rates.append((f"{args.workers} processes", done / seconds))
    burst = None
    if args.burst:
        with store.session() as session:  # only the burst is claimable
            session.execute(update(Message).values(state="analysed"))
        _queue(store, [raws[n % len(raws)] for n in range(args.burst)])
        done, seconds = drain_in_processes(settings, args.workers)
        with store.session() as session:
            left = dict(
                session.execute(
                    select(Message.state, func.count())
                    .where(Message.state != "analysed")
                    .group_by(Message.state)
                ).all()
            )
            errors = session.execute(
                select(Message.error, func.count())
                .where(Message.state != "analysed")
                .group_by(Message.error)
                .limit(3)
            ).all()
        burst = (done, seconds, left)
        for error, count in errors:
            print(f"not analysed ({count}): {(error or '')[:300]}")
    dns.close()

    print(f"backend:                    {store.backend}")
    print(f"messages:                   {args.messages} from {args.senders} DKIM-signing senders")
    print(f"parsing alone (reference):  {parse_rate:8.0f} msg/s")
    for label, rate in rates:
        print(f"analysis, {label + ':':<18}{rate:8.0f} msg/s  ({rate / parse_rate:.2f} of parsing)")
    if burst is not None:
        done, seconds, left = burst
        print(
            f"burst of {args.burst}: drained in {seconds:.1f} s by {args.workers} process(es) "
            f"({done / seconds:.0f} msg/s, not analysed: {left or 'none'})"
        )
    if args.ingest_rate:
        best = max(rate for _, rate in rates)
        verdict = "keeps up" if best >= args.ingest_rate else "falls behind"
        print(
            f"against durable ingest at {args.ingest_rate:.0f} msg/s: {best / args.ingest_rate:.2f}"
            f" ({verdict}; the queue grows by {max(0.0, args.ingest_rate - best):.0f} msg/s)"
        )
    print(f"DNS queries answered:       {len(dns.queries)}")


if __name__ == "__main__":
    main()
