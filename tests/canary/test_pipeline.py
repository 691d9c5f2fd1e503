"""The analysis worker: claims, first verdicts, restarts, stuck claims, bad messages."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import select

from canary.config import Settings
from canary.models import Delivery, Finding, Incident, Message, Source, User, utcnow
from canary.pipeline import Analyzer
from canary.store import Store
from canary.users import add_user
from tests.support.dns_server import (
    SPF_LOOPBACK,
    TestDnsServer,
    dkim_sign,
    generate_dkim_key,
    publish_dkim_key,
)
from tests.support.smtp import (
    add_identity,
    add_source,
    message_bytes,
    receive,
)


async def _receive(
    store: Store,
    settings: Settings,
    *messages: tuple[list[str], bytes],
    mail_from: str = "b@mailer.test",
) -> None:
    """Every message from one envelope sender, acknowledged with 250."""
    await receive(store, settings, *((mail_from, rcpts, content) for rcpts, content in messages))


async def _offer_from_broker(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> Source:
    """Shop's identity receives an offer from brokerx.test, which passes SPF."""
    dns_server.txt("brokerx.test", SPF_LOOPBACK)
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    content = message_bytes("offer").replace(b"news@shop.test", b"deals@brokerx.test")
    await _receive(store, settings, (["k3m9abc@canary.test"], content), mail_from="b@brokerx.test")
    return shop


def _deliveries(store: Store) -> list[Delivery]:
    with store.session() as session:
        return list(session.exec(select(Delivery).order_by(Delivery.id)))


def _findings(store: Store) -> list[Finding]:
    with store.session() as session:
        return list(session.exec(select(Finding).order_by(Finding.id)))


async def test_messages_queued_before_a_restart_are_analysed(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    dns_server.txt("shop.test", SPF_LOOPBACK)
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    await _receive(
        store,
        settings,
        (["K3M9ABC+news@canary.test"], message_bytes("welcome")),
        (["nobody@canary.test", "postmaster@canary.test"], message_bytes("guess")),
        mail_from="bounce@shop.test",
    )
    # A new worker (as after a restart) finds both messages still queued.
    with store.session() as session:
        assert {m.state for m in session.exec(select(Message))} == {"queued"}
    analyzer = Analyzer(store, settings, worker_id="second-process")
    assert analyzer.drain() == 2
    with store.session() as session:
        messages = list(session.exec(select(Message).order_by(Message.id)))
    assert [m.state for m in messages] == ["analysed", "analysed"]
    assert messages[0].subject == "welcome" and messages[0].sender_org == "shop.test"
    canary, unknown, role = _deliveries(store)
    assert canary.identity_id is not None and canary.source_id == shop.id
    assert canary.owner_id == owner.id and canary.verdict == "expected"
    assert unknown.kind == "unattributed" and unknown.verdict == "unattributed"
    assert unknown.owner_id is None
    assert role.kind == "role" and role.verdict is None
    verdicts = [f.verdict for f in _findings(store)]
    assert verdicts == ["expected", "unattributed"]  # role mail gets no finding
    assert analyzer.drain() == 0


async def test_an_authenticated_third_party_is_shared_and_opens_an_incident(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    shop = await _offer_from_broker(store, settings, owner, dns_server)
    Analyzer(store, settings).drain()
    [delivery] = _deliveries(store)
    assert delivery.source_id == shop.id and delivery.verdict == "shared"
    [finding] = _findings(store)
    assert finding.sender_org == "brokerx.test"
    assert finding.sentence.startswith("Sent by brokerx.test (SPF pass), which was never given")
    with store.session() as session:
        [incident] = session.exec(select(Incident)).all()
    assert (incident.kind, incident.organisations) == ("shared", ["brokerx.test"])


async def test_dns_failure_is_retried_then_decided(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    await _offer_from_broker(store, settings, owner, dns_server)
    dns_server.mode = "silent"
    fast = settings.replace(dns_timeout=0.3)
    analyzer = Analyzer(store, fast, dns_retry_delay=0.0)
    assert analyzer.run_once() == 1
    with store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.state == "retry" and "DNS temporarily failed" in (message.error or "")
    dns_server.mode = "normal"
    Analyzer(store, settings, dns_retry_delay=0.0).drain()
    with store.session() as session:
        [message] = session.exec(select(Message)).all()
    assert message.state == "analysed"
    assert _deliveries(store)[0].verdict == "shared"
    # The provisional finding was superseded by the decided one.
    assert [f.superseded_at is None for f in _findings(store)][-1]


async def test_retired_identity_and_cross_source_names(
    store: Store, settings: Settings, owner: User
) -> None:
    shop = add_source(store, owner, "Shop", ["shop.test"])
    club = add_source(store, owner, "Club", ["club.test"])
    add_identity(store, owner, shop, "aaa111", "Marc Q Kollier")
    add_identity(store, owner, club, "bbb222", "Ilse Vandermeer")
    add_identity(store, owner, shop, "ccc333", "Old Name", retired_at=utcnow() - timedelta(days=10))
    merged = (
        b"From: Shop <news@shop.test>\r\nTo: Ilse Vandermeer <aaa111@canary.test>\r\n"
        b"Subject: hello\r\n\r\nDear Ilse Vandermeer,\r\n\r\nour offers.\r\n"
    )
    await _receive(
        store,
        settings,
        (["aaa111@canary.test"], merged),
        (["ccc333@canary.test"], message_bytes("still here")),
    )
    Analyzer(store, settings).drain()
    merged_delivery, retired_delivery = _deliveries(store)
    assert merged_delivery.verdict == "cross_source"
    assert retired_delivery.verdict == "after_retirement"
    finding = _findings(store)[0]
    codes = {e["code"] for e in finding.evidence}
    assert "cross_source_identity" in codes and "Club" in finding.sentence


async def test_a_batch_attributes_each_recipient_to_its_own_owner(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    dns_server.txt("shop.test", SPF_LOOPBACK)
    with store.session() as session:
        bob = add_user(session, "bob", password="another horse")
    alice_shop = add_source(store, owner, "Shop", ["shop.test"])
    bob_shop = add_source(store, bob, "Shop", ["shop.test"])
    bob_club = add_source(store, bob, "Club", ["club.test"])
    alice_id = add_identity(store, owner, alice_shop, "aaa111", "Marc Q Kollier")
    bob_id = add_identity(store, bob, bob_shop, "bbb222", "Ilse Vandermeer")
    add_identity(store, bob, bob_club, "ccc333", "Marc Q Kollier")
    # Bob's club has a name like Alice's identity: names are unique per owner only, so
    # naming Marc Q Kollier to Alice says nothing about Bob's lists.
    greeting = b"Subject: hi\r\n\r\nDear Marc Q Kollier,\r\n\r\nour offers.\r\n"
    to_both = b"From: Shop <news@shop.test>\r\nTo: aaa111@canary.test\r\n" + greeting
    await _receive(
        store,
        settings,
        (["aaa111@canary.test", "BBB222@canary.test", "nobody@canary.test"], to_both),
        (["bbb222@canary.test"], message_bytes("offer")),
        mail_from="bounce@shop.test",
    )
    assert Analyzer(store, settings).run_once() == 2  # one batch
    alice_delivery, bob_named, unknown, bob_plain = _deliveries(store)
    assert (alice_delivery.identity_id, alice_delivery.source_id, alice_delivery.owner_id) == (
        alice_id.id,
        alice_shop.id,
        owner.id,
    )
    assert alice_delivery.verdict == "expected"
    assert alice_delivery.facts is not None and alice_delivery.facts["cross_sources"] == []
    # To Bob, the same message names his club's identity: his lists were merged.
    assert (bob_named.identity_id, bob_named.owner_id) == (bob_id.id, bob.id)
    assert bob_named.verdict == "cross_source"
    assert bob_named.facts is not None and bob_named.facts["cross_sources"] == ["Club"]
    assert unknown.owner_id is None and unknown.verdict == "unattributed"
    assert (bob_plain.source_id, bob_plain.verdict) == (bob_shop.id, "expected")
    with store.session() as session:
        incidents = session.exec(select(Incident)).all()
    assert [(i.owner_id, i.source_id, i.kind) for i in incidents] == [
        (bob.id, bob_shop.id, "cross_source")
    ]


async def test_an_identity_issued_after_the_worker_started_is_attributed_and_found(
    store: Store, settings: Settings, owner: User
) -> None:
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "aaa111", "Marc Q Kollier")
    await _receive(store, settings, (["aaa111@canary.test"], message_bytes("welcome")))
    analyzer = Analyzer(store, settings)
    assert analyzer.drain() == 1

    # The dashboard (another process) issues a club identity while the worker runs.
    club = add_source(store, owner, "Club", ["club.test"])
    add_identity(store, owner, club, "bbb222", "Ilse Vandermeer")
    merged = (
        b"From: Shop <news@shop.test>\r\nTo: aaa111@canary.test\r\n"
        b"Subject: hello\r\n\r\nDear Ilse Vandermeer,\r\n\r\nour offers.\r\n"
    )
    await _receive(
        store,
        settings,
        (["aaa111@canary.test"], merged),
        (["bbb222@canary.test"], message_bytes("club news")),
    )
    assert analyzer.drain() == 2
    _, merged_delivery, club_delivery = _deliveries(store)
    assert merged_delivery.verdict == "cross_source"
    assert club_delivery.source_id == club.id and club_delivery.kind == "canary"


async def test_stuck_claims_become_claimable_and_claims_are_exclusive(
    store: Store, settings: Settings
) -> None:
    await _receive(store, settings, (["a@canary.test"], b"1"), (["b@canary.test"], b"2"))
    first = Analyzer(store, settings, worker_id="w1", batch_size=1)
    second = Analyzer(store, settings, worker_id="w2", batch_size=5, claim_timeout=60)
    taken = first.claim()
    rest = second.claim()
    assert len(taken) == 1 and len(rest) == 1 and set(taken).isdisjoint(rest)
    assert second.claim() == []  # both are held
    # w1 died: its claim is older than the timeout, so another worker takes it over.
    with store.session() as session:
        message = session.get(Message, taken[0])
        assert message is not None and message.state == "analysing"
        message.claimed_at = utcnow() - timedelta(seconds=3600)
        session.add(message)
    assert second.claim() == taken
    assert second.analyse(taken[0]) == "analysed"


async def test_unreadable_message_is_kept_and_marked(store: Store, settings: Settings) -> None:
    garbage = bytes(range(256)) * 4 + b"\r\n"
    await _receive(store, settings, (["a@canary.test"], garbage))
    Analyzer(store, settings).drain()
    with store.session() as session:
        [message] = list(session.exec(select(Message)))
    assert message.state in ("analysed", "unparsable")
    assert message.raw.startswith(bytes(range(10)))
    [delivery] = _deliveries(store)
    assert delivery.verdict == "unattributed"


async def test_worker_loop_runs_in_the_background(store: Store, settings: Settings) -> None:
    analyzer = Analyzer(store, settings, poll_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(analyzer.run(stop))
    await _receive(store, settings, (["a@canary.test"], message_bytes("bg")))
    for _ in range(400):
        with store.session() as session:
            states = {m.state for m in session.exec(select(Message))}
        if states == {"analysed"}:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert states == {"analysed"}


async def test_claims_of_dead_processes_on_this_host_are_released(
    store: Store, settings: Settings
) -> None:
    import socket
    import subprocess
    import sys

    await _receive(store, settings, (["a@canary.test"], b"1"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = Analyzer(store, settings, worker_id=f"{socket.gethostname()}:{dead.pid}")
    assert len(crashed.claim()) == 1
    alive = Analyzer(store, settings)  # this process: its own pid is alive
    assert alive.claim() == []
    assert alive.release_dead_claims() == 1
    assert alive.drain() == 1


async def test_postgres_claims_skip_rows_locked_by_another_process(
    store: Store, settings: Settings
) -> None:
    """FOR UPDATE SKIP LOCKED: a row another worker holds is skipped, not waited for."""
    import pytest
    from sqlalchemy import text

    if store.backend != "postgresql":
        pytest.skip("row locks are a PostgreSQL feature; SQLite claims under its write lock")
    await _receive(store, settings, (["a@canary.test"], b"1"), (["b@canary.test"], b"2"))
    with store.engine.connect() as other:
        other.begin()
        locked = other.execute(
            text("SELECT id FROM message ORDER BY id LIMIT 1 FOR UPDATE")
        ).scalar_one()
        claimed = Analyzer(store, settings, worker_id="w2").claim()
        assert locked not in claimed and len(claimed) == 1
        other.rollback()
    assert Analyzer(store, settings, worker_id="w3").claim() == [locked]


async def test_a_crashing_analysis_is_retried_then_marked(
    store: Store, settings: Settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import canary.pipeline

    def explode(raw: bytes) -> None:
        raise RuntimeError("parser bug")

    await _receive(store, settings, (["a@canary.test"], b"1"), (["b@canary.test"], b"2"))
    monkeypatch.setattr(canary.pipeline, "parse_message", explode)
    analyzer = Analyzer(store, settings, max_attempts=2)
    assert analyzer.run_once() == 2  # the worker survives both failures
    with store.session() as session:
        messages = list(session.exec(select(Message).order_by(Message.id)))
        assert [m.state for m in messages] == ["retry", "retry"]
        assert messages[0].error == "RuntimeError: parser bug"
        for m in messages:  # due again now
            m.next_attempt_at = utcnow() - timedelta(seconds=1)
            session.add(m)
    assert analyzer.run_once() == 2
    with store.session() as session:
        messages = list(session.exec(select(Message).order_by(Message.id)))
    assert [m.state for m in messages] == ["unparsable", "unparsable"]
    assert messages[0].raw == b"1\r\n"  # kept raw


async def test_worker_yielding_to_ingest_is_never_starved(store: Store, settings: Settings) -> None:
    await _receive(store, settings, (["a@canary.test"], b"1"))
    analyzer = Analyzer(store, settings, poll_interval=0.05)
    stop = asyncio.Event()
    # Ingest "always busy": the worker still analyses after each max_defer.
    task = asyncio.create_task(analyzer.run(stop, yield_to=lambda: True, max_defer=0.2))
    for _ in range(400):
        with store.session() as session:
            states = {m.state for m in session.exec(select(Message))}
        if states == {"analysed"}:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert states == {"analysed"}


async def test_provider_mail_for_the_brand_is_expected_and_a_spoof_is_a_breach(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    """Real DKIM signatures over real SMTP: an email provider signing for the shop, and a
    forger claiming the shop's domain, which publishes DMARC p=reject."""
    key = generate_dkim_key()
    publish_dkim_key(dns_server, "shop.test", "esp1", key)
    dns_server.txt("_dmarc.shop.test", "v=DMARC1; p=reject")
    dns_server.txt("sendgrid.test", SPF_LOOPBACK)  # the provider's bounce domain
    shop = add_source(store, owner, "Shop", ["shop.test"])
    add_identity(store, owner, shop, "k3m9abc", "Marc Q Kollier")
    signed = dkim_sign(message_bytes("newsletter"), "shop.test", "esp1", key)
    await _receive(store, settings, (["k3m9abc@canary.test"], signed), mail_from="b@sendgrid.test")
    await _receive(
        store, settings, (["k3m9abc@canary.test"], message_bytes("verify now")),
        mail_from="x@forger.test",
    )  # fmt: skip
    Analyzer(store, settings).drain()
    provider, spoof = _deliveries(store)
    assert provider.verdict == "expected"
    with store.session() as session:
        message = session.get(Message, provider.message_id)
        assert message is not None and message.sender_org == "shop.test"
        assert message.auth and message.auth["verified_by"] == "DKIM verified"
    assert spoof.verdict == "breach"
    finding = _findings(store)[-1]
    assert {"code": "spoofed_from", "detail": "domain=shop.test"} in finding.evidence
    assert "DMARC fail" in finding.sentence
