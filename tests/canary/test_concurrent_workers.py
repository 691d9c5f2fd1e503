"""Several analysis workers on one database: incidents lose no finding and never double.

Each worker rolls its findings into the incident of (owner, source, kind) inside its
batch transaction. Two workers analysing mail for the same source at the same time
must not both read the incident, add to it and write it back (the later commit would
overwrite the other's additions), nor both open a new incident for the same kind.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from sqlmodel import Session, col, func, select

from canary.assessment import IncidentEvent
from canary.config import Settings
from canary.models import Finding, Incident, Message, User
from canary.pipeline import Analyzer
from canary.store import Store
from tests.support.dns_server import SPF_LOOPBACK, TestDnsServer
from tests.support.smtp import add_identity, add_source, message_bytes, receive

BROKERS = [f"broker{n}.test" for n in range(6)]
MESSAGES = 90  # many small batches from both workers, so their transactions overlap
BATCH = 3


async def test_two_workers_draining_one_source_keep_every_count_and_organisation(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    for broker in BROKERS:
        dns_server.txt(broker, SPF_LOOPBACK)
    mail = []
    for n in range(MESSAGES):
        broker = BROKERS[n % len(BROKERS)]
        content = message_bytes(f"offer {n}").replace(b"news@shop.test", f"deals@{broker}".encode())
        mail.append((f"b@{broker}", ["k3m9abc@canary.test"], content))
    await receive(store, settings, *mail)

    events: list[IncidentEvent] = []
    lock = threading.Lock()

    def heard(_session: Session, event: IncidentEvent) -> None:
        with lock:
            events.append(event)

    workers = [
        Analyzer(store, settings, worker_id=f"w{n}", batch_size=BATCH, on_incident=[heard])
        for n in range(2)
    ]
    start = threading.Barrier(len(workers))

    def drain(worker: Analyzer) -> int:
        start.wait()  # both begin together, so their batches interleave
        return worker.drain()

    handled = await asyncio.gather(*(asyncio.to_thread(drain, w) for w in workers))
    assert sum(handled) == MESSAGES

    with store.session() as session:
        states = Counter(session.exec(select(Message.state)).all())
        incidents = list(session.exec(select(Incident).where(Incident.source_id == shop.id)))
        findings = session.exec(
            select(func.count())
            .select_from(Finding)
            .where(
                Finding.source_id == shop.id,
                Finding.verdict == "shared",
                col(Finding.superseded_at).is_(None),
            )
        ).one()
    assert states == {"analysed": MESSAGES}
    assert findings == MESSAGES
    # One incident for (owner, source, kind), holding every finding and organisation.
    assert [(i.kind, i.owner_id) for i in incidents] == [("shared", owner.id)]
    [incident] = incidents
    assert incident.finding_count == findings
    assert incident.organisations == sorted(BROKERS)
    # The owner heard once that it opened and once per further organisation.
    assert Counter(e.event for e in events) == {"opened": 1, "grew": len(BROKERS) - 1}
    assert {e.incident_id for e in events} == {incident.id}
