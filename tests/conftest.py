"""Shared fixtures: databases (SQLite always, PostgreSQL/Redis when TEST_* URLs are set)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
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


@contextlib.asynccontextmanager
async def postgres_database(template: str | None = None) -> AsyncIterator[str]:
    """A fresh database on the test server (empty, or a copy of ``template``), dropped afterwards, so
    parallel tests and sessions never collide."""
    url = await create_database(TEST_DATABASE_URL, template=template)
    try:
        yield url
    finally:
        await drop_database(TEST_DATABASE_URL, url)


# Each test's database starts as a copy of one migrated per worker: a fresh migration costs 0.3 s CPU
# and 1 s on SQLite (0.1 s CPU and 1 s on PostgreSQL) and most tests need one; a copy costs
# milliseconds, and the application's start-up migration then finds the schema at head.
# tests/integration/test_schema.py still migrates from nothing (it downgrades first).


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "head.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres_template() -> Iterator[str]:
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (set by .ci/run)")
    url = asyncio.run(create_database(TEST_DATABASE_URL, prefix="pinglass_head"))
    upgrade(url)
    yield url
    asyncio.run(drop_database(TEST_DATABASE_URL, url))


def _copy_of(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "pinglass.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite_file: Path) -> str:
    return _copy_of(migrated_sqlite_file, tmp_path)


@pytest_asyncio.fixture
async def postgres_url(migrated_postgres_template: str) -> AsyncIterator[str]:
    async with postgres_database(template=migrated_postgres_template) as url:
        yield url


@pytest_asyncio.fixture
async def sqlite_sessionmaker(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on this test's migrated SQLite copy: the database of the service tests."""
    engine = create_engine(sqlite_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_template(database_kind: str, request: pytest.FixtureRequest) -> Path | str:
    """The migrated database of this kind to copy (resolved here, outside the event loop, because
    building it runs Alembic, which runs its own loop)."""
    if database_kind == "sqlite":
        return Path(request.getfixturevalue("migrated_sqlite_file"))
    return str(request.getfixturevalue("migrated_postgres_template"))


@pytest_asyncio.fixture
async def database_url(database_template: Path | str, tmp_path: Path) -> AsyncIterator[str]:
    """Every test using this runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""
    if isinstance(database_template, Path):
        yield _copy_of(database_template, tmp_path)
        return
    async with postgres_database(template=database_template) as url:
        yield url


@pytest_asyncio.fixture
async def empty_database_url(database_kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """For the tests of migrations themselves: a database with no schema at all, on both kinds."""
    if database_kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (set by .ci/run)")
    async with postgres_database() as url:
        yield url


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
