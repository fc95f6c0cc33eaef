"""Small dialect helpers shared by the query modules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Result, Select, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing`` on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


Row = TypeVar("Row")


async def insert_or_find(
    session: AsyncSession, model: type[Row], values: Mapping[str, Any], key: Sequence[str]
) -> tuple[Row, bool]:
    """The row with ``values``, inserted unless a row with the same ``key`` columns exists, and
    whether this call inserted it. The UNIQUE on ``key`` decides, not a look-up first: two deliveries
    of the same request, even to two processes at once, end with one row. A NULL in ``key`` never
    conflicts, so such a row is always new."""
    table: Any = model
    columns = [getattr(table, name) for name in key]
    inserted = await session.execute(
        insert_for(session, model).values(**values).on_conflict_do_nothing(index_elements=columns).returning(table.id)
    )
    row_id = inserted.scalar_one_or_none()
    created = row_id is not None
    if row_id is None:
        existing = select(table.id).where(*(column == values[name] for column, name in zip(columns, key, strict=True)))
        row_id = (await session.execute(existing)).scalar_one()
    row = await session.get(model, row_id)
    assert row is not None
    return row, created


async def claim_rows(
    session: AsyncSession,
    model: Any,
    candidates: Select[Any],
    still_claimable: Any,
    values: Mapping[str, Any],
    rank: Any = None,
) -> list[int]:
    """Claim the candidates still claimable; their ids by ``rank`` (a column of ``model``), else by id.

    PostgreSQL locks candidate rows with ``FOR UPDATE SKIP LOCKED`` so concurrent workers take
    disjoint rows; SQLite serialises writers, so one ``UPDATE … WHERE id IN (subquery) AND <still
    claimable> RETURNING`` is atomic there."""
    if session.get_bind().dialect.name == "postgresql":
        ids = list((await session.execute(candidates.with_for_update(skip_locked=True))).scalars())
        if not ids:
            return []
        id_filter = model.id.in_(ids)
    else:
        id_filter = model.id.in_(candidates.scalar_subquery())
    statement = update(model).where(id_filter, still_claimable).values(**values)
    if rank is None:
        result = await session.execute(statement.returning(model.id))
        return sorted(result.scalars())
    rows = (await session.execute(statement.returning(model.id, rank))).all()
    return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[0]))]


def rows_changed(result: Result[Any]) -> int:
    """How many rows an INSERT/UPDATE/DELETE touched: the verdict of a conditional write.

    `AsyncSession.execute` is typed to return `Result`; for DML it is a `CursorResult`, which has it."""
    return cast(CursorResult[Any], result).rowcount
