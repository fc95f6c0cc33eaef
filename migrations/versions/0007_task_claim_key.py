"""task claim key: the claim queue's order stored on each task, and the index that serves claims

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Claiming due tasks used to join every pending task to its job and sort the whole backlog on each
claim. Each task now carries its place in the queue (``studio.generation.claim_key``) and the
index (status, claim_key) hands out the next few without a sort. Existing tasks get the same key,
computed here in SQL (the format is fixed: keep this in step with claim_key, never import it).
The due index gains the id, so due polls, ordered by (next_poll_at, id), need no sort either.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Fixed-width digits: 999999 - priority (6), 0 for a job's first portrait else 1 (1), the job's
# creation in UTC as YYYYMMDDHHMMSS + microseconds (20), job id (10), position (5).
CLAIM_KEY_LENGTH = 42

POSTGRESQL_BACKFILL = """
UPDATE generation_tasks AS t
SET claim_key = lpad((999999 - j.priority)::text, 6, '0')
    || CASE WHEN t."position" = 0 THEN '0' ELSE '1' END
    || to_char(j.created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
    || lpad(j.id::text, 10, '0')
    || lpad(t."position"::text, 5, '0')
FROM generation_jobs AS j
WHERE j.id = t.job_id
"""

# SQLite keeps these datetimes as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff': strip the separators.
SQLITE_BACKFILL = """
UPDATE generation_tasks
SET claim_key = (
    SELECT printf('%06d', 999999 - j.priority)
        || CASE WHEN generation_tasks."position" = 0 THEN '0' ELSE '1' END
        || substr(
            replace(replace(replace(replace(replace(j.created_at, '-', ''), ' ', ''), 'T', ''), ':', ''), '.', '')
                || '000000',
            1,
            20
        )
        || printf('%010d', j.id)
        || printf('%05d', generation_tasks."position")
    FROM generation_jobs AS j
    WHERE j.id = generation_tasks.job_id
)
"""


def upgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.add_column(sa.Column("claim_key", sa.String(length=CLAIM_KEY_LENGTH), nullable=True))
    dialect = op.get_bind().dialect.name
    op.execute(POSTGRESQL_BACKFILL if dialect == "postgresql" else SQLITE_BACKFILL)
    with op.batch_alter_table("generation_tasks") as batch:
        batch.alter_column("claim_key", existing_type=sa.String(length=CLAIM_KEY_LENGTH), nullable=False)
        batch.create_index("ix_generation_tasks_claim", ["status", "claim_key"], unique=False)
        # Due polls come out in (next_poll_at, id) order: with id in the index PostgreSQL sorts nothing.
        batch.drop_index("ix_generation_tasks_due")
        batch.create_index("ix_generation_tasks_due", ["status", "next_poll_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("generation_tasks") as batch:
        batch.drop_index("ix_generation_tasks_due")
        batch.create_index("ix_generation_tasks_due", ["status", "next_poll_at"], unique=False)
        batch.drop_index("ix_generation_tasks_claim")
        batch.drop_column("claim_key")
