"""Incidents: findings rolled up per source and kind, and re-evaluation of findings. Pure.

An incident is what a person acts on: "pinterest.com shared your address with 3
organisations since March". One incident exists per (source, kind), where the kind is
the verdict of its findings. ``expected`` findings are normal mail and
``unattributed`` ones belong to no source, so neither makes an incident.

Status rules (the user owns the status; the engine only re-opens with new facts):

* ``open`` and ``confirmed`` stay as they are when more findings arrive.
* ``dismissed`` stays dismissed while the same organisations keep writing (the user
  has already judged them), and goes back to ``open`` when an organisation that was
  not part of the incident appears: that is new information the user has not seen.

Re-evaluation (after the user authorises a sender, or the engine improves) never edits
a finding: :func:`compare` says whether a new draft supersedes the stored finding and
what changed, and :func:`rebuild` recomputes a source's incidents from its current
findings while keeping the statuses the user chose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from canary.evidence_items import Evidence
from canary.verdicts import FindingDraft

INCIDENT_KINDS = ("shared", "breach", "after_retirement", "cross_source")
STATUSES = ("open", "confirmed", "dismissed")


@dataclass(frozen=True)
class IncidentState:
    """One incident as the roll-up sees it (mirrors ``canary.models.Incident``)."""

    source_id: int
    kind: str
    first_seen: datetime
    last_seen: datetime
    finding_count: int = 0
    organisations: tuple[str, ...] = ()
    status: str = "open"
    id: int | None = None


@dataclass(frozen=True)
class FindingRecord:
    """A stored, current finding: the parts re-evaluation and roll-up compare."""

    verdict: str
    sender_org: str | None
    evidence: tuple[Evidence, ...]
    sentence: str = ""
    seen_at: datetime | None = None
    """When the delivery was received (for incident first/last seen)."""


@dataclass(frozen=True)
class Comparison:
    """Whether a new draft supersedes the stored finding, and a readable list of changes."""

    supersedes: bool
    changes: tuple[str, ...] = ()


def incident_kind(verdict: str) -> str | None:
    """The incident kind a verdict rolls up into, or None for no incident."""
    return verdict if verdict in INCIDENT_KINDS else None


def roll_up(
    current: IncidentState | None,
    source_id: int,
    draft: FindingDraft,
    seen_at: datetime,
) -> IncidentState | None:
    """The incident after one more finding; None when the verdict makes no incident.

    ``current`` is the existing incident for (source, kind), or None to open one.
    """
    kind = incident_kind(draft.verdict)
    if kind is None:
        return None
    if current is None:
        return IncidentState(
            source_id=source_id,
            kind=kind,
            first_seen=seen_at,
            last_seen=seen_at,
            finding_count=1,
            organisations=(draft.sender_org,) if draft.sender_org else (),
        )
    if (current.source_id, current.kind) != (source_id, kind):
        raise ValueError("a finding rolls up only into its own source's incident of its kind")
    new_org = draft.sender_org and draft.sender_org not in current.organisations
    organisations = current.organisations + ((draft.sender_org,) if new_org else ())
    status = "open" if current.status == "dismissed" and new_org else current.status
    return replace(
        current,
        first_seen=min(current.first_seen, seen_at),
        last_seen=max(current.last_seen, seen_at),
        finding_count=current.finding_count + 1,
        organisations=tuple(sorted(organisations)),
        status=status,
    )


def set_status(incident: IncidentState, status: str) -> IncidentState:
    """The user's decision: ``open``, ``confirmed`` or ``dismissed``."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return replace(incident, status=status)


def rebuild(
    source_id: int,
    findings: Iterable[FindingRecord],
    existing: Mapping[str, IncidentState] | None = None,
) -> dict[str, IncidentState]:
    """A source's incidents recomputed from its current findings, by kind.

    Statuses and ids of ``existing`` incidents are kept; a dismissed incident is
    re-opened only when an organisation it did not contain appears. Kinds that no
    longer have findings are absent from the result (the caller decides whether to
    delete or keep the emptied incident).
    """
    existing = existing or {}
    built: dict[str, IncidentState] = {}
    for f in sorted(findings, key=lambda f: (f.seen_at is None, f.seen_at)):
        kind = incident_kind(f.verdict)
        if kind is None or f.seen_at is None:
            continue
        draft = FindingDraft(f.verdict, f.sender_org, f.evidence, f.sentence)
        built[kind] = roll_up(built.get(kind), source_id, draft, f.seen_at)  # type: ignore[assignment]
    for kind, state in list(built.items()):
        old = existing.get(kind)
        if old is None:
            continue
        status = old.status
        if status == "dismissed" and set(state.organisations) - set(old.organisations):
            status = "open"
        built[kind] = replace(state, status=status, id=old.id)
    return built


def news(before: IncidentState | None, after: IncidentState) -> str | None:
    """What changed for the incident's owner: ``opened``, ``reopened``, ``grew`` or None.

    A new organisation is news; another message from one already listed is not, so
    a burst of mail from one broker alerts once.
    """
    if before is None:
        return "opened"
    if before.status == "dismissed" and after.status == "open":
        return "reopened"
    if set(after.organisations) - set(before.organisations):
        return "grew"
    return None


def compare(current: FindingRecord | None, draft: FindingDraft) -> Comparison:
    """Does ``draft`` supersede the stored finding? Changes are listed for the history.

    A different verdict, sender organisation or set of evidence supersedes; the same
    facts in another order, or a reworded sentence alone, do not.
    """
    if current is None:
        return Comparison(True, (f"verdict {draft.verdict}",))
    changes: list[str] = []
    if current.verdict != draft.verdict:
        changes.append(f"verdict {current.verdict} -> {draft.verdict}")
    if current.sender_org != draft.sender_org:
        changes.append(f"sender_org {current.sender_org} -> {draft.sender_org}")
    old, new = set(current.evidence), set(draft.evidence)
    changes += [f"+ {e}" for e in draft.evidence if e not in old]
    changes += [f"- {e}" for e in current.evidence if e not in new]
    return Comparison(bool(changes), tuple(changes))
