"""redos: new takes of delivered portraits (a reply's redo, the likeness guarantee's)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("pack_job_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request", sa.String(length=64), nullable=False),
        sa.Column("source_task_ids", sa.JSON(), nullable=False),
        sa.Column("reply_to_message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["generation_jobs.id"], name=op.f("fk_redos_job_id_generation_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pack_job_id"],
            ["generation_jobs.id"],
            name=op.f("fk_redos_pack_job_id_generation_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_redos_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redos")),
        sa.UniqueConstraint("job_id", name=op.f("uq_redos_job_id")),
        sa.UniqueConstraint("pack_job_id", "request", name=op.f("uq_redos_pack_job_id_request")),
    )
    op.create_index(op.f("ix_redos_user_id"), "redos", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_redos_user_id"), table_name="redos")
    op.drop_table("redos")
