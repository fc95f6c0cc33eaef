"""style examples: an admin's example sets, their free jobs, and each style's example portraits

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08

The style picker shows each style with example portraits made from a consenting model's selfies.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "example_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("avatar_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("live_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["avatar_id"], ["avatars.id"], name=op.f("fk_example_sets_avatar_id_avatars"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_example_sets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_example_sets")),
    )
    op.create_index("ix_example_sets_status", "example_sets", ["status"], unique=False)
    op.create_table(
        "example_jobs",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["generation_jobs.id"],
            name=op.f("fk_example_jobs_job_id_generation_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_id"], ["example_sets.id"], name=op.f("fk_example_jobs_set_id_example_sets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_example_jobs")),
    )
    op.create_index(op.f("ix_example_jobs_set_id"), "example_jobs", ["set_id"], unique=False)
    op.create_table(
        "style_examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("style", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_id"], ["example_sets.id"], name=op.f("fk_style_examples_set_id_example_sets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["generation_tasks.id"],
            name=op.f("fk_style_examples_task_id_generation_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_style_examples")),
        sa.UniqueConstraint("set_id", "style", "position", name=op.f("uq_style_examples_set_id_style_position")),
    )


def downgrade() -> None:
    op.drop_table("style_examples")
    op.drop_index(op.f("ix_example_jobs_set_id"), table_name="example_jobs")
    op.drop_table("example_jobs")
    op.drop_index("ix_example_sets_status", table_name="example_sets")
    op.drop_table("example_sets")
