"""Which processes are running on this database, and facts every process of a deploy shares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DeployMarker, ProcessHeartbeat, utcnow
from storage.sql import insert_for, rows_changed

BOT_ROLE = "bot"
SCHEDULER_ROLE = "scheduler"


async def beat(session: AsyncSession, *, instance_id: str, role: str, host: str, pid: int, now: datetime) -> None:
    insert = insert_for(session, ProcessHeartbeat).values(
        instance_id=instance_id, role=role, host=host, pid=pid, started_at=now, beat_at=now
    )
    await session.execute(
        insert.on_conflict_do_update(index_elements=[ProcessHeartbeat.instance_id], set_={"beat_at": now})
    )


async def forget(session: AsyncSession, instance_id: str) -> None:
    await session.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.instance_id == instance_id))


async def live_processes(session: AsyncSession, role: str, beaten_since: datetime) -> list[ProcessHeartbeat]:
    rows = await session.execute(
        select(ProcessHeartbeat)
        .where(ProcessHeartbeat.role == role, ProcessHeartbeat.beat_at >= beaten_since)
        .order_by(ProcessHeartbeat.started_at, ProcessHeartbeat.instance_id)
    )
    return list(rows.scalars())


async def remove_silent(session: AsyncSession, beaten_before: datetime) -> int:
    return rows_changed(await session.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.beat_at < beaten_before)))


async def replace_marker(session: AsyncSession, name: str, value: str) -> bool:
    """Set ``name`` to ``value``; True only for the one caller that changed it (the others see it set)."""
    now = utcnow()
    insert = insert_for(session, DeployMarker).values(name=name, value=value, updated_at=now)
    upsert = insert.on_conflict_do_update(
        index_elements=[DeployMarker.name],
        set_={"value": value, "updated_at": now},
        where=DeployMarker.value != value,
    ).returning(DeployMarker.name)
    return (await session.execute(upsert)).first() is not None
