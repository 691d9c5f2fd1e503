"""Stored analysis facts: message authentication, content fingerprint, delivery facts,
and the list of changes a re-evaluated finding made.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_message_fingerprint"), ["fingerprint"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("facts", sa.JSON(), nullable=True))
    with op.batch_alter_table("finding", schema=None) as batch_op:
        # Findings made before this revision changed nothing: an empty list.
        batch_op.add_column(
            sa.Column("changes", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_column("changes")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("facts")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_fingerprint"))
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("auth")
