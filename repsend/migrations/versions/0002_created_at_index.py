"""An index on send_attempt.created_at: the cooldown read filters every run on it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Self-contained, like 0001: it imports nothing from repsend.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_send_attempt_created_at", "send_attempt", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_send_attempt_created_at", table_name="send_attempt")
