"""Engine and session factory: SQLite (WAL, busy timeout) by default, PostgreSQL via asyncpg."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_SECONDS = 30


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)


def count_statements(engine: AsyncEngine, on_statement: Callable[[], None]) -> None:
    """Call ``on_statement`` for every SQL statement sent (the load bench reports statements per photo)."""

    def before_cursor_execute(*_args: Any) -> None:
        on_statement()

    event.listen(engine.sync_engine, "before_cursor_execute", before_cursor_execute)


_T = TypeVar("_T")


async def _run_to_completion(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` in a task of its own to its end even if the caller is cancelled meanwhile; the
    cancellation is re-raised afterwards (SQLAlchemy's own rule for ``close()`` on exit)."""
    task = asyncio.create_task(work)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as error:
            if task.done():
                raise
            cancelled = error
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result


class CommitToCompletionSession(AsyncSession):
    """A session whose commit is never cut off halfway.

    A stop cancels background workers wherever they are; one cancelled inside ``commit()`` interrupted
    the connection's return to the pool (its rollback-on-return), and on SQLite that connection then
    kept the write lock: the worker's next write, and every other, waited out the 30 s busy timeout
    and failed with "database is locked" (seen as 35-85 s engine tests on a loaded machine).
    """

    async def commit(self) -> None:
        await _run_to_completion(super().commit())


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, class_=CommitToCompletionSession)
