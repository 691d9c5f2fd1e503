"""Counts kept up to date by the database: current findings per owner, day and verdict.

Revision ID: 0010
Revises: 0009

The overview's chart of leaks per week grouped every current leak finding of the
last twelve weeks by the UTC day its delivery arrived, joining each finding to its
delivery: tens of thousands of random reads, seconds at a million messages
(bench/dashboard.py). ``owner_leak_day`` holds the answer and triggers on ``finding``
keep it exact the way 0009 keeps ``source_verdict_count``: a new finding, a
superseded one, a changed verdict, owner or delivery, a deleted one. Every verdict is
counted, not only the leak kinds, so the table does not depend on which verdicts the
overview calls leaks; it stays small (owners x days x verdicts).

The day is the UTC calendar day of ``delivery.received_at``, read from the delivery
when a finding changes. SQLite stores that column as UTC text ("2026-03-01
12:00:00.000000", SQLModel's UTCDateTime), so ``date()`` of it is the UTC day, the
bucket the chart used before; PostgreSQL stores timestamptz, whose ``date()`` would
follow the session's time zone, so it is converted to UTC first. A finding's foreign
key keeps its delivery until the finding is gone (no cascade), so the delete trigger
always finds the day. Nothing changes a delivery's ``received_at`` once it is written;
a writer that starts doing so must move the counts of its findings too.

A row disappears when its count drops to zero. A later migration that rebuilds
``finding`` on SQLite (a batch "move and copy") drops these triggers with the old table
and must create them again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The UTC day of a delivery's received_at, per backend (see the docstring).
_DAY = {
    "sqlite": "date({column})",
    "postgresql": "(({column}) AT TIME ZONE 'UTC')::date",
}

# Plain SQL otherwise read alike by SQLite and PostgreSQL, so both keep the same rules.
_REMOVE = """
UPDATE owner_leak_day SET findings = findings - 1
WHERE owner_id = OLD.owner_id AND verdict = OLD.verdict
  AND day = (SELECT {day} FROM delivery d WHERE d.id = OLD.delivery_id)
  AND OLD.superseded_at IS NULL;
DELETE FROM owner_leak_day
WHERE owner_id = OLD.owner_id AND verdict = OLD.verdict
  AND day = (SELECT {day} FROM delivery d WHERE d.id = OLD.delivery_id)
  AND findings <= 0;
"""

_ADD = """
INSERT INTO owner_leak_day (owner_id, day, verdict, findings)
SELECT NEW.owner_id, {day}, NEW.verdict, 1 FROM delivery d
WHERE d.id = NEW.delivery_id AND NEW.superseded_at IS NULL AND NEW.owner_id IS NOT NULL
ON CONFLICT (owner_id, day, verdict) DO UPDATE SET
    findings = owner_leak_day.findings + 1;
"""

# source_id is not here: a merge moves findings between sources of one owner, which
# changes no owner, day or verdict.
_COLUMNS = "superseded_at, verdict, owner_id, delivery_id"


def _sqlite_triggers() -> tuple[str, ...]:
    day = _DAY["sqlite"].format(column="d.received_at")
    add, remove = _ADD.format(day=day), _REMOVE.format(day=day)
    return (
        f"CREATE TRIGGER owner_leak_day_insert AFTER INSERT ON finding BEGIN {add} END",
        f"CREATE TRIGGER owner_leak_day_update AFTER UPDATE OF {_COLUMNS} ON finding "
        f"BEGIN {remove} {add} END",
        f"CREATE TRIGGER owner_leak_day_delete AFTER DELETE ON finding BEGIN {remove} END",
    )


def _postgresql_triggers() -> tuple[str, ...]:
    day = _DAY["postgresql"].format(column="d.received_at")
    return (
        f"""
CREATE FUNCTION owner_leak_day_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_REMOVE.format(day=day)}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_ADD.format(day=day)}
    END IF;
    RETURN NULL;
END
$$
""",
        f"""
CREATE TRIGGER owner_leak_day AFTER INSERT OR DELETE OR UPDATE OF {_COLUMNS} ON finding
FOR EACH ROW EXECUTE FUNCTION owner_leak_day_apply()
""",
    )


_BACKFILL = """
INSERT INTO owner_leak_day (owner_id, day, verdict, findings)
SELECT f.owner_id, {day}, f.verdict, count(*)
FROM finding f JOIN delivery d ON d.id = f.delivery_id
WHERE f.superseded_at IS NULL AND f.owner_id IS NOT NULL
GROUP BY f.owner_id, {day}, f.verdict
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "owner_leak_day",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("verdict", sa.String(length=24), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        # Owner and day first: the chart reads one owner's range of days.
        sa.PrimaryKeyConstraint("owner_id", "day", "verdict"),
    )
    day = _DAY["postgresql" if dialect == "postgresql" else "sqlite"]
    op.execute(_BACKFILL.format(day=day.format(column="d.received_at")))
    triggers = _postgresql_triggers() if dialect == "postgresql" else _sqlite_triggers()
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS owner_leak_day ON finding")
        op.execute("DROP FUNCTION IF EXISTS owner_leak_day_apply()")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS owner_leak_day_{event}")
    op.drop_table("owner_leak_day")
