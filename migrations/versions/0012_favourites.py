"""favourites: portraits marked with a positive reaction, and the face box of each checked portrait

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08

``favourites`` holds one row per (user, portrait) while the user's positive reaction is on it.
``generation_tasks.face_box`` keeps where the identity check found the face ([left, top, size] in
the stored portrait's pixels) so a profile photo can be cropped around it; NULL for every portrait
checked before this revision, which is then cropped from its centre.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "favourites",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_favourites_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["generation_tasks.id"],
            name=op.f("fk_favourites_task_id_generation_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "task_id", name=op.f("pk_favourites")),
    )
    op.create_index(op.f("ix_favourites_task_id"), "favourites", ["task_id"], unique=False)
    op.create_index(op.f("ix_favourites_created_at"), "favourites", ["created_at"], unique=False)
    with op.batch_alter_table("generation_tasks") as batch:
        batch.add_column(sa.Column("face_box", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.drop_column("face_box")
    op.drop_index(op.f("ix_favourites_created_at"), table_name="favourites")
    op.drop_index(op.f("ix_favourites_task_id"), table_name="favourites")
    op.drop_table("favourites")
