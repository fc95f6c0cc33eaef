"""Every status change of a generation job or task: named transitions, each one conditional UPDATE.

A transition names the edges it takes — checked against the tables in ``studio.states`` when this
module is imported, so an edge the tables lack cannot be written — and its UPDATE matches only a
row still in one of its sources (and passing its guards: a lease, the result being judged). When
two workers race for one move, one UPDATE matches and the other learns from the result that it
lost; nothing is overwritten. Each function says whether it moved. Columns that change with the
status (timestamps, leases, errors, results) are the caller's, passed through as keywords.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, Update, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import GenerationJob, GenerationTask
from storage.sql import claim_rows, rows_changed
from studio.states import PORTRAIT_TASK_STATUSES, JobStatus, TaskStatus, can_move

Status = TypeVar("Status", JobStatus, TaskStatus)


@dataclass(frozen=True)
class Transition(Generic[Status]):
    name: str
    sources: frozenset[Status]
    target: Status
    # Takes edges only an admin's action may take (studio.states.ADMIN_*_TRANSITIONS).
    admin_only: bool = False

    @property
    def edges(self) -> frozenset[tuple[Status, Status]]:
        return frozenset((source, self.target) for source in self.sources)


def _job(
    name: str, sources: Iterable[JobStatus], target: JobStatus, *, admin_only: bool = False
) -> Transition[JobStatus]:
    return Transition(name, frozenset(sources), target, admin_only)


def _task(
    name: str, sources: Iterable[TaskStatus], target: TaskStatus, *, admin_only: bool = False
) -> Transition[TaskStatus]:
    return Transition(name, frozenset(sources), target, admin_only)


# ---------------------------------------------------------------- the named transitions

CLAIM_JOB = _job("claim a queued job", [JobStatus.QUEUED], JobStatus.PROCESSING)
CANCEL_QUEUED_JOB = _job("cancel a queued job", [JobStatus.QUEUED], JobStatus.CANCELLED)
CANCEL_JOB_BEFORE_RESULTS = _job(
    "cancel a job before its first portrait", [JobStatus.QUEUED, JobStatus.PROCESSING], JobStatus.CANCELLED
)
FAIL_JOB_WITHOUT_SELFIES = _job(
    "fail a job whose selfies are gone", [JobStatus.QUEUED, JobStatus.PROCESSING], JobStatus.FAILED
)
START_DELIVERY = _job("hand a generated job to delivery", [JobStatus.PROCESSING], JobStatus.DELIVERING)
FAIL_JOB_WITHOUT_PORTRAITS = _job("fail a job whose every photo was skipped", [JobStatus.PROCESSING], JobStatus.FAILED)
COMPLETE_JOB = _job("complete a delivered job", [JobStatus.DELIVERING], JobStatus.COMPLETED)
COMPLETE_JOB_PARTIALLY = _job("complete a job with skipped photos", [JobStatus.DELIVERING], JobStatus.PARTIAL)
FAIL_JOB_AT_DELIVERY = _job("fail a job with nothing delivered", [JobStatus.DELIVERING], JobStatus.FAILED)
REOPEN_JOB = _job(
    "reopen a job for an admin's retry",
    [JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.PROCESSING],
    JobStatus.PROCESSING,
    admin_only=True,
)

SUBMIT_TASK = _task("record a task's create", [TaskStatus.PENDING], TaskStatus.SUBMITTED)
RETRY_UNSUBMITTED_TASK = _task("retry a create that failed", [TaskStatus.PENDING], TaskStatus.PENDING)
RETRY_SUBMITTED_TASK = _task("retry a generation that failed", [TaskStatus.SUBMITTED], TaskStatus.PENDING)
RETRY_UNUSABLE_RESULT = _task("retry an unusable result", [TaskStatus.SUCCEEDED], TaskStatus.PENDING)
SKIP_UNSUBMITTED_TASK = _task("skip a task never created", [TaskStatus.PENDING], TaskStatus.SKIPPED)
SKIP_SUBMITTED_TASK = _task("skip a task whose generation failed", [TaskStatus.SUBMITTED], TaskStatus.SKIPPED)
SKIP_UNUSABLE_RESULT = _task("skip a task whose result is unusable", [TaskStatus.SUCCEEDED], TaskStatus.SKIPPED)
SKIP_UNDELIVERABLE_TASK = _task("skip a portrait that cannot be delivered", [TaskStatus.STORED], TaskStatus.SKIPPED)
RECORD_RESULT = _task("record a provider's result", [TaskStatus.SUBMITTED], TaskStatus.SUCCEEDED)
STORE_RESULT = _task("record a stored portrait", [TaskStatus.SUCCEEDED], TaskStatus.STORED)
DELIVER_TASK = _task("record a delivered portrait", [TaskStatus.STORED], TaskStatus.DELIVERED)
SKIP_OPEN_TASKS = _task(
    "skip the unfinished tasks of an ending job", [TaskStatus.PENDING, TaskStatus.SUBMITTED], TaskStatus.SKIPPED
)
REOPEN_SKIPPED_TASKS = _task(
    "put skipped tasks back for an admin's retry", [TaskStatus.SKIPPED], TaskStatus.PENDING, admin_only=True
)

NAMED_JOB_TRANSITIONS: tuple[Transition[JobStatus], ...] = (
    CLAIM_JOB,
    CANCEL_QUEUED_JOB,
    CANCEL_JOB_BEFORE_RESULTS,
    FAIL_JOB_WITHOUT_SELFIES,
    START_DELIVERY,
    FAIL_JOB_WITHOUT_PORTRAITS,
    COMPLETE_JOB,
    COMPLETE_JOB_PARTIALLY,
    FAIL_JOB_AT_DELIVERY,
    REOPEN_JOB,
)
NAMED_TASK_TRANSITIONS: tuple[Transition[TaskStatus], ...] = (
    SUBMIT_TASK,
    RETRY_UNSUBMITTED_TASK,
    RETRY_SUBMITTED_TASK,
    RETRY_UNUSABLE_RESULT,
    SKIP_UNSUBMITTED_TASK,
    SKIP_SUBMITTED_TASK,
    SKIP_UNUSABLE_RESULT,
    SKIP_UNDELIVERABLE_TASK,
    RECORD_RESULT,
    STORE_RESULT,
    DELIVER_TASK,
    SKIP_OPEN_TASKS,
    REOPEN_SKIPPED_TASKS,
)


def _by_source(transitions: Iterable[Transition[Status]]) -> dict[Status, Transition[Status]]:
    found: dict[Status, Transition[Status]] = {}
    for transition in transitions:
        for source in transition.sources:
            if source in found:
                raise RuntimeError(f"{found[source].name!r} and {transition.name!r} both leave {source}")
            found[source] = transition
    return found


def _by_edge(transitions: Iterable[Transition[Status]]) -> dict[tuple[Status, Status], Transition[Status]]:
    found: dict[tuple[Status, Status], Transition[Status]] = {}
    for transition in transitions:
        for edge in transition.edges:
            if edge in found:
                raise RuntimeError(f"{found[edge].name!r} and {transition.name!r} both take {edge}")
            found[edge] = transition
    return found


# The steps the engine and delivery take by naming their edge (storage.queue.move_job).
JOB_STEPS = _by_edge(
    [START_DELIVERY, FAIL_JOB_WITHOUT_PORTRAITS, COMPLETE_JOB, COMPLETE_JOB_PARTIALLY, FAIL_JOB_AT_DELIVERY]
)
# A failed try is retried or skipped from wherever it failed; each source has its own transition.
TASK_RETRIES = _by_source([RETRY_UNSUBMITTED_TASK, RETRY_SUBMITTED_TASK, RETRY_UNUSABLE_RESULT])
TASK_SKIPS = _by_source([SKIP_UNSUBMITTED_TASK, SKIP_SUBMITTED_TASK, SKIP_UNUSABLE_RESULT, SKIP_UNDELIVERABLE_TASK])


def disallowed_edges(transitions: Iterable[Transition[Any]]) -> list[str]:
    """The edges these transitions name that their table does not list (an admin transition: that the
    admin tables do not list)."""
    return [
        f"{transition.name!r}: {source} → {target}"
        for transition in transitions
        for source, target in sorted(transition.edges)
        if not can_move(source, target, admin_only=transition.admin_only)
    ]


# Loading this module is the proof that no named transition leaves its state machine.
if _wrong := disallowed_edges([*NAMED_JOB_TRANSITIONS, *NAMED_TASK_TRANSITIONS]):
    raise RuntimeError(f"transitions outside studio.states' tables: {_wrong}")


def _move_jobs(transition: Transition[JobStatus], *guards: Any, **values: Any) -> Update:
    return (
        update(GenerationJob)
        .where(GenerationJob.status.in_(sorted(transition.sources)), *guards)
        .values(status=transition.target, **values)
    )


def _move_tasks(transition: Transition[TaskStatus], *guards: Any, **values: Any) -> Update:
    return (
        update(GenerationTask)
        .where(GenerationTask.status.in_(sorted(transition.sources)), *guards)
        .values(status=transition.target, **values)
    )


# ---------------------------------------------------------------- jobs


async def claim_queued_jobs(session: AsyncSession, candidates: Select[Any], **values: Any) -> list[int]:
    """queued → processing for those of ``candidates`` (job ids) no other worker took first; their ids."""
    return await claim_rows(
        session,
        GenerationJob,
        candidates,
        GenerationJob.status.in_(sorted(CLAIM_JOB.sources)),
        {"status": CLAIM_JOB.target, **values},
    )


async def cancel_job(
    session: AsyncSession, transition: Transition[JobStatus], job_id: int, owner: int | None, **values: Any
) -> tuple[int, int | None] | None:
    """``CANCEL_QUEUED_JOB`` or ``CANCEL_JOB_BEFORE_RESULTS``, only while no task holds a portrait
    (and, given an ``owner``, only that user's job); the job's (user_id, order_id) if it moved."""
    if transition not in (CANCEL_QUEUED_JOB, CANCEL_JOB_BEFORE_RESULTS):
        raise ValueError(f"{transition.name!r} is not a cancel")
    portrait_made = (
        select(GenerationTask.id)
        .where(GenerationTask.job_id == GenerationJob.id, GenerationTask.status.in_(sorted(PORTRAIT_TASK_STATUSES)))
        .exists()
    )
    guards = [GenerationJob.id == job_id, ~portrait_made]
    if owner is not None:
        guards.append(GenerationJob.user_id == owner)
    result = await session.execute(
        _move_jobs(transition, *guards, **values).returning(GenerationJob.user_id, GenerationJob.order_id)
    )
    row = result.first()
    return None if row is None else (row[0], row[1])


async def fail_job_without_selfies(session: AsyncSession, job_id: int, **values: Any) -> bool:
    """queued/processing → failed for a reason of ours, before anything else ended the job."""
    result = await session.execute(
        _move_jobs(FAIL_JOB_WITHOUT_SELFIES, GenerationJob.id == job_id, **values).returning(GenerationJob.id)
    )
    return result.first() is not None


async def take_job_step(
    session: AsyncSession, job_id: int, source: JobStatus, target: JobStatus, **values: Any
) -> bool:
    """One of the ``JOB_STEPS``, named by its edge."""
    step = JOB_STEPS.get((source, target))
    if step is None:
        raise ValueError(f"no job step takes {source} → {target}")
    return bool(rows_changed(await session.execute(_move_jobs(step, GenerationJob.id == job_id, **values))))


async def reopen_job(session: AsyncSession, job_id: int, **values: Any) -> bool:
    """An admin's retry: the job goes (back) to processing, only while it has a skipped task to retry."""
    skipped = (
        select(GenerationTask.id)
        .where(GenerationTask.job_id == GenerationJob.id, GenerationTask.status == TaskStatus.SKIPPED)
        .exists()
    )
    result = await session.execute(_move_jobs(REOPEN_JOB, GenerationJob.id == job_id, skipped, **values))
    return bool(rows_changed(result))


# ---------------------------------------------------------------- tasks


def _task_guards(task_id: int, leased_by: str | None, holding_result: str | None) -> list[Any]:
    """This task, still leased to ``leased_by`` if given, and still holding the result being judged if
    given: a slow verdict must not act on a newer result."""
    guards = [GenerationTask.id == task_id]
    if leased_by is not None:
        guards.append(GenerationTask.claimed_by == leased_by)
    if holding_result is not None:
        guards.append(GenerationTask.result_url == holding_result)
    return guards


async def submit_task(session: AsyncSession, task_id: int, worker: str, **values: Any) -> bool:
    """pending → submitted, only while ``worker`` holds the task's lease."""
    result = await session.execute(_move_tasks(SUBMIT_TASK, *_task_guards(task_id, worker, None), **values))
    return bool(rows_changed(result))


async def submit_grid_panels(session: AsyncSession, task_ids: Sequence[int], **values: Any) -> list[int]:
    """pending → submitted for the other panels of a grid whose create (its slot-0 task's, recorded
    in the same transaction under that task's lease) made them too; the ids that moved. They are
    never claimed on their own while their slot-0 task is pending (``storage.queue``), so no lease
    guards them."""
    if not task_ids:
        return []
    result = await session.execute(
        _move_tasks(SUBMIT_TASK, GenerationTask.id.in_(task_ids), **values).returning(GenerationTask.id)
    )
    return list(result.scalars())


async def retry_task(
    session: AsyncSession,
    task_id: int,
    from_status: TaskStatus,
    *,
    leased_by: str | None = None,
    holding_result: str | None = None,
    **values: Any,
) -> bool:
    """A failed try in ``from_status`` goes back to pending (``TASK_RETRIES``)."""
    transition = TASK_RETRIES.get(from_status)
    if transition is None:
        raise ValueError(f"a {from_status} task is never retried")
    result = await session.execute(_move_tasks(transition, *_task_guards(task_id, leased_by, holding_result), **values))
    return bool(rows_changed(result))


async def skip_task(
    session: AsyncSession,
    task_id: int,
    from_status: TaskStatus,
    *,
    leased_by: str | None = None,
    holding_result: str | None = None,
    **values: Any,
) -> int | None:
    """A task in ``from_status`` is given up (``TASK_SKIPS``); its job's id if it moved."""
    transition = TASK_SKIPS.get(from_status)
    if transition is None:
        raise ValueError(f"a {from_status} task is never skipped on its own")
    guards = _task_guards(task_id, leased_by, holding_result)
    result = await session.execute(_move_tasks(transition, *guards, **values).returning(GenerationTask.job_id))
    job_id: int | None = result.scalar_one_or_none()
    return job_id


async def record_result(session: AsyncSession, provider: str, provider_task_id: str, **values: Any) -> list[int]:
    """submitted → succeeded for the tasks ``provider`` knows as ``provider_task_id`` (one, or the
    panels of one grid create); their ids if this report (callback or poll) was the first, else []."""
    guards = (GenerationTask.provider == provider, GenerationTask.provider_task_id == provider_task_id)
    result = await session.execute(_move_tasks(RECORD_RESULT, *guards, **values).returning(GenerationTask.id))
    return sorted(result.scalars())


async def store_result(session: AsyncSession, task_id: int, **values: Any) -> int | None:
    """succeeded → stored; the task's job id if it moved."""
    result = await session.execute(
        _move_tasks(STORE_RESULT, GenerationTask.id == task_id, **values).returning(GenerationTask.job_id)
    )
    job_id: int | None = result.scalar_one_or_none()
    return job_id


async def deliver_task(session: AsyncSession, task_id: int, **values: Any) -> bool:
    result = await session.execute(_move_tasks(DELIVER_TASK, GenerationTask.id == task_id, **values))
    return bool(rows_changed(result))


async def deliver_tasks(session: AsyncSession, task_ids: Sequence[int], **values: Any) -> list[int]:
    """stored → delivered for those of ``task_ids`` still stored; their ids."""
    result = await session.execute(
        _move_tasks(DELIVER_TASK, GenerationTask.id.in_(task_ids), **values).returning(GenerationTask.id)
    )
    return list(result.scalars())


async def skip_open_tasks(session: AsyncSession, job_id: int, **values: Any) -> int:
    """The job ends: its tasks no provider has finished are skipped (a late result finds no task to
    store into); how many."""
    result = await session.execute(_move_tasks(SKIP_OPEN_TASKS, GenerationTask.job_id == job_id, **values))
    return rows_changed(result)


async def reopen_skipped_tasks(session: AsyncSession, job_id: int, **values: Any) -> int:
    """An admin's retry: the job's skipped tasks go back to pending; how many."""
    result = await session.execute(
        _move_tasks(REOPEN_SKIPPED_TASKS, GenerationTask.job_id == job_id, **values).returning(GenerationTask.id)
    )
    return len(result.all())
