"""The work queue's rules (``storage.queue``), one test per rule, through the real queries on a migrated
SQLite database with the queue's clock frozen: which jobs and tasks a worker may claim and in what
order, whose lease a write respects, who wins a race, and the exact numbers the counting queries give.

These are the tests ``make mutate`` runs against ``storage/queue.py``: every comparison, guard and
constant there should be pinned by a value asserted here. PostgreSQL's row locks (``_is_postgres``)
are the integration tests' (tests/integration/test_claims.py and the engine's PostgreSQL runs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import admin, queue
from storage.models import GenerationJob, GenerationTask, LedgerEntry, Order, User
from studio.generation import PlannedTask, claim_key
from studio.states import JobStatus, TaskStatus

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
LEASE = timedelta(minutes=5)
WORKER = "worker-a"
OTHER = "worker-b"


@pytest_asyncio.fixture
async def session(
    sqlite_sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncSession]:
    # The queue reads the time once per call; freezing it makes every "due", "lapsed" and lease end exact.
    monkeypatch.setattr(queue, "utcnow", lambda: NOW)
    async with sqlite_sessionmaker() as session:
        yield session


async def _user(session: AsyncSession, user_id: int, *, max_active_jobs: int = 1) -> int:
    await session.execute(
        insert(User).values(id=user_id, telegram_id=1000 + user_id, language="ru", max_active_jobs=max_active_jobs)
    )
    return user_id


async def _job(
    session: AsyncSession,
    job_id: int,
    *,
    user_id: int | None = None,
    status: JobStatus = JobStatus.PROCESSING,
    priority: int = 100,
    created_at: datetime = NOW - timedelta(hours=1),
    **values: Any,
) -> int:
    """A job of its own user (created here) unless ``user_id`` names an existing one."""
    if user_id is None:
        user_id = await _user(session, job_id)
    row = {
        "id": job_id,
        "user_id": user_id,
        "chat_id": user_id,
        "language": "ru",
        "style": "professional",
        "priority": priority,
        "status": status,
        "photos_total": 3,
        "photos_completed": 0,
        "photos_failed": 0,
        "provider_refs": {},
        "attempts": 0,
        "created_at": created_at,
        "started_at": created_at,
    }
    await session.execute(insert(GenerationJob).values(row | values))
    return job_id


async def _task(
    session: AsyncSession, job_id: int, position: int, status: TaskStatus = TaskStatus.PENDING, **values: Any
) -> int:
    job = await session.get(GenerationJob, job_id)
    assert job is not None
    row = {
        "job_id": job_id,
        "position": position,
        "prompt_index": position,
        "variant": 0,
        "seed": position + 1,
        "claim_key": claim_key(job.priority, job.created_at, job_id, position),
        "status": status,
        "attempts": 0,
        "polls": 0,
        "provider_index": 0,
        "flagged": False,
        "created_at": job.created_at,
    } | values
    result = await session.execute(insert(GenerationTask).values(row).returning(GenerationTask.id))
    return int(result.scalar_one())


async def _row(session: AsyncSession, task_id: int) -> GenerationTask:
    session.expire_all()
    task = await session.get(GenerationTask, task_id)
    assert task is not None
    return task


async def _job_row(session: AsyncSession, job_id: int) -> GenerationJob:
    session.expire_all()
    job = await session.get(GenerationJob, job_id)
    assert job is not None
    return job


def _lease(task: GenerationTask) -> tuple[str | None, datetime | None]:
    return task.claimed_by, task.lease_expires_at


# ---------------------------------------------------------------- claiming jobs


async def test_queued_jobs_are_claimed_paid_first_then_oldest_then_lowest_id_up_to_the_limit(
    session: AsyncSession,
) -> None:
    free_oldest = await _job(session, 1, status=JobStatus.QUEUED, priority=0, created_at=NOW - timedelta(hours=5))
    paid_new = await _job(session, 2, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=1))
    paid_old = await _job(session, 3, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=2))
    paid_new_twin = await _job(session, 4, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=1))
    assert await queue.claim_queued_jobs(session, WORKER, 3) == [paid_new, paid_old, paid_new_twin]
    assert {job: (await _job_row(session, job)).status for job in (1, 2, 3, 4)} == {
        free_oldest: JobStatus.QUEUED,
        paid_new: JobStatus.PROCESSING,
        paid_old: JobStatus.PROCESSING,
        paid_new_twin: JobStatus.PROCESSING,
    }
    assert await queue.claim_queued_jobs(session, WORKER, 3) == [free_oldest]


async def test_the_limit_takes_the_first_jobs_of_the_queue_order(session: AsyncSession) -> None:
    await _job(session, 1, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=1))
    oldest = await _job(session, 2, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=3))
    second = await _job(session, 3, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=2))
    assert await queue.claim_queued_jobs(session, WORKER, 2) == [oldest, second]
    assert (await _job_row(session, 1)).status == JobStatus.QUEUED


async def test_a_claimed_job_is_the_workers_started_now_with_one_more_attempt(session: AsyncSession) -> None:
    job_id = await _job(session, 1, status=JobStatus.QUEUED, attempts=2, started_at=None)
    assert await queue.claim_queued_jobs(session, WORKER, 1) == [job_id]
    job = await _job_row(session, job_id)
    assert (job.status, job.claimed_by, job.started_at, job.attempts) == (JobStatus.PROCESSING, WORKER, NOW, 3)


async def test_only_queued_jobs_are_claimed(session: AsyncSession) -> None:
    for job_id, status in enumerate([JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.CANCELLED], start=1):
        await _job(session, job_id, status=status)
    assert await queue.claim_queued_jobs(session, WORKER, 10) == []


async def test_a_job_no_longer_queued_never_takes_a_place_in_the_claims_limit(session: AsyncSession) -> None:
    await _job(session, 1, status=JobStatus.COMPLETED, created_at=NOW - timedelta(hours=3))
    await _job(session, 2, status=JobStatus.CANCELLED, created_at=NOW - timedelta(hours=2))
    queued = await _job(session, 3, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=1))
    assert await queue.claim_queued_jobs(session, WORKER, 1) == [queued]


async def test_jobs_queued_at_the_same_moment_are_claimed_lowest_id_first(session: AsyncSession) -> None:
    for job_id in (9, 5, 7):
        await _job(session, job_id, status=JobStatus.QUEUED, created_at=NOW - timedelta(hours=1))
    assert await queue.claim_queued_jobs(session, WORKER, 1) == [5]


async def test_a_user_at_their_limit_of_processing_or_delivering_jobs_waits(session: AsyncSession) -> None:
    processing_user = await _user(session, 1)
    delivering_user = await _user(session, 2)
    two_slot_user = await _user(session, 3, max_active_jobs=2)
    await _job(session, 11, user_id=processing_user, status=JobStatus.PROCESSING)
    await _job(session, 12, user_id=processing_user, status=JobStatus.QUEUED)
    await _job(session, 21, user_id=delivering_user, status=JobStatus.DELIVERING)
    await _job(session, 22, user_id=delivering_user, status=JobStatus.QUEUED)
    await _job(session, 31, user_id=two_slot_user, status=JobStatus.PROCESSING)
    await _job(session, 32, user_id=two_slot_user, status=JobStatus.QUEUED)
    assert await queue.claim_queued_jobs(session, WORKER, 10) == [32]


async def test_finished_jobs_and_other_users_busy_jobs_do_not_count_against_a_user(session: AsyncSession) -> None:
    user = await _user(session, 1)
    await _job(session, 11, user_id=user, status=JobStatus.COMPLETED)
    await _job(session, 12, user_id=user, status=JobStatus.FAILED)
    await _job(session, 13, user_id=user, status=JobStatus.QUEUED)
    await _job(session, 2, status=JobStatus.PROCESSING)  # another user's
    assert await queue.claim_queued_jobs(session, WORKER, 10) == [13]


# ---------------------------------------------------------------- fan-out and provider refs


async def test_add_tasks_creates_pending_tasks_with_their_place_in_the_queue(session: AsyncSession) -> None:
    job_id = await _job(session, 7, priority=0, created_at=NOW - timedelta(minutes=3))
    planned = [PlannedTask(position=0, prompt_index=4, variant=0, seed=99), PlannedTask(1, 4, 1, 100)]
    await queue.add_tasks(session, job_id, planned)
    rows = (
        await session.execute(select(GenerationTask).where(GenerationTask.job_id == job_id).order_by("position"))
    ).scalars()
    assert [
        (
            t.position,
            t.claim_key,
            t.prompt_index,
            t.variant,
            t.seed,
            t.status,
            t.attempts,
            t.polls,
            t.provider_index,
            t.flagged,
            t.created_at,
        )
        for t in rows
    ] == [
        (0, claim_key(0, NOW - timedelta(minutes=3), 7, 0), 4, 0, 99, TaskStatus.PENDING, 0, 0, 0, False, NOW),
        (1, claim_key(0, NOW - timedelta(minutes=3), 7, 1), 4, 1, 100, TaskStatus.PENDING, 0, 0, 0, False, NOW),
    ]


async def test_add_tasks_again_inserts_nothing_and_nothing_planned_is_no_write(session: AsyncSession) -> None:
    job_id = await _job(session, 1)
    planned = [PlannedTask(0, 0, 0, 1), PlannedTask(1, 1, 0, 2)]
    await queue.add_tasks(session, job_id, planned)
    await queue.add_tasks(session, job_id, [PlannedTask(5, 0, 0, 7), *planned])
    await queue.add_tasks(session, job_id, [])
    seeds = (await session.execute(select(GenerationTask.seed).order_by(GenerationTask.seed))).scalars().all()
    assert seeds == [1, 2]


async def test_add_tasks_for_a_missing_job_says_which(session: AsyncSession) -> None:
    with pytest.raises(LookupError, match=r"^job 404 does not exist$"):
        await queue.add_tasks(session, 404, [PlannedTask(0, 0, 0, 1)])


async def test_the_first_writer_of_a_providers_refs_wins_and_other_providers_keep_theirs(
    session: AsyncSession,
) -> None:
    job_id = await _job(session, 1, provider_refs=None)
    assert await queue.set_provider_refs(session, job_id, "kie", ["k1", "k2"]) == ["k1", "k2"]
    assert await queue.set_provider_refs(session, job_id, "kie", ["late"]) == ["k1", "k2"]
    assert await queue.set_provider_refs(session, job_id, "fal", ["f1"]) == ["f1"]
    await session.commit()
    assert (await _job_row(session, job_id)).provider_refs == {
        "kie": {"urls": ["k1", "k2"], "at": NOW.isoformat()},
        "fal": {"urls": ["f1"], "at": NOW.isoformat()},
    }


# ---------------------------------------------------------------- claiming tasks


async def test_a_claim_takes_due_unleased_pending_tasks_of_processing_jobs_only(session: AsyncSession) -> None:
    job = await _job(session, 1)
    cancelled = await _job(session, 2, status=JobStatus.CANCELLED)
    queued = await _job(session, 3, status=JobStatus.QUEUED)
    free = await _task(session, job, 0)
    due_now = await _task(session, job, 1, next_poll_at=NOW)
    await _task(session, job, 2, next_poll_at=NOW + SECOND)  # not due yet
    lapsed = await _task(session, job, 3, claimed_by=OTHER, lease_expires_at=NOW - SECOND)
    await _task(session, job, 4, claimed_by=OTHER, lease_expires_at=NOW)  # a lease is live through its end
    await _task(session, job, 5, TaskStatus.SUBMITTED, next_poll_at=NOW - SECOND)
    await _task(session, job, 6, TaskStatus.SKIPPED)
    await _task(session, cancelled, 0)  # inconsistent rows that must never be claimed
    await _task(session, queued, 0)
    assert await queue.claim_pending_tasks(session, WORKER, 10, LEASE) == [free, due_now, lapsed]


async def test_a_task_no_longer_pending_never_takes_a_place_in_the_claims_limit(session: AsyncSession) -> None:
    job = await _job(session, 1)
    await _task(session, job, 0, TaskStatus.SUBMITTED, next_poll_at=NOW - SECOND)
    await _task(session, job, 1, TaskStatus.SKIPPED)
    pending = await _task(session, job, 2)
    assert await queue.claim_pending_tasks(session, WORKER, 1, LEASE) == [pending]


async def test_claimed_tasks_are_leased_to_the_worker_until_now_plus_the_lease(session: AsyncSession) -> None:
    job = await _job(session, 1)
    fresh = await _task(session, job, 0)
    lapsed = await _task(session, job, 1, claimed_by=OTHER, lease_expires_at=NOW - SECOND)
    live = await _task(session, job, 2, claimed_by=OTHER, lease_expires_at=NOW + SECOND)
    await queue.claim_pending_tasks(session, WORKER, 10, LEASE)
    assert _lease(await _row(session, fresh)) == (WORKER, NOW + LEASE)
    assert _lease(await _row(session, lapsed)) == (WORKER, NOW + LEASE)
    assert _lease(await _row(session, live)) == (OTHER, NOW + SECOND)


async def test_a_claim_follows_the_claim_key_not_the_row_order_and_stops_at_the_limit(
    session: AsyncSession,
) -> None:
    free = await _job(session, 1, priority=0, created_at=NOW - timedelta(hours=3))
    old_paid = await _job(session, 2, created_at=NOW - timedelta(hours=2))
    new_paid = await _job(session, 3, created_at=NOW - timedelta(hours=1))
    free_first = await _task(session, free, 0)
    new_second = await _task(session, new_paid, 1)
    new_first = await _task(session, new_paid, 0)
    old_second = await _task(session, old_paid, 1)
    old_first = await _task(session, old_paid, 0)
    # Paid first portraits, oldest job first; then paid later portraits; the free job last.
    assert await queue.claim_pending_tasks(session, WORKER, 3, LEASE) == [old_first, new_first, old_second]
    assert await queue.claim_pending_tasks(session, WORKER, 3, LEASE) == [new_second, free_first]
    assert await queue.claim_pending_tasks(session, WORKER, 3, LEASE) == []


async def test_a_live_lease_of_another_worker_is_never_claimed_a_lapsed_one_is(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await _job(session, 1)
    task_id = await _task(session, job, 0)
    assert await queue.claim_pending_tasks(session, OTHER, 1, LEASE) == [task_id]
    assert await queue.claim_pending_tasks(session, WORKER, 1, LEASE) == []
    assert _lease(await _row(session, task_id)) == (OTHER, NOW + LEASE)
    later = NOW + LEASE + SECOND
    monkeypatch.setattr(queue, "utcnow", lambda: later)
    assert await queue.claim_pending_tasks(session, WORKER, 1, LEASE) == [task_id]
    assert _lease(await _row(session, task_id)) == (WORKER, later + LEASE)


async def test_the_candidates_query_is_the_claims_order_and_limit(session: AsyncSession) -> None:
    job = await _job(session, 1)
    first = await _task(session, job, 0)
    second = await _task(session, job, 1)
    await _task(session, job, 2)
    ids = (await session.execute(queue.pending_claim_candidates(NOW, 2))).scalars().all()
    assert ids == [first, second]


# ---------------------------------------------------------------- leases


async def test_renewing_extends_only_this_workers_pending_leases_among_the_tasks_named(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    soon = NOW + SECOND
    mine = await _task(session, job, 0, claimed_by=WORKER, lease_expires_at=soon)
    theirs = await _task(session, job, 1, claimed_by=OTHER, lease_expires_at=soon)
    not_named = await _task(session, job, 2, claimed_by=WORKER, lease_expires_at=soon)
    submitted = await _task(session, job, 3, TaskStatus.SUBMITTED, claimed_by=WORKER, lease_expires_at=soon)
    await queue.renew_claims(session, [mine, theirs, submitted], WORKER, LEASE)
    assert _lease(await _row(session, mine)) == (WORKER, NOW + LEASE)
    assert _lease(await _row(session, theirs)) == (OTHER, soon)
    assert _lease(await _row(session, not_named)) == (WORKER, soon)
    assert _lease(await _row(session, submitted)) == (WORKER, soon)


async def test_releasing_clears_only_this_workers_claim_on_that_task(session: AsyncSession) -> None:
    job = await _job(session, 1)
    until = NOW + LEASE
    mine = await _task(session, job, 0, claimed_by=WORKER, lease_expires_at=until)
    theirs = await _task(session, job, 1, claimed_by=OTHER, lease_expires_at=until)
    other_task = await _task(session, job, 2, claimed_by=WORKER, lease_expires_at=until)
    await queue.release_claim(session, mine, WORKER)
    await queue.release_claim(session, theirs, WORKER)
    assert _lease(await _row(session, mine)) == (None, None)
    assert _lease(await _row(session, theirs)) == (OTHER, until)
    assert _lease(await _row(session, other_task)) == (WORKER, until)


# ---------------------------------------------------------------- submission


async def test_a_submission_records_the_create_and_frees_the_lease(session: AsyncSession) -> None:
    job = await _job(session, 1)
    task_id = await _task(
        session, job, 0, claimed_by=WORKER, lease_expires_at=NOW + LEASE, attempts=2, polls=4, error="earlier"
    )
    poll_at = NOW + timedelta(seconds=40)
    assert await queue.mark_submitted(
        session, task_id, WORKER, provider="kie", provider_index=1, provider_task_id="kie-1", next_poll_at=poll_at
    )
    task = await _row(session, task_id)
    assert (
        task.status,
        task.provider,
        task.provider_index,
        task.provider_task_id,
        task.submitted_at,
        task.next_poll_at,
        task.polls,
        task.attempts,
        task.claimed_by,
        task.lease_expires_at,
        task.error,
    ) == (TaskStatus.SUBMITTED, "kie", 1, "kie-1", NOW, poll_at, 0, 3, None, None, None)
    assert (task.model, task.cost_micros) == (None, 0)  # a provider without a price list costs nothing


async def test_each_accepted_create_adds_its_price_and_names_its_model(session: AsyncSession) -> None:
    """A retried or fallen-back portrait costs every create it took; the model is the latest one's."""
    job = await _job(session, 1)
    task_id = await _task(session, job, 0, claimed_by=WORKER, lease_expires_at=NOW + LEASE)
    assert await queue.mark_submitted(
        session,
        task_id,
        WORKER,
        provider="kie",
        provider_index=0,
        provider_task_id="kie-1",
        next_poll_at=NOW,
        model="nano-banana-2",
        cost_micros=40_000,
    )
    task = await _row(session, task_id)
    assert (task.model, task.cost_micros) == ("nano-banana-2", 40_000)
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id)
        .values(status=TaskStatus.PENDING, claimed_by=WORKER, lease_expires_at=NOW + LEASE)
    )
    assert await queue.mark_submitted(
        session,
        task_id,
        WORKER,
        provider="replicate",
        provider_index=1,
        provider_task_id="rep-1",
        next_poll_at=NOW,
        model="google/nano-banana-pro",
        cost_micros=150_000,
    )
    task = await _row(session, task_id)
    assert (task.model, task.cost_micros, task.attempts) == ("google/nano-banana-pro", 190_000, 2)


async def test_a_jobs_cost_is_the_sum_over_its_tasks_only(session: AsyncSession) -> None:
    job = await _job(session, 1)
    other_job = await _job(session, 2)
    assert await queue.job_cost_micros(session, job) == 0  # no task yet: zero, not NULL
    await _task(session, job, 0, cost_micros=40_000)
    await _task(session, job, 1, cost_micros=150_000)
    await _task(session, job, 2)
    await _task(session, other_job, 0, cost_micros=999_999)
    assert await queue.job_cost_micros(session, job) == 190_000


async def test_a_submission_by_a_worker_whose_lapsed_lease_another_took_changes_nothing(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    task_id = await _task(session, job, 0, claimed_by=WORKER, lease_expires_at=NOW - SECOND)
    assert await queue.claim_pending_tasks(session, OTHER, 1, LEASE) == [task_id]
    assert not await queue.mark_submitted(
        session, task_id, WORKER, provider="kie", provider_index=0, provider_task_id="late", next_poll_at=NOW
    )
    task = await _row(session, task_id)
    assert (task.status, task.provider_task_id, task.submitted_at, task.attempts) == (TaskStatus.PENDING, None, None, 0)
    assert _lease(task) == (OTHER, NOW + LEASE)


async def test_other_task_submitted_sees_only_the_jobs_other_tasks_that_reached_a_provider(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    other_job = await _job(session, 2)
    first = await _task(session, job, 0, TaskStatus.SUBMITTED, submitted_at=NOW)
    second = await _task(session, job, 1)
    await _task(session, other_job, 0, TaskStatus.SUBMITTED, submitted_at=NOW)
    assert not await queue.other_task_submitted(session, job, first)
    assert await queue.other_task_submitted(session, job, second)
    # A retried task went back to pending but did reach a provider once.
    await _task(session, other_job, 1, TaskStatus.PENDING, submitted_at=NOW - SECOND)
    lone = await _job(session, 3)
    lone_task = await _task(session, lone, 0)
    assert not await queue.other_task_submitted(session, lone, lone_task)
    assert await queue.other_task_submitted(session, other_job, 10_000)


# ---------------------------------------------------------------- retries and skips


async def test_retry_later_puts_a_failed_create_back_to_pending_not_before_retry_at(session: AsyncSession) -> None:
    job = await _job(session, 1)
    task_id = await _task(session, job, 0, claimed_by=WORKER, lease_expires_at=NOW + LEASE, provider_task_id="x")
    retry_at = NOW + timedelta(seconds=30)
    assert await queue.retry_later(
        session,
        task_id,
        from_status=TaskStatus.PENDING,
        provider_index=1,
        attempts=2,
        retry_at=retry_at,
        error="e" * 1500,
        worker=WORKER,
    )
    task = await _row(session, task_id)
    assert (
        task.status,
        task.provider_index,
        task.attempts,
        task.next_poll_at,
        task.provider_task_id,
        task.claimed_by,
        task.lease_expires_at,
        task.error,
    ) == (TaskStatus.PENDING, 1, 2, retry_at, None, None, None, "e" * 1000)


async def test_retry_later_of_a_result_clears_it_only_while_the_task_holds_that_result(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    task_id = await _task(session, job, 0, TaskStatus.SUCCEEDED, result_url="https://r/new", provider_task_id="p")
    args: dict[str, Any] = {
        "from_status": TaskStatus.SUCCEEDED,
        "provider_index": 0,
        "attempts": 1,
        "retry_at": NOW,
        "error": "bad",
    }
    assert not await queue.retry_later(session, task_id, **args, result_url="https://r/old")
    assert (await _row(session, task_id)).status == TaskStatus.SUCCEEDED
    assert await queue.retry_later(session, task_id, **args, result_url="https://r/new")
    task = await _row(session, task_id)
    assert (task.status, task.result_url, task.provider_task_id, task.error) == (TaskStatus.PENDING, None, None, "bad")


async def test_retry_later_does_nothing_to_another_workers_task_or_from_another_status(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    theirs = await _task(session, job, 0, claimed_by=OTHER, lease_expires_at=NOW + LEASE)
    submitted = await _task(session, job, 1, TaskStatus.SUBMITTED, provider_task_id="p")
    common: dict[str, Any] = {"provider_index": 1, "attempts": 5, "retry_at": NOW, "error": "x"}
    assert not await queue.retry_later(session, theirs, from_status=TaskStatus.PENDING, worker=WORKER, **common)
    assert not await queue.retry_later(session, submitted, from_status=TaskStatus.PENDING, **common)
    assert ((await _row(session, theirs)).attempts, (await _row(session, theirs)).claimed_by) == (0, OTHER)
    task = await _row(session, submitted)
    assert (task.status, task.attempts, task.provider_task_id) == (TaskStatus.SUBMITTED, 0, "p")


async def _with_order(session: AsyncSession, job_id: int) -> int:
    job = await _job_row(session, job_id)
    result = await session.execute(
        insert(Order)
        .values(user_id=job.user_id, style="professional", pack="s", photos=3, status="paid")
        .returning(Order.id)
    )
    order_id = int(result.scalar_one())
    job.order_id = order_id
    await session.flush()
    return order_id


async def _ledger(session: AsyncSession) -> list[tuple[int, int, str, str, int | None, int | None]]:
    rows = await session.execute(
        select(
            LedgerEntry.user_id,
            LedgerEntry.delta,
            LedgerEntry.reason,
            LedgerEntry.reference,
            LedgerEntry.order_id,
            LedgerEntry.job_id,
        ).order_by(LedgerEntry.id)
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def test_a_skipped_task_counts_as_failed_and_releases_its_credit_exactly_once(session: AsyncSession) -> None:
    job = await _job(session, 5)
    order_id = await _with_order(session, job)
    task_id = await _task(session, job, 0, claimed_by=WORKER, lease_expires_at=NOW + LEASE)
    skip: dict[str, Any] = {"from_status": TaskStatus.PENDING, "error": "z" * 1200, "worker": WORKER}
    assert await queue.skip_task(session, task_id, **skip)
    assert not await queue.skip_task(session, task_id, **skip)
    task = await _row(session, task_id)
    assert (task.status, task.claimed_by, task.lease_expires_at, task.error) == (
        TaskStatus.SKIPPED,
        None,
        None,
        "z" * 1000,
    )
    assert (await _job_row(session, job)).photos_failed == 1
    assert await _ledger(session) == [(5, 1, "release", f"task:{task_id}", order_id, job)]


async def test_skipping_another_workers_task_or_another_result_changes_nothing(session: AsyncSession) -> None:
    job = await _job(session, 1)
    theirs = await _task(session, job, 0, claimed_by=OTHER, lease_expires_at=NOW + LEASE)
    newer = await _task(session, job, 1, TaskStatus.SUCCEEDED, result_url="https://r/new")
    assert not await queue.skip_task(session, theirs, from_status=TaskStatus.PENDING, error="x", worker=WORKER)
    assert not await queue.skip_task(
        session, newer, from_status=TaskStatus.SUCCEEDED, error="x", result_url="https://r/old"
    )
    assert not await queue.skip_task(session, newer, from_status=TaskStatus.SUBMITTED, error="x")
    assert [(await _row(session, t)).status for t in (theirs, newer)] == [TaskStatus.PENDING, TaskStatus.SUCCEEDED]
    assert (await _job_row(session, job)).photos_failed == 0
    assert await _ledger(session) == []
    assert await queue.skip_task(
        session, newer, from_status=TaskStatus.SUCCEEDED, error="x", result_url="https://r/new"
    )


# ---------------------------------------------------------------- results


async def test_only_the_first_report_of_a_result_wins(session: AsyncSession) -> None:
    job = await _job(session, 1)
    task_id = await _task(session, job, 0, TaskStatus.SUBMITTED, provider="kie", provider_task_id="p1")
    await _task(session, job, 1, TaskStatus.SUBMITTED, provider="fal", provider_task_id="p2")
    assert await queue.mark_provider_succeeded(session, "fal", "p1", "https://wrong") is None
    task = await queue.mark_provider_succeeded(session, "kie", "p1", "https://img/1")
    assert task is not None and task.id == task_id
    assert await queue.mark_provider_succeeded(session, "kie", "p1", "https://img/2") is None
    row = await _row(session, task_id)
    assert (row.status, row.result_url, row.provider_done_at) == (TaskStatus.SUCCEEDED, "https://img/1", NOW)


async def test_a_result_is_dated_when_the_provider_says_it_finished_within_its_create_and_now(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    submitted = {"provider": "kie", "submitted_at": NOW - 10 * SECOND}
    polled_late = await _task(session, job, 0, TaskStatus.SUBMITTED, provider_task_id="p1", **submitted)
    clock_ahead = await _task(session, job, 1, TaskStatus.SUBMITTED, provider_task_id="p2", **submitted)
    clock_behind = await _task(session, job, 2, TaskStatus.SUBMITTED, provider_task_id="p3", **submitted)
    await queue.mark_provider_succeeded(session, "kie", "p1", "https://img/1", finished_at=NOW - 2 * SECOND)
    await queue.mark_provider_succeeded(session, "kie", "p2", "https://img/2", finished_at=NOW + 5 * SECOND)
    await queue.mark_provider_succeeded(session, "kie", "p3", "https://img/3", finished_at=NOW - 60 * SECOND)
    assert (await _row(session, polled_late)).provider_done_at == NOW - 2 * SECOND
    assert (await _row(session, clock_ahead)).provider_done_at == NOW
    assert (await _row(session, clock_behind)).provider_done_at == NOW - 10 * SECOND  # not before its create


async def test_provider_task_status_names_our_task_by_provider_and_id(session: AsyncSession) -> None:
    job = await _job(session, 1)
    await _task(session, job, 0, TaskStatus.SUCCEEDED, provider="kie", provider_task_id="p1")
    await _task(session, job, 1, TaskStatus.SUBMITTED, provider="fal", provider_task_id="p1")
    # A provider id seen twice (a task retried on the same id) answers with one of them, not an error.
    await _task(session, job, 2, TaskStatus.SKIPPED, provider="fal", provider_task_id="p2")
    await _task(session, job, 3, TaskStatus.SKIPPED, provider="fal", provider_task_id="p2")
    assert await queue.provider_task_status(session, "kie", "p1") is TaskStatus.SUCCEEDED
    assert await queue.provider_task_status(session, "fal", "p1") is TaskStatus.SUBMITTED
    assert await queue.provider_task_status(session, "fal", "p2") is TaskStatus.SKIPPED
    assert await queue.provider_task_status(session, "kie", "p2") is None
    assert await queue.provider_task_status(session, "kie", "p3") is None


async def test_find_submitted_finds_only_a_submitted_task_by_provider_and_id(session: AsyncSession) -> None:
    job = await _job(session, 1)
    submitted = await _task(session, job, 0, TaskStatus.SUBMITTED, provider="kie", provider_task_id="p1")
    await _task(session, job, 1, TaskStatus.SUCCEEDED, provider="kie", provider_task_id="p2")
    await _task(session, job, 2, TaskStatus.SUBMITTED, provider="fal", provider_task_id="p3")
    found = await queue.find_submitted(session, "kie", "p1")
    assert found is not None and found.id == submitted
    assert await queue.find_submitted(session, "kie", "p2") is None
    assert await queue.find_submitted(session, "kie", "p3") is None
    assert await queue.find_submitted(session, "fal", "p1") is None


async def test_a_stored_portrait_counts_once_and_the_jobs_first_image_time_is_the_first(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    first = await _task(session, job, 0, TaskStatus.SUCCEEDED)
    second = await _task(session, job, 1, TaskStatus.SUCCEEDED)
    pending = await _task(session, job, 2)
    early, late = NOW - timedelta(seconds=20), NOW - timedelta(seconds=10)
    assert await queue.mark_stored(session, first, result_key="r0", thumb_key="t0", stored_at=early)
    assert not await queue.mark_stored(session, first, result_key="again", thumb_key="again", stored_at=late)
    assert not await queue.mark_stored(session, pending, result_key="r2", thumb_key="t2", stored_at=late)
    assert await queue.mark_stored(session, second, result_key="r1", thumb_key="t1", stored_at=late)
    task = await _row(session, first)
    assert (task.status, task.result_key, task.thumb_key, task.stored_at) == (TaskStatus.STORED, "r0", "t0", early)
    stored = await _job_row(session, job)
    assert (stored.photos_completed, stored.first_image_at) == (2, early)


# ---------------------------------------------------------------- polls


async def _submitted(session: AsyncSession, job: int, position: int, poll_at: datetime, provider: str | None) -> int:
    return await _task(
        session,
        job,
        position,
        TaskStatus.SUBMITTED,
        provider=provider,
        provider_task_id=f"p{position}",
        next_poll_at=poll_at,
    )


async def test_due_polls_take_submitted_tasks_due_by_now_longest_overdue_first_up_to_the_limit(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    at_now = await _submitted(session, job, 0, NOW, "kie")
    oldest = await _submitted(session, job, 1, NOW - timedelta(seconds=9), "kie")
    tie_low = await _submitted(session, job, 2, NOW - timedelta(seconds=5), "fal")
    tie_high = await _submitted(session, job, 3, NOW - timedelta(seconds=5), "kie")
    await _submitted(session, job, 4, NOW + SECOND, "kie")  # not due
    await _task(session, job, 5, TaskStatus.PENDING, next_poll_at=NOW - timedelta(seconds=30))
    assert [t.id for t in await queue.due_polls(session, 10)] == [oldest, tie_low, tie_high, at_now]
    assert [t.id for t in await queue.due_polls(session, 2)] == [oldest, tie_low]


async def test_due_polls_cap_each_named_provider_and_count_the_others_against_the_limit(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    kie = [await _submitted(session, job, n, NOW - timedelta(seconds=10 - n), "kie") for n in range(3)]
    fal = [await _submitted(session, job, 3 + n, NOW - timedelta(seconds=9.5 - n), "fal") for n in range(2)]
    gone = await _submitted(session, job, 5, NOW - timedelta(seconds=20), "retired")
    nameless = await _submitted(session, job, 6, NOW - timedelta(seconds=1), None)
    await _submitted(session, job, 7, NOW + SECOND, "kie")
    polls = await queue.due_polls(session, 10, per_provider={"kie": 2, "fal": 5})
    # One order across providers: the longest overdue first, whoever's it is.
    assert [t.id for t in polls] == [gone, kie[0], fal[0], kie[1], fal[1], nameless]
    capped = await queue.due_polls(session, 3, per_provider={"kie": 1, "fal": 1})
    assert [t.id for t in capped] == [gone, kie[0], fal[0]]
    assert [t.id for t in await queue.due_polls(session, 10, per_provider={})] == [
        gone,
        kie[0],
        fal[0],
        kie[1],
        fal[1],
        kie[2],
        nameless,
    ]


async def test_a_provider_capped_at_zero_gets_no_polls(session: AsyncSession) -> None:
    job = await _job(session, 1)
    await _submitted(session, job, 0, NOW - SECOND, "kie")
    other = await _submitted(session, job, 1, NOW, "fal")
    assert [t.id for t in await queue.due_polls(session, 5, per_provider={"kie": 0})] == [other]


async def test_next_poll_and_next_pending_times_are_the_earliest_of_their_status(session: AsyncSession) -> None:
    assert await queue.next_poll_time(session) is None
    assert await queue.next_pending_time(session) is None
    job = await _job(session, 1)
    await _submitted(session, job, 0, NOW + timedelta(seconds=7), "kie")
    await _submitted(session, job, 1, NOW + timedelta(seconds=3), "kie")
    await _task(session, job, 2, TaskStatus.PENDING, next_poll_at=NOW + timedelta(seconds=5))
    await _task(session, job, 3, TaskStatus.PENDING, next_poll_at=NOW + timedelta(seconds=9))
    await _task(session, job, 4, TaskStatus.SUCCEEDED, next_poll_at=NOW + SECOND)
    assert await queue.next_poll_time(session) == NOW + timedelta(seconds=3)
    assert await queue.next_pending_time(session) == NOW + timedelta(seconds=5)


async def test_rescheduling_moves_only_a_submitted_tasks_poll_and_counts_it(session: AsyncSession) -> None:
    job = await _job(session, 1)
    submitted = await _task(session, job, 0, TaskStatus.SUBMITTED, polls=2, next_poll_at=NOW)
    pending = await _task(session, job, 1, TaskStatus.PENDING, polls=0, next_poll_at=NOW)
    untouched = await _task(session, job, 2, TaskStatus.SUBMITTED, polls=0, next_poll_at=NOW)
    later = NOW + timedelta(seconds=15)
    await queue.reschedule_poll(session, submitted, later)
    await queue.reschedule_poll(session, pending, later)
    assert [((t := await _row(session, i)).next_poll_at, t.polls) for i in (submitted, pending, untouched)] == [
        (later, 3),
        (NOW, 0),
        (NOW, 0),
    ]


async def test_recent_latencies_are_the_latest_finished_since_newest_first(session: AsyncSession) -> None:
    job = await _job(session, 1)
    since = NOW - timedelta(minutes=10)
    sub = NOW - timedelta(minutes=20)

    async def done(position: int, at: datetime, provider: str | None = "kie", submitted: datetime | None = sub) -> None:
        await _task(
            session,
            job,
            position,
            TaskStatus.SUCCEEDED,
            provider=provider,
            submitted_at=submitted,
            provider_done_at=at,
        )

    await done(0, since)  # exactly at the window's start: in
    await done(1, since - SECOND)  # before it: out
    await done(2, NOW - timedelta(minutes=1), provider="fal")
    await done(3, NOW - timedelta(minutes=5))
    # The newest rows lack a provider or a submission time: skipped, not taking a place in the limit.
    await done(4, NOW, provider=None)
    await done(5, NOW, submitted=None)
    assert await queue.recent_provider_latencies(session, since, 2) == [
        ("fal", sub, NOW - timedelta(minutes=1)),
        ("kie", sub, NOW - timedelta(minutes=5)),
    ]
    assert await queue.recent_provider_latencies(session, since, 10) == [
        ("fal", sub, NOW - timedelta(minutes=1)),
        ("kie", sub, NOW - timedelta(minutes=5)),
        ("kie", sub, since),
    ]


async def test_recent_creates_are_the_providers_submissions_since_then(session: AsyncSession) -> None:
    job = await _job(session, 1)
    since = NOW - timedelta(seconds=60)
    for position, (provider, at) in enumerate(
        [("kie", since), ("kie", since - SECOND), ("kie", NOW), ("fal", NOW), ("kie", None)]
    ):
        await _task(session, job, position, TaskStatus.SUBMITTED, provider=provider, submitted_at=at)
    assert sorted(await queue.recent_creates(session, "kie", since)) == [since, NOW]


# ---------------------------------------------------------------- recovery


async def test_stale_succeeded_are_results_reported_before_the_cutoff_and_never_stored(
    session: AsyncSession,
) -> None:
    job = await _job(session, 1)
    cutoff = NOW - timedelta(minutes=5)
    stale = await _task(session, job, 0, TaskStatus.SUCCEEDED, provider_done_at=cutoff - SECOND)
    await _task(session, job, 1, TaskStatus.SUCCEEDED, provider_done_at=cutoff)
    await _task(session, job, 2, TaskStatus.STORED, provider_done_at=cutoff - SECOND)
    assert [t.id for t in await queue.stale_succeeded(session, cutoff)] == [stale]
    assert len(await queue.stale_succeeded(session, cutoff, limit=0)) == 0


async def test_stale_succeeded_takes_fifty_at_a_time_by_default(session: AsyncSession) -> None:
    job = await _job(session, 1)
    await session.execute(
        insert(GenerationTask),
        [
            {
                "job_id": job,
                "position": n,
                "prompt_index": n,
                "seed": n,
                "claim_key": claim_key(100, NOW, job, n),
                "status": TaskStatus.SUCCEEDED,
                "provider_done_at": NOW - timedelta(hours=1),
            }
            for n in range(51)
        ],
    )
    assert len(await queue.stale_succeeded(session, NOW)) == 50


async def test_a_processing_job_is_ready_to_settle_once_none_of_its_tasks_is_open(session: AsyncSession) -> None:
    open_statuses = [TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED]
    for job_id, status in enumerate(open_statuses, start=1):
        await _job(session, job_id)
        await _task(session, job_id, 0, TaskStatus.STORED)
        await _task(session, job_id, 1, status)
    settled = await _job(session, 10)
    for position, status in enumerate([TaskStatus.STORED, TaskStatus.SKIPPED, TaskStatus.DELIVERED]):
        await _task(session, settled, position, status)
    await _job(session, 11)  # no tasks yet: not ready, its fan-out is missing
    delivering = await _job(session, 12, status=JobStatus.DELIVERING)
    await _task(session, delivering, 0, TaskStatus.STORED)
    assert await queue.unsettled_processing_jobs(session) == [settled]


async def test_settling_takes_a_hundred_jobs_at_a_time_by_default(session: AsyncSession) -> None:
    await session.execute(
        insert(User), [{"id": n, "telegram_id": n, "language": "ru", "max_active_jobs": 1} for n in range(1, 102)]
    )
    await session.execute(
        insert(GenerationJob),
        [
            {"id": n, "user_id": n, "chat_id": n, "style": "s", "priority": 100, "status": JobStatus.PROCESSING}
            | {"photos_total": 1, "provider_refs": {}, "created_at": NOW}
            for n in range(1, 102)
        ],
    )
    await session.execute(
        insert(GenerationTask),
        [
            {"job_id": n, "position": 0, "prompt_index": 0, "seed": 1, "claim_key": claim_key(100, NOW, n, 0)}
            | {"status": TaskStatus.STORED}
            for n in range(1, 102)
        ],
    )
    assert len(await queue.unsettled_processing_jobs(session)) == 100
    assert len(await queue.unsettled_processing_jobs(session, limit=3)) == 3


async def test_processing_jobs_without_tasks_are_those_started_before_the_cutoff_with_none(
    session: AsyncSession,
) -> None:
    cutoff = NOW - timedelta(minutes=2)
    stranded = await _job(session, 1, started_at=cutoff - SECOND)
    await _job(session, 2, started_at=cutoff)  # its fan-out may still be under way
    with_tasks = await _job(session, 3, started_at=cutoff - SECOND)
    await _task(session, with_tasks, 0)
    await _job(session, 4, status=JobStatus.QUEUED, started_at=cutoff - SECOND)
    assert await queue.processing_jobs_without_tasks(session, cutoff) == [stranded]


# ---------------------------------------------------------------- counts and status


async def test_task_counts_are_the_jobs_tasks_by_status(session: AsyncSession) -> None:
    job = await _job(session, 1)
    other = await _job(session, 2)
    for position, status in enumerate([TaskStatus.STORED, TaskStatus.STORED, TaskStatus.SKIPPED, TaskStatus.PENDING]):
        await _task(session, job, position, status)
    await _task(session, other, 0, TaskStatus.SKIPPED)
    assert await queue.task_counts(session, job) == {"stored": 2, "skipped": 1, "pending": 1}


async def test_move_job_takes_a_named_step_with_its_values_only_from_its_source(session: AsyncSession) -> None:
    job = await _job(session, 1)
    assert await queue.move_job(session, job, JobStatus.PROCESSING, JobStatus.DELIVERING, error="e")
    assert not await queue.move_job(session, job, JobStatus.PROCESSING, JobStatus.DELIVERING)
    row = await _job_row(session, job)
    assert (row.status, row.error) == (JobStatus.DELIVERING, "e")


async def test_status_counts_are_jobs_and_tasks_by_status_and_the_oldest_queued_job(session: AsyncSession) -> None:
    assert await queue.status_counts(session) == ({}, {}, None)
    oldest_queued = NOW - timedelta(minutes=30)
    await _job(session, 1, status=JobStatus.PROCESSING, created_at=NOW - timedelta(hours=2))
    await _job(session, 2, status=JobStatus.QUEUED, created_at=oldest_queued)
    await _job(session, 3, status=JobStatus.QUEUED, created_at=NOW - timedelta(minutes=10))
    for position, status in enumerate([TaskStatus.PENDING, TaskStatus.PENDING, TaskStatus.STORED]):
        await _task(session, 1, position, status)
    assert await queue.status_counts(session) == (
        {"processing": 1, "queued": 2},
        {"pending": 2, "stored": 1},
        oldest_queued,
    )


async def test_first_portrait_is_next_when_the_next_claim_is_a_jobs_position_zero(session: AsyncSession) -> None:
    assert not await queue.first_portrait_is_next(session)
    old = await _job(session, 1, created_at=NOW - timedelta(hours=2))
    new = await _job(session, 2, created_at=NOW - timedelta(hours=1))
    await _task(session, old, 1)
    await _task(session, old, 2)
    assert not await queue.first_portrait_is_next(session)
    first = await _task(session, new, 0, next_poll_at=NOW + SECOND)
    assert not await queue.first_portrait_is_next(session)  # not due yet
    await session.execute(update(GenerationTask).where(GenerationTask.id == first).values(next_poll_at=NOW))
    assert await queue.first_portrait_is_next(session)


async def test_pending_due_exists_only_for_a_due_unclaimed_pending_task(session: AsyncSession) -> None:
    job = await _job(session, 1)
    assert not await queue.pending_due_exists(session)
    await _task(session, job, 0, next_poll_at=NOW + SECOND)
    await _task(session, job, 1, claimed_by=OTHER, lease_expires_at=NOW)
    await _task(session, job, 2, TaskStatus.SUBMITTED, next_poll_at=NOW - SECOND)
    assert not await queue.pending_due_exists(session)
    await _task(session, job, 3, claimed_by=OTHER, lease_expires_at=NOW - SECOND, next_poll_at=NOW)
    assert await queue.pending_due_exists(session)


async def test_pending_due_exists_for_an_unclaimed_task_with_no_retry_time(session: AsyncSession) -> None:
    job = await _job(session, 1)
    await _task(session, job, 0)
    assert await queue.pending_due_exists(session)


# ---------------------------------------------------------------- grid packs


async def _grid(session: AsyncSession, job_id: int, statuses: list[TaskStatus], **values: Any) -> list[int]:
    """One grid's four panels (group 0), slot i in ``statuses[i]``."""
    return [
        await _task(session, job_id, slot, status, grid_group=0, grid_slot=slot, variant=slot, prompt_index=0, **values)
        for slot, status in enumerate(statuses)
    ]


async def test_only_a_grids_slot_0_task_is_claimed_while_it_is_pending(session: AsyncSession) -> None:
    await _job(session, 1)
    panels = await _grid(session, 1, [TaskStatus.PENDING] * 4)

    assert await queue.claim_pending_tasks(session, WORKER, 10, LEASE) == [panels[0]]
    # Claimed (leased, still pending), it keeps its panels out of the queue, and so does a due check.
    assert await queue.claim_pending_tasks(session, OTHER, 10, LEASE) == []
    assert not await queue.pending_due_exists(session)


async def test_a_panel_left_pending_without_its_slot_0_task_becomes_an_ordinary_task(session: AsyncSession) -> None:
    # An admin's retry put the one skipped panel back; its grid's slot 0 is stored.
    await _job(session, 1)
    panels = await _grid(session, 1, [TaskStatus.STORED, TaskStatus.STORED, TaskStatus.PENDING, TaskStatus.STORED])
    # A whole grid put back keeps riding on its slot 0.
    whole = [
        await _task(session, 1, 10 + slot, grid_group=1, grid_slot=slot, variant=10 + slot, prompt_index=1)
        for slot in range(4)
    ]
    assert await queue.claim_pending_tasks(session, WORKER, 10, LEASE) == [whole[0]]  # not the lone panel yet

    assert await queue.detach_lone_panels(session, 1) == 1
    lone = await _row(session, panels[2])
    assert (lone.grid_group, lone.grid_slot) == (None, None)
    assert (await _row(session, whole[3])).grid_slot == 3
    assert await queue.claim_pending_tasks(session, OTHER, 10, LEASE) == [panels[2]]
    assert await queue.grid_riders(session, await _row(session, panels[2])) == []  # created alone


async def test_a_grid_create_records_all_four_panels_under_one_provider_task_id(session: AsyncSession) -> None:
    await _job(session, 1)
    panels = await _grid(session, 1, [TaskStatus.PENDING] * 4)
    await _task(session, 1, 9)  # an ordinary task of the same job: no rider
    [claimed] = await queue.claim_pending_tasks(session, WORKER, 1, LEASE)
    riders = await queue.grid_riders(session, await _row(session, claimed))
    assert [rider.id for rider in riders] == panels[1:]
    assert await queue.grid_variants(session, 1, 0) == [0, 1, 2, 3]

    assert await queue.mark_submitted(
        session,
        claimed,
        WORKER,
        provider="kie",
        provider_index=0,
        provider_task_id="k-grid",
        next_poll_at=NOW + SECOND,
        model="nano-banana-2",
        cost_micros=40_003,
        panels=[rider.id for rider in riders],
    )
    session.expire_all()
    rows = [await session.get(GenerationTask, task_id) for task_id in panels]
    assert all(row is not None for row in rows)
    assert {(row.status, row.provider, row.provider_task_id, row.model, row.attempts) for row in rows} == {
        (TaskStatus.SUBMITTED, "kie", "k-grid", "nano-banana-2", 1)
    }
    # The price shared out exactly; only the create's own task is polled.
    assert [row.cost_micros for row in rows] == [10_003, 10_000, 10_000, 10_000]
    assert [row.next_poll_at for row in rows] == [NOW + SECOND, None, None, None]
    assert await queue.create_partners(session, claimed, TaskStatus.SUBMITTED) == panels[1:]
    assert await queue.job_cost_micros(session, 1) == 40_003
    # generation_started is for the job's first create: its own panels do not count as another.
    assert not await queue.other_task_submitted(session, 1, claimed, same_create=panels[1:])
    assert await queue.other_task_submitted(session, 1, claimed)

    task = await queue.mark_provider_succeeded(session, "kie", "k-grid", "https://img/grid.png")
    assert task is not None and task.id == panels[0]
    assert {(await _row(session, task_id)).status for task_id in panels} == {TaskStatus.SUCCEEDED}
    assert [t.id for t in await queue.tasks_of_create(session, "kie", "k-grid")] == panels
    assert await queue.mark_provider_succeeded(session, "kie", "k-grid", "https://img/again.png") is None


async def test_a_lost_lease_records_no_panel_either(session: AsyncSession) -> None:
    await _job(session, 1)
    panels = await _grid(session, 1, [TaskStatus.PENDING] * 4)
    [claimed] = await queue.claim_pending_tasks(session, WORKER, 1, LEASE)

    assert not await queue.mark_submitted(
        session,
        claimed,
        OTHER,
        provider="kie",
        provider_index=0,
        provider_task_id="k-late",
        next_poll_at=NOW,
        panels=panels[1:],
    )
    assert {(await _row(session, task_id)).status for task_id in panels} == {TaskStatus.PENDING}


async def test_a_submitted_grid_is_found_by_its_slot_0_task(session: AsyncSession) -> None:
    await _job(session, 1)
    panels = await _grid(session, 1, [TaskStatus.SUBMITTED] * 4, provider="kie", provider_task_id="k-1")
    found = await queue.find_submitted(session, "kie", "k-1")
    assert found is not None and found.id == panels[0]
    assert await queue.provider_task_status(session, "kie", "k-1") == TaskStatus.SUBMITTED
    # An ordinary task has no partners.
    await _job(session, 2)
    single = await _task(session, 2, 0, TaskStatus.SUBMITTED, provider="kie", provider_task_id="k-2")
    assert await queue.create_partners(session, single, TaskStatus.SUBMITTED) == []


async def test_an_admins_retry_of_a_dropped_panel_makes_it_an_ordinary_task(session: AsyncSession) -> None:
    # A faceless panel was dropped; the rest of its grid was delivered. The retry recreates it alone.
    await _job(session, 1, status=JobStatus.PARTIAL, photos_total=4, photos_completed=3, photos_failed=1)
    panels = await _grid(
        session, 1, [TaskStatus.DELIVERED, TaskStatus.SKIPPED, TaskStatus.DELIVERED, TaskStatus.DELIVERED]
    )

    assert await admin.reopen_skipped_tasks(session, 1) == 1
    lone = await _row(session, panels[1])
    assert (lone.status, lone.grid_group, lone.grid_slot) == (TaskStatus.PENDING, None, None)
    assert await queue.claim_pending_tasks(session, WORKER, 10, LEASE) == [panels[1]]
