"""tap keys: an order and a broadcast draft name the update that made them, UNIQUE per user

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Telegram posts an update again when the process handling it died before answering the webhook.
The pack choice (a callback query) and an admin's broadcast text (a message) each insert a row;
keyed by the update that asked for it, the second delivery finds the first row instead of adding one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("created_by", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_orders_user_id_created_by"), ["user_id", "created_by"])
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("source_message_id", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_broadcasts_created_by_source_message_id"), ["created_by", "source_message_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_constraint(op.f("uq_broadcasts_created_by_source_message_id"), type_="unique")
        batch.drop_column("source_message_id")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("uq_orders_user_id_created_by"), type_="unique")
        batch.drop_column("created_by")
