"""Statements and commits are never cut off halfway: a stop that cancels a worker inside one lets it
finish (and its connection go back to the pool whole), then the cancellation goes on; SQLite's write
lock is free afterwards."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storage.models import User, utcnow


def _user(telegram_id: int) -> User:
    now = utcnow()
    return User(telegram_id=telegram_id, language="en", created_at=now, last_seen_at=now)


async def test_a_commit_cancelled_midway_is_carried_through_and_leaves_the_write_lock_free(
    sqlite_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    loop = asyncio.get_running_loop()
    writers: list[asyncio.Task[None]] = []

    async def writer() -> None:
        async with sqlite_sessionmaker() as session:
            session.add(_user(501))
            await session.commit()

    def cancel_the_writer(_session: Session) -> None:
        # Twice, as a stop does (its own cancel, then the scheduler's), while the commit is under way.
        loop.call_soon_threadsafe(writers[0].cancel)
        loop.call_soon_threadsafe(_cancel_on_next_turn, loop, writers[0])

    event.listen(Session, "before_commit", cancel_the_writer)
    try:
        writers.append(asyncio.create_task(writer()))
        with pytest.raises(asyncio.CancelledError):
            await writers[0]
    finally:
        event.remove(Session, "before_commit", cancel_the_writer)

    assert _write_lock_is_free(sqlite_sessionmaker)
    async with sqlite_sessionmaker() as session:
        session.add(_user(502))
        await session.commit()
    async with sqlite_sessionmaker() as session:
        kept = set((await session.execute(select(User.telegram_id))).scalars())
    assert {501, 502} <= kept  # the cancelled commit was carried through, not abandoned


async def test_a_statement_cancelled_between_running_and_fetching_leaves_no_write_lock_behind(
    sqlite_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """aiosqlite runs a statement and fetches its rows in two steps: a cancel between them must not
    leave an UPDATE ... RETURNING half-read, holding SQLite's write lock."""
    loop = asyncio.get_running_loop()
    async with sqlite_sessionmaker() as session:
        session.add(_user(601))
        await session.commit()
    writers: list[asyncio.Task[None]] = []

    async def writer() -> None:
        async with sqlite_sessionmaker() as session:
            await session.execute(update(User).where(User.telegram_id == 601).values(language="ru").returning(User.id))
            await session.commit()

    def cancel_the_writer(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("UPDATE"):
            loop.call_soon_threadsafe(writers[0].cancel)
            loop.call_soon_threadsafe(_cancel_on_next_turn, loop, writers[0])

    engine = sqlite_sessionmaker.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", cancel_the_writer)
    try:
        writers.append(asyncio.create_task(writer()))
        with pytest.raises(asyncio.CancelledError):
            await writers[0]
    finally:
        event.remove(engine, "before_cursor_execute", cancel_the_writer)

    assert _write_lock_is_free(sqlite_sessionmaker)
    async with sqlite_sessionmaker() as session:
        session.add(_user(602))
        await session.commit()


def _cancel_on_next_turn(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    loop.call_soon(task.cancel)


def _write_lock_is_free(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Whether another connection can take SQLite's write lock right now, without waiting."""
    path = sessionmaker.kw["bind"].url.database
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # "database is locked"
        return False
    finally:
        probe.close()
