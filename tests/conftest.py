"""Shared fixtures: databases (SQLite always, PostgreSQL/Redis when TEST_* URLs are set)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from tests.databases import create_database, drop_database

# A PostgreSQL or Redis test that skips although its URL is set fails the run (tests/ci_skips.py).
pytest_plugins = ["tests.ci_skips"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")


def _redis_url_for_this_worker(url: str) -> str:
    """Under pytest-xdist each worker gets its own Redis database (the URL's, counting down: gw0 the
    URL's own, gw1 the one below), so parallel tests never share keys; a lone run uses the URL as given."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - int(worker[2:])
    if database < 0:
        raise RuntimeError(f"TEST_REDIS_URL {url!r}: no Redis database left for xdist worker {worker}")
    return urlunsplit(parts._replace(path=f"/{database}"))


TEST_REDIS_URL = _redis_url_for_this_worker(os.environ.get("TEST_REDIS_URL", ""))

requires_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="PostgreSQL tests need TEST_DATABASE_URL (set by .ci/run)"
)
requires_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="Redis tests need TEST_REDIS_URL (set by .ci/run)")


async def create_postgres_database() -> str:
    """A fresh database on the test server, so parallel tests and sessions never collide."""
    return await create_database(TEST_DATABASE_URL)


async def drop_postgres_database(url: str) -> None:
    await drop_database(TEST_DATABASE_URL, url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'pinglass.db'}"


@pytest_asyncio.fixture
async def postgres_url() -> AsyncIterator[str]:
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (set by .ci/run)")
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def database_url(database_kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """Every test using this runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""
    if database_kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'pinglass.db'}"
        return
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (set by .ci/run)")
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not TEST_REDIS_URL:
        pytest.skip("Redis tests need TEST_REDIS_URL (set by .ci/run)")
    yield TEST_REDIS_URL


@pytest_asyncio.fixture
async def fake_telegram() -> AsyncIterator[object]:
    from tests.fakes.telegram import FakeTelegram

    async with FakeTelegram() as fake:
        yield fake
