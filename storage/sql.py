"""Small dialect helpers shared by the query modules."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing`` on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an INSERT/UPDATE/DELETE touched: the verdict of a conditional write.

    `AsyncSession.execute` is typed to return `Result`; for DML it is a `CursorResult`, which has it."""
    return cast(CursorResult[Any], result).rowcount
