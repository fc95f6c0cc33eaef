"""Engine and session factory: SQLite (WAL, busy timeout) by default, PostgreSQL via asyncpg."""

from __future__ import annotations

import asyncio
import functools
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


def _to_completion(method: Callable[..., Coroutine[Any, Any, _T]]) -> Callable[..., Coroutine[Any, Any, _T]]:
    @functools.wraps(method)
    async def run(self: AsyncSession, *args: Any, **kwargs: Any) -> _T:
        return await _run_to_completion(method(self, *args, **kwargs))

    return run


class WorkToCompletionSession(AsyncSession):
    """A session whose statements and commits are never cut off halfway.

    A stop cancels background workers wherever they are. On SQLite a worker cancelled between a
    statement and its result (aiosqlite runs and fetches in two steps), or inside ``commit()`` (the
    connection's rollback-on-return), left a connection holding the write lock: the next writer waited
    out the 30 s busy timeout and failed with "database is locked" (the delivery worker's release at
    stop; 35-85 s engine tests on a loaded machine). Here the statement or commit finishes first and
    the cancellation follows it, as SQLAlchemy already does for ``close()``.
    """


# Set on the class rather than written as overrides: the base methods' overloaded signatures stay as
# they are for the type checker, and only the way they are awaited changes.
for _name in ("execute", "scalar", "flush", "commit", "rollback"):
    setattr(WorkToCompletionSession, _name, _to_completion(getattr(AsyncSession, _name)))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, class_=WorkToCompletionSession)
