"""User corrections to the engine: incident status and authorised senders.

These are the writes a person makes after reading the evidence (DESIGN.md, "Users
correct the engine"). Both the dashboard and the CLI call them, always with the acting
user, so one user can never change another's incidents or sources: anything not owned by
``owner`` is reported as :class:`~canary.errors.NotFound`, exactly like a missing id.

Re-evaluation of findings is not done here. Callers pass ``on_change``, a callback run
inside the same transaction after the change; the verdict engine hooks re-evaluation in
there, so this module needs no knowledge of verdict rules.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, select

from canary import sources
from canary.errors import InvalidInput, NotFound
from canary.models import INCIDENT_STATUSES, AuthorisedSender, Incident, Source, User, utcnow
from canary.ownership import owned

SourceChanged = Callable[[Session, Source], None]
"""Called after a correction that may change the verdicts of a source's findings."""


def get_incident(session: Session, owner: User, incident_id: int) -> Incident:
    """One of ``owner``'s incidents; NotFound for a missing id or anyone else's."""
    return owned(session, Incident, incident_id, owner, "incident")


def set_incident_status(
    session: Session,
    owner: User,
    incident_id: int,
    status: str,
    on_change: SourceChanged | None = None,
) -> Incident:
    """Set an incident to open, confirmed or dismissed (idempotent)."""
    if status not in INCIDENT_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(INCIDENT_STATUSES)}")
    incident = get_incident(session, owner, incident_id)
    if incident.status != status:
        incident.status = status
        incident.updated_at = utcnow()
        session.add(incident)
        session.flush()
        if on_change is not None:
            source = session.get(Source, incident.source_id)
            assert source is not None
            on_change(session, source)
    return incident


def authorise_sender(
    session: Session,
    owner: User,
    source_id: int | str,
    domain: str,
    reason: str = "user",
    on_change: SourceChanged | None = None,
) -> AuthorisedSender:
    """Allow ``domain`` to mail the identities of one of ``owner``'s sources.

    Idempotent; ``on_change`` runs only when the domain was not authorised before, so
    re-evaluation is not repeated for a double click.
    """
    source = sources.get_source(session, owner, source_id)
    before = set(sources.authorised_domains(session, source))
    record = sources.authorise_sender(session, source, domain, reason=reason)
    if record.domain not in before and on_change is not None:
        on_change(session, source)
    return record


def revoke_sender(
    session: Session,
    owner: User,
    source_id: int | str,
    domain: str,
    on_change: SourceChanged | None = None,
) -> Source:
    """Stop allowing ``domain`` to mail one of ``owner``'s sources (a wrong first-use
    guess of a catch-all source, an acquirer that was not one); NotFound if it was not
    allowed."""
    source = sources.get_source(session, owner, source_id)
    domain = sources.sender_domain(domain)
    record = session.exec(
        select(AuthorisedSender).where(
            AuthorisedSender.source_id == source.id, AuthorisedSender.domain == domain
        )
    ).first()
    if record is None:
        raise NotFound(f"{domain} is not an authorised sender of {source.name!r}")
    session.delete(record)
    session.flush()
    if on_change is not None:
        on_change(session, source)
    return source
