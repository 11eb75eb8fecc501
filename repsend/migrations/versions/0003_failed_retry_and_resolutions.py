"""A refused (failed) address may be tried again; a person's resolution of an ``unknown`` attempt is kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

- ``resolved_as`` (``sent`` or ``not_sent``), ``resolved_at``, ``resolved_by``, ``resolved_note``: what a
  person found out about an ``unknown`` attempt (``repsend resolve``). The row itself is kept as it was.
- The unique key that makes a send at most once (``uq_send_attempt_campaign_address_live``) now leaves
  out ``failed`` rows, as it left out ``deferred`` ones, and ``unknown`` rows resolved as not sent: such
  an address may be claimed again (``[campaign] retry_failed``, or after ``resolve --not-sent``), while a
  ``sent``, ``sending`` or unresolved ``unknown`` row still holds it. Every row that satisfied the old key
  satisfies the new one (it only leaves rows out), so the upgrade cannot fail on existing data.

Self-contained, like 0001: it imports nothing from repsend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "uq_send_attempt_campaign_address_live"
OLD_LIVE = "state != 'deferred'"
LIVE = "state != 'deferred' AND state != 'failed' AND (resolved_as IS NULL OR resolved_as != 'not_sent')"


def _key(where: str) -> None:
    op.create_index(KEY, "send_attempt", ["campaign", "address"], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.add_column("send_attempt", sa.Column("resolved_as", sa.String(), nullable=True))
    op.add_column("send_attempt", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("send_attempt", sa.Column("resolved_by", sa.String(), nullable=True))
    op.add_column("send_attempt", sa.Column("resolved_note", sa.Text(), nullable=True))
    # Dropped and made again in the same transaction (the caller's): no moment without the key.
    op.drop_index(KEY, table_name="send_attempt")
    _key(LIVE)


def downgrade() -> None:
    # Fails (and changes nothing) when a failed address was tried again: the old key cannot hold both rows.
    op.drop_index(KEY, table_name="send_attempt")
    with op.batch_alter_table("send_attempt") as batch:
        for name in ("resolved_note", "resolved_by", "resolved_at", "resolved_as"):
            batch.drop_column(name)
    _key(OLD_LIVE)
