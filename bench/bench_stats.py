"""How long /stats takes over a million analytics events (and the tables that go with them).

Run: ``python -m bench.bench_stats [--events 1000000] [--runs 3] [--postgres [URL]] [--no-indexes]``.

Builds a fresh database (SQLite in a temp dir; PostgreSQL with ``--postgres``, by default a new
database on ``TEST_DATABASE_URL``), migrates it to head, and fills it with ``--events`` rows in
``events`` spread over 90 days plus proportionate table rows: one job per ~50 events (7/15/23
photos, with tasks, an order, a payment and ledger lines each), one user per ~33 events. Then it
times ``storage.stats.compute_stats`` — the queries behind /stats — for today, 7 and 30 days
(median of ``--runs``, after one warm-up), and each of its query groups for 30 days.
``--no-indexes`` drops the indexes migration 0003 added, to show what they buy.
Numbers only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import stats as stats_queries
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Event, GenerationJob, GenerationTask, LedgerEntry, Order, Payment, User
from tests.databases import create_database, drop_database

DAYS = 90
CHUNK = 20_000
INDEXES_0003 = {
    "ix_users_created_at": "users",
    "ix_orders_paid_at": "orders",
    "ix_generation_jobs_created_at": "generation_jobs",
    "ix_ledger_reason_created": "ledger",
}


async def _insert(engine: AsyncEngine, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with engine.begin() as connection:
            await connection.execute(insert(model), rows[start : start + CHUNK])


async def populate(engine: AsyncEngine, events_total: int, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    now = datetime.now(UTC)

    def moment() -> datetime:
        return now - timedelta(seconds=rng.uniform(0, DAYS * 86_400))

    user_count = max(1, events_total // 33)
    users = []
    for index in range(user_count):
        created = moment()
        users.append(
            {
                "id": index + 1,
                "telegram_id": 10_000_000 + index,
                "language": "ru" if rng.random() < 0.8 else "en",
                "created_at": created,
                "last_seen_at": created,
                "is_banned": False,
                "is_blocked": False,
                "max_active_jobs": 1,
            }
        )
    await _insert(engine, User, users)

    job_count = max(1, events_total // 50)
    orders, payments, jobs, tasks, ledger, events = [], [], [], [], [], []
    task_id = 0
    for index in range(job_count):
        job_id = index + 1
        owner = rng.randint(1, user_count)
        created = moment()
        photos = rng.choice((7, 15, 23))
        rub = rng.random() < 0.7
        currency, amount = ("RUB", {7: 49_000, 15: 99_000, 23: 149_000}[photos]) if rub else ("XTR", photos * 35)
        orders.append(
            {
                "id": job_id,
                "user_id": owner,
                "style": "professional",
                "pack": f"p{photos}",
                "photos": photos,
                "price_rub_kopecks": 0,
                "price_stars": 0,
                "currency": currency,
                "amount": amount,
                "status": "paid",
                "created_at": created,
                "paid_at": created,
            }
        )
        refunded = rng.random() < 0.01
        payments.append(
            {
                "id": job_id,
                "order_id": job_id,
                "user_id": owner,
                "provider": "yookassa" if rub else "stars",
                "provider_payment_id": f"p{job_id}",
                "idempotence_key": f"k{job_id}",
                "amount": amount,
                "currency": currency,
                "status": "refunded" if refunded else "succeeded",
                "status_history": [],
                "created_at": created,
                "updated_at": created,
            }
        )
        roll = rng.random()
        status = "completed" if roll < 0.9 else "partial" if roll < 0.96 else "failed" if roll < 0.98 else "queued"
        first = created + timedelta(seconds=rng.uniform(5, 90))
        finished = first + timedelta(seconds=rng.uniform(30, 900))
        done_at = status in ("completed", "partial", "failed")
        jobs.append(
            {
                "id": job_id,
                "user_id": owner,
                "order_id": job_id,
                "chat_id": 10_000_000 + owner,
                "language": "ru",
                "style": "professional",
                "priority": 100,
                "status": status,
                "photos_total": photos,
                "photos_completed": 0,
                "photos_failed": 0,
                "provider_refs": {},
                "attempts": 1,
                "created_at": created,
                "started_at": created if status != "queued" else None,
                "first_image_at": first if status in ("completed", "partial") else None,
                "finished_at": finished if done_at else None,
            }
        )
        ledger.append(_line(owner, photos, "purchase", f"payment:{job_id}", created))
        ledger.append(_line(owner, -photos, "reserve", f"job:{job_id}", created))
        events.append(_event("payment_created", owner, None, created, provider="yookassa", amount=amount))
        events.append(_event("payment_succeeded", owner, None, created, provider="yookassa", amount=amount))
        events.append(_event("generation_queued", owner, job_id, created, image_count=photos))
        if status == "queued":
            continue
        provider = "kie" if rng.random() < 0.85 else "replicate"
        events.append(_event("generation_started", owner, job_id, created, provider=provider, model="m"))
        for position in range(photos):
            task_id += 1
            skipped = status == "failed" or (status == "partial" and position == 0)
            final = "skipped" if skipped else "delivered"
            tasks.append(
                {
                    "id": task_id,
                    "job_id": job_id,
                    "position": position,
                    "prompt_index": position,
                    "variant": 0,
                    "seed": task_id,
                    "provider": provider,
                    "provider_index": 0,
                    "status": final,
                    "attempts": rng.choice((1, 1, 1, 2)),
                    "polls": 0,
                    "identity_score": rng.uniform(0.3, 0.9) if not skipped else None,
                    "identity_redos": 1 if rng.random() < 0.05 else 0,
                    "flagged": False,
                    "created_at": created,
                }
            )
            if skipped:
                ledger.append(_line(owner, 1, "release", f"task:{task_id}", finished))
                events.append(_event("generation_failed", owner, job_id, finished, error_type="timeout"))
            else:
                events.append(_event("generation_completed", owner, job_id, first, duration_ms=20_000))
                events.append(_event("image_stored", owner, job_id, first, size_bytes=900_000))
        events.append(_event("pack_completed", owner, job_id, finished, image_count=photos, total_duration_ms=1))
    for user in users:
        events.append(_event("user_started", user["id"], None, user["created_at"], source="ads"))
    reasons = ("blurry", "no_face", "too_small", "duplicate")
    while len(events) < events_total:
        events.append(_event("photo_rejected", rng.randint(1, user_count), None, moment(), reason=rng.choice(reasons)))
    events = events[:events_total]
    rng.shuffle(events)  # arrival order is not grouped by kind in a real table
    await _insert(engine, Order, orders)
    await _insert(engine, Payment, payments)
    await _insert(engine, GenerationJob, jobs)
    await _insert(engine, GenerationTask, tasks)
    await _insert(engine, LedgerEntry, ledger)
    await _insert(engine, Event, events)
    return {
        "events": len(events),
        "users": len(users),
        "jobs": len(jobs),
        "tasks": len(tasks),
        "orders": len(orders),
        "ledger": len(ledger),
    }


def _line(user_id: int, delta: int, reason: str, reference: str, created: datetime) -> dict[str, Any]:
    return {"user_id": user_id, "delta": delta, "reason": reason, "reference": reference, "created_at": created}


def _event(name: str, user_id: int, job_id: int | None, created: datetime, **properties: Any) -> dict[str, Any]:
    return {"name": name, "user_id": user_id, "job_id": job_id, "properties": properties, "created_at": created}


async def _timed(action: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await action()  # warm-up: caches, statement compilation
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        durations.append(time.perf_counter() - started)
    return durations


async def measure(engine: AsyncEngine, runs: int) -> None:
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)

    def whole(period: str) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            async with sessionmaker() as session:
                return await stats_queries.compute_stats(session, stats_queries.period_start(period, now), now)

        return run

    print(f"{'/stats period':<28}{'median':>10}{'min':>10}{'max':>10}")
    for period in ("today", "7d", "30d"):
        durations = await _timed(whole(period), runs)
        print(f"{period:<28}{_ms(statistics.median(durations))}{_ms(min(durations))}{_ms(max(durations))}")

    since = stats_queries.period_start("30d", now)
    parts: dict[str, Callable[[AsyncSession, stats_queries.Stats], Awaitable[None]]] = {
        "users, orders, refunds": stats_queries._people_and_money,
        "jobs, timings, tasks": stats_queries._jobs_and_tasks,
        "ledger": stats_queries._ledger,
        "events (4 queries)": stats_queries._events,
    }
    print("30d, by query group:")
    for label, part in parts.items():

        async def run(part: Any = part) -> None:
            async with sessionmaker() as session:
                await part(session, stats_queries.Stats(since=since, until=now))

        durations = await _timed(run, runs)
        print(f"  {label:<26}{_ms(statistics.median(durations))}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:>8.1f}ms"


async def _drop_indexes(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for name in INDEXES_0003:
            await connection.execute(text(f"DROP INDEX {name}"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", nargs="?", const=os.environ.get("TEST_DATABASE_URL", ""), default=None)
    parser.add_argument("--no-indexes", action="store_true", help="drop the indexes of migration 0003 first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        if args.postgres is not None:
            if not args.postgres:
                raise SystemExit("--postgres needs a URL or TEST_DATABASE_URL")
            url = await create_database(args.postgres, prefix="pinglass_bench")
        else:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'stats.db'}"
        try:
            await upgrade_async(url)
            engine = create_engine(url)
            try:
                started = time.perf_counter()
                sizes = await populate(engine, args.events)
                if engine.dialect.name == "postgresql":
                    async with engine.connect() as connection:
                        await connection.execution_options(isolation_level="AUTOCOMMIT")
                        await connection.execute(text("ANALYZE"))
                else:
                    async with engine.begin() as connection:
                        await connection.execute(text("ANALYZE"))
                if args.no_indexes:
                    await _drop_indexes(engine)
                print(f"database: {engine.dialect.name}; indexes of 0003: {'dropped' if args.no_indexes else 'on'}")
                print(
                    "rows: " + ", ".join(f"{name} {count:,}" for name, count in sizes.items()),
                    f"(filled in {time.perf_counter() - started:.0f} s)",
                )
                await measure(engine, args.runs)
            finally:
                await engine.dispose()
        finally:
            if args.postgres is not None:
                await drop_database(args.postgres, url)


if __name__ == "__main__":
    asyncio.run(main())
