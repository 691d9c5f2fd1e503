"""Stored facts become findings; user corrections re-decide them and keep the history."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from canary.alerts import add_channel, alert_on_incident
from canary.assessment import (
    IncidentEvent,
    apply_campaigns,
    auth_from_json,
    auth_to_json,
    current_finding,
    delivery_facts_json,
    reevaluate_deliveries,
    reevaluate_source,
    roll_into_incident,
)
from canary.evidence_items import Evidence
from canary.identity import IdentityRequest, create_identities
from canary.models import Alert, Delivery, Finding, Incident, Message, Source, User, utcnow
from canary.signals import Signals
from canary.sources import add_source, authorise_sender
from canary.store import Store
from canary.verdicts import AuthFacts, FindingDraft
from tests.conftest import CANARY_DOMAIN

BROKER = AuthFacts(
    sender_org="brokerx.test",
    verified_by="DKIM verified",
    from_domain="brokerx.test",
    from_org="brokerx.test",
    from_authenticated=True,
    dmarc_result="pass",
    dmarc_policy="none",
    evidence=(Evidence("dkim_pass", "d=brokerx.test"),),
)
NO_SIGNALS = Signals(False, None, (), ())


def deliver(store: Store, owner: User, auth: AuthFacts = BROKER) -> tuple[int, int]:
    """One analysed message from ``auth``'s sender to a fresh identity of Shop X."""
    with store.session() as session:
        source = add_source(session, owner, "Shop X", ["shopx.test"])
        (identity,) = create_identities(
            session, owner, source, IdentityRequest(domain=CANARY_DOMAIN)
        )
        identity.created_at = utcnow() - timedelta(days=143)
        session.add(identity)
        message = Message(
            raw=b"Subject: x\r\n\r\nx\r\n",
            rcpt_to=[identity.alias],
            auth=auth_to_json(auth),
            analysed_at=utcnow(),
            state="analysed",
        )
        session.add(message)
        session.flush()
        delivery = Delivery(
            message_id=message.id,
            recipient=identity.alias,
            recipient_key=identity.alias,
            identity_id=identity.id,
            source_id=source.id,
            owner_id=owner.id,
            facts=delivery_facts_json(NO_SIGNALS, ()),
        )
        session.add(delivery)
        session.flush()
        return delivery.id, source.id


def test_auth_facts_survive_storage() -> None:
    assert auth_from_json(auth_to_json(BROKER)) == BROKER
    assert auth_from_json(None) == AuthFacts()


def test_a_third_party_is_shared_and_opens_an_incident(store: Store, owner: User) -> None:
    delivery_id, source_id = deliver(store, owner)
    with store.session() as session:
        assert reevaluate_deliveries(session, [delivery_id]) == 1
        finding = current_finding(session, delivery_id)
        assert finding is not None and finding.verdict == "shared"
        assert finding.sentence.startswith("Sent by brokerx.test (DKIM verified)")
        assert "143 days after" in finding.sentence
        (incident,) = session.exec(select(Incident)).all()
        assert (incident.kind, incident.organisations, incident.finding_count) == (
            "shared",
            ["brokerx.test"],
            1,
        )
        # The same facts again change nothing.
        assert reevaluate_deliveries(session, [delivery_id]) == 0


def test_authorising_the_sender_re_decides_and_keeps_history(store: Store, owner: User) -> None:
    delivery_id, source_id = deliver(store, owner)
    with store.session() as session:
        reevaluate_deliveries(session, [delivery_id])
        authorise_sender(session, session.get(Source, source_id), "brokerx.test", "acquirer")
        assert reevaluate_source(session, source_id) == 1
        findings = session.exec(
            select(Finding).where(Finding.delivery_id == delivery_id).order_by(Finding.id)
        ).all()
        assert [f.verdict for f in findings] == ["shared", "expected"]
        assert findings[0].superseded_at is not None and findings[1].superseded_at is None
        assert "verdict shared -> expected" in findings[1].changes
        assert session.get(Delivery, delivery_id).verdict == "expected"
        # Nothing is shared any more: the incident is gone, the history is not.
        assert session.exec(select(Incident)).all() == []


def test_unauthenticated_mail_is_a_breach(store: Store, owner: User) -> None:
    delivery_id, _ = deliver(store, owner, AuthFacts(from_domain="lottery.test"))
    with store.session() as session:
        reevaluate_deliveries(session, [delivery_id])
        finding = current_finding(session, delivery_id)
        assert finding is not None and finding.verdict == "breach"
        assert {"code": "unauthenticated", "detail": ""} in finding.evidence


def test_incident_events_for_alerts(store: Store, owner: User) -> None:
    delivery_id, _ = deliver(store, owner)
    with store.session() as session:
        reevaluate_deliveries(session, [delivery_id])
        (incident,) = session.exec(select(Incident)).all()
        incident.status = "dismissed"
        session.add(incident)
        delivery = session.get(Delivery, delivery_id)
        same_org = FindingDraft("shared", "brokerx.test", (), "again")
        assert roll_into_incident(session, delivery, same_org) is None
        new_org = FindingDraft("shared", "listco.test", (), "another")
        event = roll_into_incident(session, delivery, new_org)
        assert event is not None and event.event == "reopened"
        session.refresh(incident)
        assert incident.status == "open" and incident.finding_count == 3


def test_one_campaign_across_five_sources_is_a_breach_for_each(store: Store, owner: User) -> None:
    delivery_ids = []
    with store.session() as session:
        add_channel(session, owner, "webhook", "https://hooks.example/canary")
        for n in range(5):
            source = add_source(session, owner, f"Site {n}", [f"site{n}.test"])
            (identity,) = create_identities(
                session, owner, source, IdentityRequest(domain=CANARY_DOMAIN)
            )
            message = Message(
                raw=b"Subject: win\r\n\r\nwin\r\n",
                rcpt_to=[identity.alias],
                peer_ip=f"198.51.100.{n + 1}",
                sender_org="brokerx.test",
                fingerprint="f" * 32,
                auth=auth_to_json(BROKER),
                analysed_at=utcnow(),
                state="analysed",
            )
            session.add(message)
            session.flush()
            delivery = Delivery(
                message_id=message.id,
                recipient=identity.alias,
                recipient_key=identity.alias,
                kind="canary",
                identity_id=identity.id,
                source_id=source.id,
                owner_id=owner.id,
                facts=delivery_facts_json(NO_SIGNALS, ()),
            )
            session.add(delivery)
            session.flush()
            delivery_ids.append(delivery.id)
        reevaluate_deliveries(session, delivery_ids)
        assert {session.get(Delivery, i).verdict for i in delivery_ids} == {"shared"}
        heard: list[IncidentEvent] = []

        def hook(session: Session, event: IncidentEvent) -> None:
            heard.append(event)
            alert_on_incident(session, event)

        assert apply_campaigns(session, on_incident=hook) == 5
        # Each source's new breach incident is news: one alert each, queued with it.
        assert sorted(e.event for e in heard) == ["opened"] * 5
        alerts = session.exec(select(Alert)).all()
        breach_ids = {i.id for i in session.exec(select(Incident).where(Incident.kind == "breach"))}
        assert sorted(a.event for a in alerts) == ["opened"] * 5
        assert {a.incident_id for a in alerts} == breach_ids
        for delivery_id in delivery_ids:
            finding = current_finding(session, delivery_id)
            assert finding is not None and finding.verdict == "breach"
            assert {"code": "same_campaign_sources", "detail": "5"} in finding.evidence
        kinds = sorted(i.kind for i in session.exec(select(Incident)).all())
        assert kinds == ["breach"] * 5
        # Running the job again finds nothing new, and says nothing new.
        assert apply_campaigns(session, on_incident=hook) == 0
        assert len(heard) == 5
