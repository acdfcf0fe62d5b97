"""settlements as an outbox: a release or refund row is pending until mined or definitively refused

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as t:
        t.add_column(sa.Column("outcome", sa.String(32)))
        t.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        t.add_column(sa.Column("next_at", sa.DateTime()))
    op.create_index("ix_transactions_state", "transactions", ["state"])


def downgrade() -> None:
    op.drop_index("ix_transactions_state", "transactions")
    with op.batch_alter_table("transactions") as t:
        t.drop_column("next_at")
        t.drop_column("attempts")
        t.drop_column("outcome")
