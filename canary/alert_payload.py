"""What an alert says: pure functions from incident facts to JSON, email text and bytes.

No I/O and no database: :mod:`canary.alerts` gathers the facts and sends. An alert
carries counts, the source, the sender organisations, the verdict, one sentence and a
link to the dashboard; never message bodies. Subjects of recent messages appear only
when the caller passes them (a channel's ``include_subjects`` opt-in).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from canary.models import Incident

KIND_WORDS = {
    "shared": "shared your address with",
    "breach": "is receiving criminal mail (breach), from",
    "after_retirement": "kept mailing after retirement, from",
    "cross_source": "merged its list with another source's, mail from",
}


@dataclass(frozen=True)
class IncidentFacts:
    """What an alert may say about one incident."""

    id: int
    kind: str
    status: str
    source_id: int
    source_name: str
    organisations: tuple[str, ...]
    finding_count: int
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def of(cls, incident: Incident, source_name: str) -> IncidentFacts:
        assert incident.id is not None
        return cls(
            incident.id,
            incident.kind,
            incident.status,
            incident.source_id,
            source_name,
            tuple(incident.organisations),
            incident.finding_count,
            incident.first_seen,
            incident.last_seen,
        )


def incident_sentence(facts: IncidentFacts) -> str:
    """One plain sentence, e.g. "Shop X shared your address with brokerx.test (3 messages
    since 2026-03-01)."."""
    orgs = ", ".join(facts.organisations) or "an unidentified sender"
    words = KIND_WORDS.get(facts.kind, f"has a {facts.kind} incident, from")
    count = facts.finding_count
    plural = "message" if count == 1 else "messages"
    return (
        f"{facts.source_name} {words} {orgs} ({count} {plural} since {facts.first_seen:%Y-%m-%d})."
    )


def incident_path(facts: IncidentFacts) -> str:
    """Where the dashboard shows the incident."""
    return f"/sources/{facts.source_id}#incidents"


def build_payload(event: str, facts: IncidentFacts, subjects: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON of an incident alert (``link`` is a path until sending makes it absolute)."""
    payload: dict[str, Any] = {
        "version": 1,
        "event": event,
        "verdict": facts.kind,
        "sentence": incident_sentence(facts),
        "incident": {
            "id": facts.id,
            "kind": facts.kind,
            "status": facts.status,
            "finding_count": facts.finding_count,
            "organisations": list(facts.organisations),
            "first_seen": facts.first_seen.isoformat(),
            "last_seen": facts.last_seen.isoformat(),
        },
        "source": {"id": facts.source_id, "name": facts.source_name},
        "link": incident_path(facts),
    }
    if subjects:
        payload["subjects"] = list(subjects)
    return payload


def digest_payload(
    period: str, since: datetime, until: datetime, incidents: Sequence[IncidentFacts]
) -> dict[str, Any]:
    """The JSON of a digest: every incident that changed in the period, one line each."""
    return {
        "version": 1,
        "event": "digest",
        "period": period,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "incidents": [
            {**build_payload("digest", f, ())["incident"], "source": f.source_name,
             "sentence": incident_sentence(f), "link": incident_path(f)}
            for f in incidents
        ],
        "link": "/",
    }  # fmt: skip


def absolute(payload: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The payload as sent: dashboard paths turned into links under ``base_url``."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("/"):
            return base_url + value
        return value

    sent = {**payload, "link": fix(payload.get("link"))}
    if isinstance(payload.get("incidents"), list):
        sent["incidents"] = [{**i, "link": fix(i.get("link"))} for i in payload["incidents"]]
    return sent


def render_email(payload: dict[str, Any]) -> tuple[str, str]:
    """(subject, text) of an email alert for a sent-form payload."""
    if payload.get("event") == "digest":
        items = payload.get("incidents", [])
        lines = [f"- {i['sentence']} {i['link']}" for i in items]
        subject = f"[canary] {payload['period']} digest: {len(items)} incident(s) changed"
        text = "\n".join(
            [f"Incidents that changed since {payload['since'][:16]} UTC:", "", *lines, "",
             f"Dashboard: {payload['link']}"]
        )  # fmt: skip
        return subject, text + "\n"
    source = payload.get("source", {}).get("name", "")
    verb = "new incident" if payload.get("event") == "opened" else "incident grew"
    subject = f"[canary] {source}: {payload.get('verdict')} ({verb})"
    lines = [payload.get("sentence", ""), ""]
    if payload.get("subjects"):
        lines += ["Recent subjects:", *[f"  {s}" for s in payload["subjects"]], ""]
    lines.append(f"Evidence: {payload.get('link')}")
    return subject, "\n".join(lines) + "\n"


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact JSON bytes POSTed (and signed)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
