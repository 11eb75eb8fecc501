"""Each attempt keeps the template's A/B variant its mail was written in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

- ``send_attempt.variant``: the variant (``templates/<name>/<language>.<variant>.txt``) of the mail, so
  that outcomes can compare the variants; "" for a template without variants and for a held-out contact.
  NOT NULL with a server default of "": every row written before reads as "" (no variant), and adding the
  column rewrites nothing (SQLite and PostgreSQL add a column with a constant default in place).

Self-contained, like 0001: it imports nothing from repsend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("send_attempt", sa.Column("variant", sa.String(), nullable=False, server_default=sa.text("''")))


def downgrade() -> None:
    # batch: SQLite before 3.35 has no DROP COLUMN; Alembic copies the table (its indexes with it) instead.
    with op.batch_alter_table("send_attempt") as batch:
        batch.drop_column("variant")
