"""disk as a reserved and admitted resource: the onboarding's disk share and each job's held disk

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0 on an existing onboarding means "chosen before disk was reserved": the service gives it the
    # default share at start (dms.onboarding.rules.default_disk_mb).
    with op.batch_alter_table("onboarding") as t:
        t.add_column(sa.Column("disk_mb", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("allocations") as t:
        t.add_column(sa.Column("disk_mb", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("allocations") as t:
        t.drop_column("disk_mb")
    with op.batch_alter_table("onboarding") as t:
        t.drop_column("disk_mb")
