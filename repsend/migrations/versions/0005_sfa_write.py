"""The way back to the SFA: each record repsend writes there (a Task per sent mail, an opt-out per
suppressed address), with what Salesforce answered.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

- ``sfa_write``: one row per thing to write back. ``what`` is ``task`` (``attempt_id``: the sent mail) or
  ``opt_out`` (``suppression_id``: an opt-out or complaint, for every Contact and Lead with ``address``).
  ``payload`` holds the Task record as JSON until it is written (the body is dropped then: Salesforce has
  it), or what an opt-out changed. ``state``: ``pending``, ``in_flight`` (claimed by ``claimed_by`` at
  ``claimed_at`` before the call: a run killed then leaves it so, and the next sync looks it up before
  writing), ``written`` (``sfa_id``), ``rejected`` (``error``, kept until a retry succeeds; ``tries``),
  ``exported`` (to a Data Loader file), ``cancelled`` (an opt-out removed before it was written).

Self-contained, like 0001: it imports nothing from repsend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sfa_write",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("what", sa.String(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("suppression_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("sfa_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_sfa_write_what_state", "sfa_write", ["what", "state"])
    op.create_index("ix_sfa_write_suppression_id", "sfa_write", ["suppression_id"])


def downgrade() -> None:
    op.drop_index("ix_sfa_write_suppression_id", table_name="sfa_write")
    op.drop_index("ix_sfa_write_what_state", table_name="sfa_write")
    op.drop_table("sfa_write")
