"""The work queue in the database: claiming jobs and tasks safely across processes
(``storage.sql.claim_rows``), and the engine's task and job moves (procrastinate-style: status +
attempts + lease, no in-memory truth), whose status changes are ``storage.transitions``'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import examples, ledger, transitions
from storage.models import GenerationJob, GenerationTask, Redo, User, utcnow
from storage.sql import claim_rows, insert_for
from studio.costs import split_micros
from studio.credits import release_line_for_task
from studio.generation import PlannedTask, claim_key, is_first_portrait_key
from studio.redo import RedoKind
from studio.states import JobStatus, TaskStatus

BUSY_JOB_STATUSES = (JobStatus.PROCESSING, JobStatus.DELIVERING)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# ---------------------------------------------------------------- jobs


async def claim_queued_jobs(session: AsyncSession, worker: str, limit: int) -> list[int]:
    """queued → processing, paid before free then oldest, skipping users already at their limit."""
    busy_alias = GenerationJob.__table__.alias("busy_jobs")
    busy = (
        select(func.count())
        .select_from(busy_alias)
        .where(busy_alias.c.user_id == GenerationJob.user_id, busy_alias.c.status.in_(BUSY_JOB_STATUSES))
        .scalar_subquery()
    )
    allowance = select(User.max_active_jobs).where(User.id == GenerationJob.user_id).scalar_subquery()
    candidates = (
        select(GenerationJob.id)
        .where(GenerationJob.status == JobStatus.QUEUED, busy < allowance)
        .order_by(GenerationJob.priority.desc(), GenerationJob.created_at, GenerationJob.id)
        .limit(limit)
    )
    return await transitions.claim_queued_jobs(
        session, candidates, claimed_by=worker, started_at=utcnow(), attempts=GenerationJob.attempts + 1
    )


async def add_tasks(session: AsyncSession, job_id: int, planned: Sequence[PlannedTask]) -> None:
    """Create the job's tasks once; a repeat (another worker, a restart) inserts nothing.

    Each task gets its place in the claim queue now, from the job's priority and age: neither
    changes later, and a task put back to pending (a retry, an admin's reopen) keeps its place.
    """
    job = await session.get(GenerationJob, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    now = utcnow()
    rows = [
        {
            "job_id": job_id,
            "position": task.position,
            "claim_key": claim_key(job.priority, job.created_at, job_id, task.position),
            "prompt_index": task.prompt_index,
            "variant": task.variant,
            "seed": task.seed,
            "grid_group": task.grid_group,
            "grid_slot": task.grid_slot,
            "status": TaskStatus.PENDING,
            "attempts": 0,
            "polls": 0,
            "provider_index": 0,
            "flagged": False,
            "created_at": now,
        }
        for task in planned
    ]
    if rows:
        await session.execute(
            insert_for(session, GenerationTask)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["job_id", "prompt_index", "variant"])
        )


async def set_provider_refs(session: AsyncSession, job_id: int, provider: str, urls: list[str]) -> list[str]:
    """Remember the job's reference URLs at a provider; the first writer wins, everyone uses its URLs."""
    job = await session.get(GenerationJob, job_id, with_for_update=_is_postgres(session))
    assert job is not None
    refs = dict(job.provider_refs or {})
    if provider in refs:
        return list(refs[provider]["urls"])
    refs[provider] = {"urls": urls, "at": utcnow().isoformat()}
    job.provider_refs = refs
    await session.flush()
    return urls


# ---------------------------------------------------------------- tasks


def _unclaimed(now: datetime) -> Any:
    return or_(GenerationTask.claimed_by.is_(None), GenerationTask.lease_expires_at < now)


def _due(now: datetime) -> Any:
    return or_(GenerationTask.next_poll_at.is_(None), GenerationTask.next_poll_at <= now)


def _claimable_alone() -> Any:
    """Not a panel riding on its grid's create: an ordinary task, or a grid's slot-0 task (whose
    create makes the pending panels of its grid too). A plain column test, so the claim stays a walk
    along its index; a panel left pending without its slot-0 task (an admin's retry of that panel
    alone) is made an ordinary task at once (``detach_lone_panels``)."""
    return or_(GenerationTask.grid_slot.is_(None), GenerationTask.grid_slot == 0)


async def detach_lone_panels(session: AsyncSession, job_id: int) -> int:
    """The job's pending grid panels whose slot-0 task is not pending become ordinary tasks (their own
    prompt and pose, one create each): no create of their grid is coming to take them along. How many."""
    leader = GenerationTask.__table__.alias("grid_leader")
    leader_pending = (
        select(leader.c.id)
        .where(
            leader.c.job_id == GenerationTask.job_id,
            leader.c.grid_group == GenerationTask.grid_group,
            leader.c.grid_slot == 0,
            leader.c.status == TaskStatus.PENDING,
        )
        .exists()
    )
    result = await session.execute(
        update(GenerationTask)
        .where(
            GenerationTask.job_id == job_id,
            GenerationTask.status == TaskStatus.PENDING,
            GenerationTask.grid_slot > 0,
            ~leader_pending,
        )
        .values(grid_group=None, grid_slot=None)
        .returning(GenerationTask.id)
    )
    return len(result.all())


def pending_claim_candidates(now: datetime, limit: int) -> Select[Any]:
    """The next ``limit`` due, unleased pending tasks of processing jobs, in claim order.

    A walk along ``ix_generation_tasks_claim`` (status, claim_key) that stops after ``limit`` rows:
    the order is precomputed on the task (``studio.generation.claim_key``), so no join and no sort
    over the backlog. The job check is a per-row EXISTS on the job's primary key. Pending tasks of a
    job that is not processing should not exist (every way out of processing skips them), but one
    such task must never be claimed, nor block the queue."""
    job_processing = (
        select(GenerationJob.id)
        .where(GenerationJob.id == GenerationTask.job_id, GenerationJob.status == JobStatus.PROCESSING)
        .exists()
    )
    return (
        select(GenerationTask.id)
        .where(
            GenerationTask.status == TaskStatus.PENDING, _due(now), _unclaimed(now), _claimable_alone(), job_processing
        )
        .order_by(GenerationTask.claim_key)
        .limit(limit)
    )


async def claim_pending_tasks(session: AsyncSession, worker: str, limit: int, lease: timedelta) -> list[int]:
    """Due pending tasks, leased to ``worker``; their ids in the queue's order (job priority, every
    job's first portrait, job age, position: ``studio.generation.claim_key``)."""
    now = utcnow()
    return await claim_rows(
        session,
        GenerationTask,
        pending_claim_candidates(now, limit),
        and_(GenerationTask.status == TaskStatus.PENDING, _unclaimed(now), _claimable_alone()),
        {"claimed_by": worker, "lease_expires_at": now + lease},
        rank=GenerationTask.claim_key,
    )


async def mark_submitted(
    session: AsyncSession,
    task_id: int,
    worker: str,
    *,
    provider: str,
    provider_index: int,
    provider_task_id: str,
    next_poll_at: datetime,
    model: str | None = None,
    cost_micros: int = 0,
    panels: Sequence[int] = (),
) -> bool:
    """Record a create the provider accepted; its price is added to what the task has cost (a
    retried or fallen-back portrait costs every create it took).

    ``panels``: the other pending tasks of the grid this create draws (the task is its slot 0). They
    are recorded with it, under the same provider task id, so a result for that id settles all of
    them. The create's price is shared out in equal parts (``studio.costs.split_micros``), so a
    job's cost is the sum of its creates and each portrait carries its share. Only the task itself
    is polled (the panels get no ``next_poll_at``): one status call per create."""
    now = utcnow()
    shares = split_micros(cost_micros, 1 + len(panels))
    common: dict[str, Any] = {
        "provider": provider,
        "provider_index": provider_index,
        "provider_task_id": provider_task_id,
        "model": model,
        "submitted_at": now,
        "polls": 0,
        "attempts": GenerationTask.attempts + 1,
        "claimed_by": None,
        "lease_expires_at": None,
        "error": None,
    }
    recorded = await transitions.submit_task(
        session,
        task_id,
        worker,
        cost_micros=GenerationTask.cost_micros + shares[0],
        next_poll_at=next_poll_at,
        **common,
    )
    if recorded and panels:
        # Every panel pays the same share: the first (the task's own) took the remainder.
        await transitions.submit_grid_panels(
            session, panels, cost_micros=GenerationTask.cost_micros + shares[-1], next_poll_at=None, **common
        )
    return recorded


async def grid_riders(session: AsyncSession, task: GenerationTask) -> list[GenerationTask]:
    """The pending tasks of ``task``'s grid that its create draws too: none unless it is the grid's
    slot-0 task (a panel retried alone is created alone)."""
    if task.grid_group is None or task.grid_slot != 0:
        return []
    rows = await session.execute(
        select(GenerationTask)
        .where(
            GenerationTask.job_id == task.job_id,
            GenerationTask.grid_group == task.grid_group,
            GenerationTask.id != task.id,
            GenerationTask.status == TaskStatus.PENDING,
        )
        .order_by(GenerationTask.grid_slot)
    )
    return list(rows.scalars())


async def grid_variants(session: AsyncSession, job_id: int, grid_group: int) -> list[int]:
    """The variant of each panel of a grid, in slot order (its prompt's pose for each panel)."""
    rows = await session.execute(
        select(GenerationTask.variant)
        .where(GenerationTask.job_id == job_id, GenerationTask.grid_group == grid_group)
        .order_by(GenerationTask.grid_slot)
    )
    return list(rows.scalars())


async def tasks_of_create(session: AsyncSession, provider: str, provider_task_id: str) -> list[GenerationTask]:
    """Every task one create made, whatever its status now: one, or the panels of a grid (in slot order)."""
    rows = await session.execute(
        select(GenerationTask)
        .where(GenerationTask.provider == provider, GenerationTask.provider_task_id == provider_task_id)
        .order_by(GenerationTask.grid_slot, GenerationTask.id)
    )
    return list(rows.scalars())


async def create_partners(session: AsyncSession, task_id: int, status: TaskStatus) -> list[int]:
    """The other tasks, still in ``status``, of the create that made this task (the rest of its grid):
    a failure of that create is theirs too. Empty for an ordinary task."""
    task = await session.get(GenerationTask, task_id)
    if task is None or task.provider is None or task.provider_task_id is None or task.grid_group is None:
        return []
    rows = await session.execute(
        select(GenerationTask.id)
        .where(
            GenerationTask.provider == task.provider,
            GenerationTask.provider_task_id == task.provider_task_id,
            GenerationTask.id != task_id,
            GenerationTask.status == status,
        )
        .order_by(GenerationTask.id)
    )
    return list(rows.scalars())


async def other_task_submitted(
    session: AsyncSession, job_id: int, task_id: int, *, same_create: Sequence[int] = ()
) -> bool:
    """Has another task of this job ever reached a provider? Call it right after ``mark_submitted``
    in the same transaction: SQLite then holds the write lock, and on PostgreSQL the job's row
    lock taken here makes concurrent first submissions of one job take turns, so exactly one of
    them sees False."""
    if _is_postgres(session):
        await session.execute(select(GenerationJob.id).where(GenerationJob.id == job_id).with_for_update())
    submitted = (
        select(GenerationTask.id)
        .where(
            GenerationTask.job_id == job_id,
            GenerationTask.id.not_in([task_id, *same_create]),
            GenerationTask.submitted_at.is_not(None),
        )
        .exists()
    )
    return bool((await session.execute(select(submitted))).scalar())


async def renew_claims(session: AsyncSession, task_ids: Sequence[int], worker: str, lease: timedelta) -> None:
    """Extend this worker's leases on tasks it is still creating (one statement for all)."""
    await session.execute(
        update(GenerationTask)
        .where(
            GenerationTask.id.in_(task_ids),
            GenerationTask.claimed_by == worker,
            GenerationTask.status == TaskStatus.PENDING,
        )
        .values(lease_expires_at=utcnow() + lease)
    )


async def release_claim(session: AsyncSession, task_id: int, worker: str) -> None:
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id, GenerationTask.claimed_by == worker)
        .values(claimed_by=None, lease_expires_at=None)
    )


async def retry_later(
    session: AsyncSession,
    task_id: int,
    *,
    from_status: TaskStatus,
    provider_index: int,
    attempts: int,
    retry_at: datetime,
    error: str,
    worker: str | None = None,
    result_url: str | None = None,
) -> bool:
    """A failed try goes back to pending (same or next provider), not before ``retry_at``; only while
    the task is still in ``from_status`` (and still ``worker``'s, still holding ``result_url``)."""
    return await transitions.retry_task(
        session,
        task_id,
        from_status,
        leased_by=worker,
        holding_result=result_url,
        provider_index=provider_index,
        attempts=attempts,
        next_poll_at=retry_at,
        provider_task_id=None,
        result_url=None,
        claimed_by=None,
        lease_expires_at=None,
        error=error[:1000],
    )


async def skip_task(
    session: AsyncSession,
    task_id: int,
    *,
    from_status: TaskStatus,
    error: str,
    worker: str | None = None,
    result_url: str | None = None,
) -> bool:
    """Every provider is exhausted: the task is skipped and its credit released, exactly once."""
    job_id = await transitions.skip_task(
        session,
        task_id,
        from_status,
        leased_by=worker,
        holding_result=result_url,
        claimed_by=None,
        lease_expires_at=None,
        error=error[:1000],
    )
    if job_id is None:
        return False
    job = await session.get(GenerationJob, job_id)
    assert job is not None
    await session.execute(
        update(GenerationJob).where(GenerationJob.id == job_id).values(photos_failed=GenerationJob.photos_failed + 1)
    )
    # A free redo (one of a pack's, or the likeness guarantee's) and an example job reserved nothing:
    # no credit to give back.
    free_redo = select(Redo.id).where(Redo.job_id == job_id, Redo.kind != RedoKind.PAID).exists()
    if not (await session.execute(select(free_redo))).scalar() and not await examples.is_example_job(session, job_id):
        await ledger.record(session, job.user_id, release_line_for_task(task_id), order_id=job.order_id, job_id=job_id)
    return True


async def mark_provider_succeeded(
    session: AsyncSession,
    provider: str,
    provider_task_id: str,
    image_url: str,
    *,
    finished_at: datetime | None = None,
) -> GenerationTask | None:
    """submitted → succeeded: only the first report (callback or poll) wins and gets to download. A
    grid's panels move together; the create's own task (the lowest id, its slot 0) is returned.

    ``provider_done_at`` is when the provider says it finished (else now), kept between the moment the
    create was recorded and now: a provider's clock ahead of or behind ours moves no reader of it (the
    album window, the latency figures, the admin's) past either end."""
    now = utcnow()
    reported = literal(min(finished_at, now) if finished_at is not None else now, GenerationTask.submitted_at.type)
    done_at = case((GenerationTask.submitted_at > reported, GenerationTask.submitted_at), else_=reported)
    task_ids = await transitions.record_result(
        session, provider, provider_task_id, result_url=image_url, provider_done_at=done_at
    )
    return await session.get(GenerationTask, task_ids[0]) if task_ids else None


async def provider_task_status(session: AsyncSession, provider: str, provider_task_id: str) -> TaskStatus | None:
    """The status of our task that ``provider`` knows as ``provider_task_id``; None: not one of ours."""
    status = (
        await session.execute(
            select(GenerationTask.status)
            .where(GenerationTask.provider == provider, GenerationTask.provider_task_id == provider_task_id)
            .limit(1)
        )
    ).scalar_one_or_none()
    return None if status is None else TaskStatus(status)


async def find_submitted(session: AsyncSession, provider: str, provider_task_id: str) -> GenerationTask | None:
    """The submitted task the provider knows by this id; of a grid's panels, the create's own (its
    slot 0, the lowest id): the failure path takes the rest of the grid with it."""
    return (
        await session.execute(
            select(GenerationTask)
            .where(
                GenerationTask.provider == provider,
                GenerationTask.provider_task_id == provider_task_id,
                GenerationTask.status == TaskStatus.SUBMITTED,
            )
            .order_by(GenerationTask.id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def mark_stored(
    session: AsyncSession, task_id: int, *, result_key: str, thumb_key: str, stored_at: datetime
) -> bool:
    job_id = await transitions.store_result(
        session, task_id, result_key=result_key, thumb_key=thumb_key, stored_at=stored_at
    )
    if job_id is None:
        return False
    await session.execute(
        update(GenerationJob)
        .where(GenerationJob.id == job_id)
        .values(
            photos_completed=GenerationJob.photos_completed + 1,
            first_image_at=func.coalesce(GenerationJob.first_image_at, stored_at),
        )
    )
    return True


async def due_polls(
    session: AsyncSession, limit: int, *, per_provider: Mapping[str, int] | None = None
) -> list[GenerationTask]:
    """Submitted tasks whose poll is due, the longest overdue first: a first poll is planned at the
    provider's recent latency after submission, so under a backlog the tasks most likely done are
    asked first — in the order ``ix_generation_tasks_due`` keeps (no sort of the due set).
    ``per_provider`` caps how many of a provider's tasks one round takes (what its status budget
    admits soon); tasks of a provider not named there (no longer configured: they are only
    rescheduled) count against ``limit`` alone."""
    now = utcnow()
    due = select(GenerationTask).where(
        GenerationTask.status == TaskStatus.SUBMITTED, GenerationTask.next_poll_at <= now
    )
    oldest_first = (GenerationTask.next_poll_at, GenerationTask.id)
    if per_provider is None:
        return list((await session.execute(due.order_by(*oldest_first).limit(limit))).scalars())
    tasks: list[GenerationTask] = []
    for provider, cap in per_provider.items():
        query = due.where(GenerationTask.provider == provider).order_by(*oldest_first).limit(min(cap, limit))
        tasks += (await session.execute(query)).scalars()
    others = due.where(
        or_(GenerationTask.provider.is_(None), GenerationTask.provider.not_in(list(per_provider)))
    ).order_by(*oldest_first)
    tasks += (await session.execute(others.limit(limit))).scalars()
    # next_poll_at is set on every submitted task; the id keeps the order total.
    tasks.sort(key=lambda task: (task.next_poll_at or now, task.id))
    return tasks[:limit]


async def recent_provider_latencies(
    session: AsyncSession, since: datetime, limit: int
) -> list[tuple[str, datetime, datetime]]:
    """(provider, submitted_at, provider_done_at) of the latest ``limit`` tasks a provider finished
    since ``since``, newest first: the engine's latency figures survive a restart."""
    rows = await session.execute(
        select(GenerationTask.provider, GenerationTask.submitted_at, GenerationTask.provider_done_at)
        .where(
            GenerationTask.provider_done_at >= since,
            GenerationTask.provider.is_not(None),
            GenerationTask.submitted_at.is_not(None),
        )
        .order_by(GenerationTask.provider_done_at.desc())
        .limit(limit)
    )
    return [
        (provider, submitted, done)
        for provider, submitted, done in rows.all()
        if provider is not None and submitted is not None and done is not None
    ]


async def next_poll_time(session: AsyncSession) -> datetime | None:
    return (
        await session.execute(
            select(func.min(GenerationTask.next_poll_at)).where(GenerationTask.status == TaskStatus.SUBMITTED)
        )
    ).scalar_one_or_none()


async def next_pending_time(session: AsyncSession) -> datetime | None:
    return (
        await session.execute(
            select(func.min(GenerationTask.next_poll_at)).where(GenerationTask.status == TaskStatus.PENDING)
        )
    ).scalar_one_or_none()


async def reschedule_poll(session: AsyncSession, task_id: int, next_poll_at: datetime) -> None:
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id, GenerationTask.status == TaskStatus.SUBMITTED)
        .values(next_poll_at=next_poll_at, polls=GenerationTask.polls + 1)
    )


async def stale_succeeded(session: AsyncSession, older_than: datetime, limit: int = 50) -> list[GenerationTask]:
    """Tasks whose result was reported but never stored (the process died mid-download)."""
    return list(
        (
            await session.execute(
                select(GenerationTask)
                .where(GenerationTask.status == TaskStatus.SUCCEEDED, GenerationTask.provider_done_at < older_than)
                .limit(limit)
            )
        ).scalars()
    )


async def unsettled_processing_jobs(session: AsyncSession, limit: int = 100) -> list[int]:
    """Processing jobs none of whose tasks can still change without delivery: ready to settle."""
    open_task = (
        select(GenerationTask.id)
        .where(
            GenerationTask.job_id == GenerationJob.id,
            GenerationTask.status.in_([TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED]),
        )
        .exists()
    )
    any_task = select(GenerationTask.id).where(GenerationTask.job_id == GenerationJob.id).exists()
    return list(
        (
            await session.execute(
                select(GenerationJob.id)
                .where(GenerationJob.status == JobStatus.PROCESSING, any_task, ~open_task)
                .limit(limit)
            )
        ).scalars()
    )


async def processing_jobs_without_tasks(session: AsyncSession, older_than: datetime) -> list[int]:
    """Claimed jobs whose fan-out never happened (the claiming process died in between)."""
    any_task = select(GenerationTask.id).where(GenerationTask.job_id == GenerationJob.id).exists()
    return list(
        (
            await session.execute(
                select(GenerationJob.id).where(
                    GenerationJob.status == JobStatus.PROCESSING, ~any_task, GenerationJob.started_at < older_than
                )
            )
        ).scalars()
    )


async def task_counts(session: AsyncSession, job_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(GenerationTask.status, func.count())
        .where(GenerationTask.job_id == job_id)
        .group_by(GenerationTask.status)
    )
    return {status: int(count) for status, count in rows.all()}


async def move_job(session: AsyncSession, job_id: int, source: JobStatus, target: JobStatus, **values: Any) -> bool:
    """The engine's and delivery's job steps, named by their edge (``transitions.JOB_STEPS``)."""
    return await transitions.take_job_step(session, job_id, source, target, **values)


async def status_counts(session: AsyncSession) -> tuple[dict[str, int], dict[str, int], datetime | None]:
    """Jobs by status, tasks by status, and when the oldest queued job was queued (for /metrics).

    Two GROUP BYs the (status, …) indexes answer, plus one MIN over the queue index's prefix.
    """
    jobs = await session.execute(select(GenerationJob.status, func.count()).group_by(GenerationJob.status))
    tasks = await session.execute(select(GenerationTask.status, func.count()).group_by(GenerationTask.status))
    oldest = await session.execute(
        select(func.min(GenerationJob.created_at)).where(GenerationJob.status == JobStatus.QUEUED)
    )
    return (
        {status: int(count) for status, count in jobs.all()},
        {status: int(count) for status, count in tasks.all()},
        oldest.scalar_one_or_none(),
    )


async def first_portrait_is_next(session: AsyncSession) -> bool:
    """Is the next task to claim a job's first portrait? (One step along the claim index.)"""
    candidate = pending_claim_candidates(utcnow(), 1).with_only_columns(GenerationTask.claim_key)
    key = (await session.execute(candidate)).scalar_one_or_none()
    return key is not None and is_first_portrait_key(key)


async def pending_due_exists(session: AsyncSession) -> bool:
    """Is any due pending task unclaimed? (The submitter waits for a create slot only then.)"""
    now = utcnow()
    found = await session.execute(
        select(GenerationTask.id)
        .where(GenerationTask.status == TaskStatus.PENDING, _due(now), _unclaimed(now), _claimable_alone())
        .limit(1)
    )
    return found.first() is not None


async def recent_creates(session: AsyncSession, provider: str, since: datetime) -> list[datetime]:
    """When this provider's creates since ``since`` were recorded (each is at or after its arrival)."""
    rows = await session.execute(
        select(GenerationTask.submitted_at).where(
            GenerationTask.provider == provider, GenerationTask.submitted_at >= since
        )
    )
    return [moment for moment in rows.scalars() if moment is not None]


async def job_cost_micros(session: AsyncSession, job_id: int) -> int:
    """What every create of the job's portraits cost, in millionths of a USD."""
    total = await session.execute(
        select(func.coalesce(func.sum(GenerationTask.cost_micros), 0)).where(GenerationTask.job_id == job_id)
    )
    return int(total.scalar_one())
