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


async def test_upgrading_a_database_in_use_keeps_every_row(empty_database_url: str) -> None:
    """From 0011, where portraits have messages, to head: on SQLite the batch migrations recreate
    `generation_tasks` (0012) and `users` (0013), and with foreign keys on, dropping the old table
    cascaded: every job, task and portrait message was gone (tests/integration/test_claims.py found it)."""
    await asyncio.to_thread(upgrade, empty_database_url, "0011")
    rows = {
        "users": "INSERT INTO users (id, telegram_id, language, is_banned, is_blocked, max_active_jobs, created_at, "
        "last_seen_at) VALUES (1, 1, 'ru', false, false, 1, '2026-12-01 10:00:00', '2026-12-01 10:00:00')",
        "generation_jobs": "INSERT INTO generation_jobs (id, user_id, chat_id, language, style, priority, status, "
        "photos_total, photos_completed, photos_failed, provider_refs, attempts, created_at) VALUES (1, 1, 1, 'ru', "
        "'professional', 100, 'delivering', 1, 1, 0, '{}', 1, '2026-12-01 10:00:00')",
        "generation_tasks": "INSERT INTO generation_tasks (id, job_id, position, prompt_index, variant, seed, "
        "claim_key, provider_index, status, attempts, polls, flagged, identity_redos, cost_micros, created_at) "
        "VALUES (1, 1, 0, 0, 0, 7, 'k', 0, 'delivered', 1, 0, false, 0, 0, '2026-12-01 10:00:00')",
        "portrait_messages": "INSERT INTO portrait_messages (chat_id, message_id, task_id, created_at) "
        "VALUES (1, 42, 1, '2026-12-01 10:05:00')",
    }
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            for statement in rows.values():
                await connection.execute(text(statement))
        await asyncio.to_thread(upgrade, empty_database_url)
        async with engine.connect() as connection:
            counts = {
                name: (await connection.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one() for name in rows
            }
    finally:
        await engine.dispose()
    assert counts == dict.fromkeys(rows, 1)
