"""Each real run keeps its decisions counted by reason, so that a manager sees why people were left out,
run by run, after the fact (a dry run writes nothing, ever).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Self-contained, like 0001: it imports nothing from repsend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_reason",
        sa.Column("run_id", sa.String(), primary_key=True, nullable=False),
        sa.Column("reason", sa.String(), primary_key=True, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_reason")
