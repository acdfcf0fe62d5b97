"""jobs on both sides and their numbered events

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False, index=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("quote", sa.JSON(), nullable=False),
        sa.Column("cp_peer_id", sa.String(128)),
        sa.Column("cp_seq", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("reason", sa.String(1000)),
        sa.Column("tx_hash", sa.String(66), unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "cp_jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("sp_peer_id", sa.String(128), nullable=False),
        sa.Column("tx_hash", sa.String(66), unique=True),
        sa.Column("state", sa.String(32), nullable=False, index=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("reason", sa.String(1000)),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("side", sa.String(2), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("side", "job_id", "seq"),
    )

    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tx_hash", sa.String(66)),
        sa.Column("amount", sa.String(80)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.String(1000)),
        sa.Column("at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transactions")
    op.drop_table("job_events")
    op.drop_table("cp_jobs")
    op.drop_table("sp_jobs")
