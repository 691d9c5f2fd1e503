"""The tables of canarytrace (SQLModel), in the vocabulary of the design brief.

Timestamps are time-zone-aware UTC datetimes on every backend (SQLModel's UTCDateTime
refuses naive ones); :func:`utcnow` makes them. Schema changes go through Alembic migrations in
``canary/migrations/versions``; never change a table here without adding one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, overload

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

VERDICTS = ("expected", "shared", "breach", "after_retirement", "cross_source", "unattributed")
DELIVERY_KINDS = ("canary", "role", "unattributed")
MESSAGE_STATES = ("queued", "analysing", "analysed", "unparsable", "retry")
INCIDENT_STATUSES = ("open", "confirmed", "dismissed")
OUTBOX_STATES = ("pending", "sent", "failed", "dropped")


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC attached when it came back naive (rows made before a driver
    kept zones, or values built by hand); aware values and None pass unchanged."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time in UTC, time-zone aware, the form every table stores."""
    return datetime.now(UTC)


class User(SQLModel, table=True):
    """An account. Every source, identity and incident belongs to one."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    password_hash: str | None = None
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A bearer token for the API; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    token_hash: str = Field(unique=True, max_length=64)
    label: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Source(SQLModel, table=True):
    """A party that received identities: a site, a company, a vendor."""

    __tablename__ = "source"
    __table_args__ = (UniqueConstraint("owner_id", "slug", name="uq_source_owner_slug"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=64)
    url: str | None = None
    notes: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class AuthorisedSender(SQLModel, table=True):
    """A registrable domain allowed to mail a source's identities."""

    __tablename__ = "authorised_sender"
    __table_args__ = (UniqueConstraint("source_id", "domain", name="uq_sender_source_domain"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    domain: str = Field(max_length=253, index=True)
    # own: the source's own domain; provider: its email service; acquirer: a new owner;
    # first_use: the first authenticated sender to a catch-all alias (canary.catchall).
    reason: str = Field(default="own", max_length=16)
    added_at: datetime = Field(default_factory=utcnow)


class Identity(SQLModel, table=True):
    """A canary: a tagged name and a unique alias, issued to exactly one source."""

    __tablename__ = "identity"
    __table_args__ = (Index("ix_identity_owner_name_key", "owner_id", "name_key"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    alias: str = Field(unique=True, max_length=320)
    style: str = Field(max_length=16)
    display_name: str = Field(max_length=200)
    # Normalised display name (case, accents and punctuation folded) used for the
    # distance check and for tracing a name read off a letter.
    name_key: str = Field(max_length=200)
    real_name: str | None = None
    postal_line: str | None = None
    reference: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    given_at: datetime | None = None
    retired_at: datetime | None = None


class CatchAllDomain(SQLModel, table=True):
    """A subdomain of a canary domain owned by one user: any local part there becomes an
    identity on first use (see :mod:`canary.catchall`)."""

    __tablename__ = "catchall_domain"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    domain: str = Field(unique=True, max_length=253)
    created_at: datetime = Field(default_factory=utcnow)


class IssuanceRecord(SQLModel, table=True):
    """Append-only, hash-chained log of identity issuance, hand-over and retirement.

    Each record's ``hash`` covers its content and the previous record's hash, so an
    evidence pack can show that an identity was issued before any mail arrived.
    """

    __tablename__ = "issuance_record"

    id: int | None = Field(default=None, primary_key=True)
    identity_id: int = Field(foreign_key="identity.id", index=True)
    event: str = Field(max_length=16)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(unique=True, max_length=64)


class Message(SQLModel, table=True):
    """One inbound SMTP transaction: raw bytes byte-exact, envelope, receive time."""

    __tablename__ = "message"
    __table_args__ = (Index("ix_message_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    peer_ip: str = Field(default="", max_length=64)
    helo: str = ""
    mail_from: str = ""
    rcpt_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tls: bool = False
    size: int = 0
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(default="queued", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    claimed_at: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=64)
    error: str | None = None
    # Facts parsed after the 250, for listing and filtering without the raw bytes.
    header_message_id: str | None = Field(default=None, max_length=998, index=True)
    subject: str | None = None
    from_address: str | None = None
    sender_org: str | None = Field(default=None, max_length=253, index=True)
    analysed_at: datetime | None = None
    # Set when retention replaced ``raw`` by nothing; envelope, findings and evidence stay.
    raw_purged_at: datetime | None = None
    # Sender authentication as decided once (canary.assessment.auth_to_json), so
    # re-evaluation never needs DNS again.
    auth: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Content with per-recipient parts removed, hashed: ties one campaign together.
    fingerprint: str | None = Field(default=None, max_length=32, index=True)


class Delivery(SQLModel, table=True):
    """One message to one recipient address, attributed to an identity when possible."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_owner_received", "owner_id", "received_at"),
        Index("ix_delivery_source_received", "source_id", "received_at"),
        # Message lists of one source or one user, newest message first (0007).
        Index("ix_delivery_source_message", "source_id", "message_id"),
        Index("ix_delivery_owner_message", "owner_id", "message_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    recipient: str = Field(max_length=320)
    # Lower case, +tag removed: the form identities are looked up by.
    recipient_key: str = Field(max_length=320, index=True)
    kind: str = Field(default="canary", max_length=16)
    identity_id: int | None = Field(default=None, foreign_key="identity.id", index=True)
    source_id: int | None = Field(default=None, foreign_key="source.id")
    owner_id: int | None = Field(default=None, foreign_key="user_account.id")
    verdict: str | None = Field(default=None, max_length=24, index=True)
    received_at: datetime = Field(default_factory=utcnow)
    # This delivery's own facts: content signals, other sources named, campaign.
    facts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Finding(SQLModel, table=True):
    """The verdict for one delivery, with evidence and a sentence a person can read.

    Re-evaluation never edits a finding: it supersedes it with a new one, so the
    history of what changed and why is kept.
    """

    __tablename__ = "finding"
    __table_args__ = (
        # A user's current findings by verdict, per source or by time: the overview (0007).
        Index(
            "ix_finding_owner_verdict_source",
            "owner_id",
            "verdict",
            "superseded_at",
            "created_at",
            "source_id",
        ),
        # One source's findings, newest first (0007).
        Index("ix_finding_source_owner", "source_id", "owner_id"),
        # The newest current finding of a source and verdict, for the count triggers (0009).
        Index(
            "ix_finding_source_verdict_current",
            "source_id",
            "verdict",
            "superseded_at",
            "created_at",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    owner_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    source_id: int | None = Field(default=None, foreign_key="source.id", index=True)
    verdict: str = Field(max_length=24, index=True)
    sender_org: str | None = Field(default=None, max_length=253)
    evidence: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    sentence: str = ""
    # What differs from the finding this one superseded ("verdict shared -> expected").
    changes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    superseded_at: datetime | None = None


class SourceVerdictCount(SQLModel, table=True):
    """How many current findings of one verdict a source has, and when the newest was made.

    Written only by database triggers on ``finding`` (migration 0009), so it is exact
    after any change to findings; read by the overview and the source pages instead of
    aggregating every current finding.
    """

    __tablename__ = "source_verdict_count"
    # Covering: the overview reads a user's counts from the index alone.
    __table_args__ = (
        Index(
            "ix_source_verdict_count_owner_verdict",
            "owner_id",
            "verdict",
            "source_id",
            "newest_at",
            "findings",
        ),
    )

    # No foreign keys: the row goes when its last finding goes, and a trigger cannot
    # order its writes around the deletion of a source.
    source_id: int = Field(primary_key=True)
    verdict: str = Field(primary_key=True, max_length=24)
    owner_id: int | None = None
    findings: int = 0
    newest_at: datetime | None = None


class OwnerLeakDay(SQLModel, table=True):
    """How many current findings of one verdict an owner has whose delivery arrived on
    one UTC day.

    Written only by database triggers on ``finding`` (migration 0010), so it is exact
    after any change to findings; read by the overview's chart of leaks per week
    instead of joining every recent leak finding to its delivery.
    """

    __tablename__ = "owner_leak_day"

    # Owner and day lead the key: the chart reads one owner's range of days. No foreign
    # keys, as for SourceVerdictCount: the row goes when its last finding goes.
    owner_id: int = Field(primary_key=True)
    day: date = Field(primary_key=True)
    verdict: str = Field(primary_key=True, max_length=24)
    findings: int = 0


class IdentityChange(SQLModel, table=True):
    """A number that moves whenever one of an owner's identities is added, deleted or
    changes a field trace matches on (database triggers, migration 0009), so trace can
    keep those fields in memory and know when to read them again."""

    __tablename__ = "identity_change"

    owner_id: int = Field(primary_key=True)
    changes: int = 0


class Incident(SQLModel, table=True):
    """Findings rolled up per source and kind, with a status the user can change."""

    __tablename__ = "incident"
    # The newest incident per source and kind (0007); status and time make it covering
    # for the overview's "dismissed since the newest finding" test (0009).
    __table_args__ = (
        Index(
            "ix_incident_owner_source_kind",
            "owner_id",
            "source_id",
            "kind",
            "status",
            "updated_at",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    kind: str = Field(max_length=24)
    status: str = Field(default="open", max_length=16)
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    finding_count: int = 0
    organisations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class Study(SQLModel, table=True):
    """A researcher's named measurement: many sites, synthetic personas, one report."""

    __tablename__ = "study"
    __table_args__ = (UniqueConstraint("owner_id", "slug", name="uq_study_owner_slug"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=64)
    locale: str = Field(default="en_US", max_length=16)
    # Opt-in: fetch the confirmation link of the first authenticated mail from a site.
    auto_confirm: bool = False
    notes: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class StudySite(SQLModel, table=True):
    """One site of a study: the source created for it and the plan's category."""

    __tablename__ = "study_site"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    source_id: int = Field(foreign_key="source.id", unique=True)
    category: str = Field(default="", max_length=100)
    plan_line: int | None = None


class ConfirmationAttempt(SQLModel, table=True):
    """The one fetch of a confirmation link for an identity, and what happened."""

    __tablename__ = "confirmation_attempt"

    id: int | None = Field(default=None, primary_key=True)
    identity_id: int = Field(foreign_key="identity.id", unique=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    url: str
    # fetched: got an HTTP answer; refused: not allowed (domain, address); error: network.
    outcome: str = Field(max_length=16)
    status_code: int | None = None
    address: str | None = Field(default=None, max_length=64)
    bytes_read: int = 0
    detail: str = ""
    attempted_at: datetime = Field(default_factory=utcnow)


class SeedBatch(SQLModel, table=True):
    """Seed records made for one vendor at one time, to append to the list it receives."""

    __tablename__ = "seed_batch"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    label: str = Field(default="", max_length=200)
    count: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class SeedRecord(SQLModel, table=True):
    """Membership of an identity in a seed batch."""

    __tablename__ = "seed_record"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = Field(foreign_key="seed_batch.id", index=True)
    identity_id: int = Field(foreign_key="identity.id", unique=True)


class AlertChannel(SQLModel, table=True):
    """Where a user is told about incidents: a webhook URL or an email address."""

    __tablename__ = "alert_channel"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    kind: str = Field(max_length=16)  # webhook | email
    target: str = Field(max_length=2000)  # URL, or a verified forwarding address
    # HMAC-SHA256 key for webhook signatures; kept in clear because signing needs it.
    secret: str | None = Field(default=None, max_length=128)
    enabled: bool = True
    immediate: bool = True  # an alert each time an incident opens or grows
    digest: str = Field(default="none", max_length=16)  # none | daily | weekly
    # The one piece of message content a user may opt into: subjects of recent mail.
    include_subjects: bool = False
    last_digest_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Alert(SQLModel, table=True):
    """One alert to send (outbox row), and afterwards its delivery log entry."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="alert_channel.id", index=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    # SET NULL: an incident emptied by re-evaluation may be deleted; its alerts stay logged.
    incident_id: int | None = Field(
        default=None, foreign_key="incident.id", index=True, ondelete="SET NULL"
    )
    event: str = Field(max_length=16)  # opened | grew | digest | test
    # Counts, source, organisations, verdict, sentence, link: never message bodies.
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class ForwardAddress(SQLModel, table=True):
    """A user's real address that mail may be forwarded to, once verified by a link."""

    __tablename__ = "forward_address"
    __table_args__ = (UniqueConstraint("owner_id", "address", name="uq_forward_owner_address"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    address: str = Field(max_length=320)
    # SHA-256 of the link's token; the token itself is only in the verification mail.
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    verification_sent_at: datetime | None = None
    verified_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ForwardRule(SQLModel, table=True):
    """Forward mail of one source or one identity to a verified address."""

    __tablename__ = "forward_rule"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    source_id: int | None = Field(default=None, foreign_key="source.id", index=True)
    identity_id: int | None = Field(default=None, foreign_key="identity.id", index=True)
    address_id: int = Field(foreign_key="forward_address.id", index=True)
    drop_breach: bool = False  # record, but do not forward, mail judged ``breach``
    created_at: datetime = Field(default_factory=utcnow)


class Forward(SQLModel, table=True):
    """One delivery to forward (outbox row), and afterwards what happened to it."""

    __tablename__ = "forward"
    __table_args__ = (Index("ix_forward_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    address_id: int = Field(foreign_key="forward_address.id", index=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    verdict: str = Field(max_length=24)
    sender_org: str | None = Field(default=None, max_length=253)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
