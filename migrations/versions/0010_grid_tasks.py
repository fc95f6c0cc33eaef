"""grid tasks: a task of a grid pack names its grid (per job) and its panel in it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

A grid pack's create makes one 2×2 grid, split into four portraits: its four tasks share
``grid_group`` (0, 1, ... within the job) and each is one panel (``grid_slot`` 0..3, row-major). Both
are NULL for every ordinary task, which is every task that existed before this revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.add_column(sa.Column("grid_group", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("grid_slot", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.drop_column("grid_slot")
        batch.drop_column("grid_group")
