"""Benchmark: analysis throughput with sender authentication, next to parsing alone.

    python bench/analysis.py [--messages 2000] [--senders 50] [--database-url URL]

Queues messages as the SMTP intake would (rows in state ``queued``), each DKIM-signed by
one of ``--senders`` organisations whose keys, SPF and DMARC records a DNS server on
127.0.0.1 serves. Then it measures, in the same run:

* parsing alone: ``parse_message`` over every raw message;
* the full analysis: the real ``Analyzer`` draining the queue (parse, DKIM, SPF, DMARC
  through the resolver and its cache, attribution, verdict, incidents), once with a cold
  DNS cache and once more, re-queued, with a warm one.

It prints messages per second for each and their ratios; it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, update

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


def _message(org: str, to: str, n: int) -> bytes:
    body = "".join(f"Line {i} of our weekly offers for you.\r\n" for i in range(60))
    return (
        f"From: Offers <news@{org}>\r\nTo: {to}\r\nSubject: Offer {n}\r\n"
        f"Message-ID: <{n}@{org}>\r\nList-Unsubscribe: <https://{org}/u>\r\n\r\n{body}"
    ).encode()


def _queue(store: Store, raws: list[tuple[bytes, str, str]]) -> None:
    with store.session() as session:
        ids = session.scalars(
            insert(Message).returning(Message.id),
            [
                {"raw": raw, "size": len(raw), "peer_ip": "127.0.0.1", "helo": "mx.test",
                 "mail_from": f"bounce@{org}", "rcpt_to": [to], "state": "queued",
                 "received_at": utcnow()}
                for raw, org, to in raws
            ],
        ).all()  # fmt: skip
        session.execute(
            insert(Delivery),
            [
                {"message_id": mid, "recipient": to, "recipient_key": to, "kind": "canary",
                 "received_at": utcnow()}
                for mid, (_, _, to) in zip(ids, raws, strict=True)
            ],
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    dns = TestDnsServer()
    tmp = tempfile.mkdtemp(prefix="canary-bench-")
    url = args.database_url or f"sqlite:///{tmp}/bench.db"
    settings = Settings(
        data_dir=Path(tmp), database_url=url, domains=("canary.test",),
        dns_servers=dns.servers, dns_timeout=2.0,
    )  # fmt: skip
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
    start = time.perf_counter()
    done = analyzer.drain()
    cold_rate = done / (time.perf_counter() - start)

    with store.session() as session:  # analyse the same messages again, warm cache
        session.execute(update(Message).values(state="queued", attempts=0))
        session.execute(update(Finding).values(superseded_at=utcnow()))
        session.execute(Incident.__table__.delete())  # type: ignore[attr-defined]
    start = time.perf_counter()
    done = analyzer.drain()
    warm_rate = done / (time.perf_counter() - start)
    dns.close()

    print(f"backend:                    {store.backend}")
    print(f"messages:                   {args.messages} from {args.senders} DKIM-signing senders")
    print(f"parsing alone:              {parse_rate:8.0f} msg/s")
    for label, rate in (("cold", cold_rate), ("warm", warm_rate)):
        ratio = rate / parse_rate
        print(f"full analysis, {label} DNS:    {rate:8.0f} msg/s  ({ratio:.2f} of parsing)")
    print(f"DNS queries answered:       {len(dns.queries)}")


if __name__ == "__main__":
    main()
