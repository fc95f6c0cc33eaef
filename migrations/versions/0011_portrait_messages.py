"""portrait messages: which delivered portrait each chat message shows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08

Replies and reactions name a chat and a message, not a portrait; this table maps one to the other.
Portraits delivered before this revision are filled in from the confirmed delivery chunks, whose
message ids follow their task ids one to one when the whole chunk arrived.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _as_list(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def upgrade() -> None:
    table = op.create_table(
        "portrait_messages",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["generation_tasks.id"],
            name=op.f("fk_portrait_messages_task_id_generation_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chat_id", "message_id", name=op.f("pk_portrait_messages")),
    )
    op.create_index(op.f("ix_portrait_messages_task_id"), "portrait_messages", ["task_id"], unique=False)
    chunks = op.get_bind().execute(
        sa.text(
            "SELECT j.chat_id, d.task_ids, d.message_ids FROM deliveries d "
            "JOIN generation_jobs j ON j.id = d.job_id WHERE d.status = 'sent'"
        )
    )
    now = datetime.now(UTC)
    rows = [
        {"chat_id": chat_id, "message_id": message_id, "task_id": task_id, "created_at": now}
        for chat_id, task_ids, message_ids in chunks
        if len(_as_list(task_ids)) == len(_as_list(message_ids))
        for task_id, message_id in zip(_as_list(task_ids), _as_list(message_ids), strict=True)
    ]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_index(op.f("ix_portrait_messages_task_id"), table_name="portrait_messages")
    op.drop_table("portrait_messages")
