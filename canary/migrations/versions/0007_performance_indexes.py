"""Indexes for the dashboard and API at millions of messages.

Revision ID: 0007
Revises: 0006

Each index serves one query that otherwise scans a large table (bench/dashboard.py
measures them):

* ``ix_finding_owner_verdict_source``: the overview's status per source (covering) and
  the leak timeline (a range of creation times) filter a user's current findings by
  verdict;
* ``ix_finding_source_owner``: a source page's findings, newest first;
* ``ix_delivery_source_message`` / ``ix_delivery_owner_message``: the message list of
  one source or one user walks message ids newest first without touching the rows;
* ``ix_incident_owner_source_kind``: the newest incident per source and kind.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.create_index(
            "ix_finding_owner_verdict_source",
            ["owner_id", "verdict", "superseded_at", "created_at", "source_id"],
            unique=False,
        )
        batch_op.create_index("ix_finding_source_owner", ["source_id", "owner_id"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_source_message", ["source_id", "message_id"], unique=False
        )
        batch_op.create_index("ix_delivery_owner_message", ["owner_id", "message_id"], unique=False)
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_owner_source_kind", ["owner_id", "source_id", "kind"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_owner_source_kind")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_owner_message")
        batch_op.drop_index("ix_delivery_source_message")
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_index("ix_finding_source_owner")
        batch_op.drop_index("ix_finding_owner_verdict_source")
