"""Migrations create the schema on SQLite and PostgreSQL, go down cleanly, and match the models."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from storage.db import create_engine
from storage.migrate import downgrade, upgrade
from storage.models import Base

EXPECTED_TABLES = {
    "users",
    "avatars",
    "reference_photos",
    "orders",
    "payments",
    "refunds",
    "ledger",
    "generation_jobs",
    "generation_tasks",
    "deliveries",
    "portrait_messages",
    "favourites",
    "reminders",
    "example_sets",
    "example_jobs",
    "style_examples",
    "redos",
    "gifts",
    "promo_codes",
    "events",
    "audit_log",
    "user_bans",
    "provider_overrides",
    "broadcasts",
    "broadcast_recipients",
    "fsm_states",
    "process_heartbeats",
    "deploy_markers",
}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    return names - {"alembic_version"}


async def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            def compare(sync_connection: object) -> list[object]:
                context = MigrationContext.configure(
                    sync_connection,  # type: ignore[arg-type]
                    opts={"compare_type": True, "compare_server_default": False},
                )
                return list(compare_metadata(context, Base.metadata))

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_and_downgrade(empty_database_url: str) -> None:
    database_url = empty_database_url
    assert await _tables(database_url) == set()
    await asyncio.to_thread(upgrade, database_url)
    assert await _tables(database_url) == EXPECTED_TABLES
    await asyncio.to_thread(downgrade, database_url)
    assert await _tables(database_url) == set()
    await asyncio.to_thread(upgrade, database_url)
    assert await _tables(database_url) == EXPECTED_TABLES


async def test_models_match_migrations(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    assert await _diff(database_url) == []


async def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
            timeout = (await connection.execute(text("PRAGMA busy_timeout"))).scalar_one()
    finally:
        await engine.dispose()
    assert mode == "wal"
    assert timeout >= 5000
