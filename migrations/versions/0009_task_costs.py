"""task costs: each generation task records the model of its last create and what its creates cost

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Every create is priced at the model's price per image (USD, providers/ tables or the
KIE_PRICE_PER_IMAGE / REPLICATE_PRICE_PER_IMAGE settings) and added to ``cost_micros`` (millionths of
a USD, an integer so sums are exact on both databases). Existing tasks cost 0: their prices were
never recorded, and a made-up figure would be worse than none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.add_column(sa.Column("model", sa.String(length=160), nullable=True))
        batch.add_column(sa.Column("cost_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.drop_column("cost_micros")
        batch.drop_column("model")
