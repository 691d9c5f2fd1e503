"""Catch-all subdomains owned by users.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catchall_domain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("domain"),
    )
    with op.batch_alter_table("catchall_domain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catchall_domain_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("catchall_domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catchall_domain_owner_id"))
    op.drop_table("catchall_domain")
