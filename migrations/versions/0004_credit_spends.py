"""credit spends: orders paid from the balance carry a spend key, UNIQUE per user

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("spend_key", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_orders_user_id_spend_key"), ["user_id", "spend_key"])
    # Orders paid with a job's returned credits were named "credits-<job id>": give them their key.
    op.execute("UPDATE orders SET spend_key = 'job:' || substr(pack, 9) WHERE pack LIKE 'credits-%'")


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("uq_orders_user_id_spend_key"), type_="unique")
        batch.drop_column("spend_key")
