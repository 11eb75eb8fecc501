"""What came back: the addresses no run may mail (opt-outs, hard bounces, complaints), and the messages
already read from the bounce and opt-out mailboxes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

- ``suppression``: one row per time an address was suppressed (``kind`` opt_out, bounce or complaint),
  with where it came from (``source``: the optout command, the unsubscribe link, the inbox...), a
  reason, the campaign if known, who and when. A removal (``repsend optout --remove``) fills
  ``removed_at``/``removed_by``/``removed_reason``: the row is kept, so that the log shows the mistake
  and its correction.
- ``inbox_message``: the key (Message-ID, or a digest of a message without one) of every message
  ``repsend inbox`` sorted, so that a second reading changes nothing.

Self-contained, like 0001: it imports nothing from repsend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("campaign", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(), nullable=True),
        sa.Column("removed_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_suppression_address", "suppression", ["address"])
    op.create_table(
        "inbox_message",
        sa.Column("key", sa.String(), primary_key=True, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("address", sa.String(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inbox_message")
    op.drop_index("ix_suppression_address", table_name="suppression")
    op.drop_table("suppression")
