"""Conversation state (aiogram FSM) in our own database, for deployments without Redis.

Inside an update (``update_session`` set by the bot's session middleware) the step is written through
the update's own session and committed at once, with whatever the handler wrote before it: a second
session would wait, on SQLite, for the write lock that very update holds (and a service the handler
calls next would wait for ours). Outside an update each call is a short transaction of its own.
Either way a step is durable the moment it is set, so a process killed right after resumes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, KeyBuilder, StateType, StorageKey
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import FsmRecord, utcnow
from storage.sql import insert_for, rows_changed

update_session: ContextVar[AsyncSession | None] = ContextVar("pinglass_update_session", default=None)


class DatabaseStorage(BaseStorage):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], key_builder: KeyBuilder | None = None) -> None:
        self.sessionmaker = sessionmaker
        # The bot id is part of the key: two bots sharing a database never read each other's steps.
        self.key_builder = key_builder or DefaultKeyBuilder(with_bot_id=True)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self._write(self.key_builder.build(key, "state"), {"state": value})

    async def get_state(self, key: StorageKey) -> str | None:
        record = await self._read(self.key_builder.build(key, "state"))
        return None if record is None else record.state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._write(self.key_builder.build(key, "state"), {"data": dict(data)})

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        record = await self._read(self.key_builder.build(key, "state"))
        return {} if record is None else dict(record.data or {})

    async def close(self) -> None:
        """The engine belongs to the application, which disposes of it."""

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """The update's session when inside one, else a new one."""
        current = update_session.get()
        if current is not None:
            yield current
            return
        async with self.sessionmaker() as session:
            yield session

    async def _read(self, key: str) -> FsmRecord | None:
        async with self._session() as session:
            began = not session.in_transaction()
            result = await session.execute(select(FsmRecord.state, FsmRecord.data).where(FsmRecord.key == key))
            row = result.one_or_none()
            if began and session is update_session.get():
                # A look at the step that opened the update's transaction ends it too: otherwise the update
                # holds a pooled connection while it waits (an album's photos wait for their siblings)
                # and while the services it calls take connections of their own.
                await session.commit()
        return None if row is None else FsmRecord(key=key, state=row.state, data=row.data)

    async def _write(self, key: str, values: dict[str, Any]) -> None:
        now = utcnow()
        async with self._session() as session:
            insert = insert_for(session, FsmRecord).values(
                key=key, state=values.get("state"), data=values.get("data", {}), updated_at=now
            )
            upsert = insert.on_conflict_do_update(
                index_elements=[FsmRecord.key], set_={**values, "updated_at": now}
            ).returning(FsmRecord.state, FsmRecord.data)
            state, data = (await session.execute(upsert)).one()
            if state is None and not data:
                # A finished conversation leaves no row behind (aiogram clears state and data on finish).
                await session.execute(delete(FsmRecord).where(FsmRecord.key == key))
            await session.commit()


async def remove_stale(session: AsyncSession, untouched_since: datetime) -> int:
    """Forget conversations nobody continued since ``untouched_since`` (housekeeping)."""
    return rows_changed(await session.execute(delete(FsmRecord).where(FsmRecord.updated_at < untouched_since)))
