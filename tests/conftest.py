"""Shared fixtures: databases (SQLite always, PostgreSQL/Redis when TEST_* URLs are set)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from tests.databases import create_database, drop_database
from tests.ledger_check import assert_money_invariants_if_moved
from tests.support.collector import tune_collector

# A PostgreSQL or Redis test that skips although its URL is set fails the run (tests/ci_skips.py).
pytest_plugins = ["tests.ci_skips", "tests.slowest_first"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")

# Markers by which a test opts out of what every test gets; each needs its reason (reason="...").
OPT_OUT_MARKERS = {
    "telegram_flood_off": "the fake Telegram's flood control is off for this test",
    "telegram_429s_expected": "the test provokes Telegram 429s on purpose: the fake_telegram fixture does not "
    "require zero at teardown",
    "ledger_unbalanced": "the test writes a ledger no real flow could: its database is not checked against "
    "the money invariants at teardown",
}
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def pytest_configure(config: pytest.Config) -> None:
    tune_collector()  # fewer, larger sweeps: tests/support/collector.py says why
    for name, meaning in OPT_OUT_MARKERS.items():
        config.addinivalue_line("markers", f"{name}(reason): {meaning}")


def pytest_collection_finish(session: pytest.Session) -> None:
    # What the imports made (aiogram's ~650 pydantic models, SQLAlchemy, the app) lives as long as the
    # worker: moved out of the collector's sight, each full collection scans only what tests allocate.
    # On test_engine + test_delivery it halved the full collections' time (1.3-1.7 s to 0.5-0.9 s a worker).
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[CALL_REPORT] = report


def opted_out(request: pytest.FixtureRequest, name: str) -> str | None:
    """The reason this test gives for opting out with marker ``name``, or None when it does not."""
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return None
    reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
    if not reason:
        raise pytest.UsageError(f"{request.node.nodeid}: @pytest.mark.{name} needs a reason")
    return str(reason)


def passed(request: pytest.FixtureRequest) -> bool:
    """The test itself passed (a failed one is not checked at teardown: its own failure is the news)."""
    report = request.node.stash.get(CALL_REPORT, None)
    return report is not None and report.passed


async def check_money_after(request: pytest.FixtureRequest, database_url: str) -> None:
    """Every test's database, once the test passed: where credits moved, the money invariants hold
    (tests/ledger_check.py), unless the test opts out with ``@pytest.mark.ledger_unbalanced``."""
    if passed(request) and opted_out(request, "ledger_unbalanced") is None:
        await assert_money_invariants_if_moved(database_url)


def check_money_after_sync(request: pytest.FixtureRequest, database_url: str) -> None:
    """The same for a synchronous fixture: in a thread with its own event loop, so pytest-asyncio's is
    left alone."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, check_money_after(request, database_url)).result()


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
def sqlite_url(tmp_path: Path, migrated_sqlite_file: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    url = _copy_of(migrated_sqlite_file, tmp_path)
    yield url
    check_money_after_sync(request, url)


@pytest_asyncio.fixture
async def postgres_url(migrated_postgres_template: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with postgres_database(template=migrated_postgres_template) as url:
        yield url
        await check_money_after(request, url)


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
async def database_url(
    database_template: Path | str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """Every test using this runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""
    if isinstance(database_template, Path):
        url = _copy_of(database_template, tmp_path)
        yield url
        await check_money_after(request, url)
        return
    async with postgres_database(template=database_template) as url:
        yield url
        await check_money_after(request, url)


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
async def fake_telegram(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """The fake Bot API with Telegram's flood control on (tests/fakes/telegram.py TELEGRAM_FLOOD_LIMITS).

    A test that passed must not have provoked a 429, unless it says it does on purpose
    (``@pytest.mark.telegram_429s_expected(reason=...)``). The harness lifts the app's own per-chat
    pace (``TELEGRAM_CHAT_RATE=1000``) for speed, so a test sending more than Telegram takes in a chat
    either sets the real pace (``TELEGRAM_CHAT_RATE=1``, as the delivery tests do) or turns flood
    control off with its reason (``@pytest.mark.telegram_flood_off(reason=...)``).
    """
    from tests.fakes.telegram import TELEGRAM_FLOOD_LIMITS, FakeTelegram

    flood_off = opted_out(request, "telegram_flood_off")
    expected = opted_out(request, "telegram_429s_expected")
    async with FakeTelegram(flood_limits=None if flood_off else TELEGRAM_FLOOD_LIMITS) as fake:
        yield fake
    if flood_off is None and expected is None and passed(request):
        assert fake.flood_429s == 0, (
            f"the app provoked {fake.flood_429s} Telegram 429s from the fake's flood control "
            f"{TELEGRAM_FLOOD_LIMITS}: pace it (TELEGRAM_CHAT_RATE=1) or mark the test telegram_flood_off"
        )
