"""Throw-away PostgreSQL databases next to a given server URL (tests, benchmarks, chaos runs)."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import URL, make_url


async def _execute_on_server(base: URL, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, password=base.password, database=base.database
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(base_url: str, prefix: str = "pinglass_t", template: str | None = None) -> str:
    """A new database on ``base_url``'s server, so runs never see each other's rows; its URL. Empty, or
    a copy of the database at ``template``'s URL (which nobody may be connected to meanwhile)."""
    base = make_url(base_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{make_url(template).database}"' if template else ""
    await _execute_on_server(base, f'CREATE DATABASE "{name}"{copy_of}')
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_database(base_url: str, url: str) -> None:
    """Drop ``url``'s database (connected through ``base_url``'s, since one cannot drop itself)."""
    await _execute_on_server(make_url(base_url), f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
