"""Counts kept up to date by the database: current findings per source and verdict,
and changes to each owner's identities.

Revision ID: 0009
Revises: 0008

The overview and a source page need, per source and verdict, how many current (not
superseded) findings there are and when the newest was made. Aggregating every
current finding on each request took seconds at a million messages
(bench/dashboard.py), so ``source_verdict_count`` holds the answer and triggers on
``finding`` keep it exact through every change to a finding: a new finding, a
superseded one, one moved to another source by a merge, a deleted one. Triggers
rather than application code, so that every writer (the analysis, a merge, a bulk
load, a future purge) keeps the table right without knowing about it.

A row disappears when its count drops to zero, so deleting a source leaves nothing
behind. ``ix_finding_source_verdict_current`` lets the triggers find the newest
remaining finding of a source and verdict when the newest one is superseded, without
reading the source's other findings. ``ix_incident_owner_source_kind`` gains the
status and time, so telling whether a kind was dismissed reads no incident rows.

``identity_change`` counts, per owner, changes to the identity fields that trace
matches on; trace keeps an owner's names and codes in memory and reads them again only
when that number moved, instead of reading every identity on each request.

A later migration that rebuilds ``finding`` on SQLite (a batch "move and copy") drops
its triggers with the old table and must create them again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Plain SQL that SQLite and PostgreSQL read alike, so both keep the same rules.
_REMOVE = """
UPDATE source_verdict_count SET
    findings = findings - 1,
    newest_at = CASE WHEN newest_at > OLD.created_at THEN newest_at ELSE (
        SELECT max(f.created_at) FROM finding f
        WHERE f.source_id = OLD.source_id AND f.verdict = OLD.verdict
          AND f.superseded_at IS NULL
    ) END
WHERE source_id = OLD.source_id AND verdict = OLD.verdict
  AND OLD.superseded_at IS NULL AND OLD.source_id IS NOT NULL;
DELETE FROM source_verdict_count
WHERE source_id = OLD.source_id AND verdict = OLD.verdict AND findings <= 0;
"""

_ADD = """
INSERT INTO source_verdict_count (source_id, verdict, owner_id, findings, newest_at)
SELECT NEW.source_id, NEW.verdict, NEW.owner_id, 1, NEW.created_at
WHERE NEW.superseded_at IS NULL AND NEW.source_id IS NOT NULL
ON CONFLICT (source_id, verdict) DO UPDATE SET
    findings = source_verdict_count.findings + 1,
    owner_id = excluded.owner_id,
    newest_at = CASE
        WHEN source_verdict_count.newest_at IS NULL
          OR excluded.newest_at > source_verdict_count.newest_at
        THEN excluded.newest_at ELSE source_verdict_count.newest_at END;
"""

_COLUMNS = "superseded_at, source_id, verdict, created_at, owner_id"

_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER finding_count_insert AFTER INSERT ON finding BEGIN {_ADD} END",
    f"CREATE TRIGGER finding_count_update AFTER UPDATE OF {_COLUMNS} ON finding "
    f"BEGIN {_REMOVE} {_ADD} END",
    f"CREATE TRIGGER finding_count_delete AFTER DELETE ON finding BEGIN {_REMOVE} END",
)

_POSTGRESQL = (
    f"""
CREATE FUNCTION finding_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_REMOVE}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_ADD}
    END IF;
    RETURN NULL;
END
$$
""",
    f"""
CREATE TRIGGER finding_count AFTER INSERT OR DELETE OR UPDATE OF {_COLUMNS} ON finding
FOR EACH ROW EXECUTE FUNCTION finding_count_apply()
""",
)

# Every new, deleted or re-keyed identity bumps its owner's number (both owners when
# an identity changes hands).
_BUMP = """
INSERT INTO identity_change (owner_id, changes) VALUES ({row}.owner_id, 1)
ON CONFLICT (owner_id) DO UPDATE SET changes = identity_change.changes + 1;
"""
_IDENTITY_COLUMNS = "owner_id, name_key, reference, postal_line"

_SQLITE_IDENTITY_TRIGGERS = (
    "CREATE TRIGGER identity_change_insert AFTER INSERT ON identity "
    f"BEGIN {_BUMP.format(row='NEW')} END",
    f"CREATE TRIGGER identity_change_update AFTER UPDATE OF {_IDENTITY_COLUMNS} ON identity "
    f"BEGIN {_BUMP.format(row='OLD')} {_BUMP.format(row='NEW')} END",
    "CREATE TRIGGER identity_change_delete AFTER DELETE ON identity "
    f"BEGIN {_BUMP.format(row='OLD')} END",
)

_POSTGRESQL_IDENTITY = (
    f"""
CREATE FUNCTION identity_change_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_BUMP.format(row="OLD")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_BUMP.format(row="NEW")}
    END IF;
    RETURN NULL;
END
$$
""",
    f"""
CREATE TRIGGER identity_change AFTER INSERT OR DELETE OR UPDATE OF {_IDENTITY_COLUMNS}
ON identity FOR EACH ROW EXECUTE FUNCTION identity_change_apply()
""",
)

_BACKFILL = """
INSERT INTO source_verdict_count (source_id, verdict, owner_id, findings, newest_at)
SELECT source_id, verdict, max(owner_id), count(*), max(created_at)
FROM finding
WHERE superseded_at IS NULL AND source_id IS NOT NULL
GROUP BY source_id, verdict
"""


def upgrade() -> None:
    op.create_table(
        "source_verdict_count",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=24), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("newest_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_id", "verdict"),
    )
    with op.batch_alter_table("source_verdict_count", schema=None) as batch_op:
        batch_op.create_index(
            "ix_source_verdict_count_owner_verdict",
            ["owner_id", "verdict", "source_id", "newest_at", "findings"],
            unique=False,
        )
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.create_index(
            "ix_finding_source_verdict_current",
            ["source_id", "verdict", "superseded_at", "created_at"],
            unique=False,
        )
    op.create_table(
        "identity_change",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id"),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_owner_source_kind")
        batch_op.create_index(
            "ix_incident_owner_source_kind",
            ["owner_id", "source_id", "kind", "status", "updated_at"],
            unique=False,
        )
    op.execute(_BACKFILL)
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRESQL + _POSTGRESQL_IDENTITY:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS + _SQLITE_IDENTITY_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS finding_count ON finding")
        op.execute("DROP FUNCTION IF EXISTS finding_count_apply()")
        op.execute("DROP TRIGGER IF EXISTS identity_change ON identity")
        op.execute("DROP FUNCTION IF EXISTS identity_change_apply()")
    else:
        for name in ("finding_count", "identity_change"):
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{event}")
    op.drop_table("identity_change")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_owner_source_kind")
        batch_op.create_index(
            "ix_incident_owner_source_kind", ["owner_id", "source_id", "kind"], unique=False
        )
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_index("ix_finding_source_verdict_current")
    with op.batch_alter_table("source_verdict_count", schema=None) as batch_op:
        batch_op.drop_index("ix_source_verdict_count_owner_verdict")
    op.drop_table("source_verdict_count")
