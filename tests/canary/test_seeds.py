"""Seed batches: records, CSV layouts, tracing letters, vendor mail and a stranger's."""

from __future__ import annotations

import csv
import io

import pytest
from sqlmodel import col, select

from canary.config import Settings
from canary.errors import InvalidInput
from canary.models import Delivery, Finding, Identity, Incident, Source, User
from canary.pipeline import Analyzer
from canary.seeds import batch_identities, new_seed_batch, parse_columns, seed_csv
from canary.sources import authorised_domains
from canary.store import Store
from canary.trace import trace
from tests.support.dns_server import TestDnsServer
from tests.support.smtp import send_message, start_server


def test_batch_records_are_tagged_and_traceable(store: Store, owner: User) -> None:
    with store.session() as session:
        result = new_seed_batch(
            session, owner, "MailCo", 25, domain="canary.test",
            vendor_domains=["mailco.test"], company_domains=["acme.test"],
            postal_format="Dept. {code}",
        )  # fmt: skip
        assert authorised_domains(session, result.source) == ["acme.test", "mailco.test"]
        seeds = batch_identities(session, result.batch)
    assert [s.id for s in seeds] == [s.id for s in result.identities]
    codes = [s.reference for s in seeds]
    assert len(set(codes)) == 25 and all(c and len(c) == 4 for c in codes)
    assert all(s.postal_line == f"Dept. {s.reference}" for s in seeds)
    # A letter with the tagged postal line, the code alone, or the name finds the seed.
    target = seeds[7]
    with store.session() as session:
        for text in (target.postal_line, target.reference.lower(), target.display_name):
            assert text
            found = trace(session, owner, text)
            assert found.matches[0].identity.id == target.id, text
            assert found.matches[0].source.name == "MailCo"


def test_second_batch_keeps_codes_unique_and_reuses_the_vendor(store: Store, owner: User) -> None:
    with store.session() as session:
        first = new_seed_batch(session, owner, "MailCo", 30, domain="canary.test")
        second = new_seed_batch(session, owner, "mailco", 30, domain="canary.test",
                                vendor_domains=["mailco.test"])  # fmt: skip
        assert first.source.id == second.source.id
        codes = session.exec(select(Identity.reference)).all()
    assert len(codes) == len(set(codes)) == 60


def test_csv_layout_is_the_users_choice(store: Store, owner: User) -> None:
    columns = parse_columns("Full Name=name,E-mail=email,Address 2=postal_line,Country=const:US")
    with store.session() as session:
        result = new_seed_batch(session, owner, "ListRent", 3, domain="canary.test")
    text = seed_csv(result.identities, columns, "ListRent", result.batch.id, delimiter=";")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == ["Full Name", "E-mail", "Address 2", "Country"]
    assert [r[1] for r in rows[1:]] == [i.alias for i in result.identities]
    assert all(r[2].startswith("Suite ") and r[3] == "US" for r in rows[1:])
    with pytest.raises(InvalidInput, match="unknown column"):
        parse_columns("name,shoe_size")


async def test_vendor_mail_is_expected_and_a_stranger_is_an_incident_naming_the_vendor(
    store: Store, settings: Settings, owner: User, dns_server: TestDnsServer
) -> None:
    # Both senders authenticate by SPF from the test's connecting address.
    for domain in ("acme.test", "strangers.test"):
        dns_server.txt(domain, "v=spf1 ip4:127.0.0.0/8 -all")
    with store.session() as session:
        result = new_seed_batch(
            session, owner, "MailCo", 2, domain="canary.test",
            vendor_domains=["mailco.test"], company_domains=["acme.test"],
        )  # fmt: skip
    seed = result.identities[0]
    running = await start_server(store, settings)
    try:
        for sender, subject in (("news@acme.test", "Our newsletter"),
                                ("offers@strangers.test", "You were selected")):  # fmt: skip
            content = (f"From: <{sender}>\r\nTo: {seed.alias}\r\nSubject: {subject}\r\n\r\n"
                       "Hi\r\n").encode()  # fmt: skip
            reply = await send_message(running.host, running.port, sender, [seed.alias], content)
            assert reply.code == 250
    finally:
        await running.stop()
    assert Analyzer(store, settings).drain() == 2
    with store.session() as session:
        vendor = session.get(Source, result.source.id)
        assert vendor is not None
        first, second = session.exec(select(Delivery).order_by(col(Delivery.id))).all()
        assert first.verdict == "expected" and first.source_id == vendor.id
        assert second.verdict == "shared" and second.source_id == vendor.id
    with store.session() as session:
        incident = session.exec(select(Incident)).one()
        named = session.get(Source, incident.source_id)
        assert named is not None and named.name == "MailCo"
        assert incident.kind == "shared" and incident.organisations == ["strangers.test"]
        finding = session.exec(select(Finding).where(Finding.verdict == "shared")).one()
        assert "MailCo" in finding.sentence
