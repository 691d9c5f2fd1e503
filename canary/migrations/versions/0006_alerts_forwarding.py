"""Alerts (channels and outbox), forwarding (addresses, rules, outbox), raw purge time.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _outbox_columns() -> list[sa.Column]:
    return [
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_purged_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "alert_channel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("immediate", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.String(length=16), nullable=False),
        sa.Column("include_subjects", sa.Boolean(), nullable=False),
        sa.Column("last_digest_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_channel", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_channel_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        *_outbox_columns(),
        sa.ForeignKeyConstraint(["channel_id"], ["alert_channel.id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["owner_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_alert_state_next", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "forward_address",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("verification_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "address", name="uq_forward_owner_address"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("forward_address", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_forward_address_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "forward_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("drop_breach", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["address_id"], ["forward_address.id"]),
        sa.ForeignKeyConstraint(["identity_id"], ["identity.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["user_account.id"]),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("forward_rule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_forward_rule_address_id"), ["address_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_forward_rule_identity_id"), ["identity_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_forward_rule_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_forward_rule_source_id"), ["source_id"], unique=False)

    op.create_table(
        "forward",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=24), nullable=False),
        sa.Column("sender_org", sa.String(length=253), nullable=True),
        *_outbox_columns(),
        sa.ForeignKeyConstraint(["address_id"], ["forward_address.id"]),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("forward", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_forward_address_id"), ["address_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_forward_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_forward_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_forward_state_next", ["state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_table("forward")
    op.drop_table("forward_rule")
    op.drop_table("forward_address")
    op.drop_table("alert")
    op.drop_table("alert_channel")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("raw_purged_at")
