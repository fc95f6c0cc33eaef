"""Claims of due tasks with a large backlog: served by an index, in the queue's order (issue #15).

The claim runs on every round, inside SQLite's write lock: it must read the few rows it takes,
not sort the whole pending backlog. Checked with the database's own plan (EXPLAIN) on a seeded
backlog of 20,000 pending tasks, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
from sqlalchemy import column, event, insert, select, table, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import queue
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import GenerationJob, GenerationTask, User, utcnow
from studio.generation import PlannedTask, claim_key
from studio.states import JobStatus, TaskStatus

BACKLOG_JOBS = 1000
TASKS_PER_JOB = 21  # position 0 already taken, positions 1..20 pending: 20,000 pending tasks
HISTORY_JOBS = 500  # finished jobs whose tasks stay in the table
IN_FLIGHT = 200  # submitted tasks awaiting their poll
WORKER = "claims-test"
LEASE = timedelta(minutes=5)


@dataclass
class Backlog:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    start: datetime
    oldest_paid_job: int = 0
    free_job: int = 0
    cancelled_job: int = 0
    not_due: set[int] = field(default_factory=set)
    leased: set[int] = field(default_factory=set)


def _job(job_id: int, *, priority: int, status: JobStatus, created_at: datetime) -> dict[str, Any]:
    return {
        "id": job_id,
        "user_id": job_id,
        "chat_id": job_id,
        "language": "ru",
        "style": "professional",
        "priority": priority,
        "status": status,
        "photos_total": TASKS_PER_JOB,
        "photos_completed": 0,
        "photos_failed": 0,
        "provider_refs": {},
        "attempts": 1,
        "created_at": created_at,
        "started_at": created_at,
    }


def _task(job: dict[str, Any], position: int, status: TaskStatus, **values: Any) -> dict[str, Any]:
    return {
        "job_id": job["id"],
        "position": position,
        "prompt_index": position,
        "variant": 0,
        "seed": position + 1,
        "claim_key": claim_key(job["priority"], job["created_at"], job["id"], position),
        "status": status,
        "attempts": 0,
        "polls": 0,
        "provider_index": 0,
        "flagged": False,
        "identity_redos": 0,
        "created_at": job["created_at"],
    } | values


async def _seed(database_url: str) -> Backlog:
    """1,000 processing paid jobs, each with its first portrait taken and 20 pending (one leased, one
    retrying later); 200 tasks in flight; an older free job; a cancelled job with a stray pending
    task (an inconsistent row that must never be claimed); 500 finished jobs' tasks as history."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    now = utcnow()
    start = now - timedelta(days=1)
    backlog = Backlog(engine, create_sessionmaker(engine), start)
    jobs: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    # History: long finished, every task delivered.
    for n in range(HISTORY_JOBS):
        job = _job(
            len(jobs) + 1, priority=100, status=JobStatus.COMPLETED, created_at=start - timedelta(days=30, hours=n)
        )
        jobs.append(job)
        tasks += [_task(job, p, TaskStatus.DELIVERED) for p in range(TASKS_PER_JOB)]
    free = _job(len(jobs) + 1, priority=0, status=JobStatus.PROCESSING, created_at=start - timedelta(hours=2))
    jobs.append(free)
    tasks += [_task(free, p, TaskStatus.PENDING) for p in range(TASKS_PER_JOB)]
    backlog.free_job = free["id"]
    cancelled = _job(len(jobs) + 1, priority=100, status=JobStatus.CANCELLED, created_at=start - timedelta(hours=1))
    jobs.append(cancelled)
    tasks.append(_task(cancelled, 0, TaskStatus.PENDING))
    backlog.cancelled_job = cancelled["id"]
    for n in range(BACKLOG_JOBS):
        job = _job(len(jobs) + 1, priority=100, status=JobStatus.PROCESSING, created_at=start + timedelta(seconds=n))
        jobs.append(job)
        first = (
            _task(job, 0, TaskStatus.SUBMITTED, provider="kie", provider_task_id=f"kie-{job['id']}")
            | {"next_poll_at": now + timedelta(seconds=n % 60), "submitted_at": now}
            if n < IN_FLIGHT
            else _task(job, 0, TaskStatus.STORED)
        )
        tasks.append(first)
        tasks += [_task(job, p, TaskStatus.PENDING) for p in range(1, TASKS_PER_JOB)]
    backlog.oldest_paid_job = jobs[HISTORY_JOBS + 2]["id"]
    users = [
        {"id": job["id"], "telegram_id": job["id"], "language": "ru", "max_active_jobs": 1}
        | {"created_at": now, "last_seen_at": now}
        for job in jobs
    ]
    async with backlog.sessionmaker() as session:
        await session.execute(insert(User), users)
        await session.execute(insert(GenerationJob), jobs)
        await session.execute(insert(GenerationTask), tasks)
        # The oldest paid job's positions 1 and 2: one retries later, one is leased to another worker.
        rows = await session.execute(
            select(GenerationTask.id, GenerationTask.position).where(
                GenerationTask.job_id == backlog.oldest_paid_job, GenerationTask.position.in_([1, 2])
            )
        )
        ids = dict((position, task_id) for task_id, position in rows.all())
        await session.execute(
            update(GenerationTask).where(GenerationTask.id == ids[1]).values(next_poll_at=now + timedelta(minutes=1))
        )
        await session.execute(
            update(GenerationTask)
            .where(GenerationTask.id == ids[2])
            .values(claimed_by="other-worker", lease_expires_at=now + LEASE)
        )
        backlog.not_due, backlog.leased = {ids[1]}, {ids[2]}
        await session.commit()
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))
    return backlog


@pytest_asyncio.fixture
async def backlog(database_url: str) -> AsyncIterator[Backlog]:
    seeded = await _seed(database_url)
    try:
        yield seeded
    finally:
        await seeded.engine.dispose()


async def _statements(engine: AsyncEngine, call: Callable[[], Awaitable[object]]) -> list[tuple[str, Any]]:
    """The SQL ``call`` sends, with its parameters (to EXPLAIN exactly what runs)."""
    seen: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", remember)
    try:
        await call()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", remember)
    return seen


async def _plan(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows.all())
        rows = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in rows.all())


async def _plans(backlog: Backlog, name: str, call: Callable[[AsyncSession], Awaitable[object]]) -> list[str]:
    """The plan of every query ``call`` runs (in a transaction rolled back afterwards)."""
    async with backlog.sessionmaker() as session:
        statements = await _statements(backlog.engine, lambda: call(session))
        await session.rollback()
    queries = [(sql, params) for sql, params in statements if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    assert queries, name
    return [await _plan(backlog.engine, sql, params) for sql, params in queries]


def _assert_served_by_indexes(dialect: str, name: str, plan: str) -> None:
    if dialect == "sqlite":
        assert "USE TEMP B-TREE" not in plan, f"{name} sorts:\n{plan}"
        assert "SCAN generation_tasks" not in plan, f"{name} scans every task:\n{plan}"
    else:
        assert "Seq Scan on generation_tasks" not in plan, f"{name} scans every task:\n{plan}"
        assert "Sort" not in plan, f"{name} sorts:\n{plan}"


async def test_claim_walks_the_claim_index_without_a_sort(backlog: Backlog) -> None:
    dialect = backlog.engine.dialect.name
    plans = await _plans(backlog, "claim", lambda session: queue.claim_pending_tasks(session, WORKER, 8, LEASE))
    # SQLite: one UPDATE … WHERE id IN (candidates); PostgreSQL: SELECT … FOR UPDATE SKIP LOCKED, then
    # an UPDATE of those ids by primary key.
    plan = plans[0]
    _assert_served_by_indexes(dialect, "claim_pending_tasks", plan)
    if dialect == "sqlite":
        assert "generation_tasks USING INDEX ix_generation_tasks_claim (status=?)" in plan, plan
        # The job check is a lookup of one job by its primary key, per task read.
        assert "SEARCH generation_jobs USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    else:
        assert "Index Scan using ix_generation_tasks_claim on generation_tasks" in plan, plan
        assert "LockRows" in plan, plan  # FOR UPDATE SKIP LOCKED


async def test_other_per_round_queries_are_served_by_indexes(backlog: Backlog) -> None:
    dialect = backlog.engine.dialect.name
    now = utcnow()
    per_round: dict[str, Callable[[AsyncSession], Awaitable[object]]] = {
        "next_pending_time": queue.next_pending_time,
        "first_portrait_is_next": queue.first_portrait_is_next,
        "next_poll_time": queue.next_poll_time,
        "due_polls": lambda session: queue.due_polls(session, 50),
        "unsettled_processing_jobs": queue.unsettled_processing_jobs,
        "processing_jobs_without_tasks": lambda session: queue.processing_jobs_without_tasks(
            session, now - timedelta(seconds=30)
        ),
    }
    for name, call in per_round.items():
        for plan in await _plans(backlog, name, call):
            _assert_served_by_indexes(dialect, name, plan)


async def test_claims_take_new_first_portraits_then_the_oldest_paid_work(backlog: Backlog) -> None:
    newest = backlog.start + timedelta(hours=2)
    async with backlog.sessionmaker() as session:
        # A payer arrives last: their job's first portrait goes before the backlog's later portraits.
        session.add(User(id=9000, telegram_id=9000))
        await session.flush()
        job = GenerationJob(
            id=9000,
            user_id=9000,
            chat_id=9000,
            style="professional",
            priority=100,
            status=JobStatus.PROCESSING,
            photos_total=3,
            created_at=newest,
        )
        session.add(job)
        await session.flush()
        await queue.add_tasks(session, job.id, [PlannedTask(p, p, 0, p + 1) for p in range(3)])
        await session.commit()

    async def claim(limit: int) -> list[tuple[int, int]]:
        async with backlog.sessionmaker() as session:
            ids = await queue.claim_pending_tasks(session, WORKER, limit, LEASE)
            await session.commit()
            rows = await session.execute(
                select(GenerationTask.id, GenerationTask.job_id, GenerationTask.position).where(
                    GenerationTask.id.in_(ids)
                )
            )
            where = {task_id: (job_id, position) for task_id, job_id, position in rows.all()}
            return [where[task_id] for task_id in ids]

    async def first_portrait_is_next() -> bool:
        async with backlog.sessionmaker() as session:
            return await queue.first_portrait_is_next(session)

    oldest = backlog.oldest_paid_job
    assert await first_portrait_is_next()  # the new payer's: the pace does not hold it back
    # Position 1 retries later and position 2 is leased elsewhere: both are passed over.
    assert await claim(1) == [(9000, 0)]
    assert not await first_portrait_is_next()  # the backlog's later portraits: they follow the pace
    assert await claim(4) == [(oldest, 3), (oldest, 4), (oldest, 5), (oldest, 6)]
    assert await claim(3) == [(oldest, 7), (oldest, 8), (oldest, 9)]
    async with backlog.sessionmaker() as session:
        claimed_jobs = set(
            (await session.execute(select(GenerationTask.job_id).where(GenerationTask.claimed_by == WORKER))).scalars()
        )
    # Neither the free job (lower priority, although older) nor the cancelled job's stray task.
    assert claimed_jobs == {9000, oldest}
    # Drain the paid work: the free job comes only after every paid task, the cancelled job never.
    async with backlog.sessionmaker() as session:
        await session.execute(
            update(GenerationJob).where(GenerationJob.priority == 100).values(status=JobStatus.DELIVERING)
        )
        await session.execute(update(GenerationJob).where(GenerationJob.id == 9000).values(status=JobStatus.PROCESSING))
        await session.commit()
    assert await claim(4) == [(9000, 1), (9000, 2), (backlog.free_job, 0), (backlog.free_job, 1)]


async def test_migration_gives_existing_tasks_the_same_key_as_fan_out(empty_database_url: str) -> None:
    database_url = empty_database_url
    await asyncio.to_thread(upgrade, database_url, "0006")
    engine = create_engine(database_url)
    try:
        moments = [
            datetime(2026, 12, 6, 9, 30, 15, 123456, tzinfo=UTC),
            datetime(2026, 12, 6, 9, 30, 15, tzinfo=UTC),  # no microseconds
            datetime(2027, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        ]
        jobs = [
            _job(job_id, priority=priority, status=status, created_at=moment)
            for job_id, priority, status, moment in [
                (1, 100, JobStatus.PROCESSING, moments[0]),
                (2, 0, JobStatus.PROCESSING, moments[1]),
                (3, 100, JobStatus.COMPLETED, moments[2]),
            ]
        ]
        tasks = [
            {key: value for key, value in _task(job, p, TaskStatus.PENDING).items() if key != "claim_key"}
            for job in jobs
            for p in (0, 1, 22)
        ]
        users = [
            {"id": job["id"], "telegram_id": job["id"], "language": "ru", "max_active_jobs": 1}
            | {"created_at": moments[0], "last_seen_at": moments[0]}
            for job in jobs
        ]
        async with engine.begin() as connection:
            # Only the given columns (with the models' types): the models' defaults would name columns
            # that later migrations add.
            for model, rows in ((User, users), (GenerationJob, jobs), (GenerationTask, tasks)):
                columns = model.__table__.c
                given = table(model.__tablename__, *(column(key, columns[key].type) for key in rows[0]))
                await connection.execute(insert(given), rows)
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(GenerationTask.job_id, GenerationTask.position, GenerationTask.claim_key)
                )
            ).all()
        by_id = {job["id"]: job for job in jobs}
        assert len(rows) == 9
        for job_id, position, key in rows:
            job = by_id[job_id]
            assert key == claim_key(job["priority"], job["created_at"], job_id, position), (job_id, position)
    finally:
        await engine.dispose()
