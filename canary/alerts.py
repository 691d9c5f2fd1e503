"""Alerts: tell an incident's owner when it opens or grows, and send digests.

The pipeline calls :func:`queue_incident_alert` inside the transaction that updated the
incident; that writes one :class:`~canary.models.Alert` outbox row per enabled channel
of the owner. :func:`deliver_alerts` (a scheduled job) sends them: webhooks as signed
JSON (:mod:`canary.webhook`), email through the relay (:mod:`canary.mailer`). Each row
keeps its state, attempts and last error: that is the delivery log users see.

What an alert says is built by the pure functions of :mod:`canary.alert_payload`:
counts, the source, the sender organisations, the verdict, one sentence and a link to
the dashboard. Never message bodies; subjects of recent messages only when the user
switched ``include_subjects`` on for that channel.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from canary import mailer, metrics, outbox, webhook
from canary.alert_payload import (
    IncidentFacts,
    absolute,
    body_bytes,
    build_payload,
    digest_payload,
    render_email,
)
from canary.assessment import IncidentEvent
from canary.config import Settings
from canary.confirm import Resolver, system_resolver
from canary.errors import InvalidInput
from canary.models import (
    Alert,
    AlertChannel,
    Delivery,
    ForwardAddress,
    Incident,
    Message,
    Source,
    User,
    as_utc,
    utcnow,
)
from canary.ownership import owned
from canary.store import Store

CHANNEL_KINDS = ("webhook", "email")
DIGESTS = {"none": None, "daily": timedelta(days=1), "weekly": timedelta(days=7)}
INCIDENT_EVENTS = ("opened", "grew")
MAX_SUBJECTS = 5


# ---------------------------------------------------------------------- channels


def _verified_address(session: Session, owner_id: int, address: str) -> ForwardAddress | None:
    return session.exec(
        select(ForwardAddress).where(
            ForwardAddress.owner_id == owner_id,
            ForwardAddress.address == address.strip().lower(),
            col(ForwardAddress.verified_at).is_not(None),
        )
    ).first()


def add_channel(
    session: Session,
    owner: User,
    kind: str,
    target: str,
    *,
    digest: str = "none",
    immediate: bool = True,
    include_subjects: bool = False,
) -> AlertChannel:
    """Add a webhook (URL; a signing secret is made) or email channel (a verified address)."""
    assert owner.id is not None
    if kind not in CHANNEL_KINDS:
        raise InvalidInput(f"channel kind must be one of {', '.join(CHANNEL_KINDS)}")
    if digest not in DIGESTS:
        raise InvalidInput(f"digest must be one of {', '.join(DIGESTS)}")
    secret = None
    if kind == "webhook":
        try:
            target = webhook.validate_url(target.strip())
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        secret = webhook.new_secret()
    else:
        target = target.strip().lower()
        if _verified_address(session, owner.id, target) is None:
            raise InvalidInput(
                f"{target} is not a verified address: add it under forwarding and click "
                "the link in the verification mail first"
            )
    channel = AlertChannel(
        owner_id=owner.id,
        kind=kind,
        target=target,
        secret=secret,
        digest=digest,
        immediate=immediate,
        include_subjects=include_subjects,
    )
    session.add(channel)
    session.flush()
    return channel


def list_channels(session: Session, owner: User) -> list[AlertChannel]:
    """The owner's channels, oldest first."""
    statement = select(AlertChannel).where(AlertChannel.owner_id == owner.id)
    return list(session.exec(statement.order_by(col(AlertChannel.id))))


def get_channel(session: Session, owner: User, channel_id: int) -> AlertChannel:
    """One of the owner's channels; NotFound for anyone else's."""
    return owned(session, AlertChannel, channel_id, owner, "alert channel")


def set_enabled(session: Session, owner: User, channel_id: int, enabled: bool) -> AlertChannel:
    """Switch a channel on or off (its delivery log stays)."""
    channel = get_channel(session, owner, channel_id)
    channel.enabled = enabled
    session.add(channel)
    return channel


def delivery_log(session: Session, owner: User, limit: int = 50) -> list[Alert]:
    """The owner's most recent alerts with their state, attempts and last error."""
    statement = select(Alert).where(Alert.owner_id == owner.id)
    return list(session.exec(statement.order_by(col(Alert.id).desc()).limit(limit)))


# ---------------------------------------------------------------------- queueing


def recent_subjects(session: Session, incident: Incident, limit: int = MAX_SUBJECTS) -> list[str]:
    """Subjects of the newest messages behind an incident (only for channels that opted in)."""
    rows = session.exec(
        select(Message.subject)
        .join(Delivery, col(Delivery.message_id) == Message.id)
        .where(Delivery.source_id == incident.source_id, Delivery.verdict == incident.kind)
        .order_by(col(Delivery.received_at).desc())
        .limit(limit)
    )
    return [" ".join(s.split())[:200] for s in rows if s]


def alert_on_incident(session: Session, event: IncidentEvent) -> None:
    """Queue alerts for an incident that opened, re-opened or grew (an incident hook of
    the analysis worker and of re-evaluation)."""
    incident = session.get(Incident, event.incident_id)
    if incident is not None:
        # A re-opened incident is news to its owner, like a new one.
        queue_incident_alert(session, incident, "grew" if event.event == "grew" else "opened")


def queue_incident_alert(session: Session, incident: Incident, event: str) -> list[Alert]:
    """Queue an alert about ``incident`` (``opened`` or ``grew``) on each of its owner's
    enabled immediate channels, in the caller's transaction; returns the rows.

    Nothing is queued for a dismissed incident (the user has judged it). While an alert
    about the same incident still waits untried on a channel, it is updated instead of a
    second one being queued, so a burst of mail makes one alert, not hundreds.
    """
    if event not in INCIDENT_EVENTS:
        raise ValueError(f"event must be one of {', '.join(INCIDENT_EVENTS)}")
    if incident.status == "dismissed" or incident.id is None:
        return []
    channels = session.exec(
        select(AlertChannel).where(
            AlertChannel.owner_id == incident.owner_id,
            col(AlertChannel.enabled).is_(True),
            col(AlertChannel.immediate).is_(True),
        )
    ).all()
    if not channels:
        return []
    source = session.get(Source, incident.source_id)
    facts = IncidentFacts.of(incident, source.name if source else f"source {incident.source_id}")
    subjects = (
        recent_subjects(session, incident) if any(c.include_subjects for c in channels) else []
    )
    queued: list[Alert] = []
    for channel in channels:
        waiting = session.exec(
            select(Alert).where(
                Alert.channel_id == channel.id,
                Alert.incident_id == incident.id,
                Alert.state == "pending",
                Alert.attempts == 0,
            )
        ).first()
        # An untried "opened" stays "opened": the receiver has not heard of it yet.
        effective = "opened" if waiting is not None and waiting.event == "opened" else event
        payload = build_payload(effective, facts, subjects if channel.include_subjects else ())
        if waiting is not None:
            waiting.event, waiting.payload = effective, payload
            alert = waiting
        else:
            assert channel.id is not None
            alert = Alert(
                channel_id=channel.id,
                owner_id=incident.owner_id,
                incident_id=incident.id,
                event=effective,
                payload=payload,
            )
        session.add(alert)
        queued.append(alert)
    session.flush()
    return queued


def queue_digests(session: Session, frequency: str, now: datetime | None = None) -> int:
    """Queue a digest on every enabled channel with this ``frequency`` (daily, weekly)
    whose incidents changed since its last digest; returns how many were queued.

    A channel that had a digest less than half a period ago is skipped, so a job that
    runs twice (two processes, a restart) does not send two digests.
    """
    period = DIGESTS.get(frequency)
    if period is None:
        raise ValueError("frequency must be daily or weekly")
    now = now or utcnow()
    count = 0
    channels = session.exec(
        select(AlertChannel).where(
            AlertChannel.digest == frequency, col(AlertChannel.enabled).is_(True)
        )
    ).all()
    for channel in channels:
        last = channel.last_digest_at
        if last is not None and as_utc(last) > now - period / 2:
            continue
        since = as_utc(last) if last is not None else now - period
        incidents = session.exec(
            select(Incident, Source.name)
            .join(Source, col(Source.id) == Incident.source_id)
            .where(
                Incident.owner_id == channel.owner_id,
                Incident.status != "dismissed",
                col(Incident.updated_at) > since,
            )
            .order_by(col(Incident.last_seen).desc())
        ).all()
        channel.last_digest_at = now
        session.add(channel)
        if not incidents:
            continue  # no news is not worth a message
        facts = [IncidentFacts.of(incident, name) for incident, name in incidents]
        assert channel.id is not None
        session.add(
            Alert(
                channel_id=channel.id,
                owner_id=channel.owner_id,
                event="digest",
                payload=digest_payload(frequency, since, now, facts),
            )
        )
        count += 1
    return count


def queue_test_alert(session: Session, owner: User, channel_id: int) -> Alert:
    """A test alert on one channel, so the user can check the receiving end."""
    channel = get_channel(session, owner, channel_id)
    assert channel.id is not None and owner.id is not None
    payload = {"version": 1, "event": "test", "sentence": "A test alert from canarytrace.",
               "link": "/"}  # fmt: skip
    alert = Alert(channel_id=channel.id, owner_id=owner.id, event="test", payload=payload)
    session.add(alert)
    session.flush()
    return alert


# ---------------------------------------------------------------------- delivery


async def _send_one(
    settings: Settings, store: Store, alert_id: int, now: datetime, resolve: Resolver
) -> bool:
    def load() -> tuple[Alert, AlertChannel | None, bool]:
        with store.session() as session:
            alert = session.get(Alert, alert_id)
            assert alert is not None
            channel = session.get(AlertChannel, alert.channel_id)
            verified = bool(
                channel
                and channel.kind == "email"
                and _verified_address(session, channel.owner_id, channel.target)
            )
            return alert, channel, verified

    alert, channel, verified = await asyncio.to_thread(load)
    error: str | None = None
    permanent = False
    if channel is None or not channel.enabled:
        error, permanent = "channel disabled or removed", True
    else:
        payload = absolute(alert.payload, settings.resolved_public_url)
        if channel.kind == "webhook":
            result = await asyncio.to_thread(
                webhook.post,
                channel.target,
                body_bytes(payload),
                channel.secret or "",
                delivery_id=str(alert.id),
                event=alert.event,
                allow_private=settings.webhook_allow_private,
                resolve=resolve,
            )
            if not result.ok:
                error, permanent = result.error, result.permanent
        elif not verified:
            # Only verified addresses ever receive mail (see canary.forwarding).
            error, permanent = f"{channel.target} is not a verified address", True
        else:
            subject, text = render_email(payload)
            try:
                await mailer.send(
                    settings,
                    mailer.plain_email(settings, channel.target, subject, text),
                    recipients=[channel.target],
                )
            except mailer.RelayError as exc:
                error, permanent = str(exc), exc.permanent
            except Exception as exc:  # ConfigError (no relay) and the unexpected: retry
                error = f"{type(exc).__name__}: {exc}"
    kind = channel.kind if channel else "unknown"

    await asyncio.to_thread(
        outbox.record_outcome, store, Alert, alert_id, now, error, permanent=permanent
    )
    metrics.inc("alerts_sent_total" if error is None else "alerts_failed_total", kind=kind)
    return error is None


async def deliver_alerts(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    limit: int = 50,
    resolve: Resolver = system_resolver,
) -> int:
    """Send due alerts (scheduler job); returns how many were delivered in this run."""
    now = now or utcnow()
    ids = await asyncio.to_thread(outbox.claim, store.engine, Alert, now, limit)
    sent = 0
    for alert_id in ids:
        sent += await _send_one(settings, store, alert_id, now, resolve)
    return sent
