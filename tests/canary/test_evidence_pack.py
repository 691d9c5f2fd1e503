"""An incident's evidence pack holds the raw mail, issuance proof and a manifest."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime

import pytest

from canary.errors import NotFound
from canary.evidence_pack import MANIFEST, build_pack
from canary.identity import IdentityRequest, create_identities
from canary.issuance import record_hash
from canary.models import Delivery, Finding, Incident, Message, User
from canary.sources import add_source
from canary.store import Store
from canary.users import add_user
from tests.conftest import CANARY_DOMAIN

RAW = (
    b"From: Broker X <offers@brokerx.test>\r\nTo: someone@canary.test\r\n"
    b"Subject: =?utf-8?q?D=C3=A9als?=\r\n\r\nbody with \xff an invalid byte\r\n"
)


def make_incident(store: Store, owner: User) -> tuple[int, bytes]:
    with store.session() as session:
        source = add_source(session, owner, "Shop X", ["shopx.test"])
        (identity,) = create_identities(
            session, owner, source, IdentityRequest(domain=CANARY_DOMAIN)
        )
        message = Message(
            peer_ip="127.0.0.9",
            helo="mx.brokerx.test",
            mail_from="bounce@brokerx.test",
            rcpt_to=[identity.alias],
            raw=RAW,
            size=len(RAW),
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
            verdict="shared",
        )
        session.add(delivery)
        session.flush()
        session.add(
            Finding(
                delivery_id=delivery.id,
                owner_id=owner.id,
                source_id=source.id,
                verdict="shared",
                sender_org="brokerx.test",
                evidence=[{"code": "dkim_pass", "detail": "d=brokerx.test"}],
                sentence="Sent by brokerx.test (DKIM verified).",
            )
        )
        incident = Incident(
            owner_id=owner.id,
            source_id=source.id,
            kind="shared",
            finding_count=1,
            organisations=["brokerx.test"],
        )
        session.add(incident)
        session.flush()
        return incident.id, RAW


def test_pack_contents_verify(store: Store, owner: User) -> None:
    incident_id, raw = make_incident(store, owner)
    with store.session() as session:
        pack = build_pack(session, owner, incident_id)
    archive = zipfile.ZipFile(io.BytesIO(pack.data))
    names = set(archive.namelist())
    assert {"README.txt", "envelopes.json", "findings.json", "issuance.json", MANIFEST} <= names
    (eml,) = [n for n in names if n.endswith(".eml")]
    assert archive.read(eml) == raw  # byte-exact, invalid byte included

    manifest = archive.read(MANIFEST).decode().splitlines()
    assert len(manifest) == len(names) - 1
    for line in manifest:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest

    issuance = json.loads(archive.read("issuance.json"))
    assert issuance["log_intact_at_export"] is True
    (record,) = issuance["records"]
    created = datetime.fromisoformat(record["created_at"])
    assert record["hash"] == record_hash(
        record["prev_hash"], record["event"], record["payload"], created
    )
    assert record["payload"]["source_name"] == "Shop X"
    findings = json.loads(archive.read("findings.json"))
    assert findings[0]["evidence"][0]["code"] == "dkim_pass"
    assert "dkimverify" in archive.read("README.txt").decode()


def test_another_users_incident_is_not_found(store: Store, owner: User) -> None:
    incident_id, _ = make_incident(store, owner)
    with store.session() as session:
        mallory = add_user(session, "mallory")
        with pytest.raises(NotFound):
            build_pack(session, mallory, incident_id)
