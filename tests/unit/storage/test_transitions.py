"""The job and task state machines as the code obeys them: ``storage.transitions`` takes every edge
of ``studio.states``' tables and no other, it alone writes a job's or task's status, and on a real
SQLite database each transition moves a row from the sources it names and from nothing else."""

from __future__ import annotations

import ast
import itertools
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import transitions
from storage.models import GenerationJob, GenerationTask, Order, User, utcnow
from storage.transitions import (
    NAMED_JOB_TRANSITIONS,
    NAMED_TASK_TRANSITIONS,
    Transition,
    disallowed_edges,
)
from studio.states import (
    ADMIN_JOB_TRANSITIONS,
    ADMIN_TASK_TRANSITIONS,
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    JobStatus,
    TaskStatus,
    can_move,
)

ROOT = Path(__file__).resolve().parents[3]
TRANSITIONS_FILE = ROOT / "storage" / "transitions.py"


def _edges_of(table: dict[Any, frozenset[Any]]) -> set[tuple[Any, Any]]:
    return {(source, target) for source, targets in table.items() for target in targets}


def _named_edges(named: Iterable[Transition[Any]], *, admin_only: bool) -> set[tuple[Any, Any]]:
    return {edge for transition in named if transition.admin_only == admin_only for edge in transition.edges}


# ---------------------------------------------------------------- the tables and the names


@pytest.mark.parametrize(
    ("table", "named", "admin_only"),
    [
        (JOB_TRANSITIONS, NAMED_JOB_TRANSITIONS, False),
        (ADMIN_JOB_TRANSITIONS, NAMED_JOB_TRANSITIONS, True),
        (TASK_TRANSITIONS, NAMED_TASK_TRANSITIONS, False),
        (ADMIN_TASK_TRANSITIONS, NAMED_TASK_TRANSITIONS, True),
    ],
    ids=["jobs", "admin jobs", "tasks", "admin tasks"],
)
def test_every_edge_of_a_table_is_taken_by_a_named_transition(
    table: dict[Any, frozenset[Any]], named: tuple[Transition[Any], ...], admin_only: bool
) -> None:
    untaken = _edges_of(table) - _named_edges(named, admin_only=admin_only)
    assert not untaken, f"edges no named transition takes (dead, or taken by a write outside the module): {untaken}"


@pytest.mark.parametrize("transition", [*NAMED_JOB_TRANSITIONS, *NAMED_TASK_TRANSITIONS], ids=lambda t: t.name)
def test_a_named_transition_takes_only_edges_of_its_table(transition: Transition[Any]) -> None:
    table = {
        (JobStatus, False): JOB_TRANSITIONS,
        (JobStatus, True): ADMIN_JOB_TRANSITIONS,
        (TaskStatus, False): TASK_TRANSITIONS,
        (TaskStatus, True): ADMIN_TASK_TRANSITIONS,
    }[(type(transition.target), transition.admin_only)]
    assert transition.sources, "a transition with no source never moves anything"
    for source, target in transition.edges:
        assert type(source) is type(target)
        assert target in table.get(source, frozenset()), f"{transition.name!r}: {source} → {target}"


def test_admin_only_edges_are_not_product_edges() -> None:
    assert not _edges_of(JOB_TRANSITIONS) & _edges_of(ADMIN_JOB_TRANSITIONS)
    assert not _edges_of(TASK_TRANSITIONS) & _edges_of(ADMIN_TASK_TRANSITIONS)


def test_the_import_check_refuses_an_edge_outside_the_tables() -> None:
    delivered_again = Transition("redeliver", frozenset({TaskStatus.DELIVERED}), TaskStatus.PENDING)
    reopen_without_admin = Transition("reopen", frozenset({JobStatus.PARTIAL}), JobStatus.PROCESSING)
    cancel_as_admin = Transition("admin cancel", frozenset({JobStatus.QUEUED}), JobStatus.CANCELLED, admin_only=True)

    assert disallowed_edges([delivered_again, reopen_without_admin, cancel_as_admin]) == [
        "'redeliver': delivered → pending",
        "'reopen': partial → processing",
        "'admin cancel': queued → cancelled",
    ]
    assert disallowed_edges([*NAMED_JOB_TRANSITIONS, *NAMED_TASK_TRANSITIONS]) == []


def test_can_move_keeps_the_two_machines_apart() -> None:
    # The statuses are strings: "failed" of a job equals nothing of a task's machine.
    assert can_move(JobStatus.PROCESSING, JobStatus.FAILED)
    assert not can_move(JobStatus.PROCESSING, TaskStatus.SKIPPED)
    assert not can_move(TaskStatus.PENDING, JobStatus.PROCESSING)
    assert not can_move(TaskStatus.SKIPPED, TaskStatus.PENDING)
    assert can_move(TaskStatus.SKIPPED, TaskStatus.PENDING, admin_only=True)


def test_no_admin_edge_leaves_a_status_the_admin_tables_do_not_list() -> None:
    assert not can_move(TaskStatus.DELIVERED, TaskStatus.PENDING, admin_only=True)
    assert not can_move(JobStatus.COMPLETED, JobStatus.PROCESSING, admin_only=True)
    assert not can_move(TaskStatus.PENDING, TaskStatus.SUBMITTED, admin_only=True)


def test_every_named_transition_is_used_by_the_module() -> None:
    """A name no function takes would make the edge tests above pass for an edge nobody writes."""
    tree = ast.parse(TRANSITIONS_FILE.read_text())
    used: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            used |= {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}
    # The edge-, source-keyed look-ups the functions use (JOB_STEPS, TASK_RETRIES, TASK_SKIPS).
    used |= {step.name for step in transitions.JOB_STEPS.values()}
    used |= {step.name for step in [*transitions.TASK_RETRIES.values(), *transitions.TASK_SKIPS.values()]}
    constants = {name: value for name, value in vars(transitions).items() if isinstance(value, Transition)}
    unused = [name for name, value in constants.items() if name not in used and value.name not in used]
    assert set(constants.values()) == {*NAMED_JOB_TRANSITIONS, *NAMED_TASK_TRANSITIONS}
    assert not unused


# ---------------------------------------------------------------- one writer


STATUS_MODELS = {"GenerationJob", "GenerationTask"}


def status_writes_outside_transitions(source: str) -> list[int]:
    """Lines of ``update(GenerationJob | GenerationTask) … .values(status=…)`` (or a ``{"status": …}``
    dict) in ``source``."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "values"):
            continue
        if not _updates_a_status_model(node.func.value):
            continue
        keys = {keyword.arg for keyword in node.keywords}
        for argument in [*node.args, *(k.value for k in node.keywords if k.arg is None)]:
            if isinstance(argument, ast.Dict):
                keys |= {key.value for key in argument.keys if isinstance(key, ast.Constant)}
        if "status" in keys:
            lines.append(node.lineno)
    return lines


def _updates_a_status_model(node: ast.expr) -> bool:
    """Does this chain (``update(M).where(…)…``) start at ``update(GenerationJob | GenerationTask)``?"""
    while True:
        if isinstance(node, ast.Call):
            callee = node.func
            if isinstance(callee, ast.Name) and callee.id == "update":
                first = node.args[0] if node.args else None
                return isinstance(first, ast.Name) and first.id in STATUS_MODELS
            node = callee
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return False


def test_the_detector_sees_a_status_write() -> None:
    source = (
        "a = update(GenerationTask).where(x).values(status=TaskStatus.PENDING)\n"
        "b = update(GenerationJob).values({'status': 'queued'}).returning(y)\n"
        "c = update(GenerationJob).where(x).values(photos_failed=1)\n"
        "d = update(Delivery).where(x).values(status='sent')\n"
    )
    assert status_writes_outside_transitions(source) == [1, 2]


def test_only_the_transitions_module_writes_a_job_or_task_status() -> None:
    sources = itertools.chain.from_iterable(
        (ROOT / package).rglob("*.py") for package in ("storage", "scheduler", "bot")
    )
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if path != TRANSITIONS_FILE and (lines := status_writes_outside_transitions(path.read_text()))
    }
    assert found == {}
    assert status_writes_outside_transitions(TRANSITIONS_FILE.read_text()), "the module itself writes them"


# ---------------------------------------------------------------- on a database


@pytest.fixture
def sessionmaker(sqlite_sessionmaker: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    return sqlite_sessionmaker


@pytest_asyncio.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


_telegram_ids = itertools.count(700_000)


async def add_job(session: AsyncSession, status: JobStatus) -> GenerationJob:
    user = User(telegram_id=next(_telegram_ids))
    session.add(user)
    await session.flush()
    job = GenerationJob(
        user_id=user.id, chat_id=user.telegram_id, style="professional", priority=0, status=status, photos_total=3
    )
    session.add(job)
    await session.flush()
    return job


async def add_task(session: AsyncSession, job: GenerationJob, status: TaskStatus, **columns: Any) -> GenerationTask:
    position = len(await _tasks_of(session, job.id))
    task = GenerationTask(
        job_id=job.id,
        position=position,
        prompt_index=position,
        seed=1,
        claim_key=f"{position:04d}",
        status=status,
        **columns,
    )
    session.add(task)
    await session.flush()
    return task


async def _tasks_of(session: AsyncSession, job_id: int) -> list[GenerationTask]:
    return list((await session.execute(select(GenerationTask).where(GenerationTask.job_id == job_id))).scalars())


async def reloaded_job(session: AsyncSession, job_id: int) -> GenerationJob:
    job = await session.get(GenerationJob, job_id, populate_existing=True)
    assert job is not None
    return job


async def reloaded_task(session: AsyncSession, task_id: int) -> GenerationTask:
    task = await session.get(GenerationTask, task_id, populate_existing=True)
    assert task is not None
    return task


@pytest.mark.parametrize("transition", NAMED_JOB_TRANSITIONS, ids=lambda t: t.name)
async def test_a_job_transition_moves_from_its_sources_only(
    session: AsyncSession, transition: Transition[JobStatus]
) -> None:
    jobs = {status: await add_job(session, status) for status in JobStatus}
    ids = [job.id for job in jobs.values()]

    statement = transitions._move_jobs(transition, GenerationJob.id.in_(ids), error="moved")
    moved = (await session.execute(statement.returning(GenerationJob.id))).scalars().all()

    assert sorted(moved) == sorted(jobs[source].id for source in transition.sources)
    for status, job in jobs.items():
        row = await reloaded_job(session, job.id)
        if status in transition.sources:
            assert (row.status, row.error) == (transition.target, "moved")
        else:
            assert (row.status, row.error) == (status, None)


@pytest.mark.parametrize("transition", NAMED_TASK_TRANSITIONS, ids=lambda t: t.name)
async def test_a_task_transition_moves_from_its_sources_only(
    session: AsyncSession, transition: Transition[TaskStatus]
) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    tasks = {status: await add_task(session, job, status) for status in TaskStatus}

    statement = transitions._move_tasks(transition, GenerationTask.job_id == job.id, error="moved")
    moved = (await session.execute(statement.returning(GenerationTask.id))).scalars().all()

    assert sorted(moved) == sorted(tasks[source].id for source in transition.sources)
    for status, task in tasks.items():
        row = await reloaded_task(session, task.id)
        if status in transition.sources:
            assert (row.status, row.error) == (transition.target, "moved")
        else:
            assert (row.status, row.error) == (status, None)


# ---------------------------------------------------------------- jobs, through the named functions


async def test_a_job_step_moves_along_its_edge_and_not_from_elsewhere(session: AsyncSession) -> None:
    processing = await add_job(session, JobStatus.PROCESSING)
    queued = await add_job(session, JobStatus.QUEUED)
    finished_at = utcnow()

    assert await transitions.take_job_step(
        session, processing.id, JobStatus.PROCESSING, JobStatus.FAILED, finished_at=finished_at
    )
    assert not await transitions.take_job_step(
        session, queued.id, JobStatus.PROCESSING, JobStatus.FAILED, finished_at=finished_at
    )

    assert (await reloaded_job(session, processing.id)).status == JobStatus.FAILED
    row = await reloaded_job(session, queued.id)
    assert (row.status, row.finished_at) == (JobStatus.QUEUED, None)


async def test_a_job_step_without_a_named_transition_is_refused(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.DELIVERING)

    with pytest.raises(ValueError, match="no job step"):
        await transitions.take_job_step(session, job.id, JobStatus.DELIVERING, JobStatus.CANCELLED)

    assert (await reloaded_job(session, job.id)).status == JobStatus.DELIVERING


async def test_claiming_takes_queued_jobs_and_leaves_others(session: AsyncSession) -> None:
    queued = await add_job(session, JobStatus.QUEUED)
    delivering = await add_job(session, JobStatus.DELIVERING)
    candidates = select(GenerationJob.id).where(GenerationJob.id.in_([queued.id, delivering.id]))

    claimed = await transitions.claim_queued_jobs(session, candidates, claimed_by="worker-1")

    assert claimed == [queued.id]
    assert (await reloaded_job(session, queued.id)).claimed_by == "worker-1"
    row = await reloaded_job(session, delivering.id)
    assert (row.status, row.claimed_by) == (JobStatus.DELIVERING, None)


async def test_a_queued_cancel_does_not_cancel_a_processing_job(session: AsyncSession) -> None:
    queued = await add_job(session, JobStatus.QUEUED)
    processing = await add_job(session, JobStatus.PROCESSING)

    moved = await transitions.cancel_job(session, transitions.CANCEL_QUEUED_JOB, queued.id, None)
    refused = await transitions.cancel_job(session, transitions.CANCEL_QUEUED_JOB, processing.id, None)

    assert moved == (queued.user_id, None)
    assert refused is None
    assert (await reloaded_job(session, queued.id)).status == JobStatus.CANCELLED
    assert (await reloaded_job(session, processing.id)).status == JobStatus.PROCESSING


async def test_a_job_with_a_portrait_is_past_cancelling(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    await add_task(session, job, TaskStatus.STORED)

    assert await transitions.cancel_job(session, transitions.CANCEL_JOB_BEFORE_RESULTS, job.id, None) is None
    assert (await reloaded_job(session, job.id)).status == JobStatus.PROCESSING


async def test_a_cancel_by_someone_else_moves_nothing(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.QUEUED)

    assert await transitions.cancel_job(session, transitions.CANCEL_QUEUED_JOB, job.id, job.user_id + 1) is None
    assert (await reloaded_job(session, job.id)).status == JobStatus.QUEUED


async def test_a_step_that_is_not_a_cancel_is_refused_as_one(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.QUEUED)

    with pytest.raises(ValueError, match="not a cancel"):
        await transitions.cancel_job(session, transitions.FAIL_JOB_WITHOUT_SELFIES, job.id, None)


async def test_failing_without_selfies_ends_an_active_job_once(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.QUEUED)
    delivering = await add_job(session, JobStatus.DELIVERING)

    assert await transitions.fail_job_without_selfies(session, job.id)
    assert not await transitions.fail_job_without_selfies(session, job.id)
    assert not await transitions.fail_job_without_selfies(session, delivering.id)
    assert (await reloaded_job(session, delivering.id)).status == JobStatus.DELIVERING


async def test_reopening_needs_a_skipped_task_and_a_reopenable_job(session: AsyncSession) -> None:
    partial = await add_job(session, JobStatus.PARTIAL)
    await add_task(session, partial, TaskStatus.SKIPPED)
    completed = await add_job(session, JobStatus.COMPLETED)
    await add_task(session, completed, TaskStatus.SKIPPED)
    nothing_skipped = await add_job(session, JobStatus.FAILED)
    await add_task(session, nothing_skipped, TaskStatus.DELIVERED)

    assert await transitions.reopen_job(session, partial.id, finished_at=None)
    assert not await transitions.reopen_job(session, completed.id, finished_at=None)
    assert not await transitions.reopen_job(session, nothing_skipped.id, finished_at=None)

    assert (await reloaded_job(session, partial.id)).status == JobStatus.PROCESSING
    assert (await reloaded_job(session, completed.id)).status == JobStatus.COMPLETED
    assert (await reloaded_job(session, nothing_skipped.id)).status == JobStatus.FAILED


# ---------------------------------------------------------------- tasks, through the named functions


async def test_submitting_needs_the_lease(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    ours = await add_task(session, job, TaskStatus.PENDING, claimed_by="worker-1")
    theirs = await add_task(session, job, TaskStatus.PENDING, claimed_by="worker-2")

    assert await transitions.submit_task(session, ours.id, "worker-1", provider_task_id="p-1")
    assert not await transitions.submit_task(session, theirs.id, "worker-1", provider_task_id="p-2")
    assert not await transitions.submit_task(session, ours.id, "worker-1", provider_task_id="p-3")

    assert (await reloaded_task(session, ours.id)).provider_task_id == "p-1"
    row = await reloaded_task(session, theirs.id)
    assert (row.status, row.provider_task_id) == (TaskStatus.PENDING, None)


async def test_a_retry_acts_only_on_the_result_it_judged(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    task = await add_task(session, job, TaskStatus.SUCCEEDED, result_url="https://img/new")

    stale = await transitions.retry_task(
        session, task.id, TaskStatus.SUCCEEDED, holding_result="https://img/old", error="bad image"
    )
    current = await transitions.retry_task(
        session, task.id, TaskStatus.SUCCEEDED, holding_result="https://img/new", error="bad image"
    )

    assert (stale, current) == (False, True)
    row = await reloaded_task(session, task.id)
    assert (row.status, row.error) == (TaskStatus.PENDING, "bad image")


async def test_a_retry_from_the_wrong_status_moves_nothing(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    stored = await add_task(session, job, TaskStatus.STORED)

    assert not await transitions.retry_task(session, stored.id, TaskStatus.SUBMITTED, error="stuck")
    with pytest.raises(ValueError, match="never retried"):
        await transitions.retry_task(session, stored.id, TaskStatus.STORED, error="stuck")

    row = await reloaded_task(session, stored.id)
    assert (row.status, row.error) == (TaskStatus.STORED, None)


async def test_a_skip_returns_the_job_once(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.DELIVERING)
    stored = await add_task(session, job, TaskStatus.STORED)
    delivered = await add_task(session, job, TaskStatus.DELIVERED)

    assert await transitions.skip_task(session, stored.id, TaskStatus.STORED, error="refused") == job.id
    assert await transitions.skip_task(session, stored.id, TaskStatus.STORED, error="refused") is None
    with pytest.raises(ValueError, match="never skipped"):
        await transitions.skip_task(session, delivered.id, TaskStatus.DELIVERED, error="refused")
    assert (await reloaded_task(session, delivered.id)).status == TaskStatus.DELIVERED


async def test_only_the_first_report_of_a_result_wins(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    task = await add_task(session, job, TaskStatus.SUBMITTED, provider="kie", provider_task_id="k-1")

    first = await transitions.record_result(session, "kie", "k-1", result_url="https://img/1")
    second = await transitions.record_result(session, "kie", "k-1", result_url="https://img/2")
    elsewhere = await transitions.record_result(session, "replicate", "k-1", result_url="https://img/3")

    assert (first, second, elsewhere) == ([task.id], [], [])
    assert (await reloaded_task(session, task.id)).result_url == "https://img/1"


async def test_storing_needs_a_reported_result(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    succeeded = await add_task(session, job, TaskStatus.SUCCEEDED)
    submitted = await add_task(session, job, TaskStatus.SUBMITTED)

    assert await transitions.store_result(session, succeeded.id, result_key="r/1") == job.id
    assert await transitions.store_result(session, submitted.id, result_key="r/2") is None
    row = await reloaded_task(session, submitted.id)
    assert (row.status, row.result_key) == (TaskStatus.SUBMITTED, None)


async def test_delivery_marks_stored_portraits_only(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.DELIVERING)
    stored = await add_task(session, job, TaskStatus.STORED)
    skipped = await add_task(session, job, TaskStatus.SKIPPED)
    another = await add_task(session, job, TaskStatus.STORED)

    assert await transitions.deliver_tasks(session, [stored.id, skipped.id]) == [stored.id]
    assert await transitions.deliver_task(session, another.id, telegram_file_id="f-1")
    assert not await transitions.deliver_task(session, skipped.id, telegram_file_id="f-2")

    row = await reloaded_task(session, skipped.id)
    assert (row.status, row.telegram_file_id) == (TaskStatus.SKIPPED, None)


async def test_an_ending_job_skips_only_unfinished_tasks(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    tasks = {status: await add_task(session, job, status) for status in TaskStatus}

    assert await transitions.skip_open_tasks(session, job.id) == 2

    after = {status: (await reloaded_task(session, task.id)).status for status, task in tasks.items()}
    unfinished = {TaskStatus.PENDING, TaskStatus.SUBMITTED}
    assert after == {status: TaskStatus.SKIPPED if status in unfinished else status for status in TaskStatus}


async def test_an_admin_retry_reopens_skipped_tasks_only(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    skipped = await add_task(session, job, TaskStatus.SKIPPED, error="exhausted")
    stored = await add_task(session, job, TaskStatus.STORED)

    assert await transitions.reopen_skipped_tasks(session, job.id, error=None) == 1

    row = await reloaded_task(session, skipped.id)
    assert (row.status, row.error) == (TaskStatus.PENDING, None)
    assert (await reloaded_task(session, stored.id)).status == TaskStatus.STORED


# ---------------------------------------------------------------- how the look-ups are built (at import)


def test_a_named_transition_is_its_name_sources_target_and_admin_flag() -> None:
    assert transitions._job("fail", [JobStatus.QUEUED, JobStatus.PROCESSING], JobStatus.FAILED) == Transition(
        "fail", frozenset({JobStatus.QUEUED, JobStatus.PROCESSING}), JobStatus.FAILED, False
    )
    assert transitions._task("skip", [TaskStatus.PENDING], TaskStatus.SKIPPED) == Transition(
        "skip", frozenset({TaskStatus.PENDING}), TaskStatus.SKIPPED, False
    )
    assert transitions._job("reopen", [JobStatus.FAILED], JobStatus.PROCESSING, admin_only=True).admin_only is True
    assert transitions._task("reopen", [TaskStatus.SKIPPED], TaskStatus.PENDING, admin_only=True).admin_only is True


def test_a_source_retried_two_ways_or_an_edge_taken_twice_is_refused() -> None:
    retry_pending, retry_submitted = transitions.RETRY_UNSUBMITTED_TASK, transitions.RETRY_SUBMITTED_TASK
    assert transitions._by_source([retry_pending, retry_submitted]) == {
        TaskStatus.PENDING: retry_pending,
        TaskStatus.SUBMITTED: retry_submitted,
    }
    complete, fail = transitions.COMPLETE_JOB, transitions.FAIL_JOB_AT_DELIVERY
    assert transitions._by_edge([complete, fail]) == {
        (JobStatus.DELIVERING, JobStatus.COMPLETED): complete,
        (JobStatus.DELIVERING, JobStatus.FAILED): fail,
    }
    with pytest.raises(RuntimeError, match="'retry a create that failed' and 'skip a task never created' both leave"):
        transitions._by_source([retry_pending, transitions.SKIP_UNSUBMITTED_TASK])
    with pytest.raises(RuntimeError, match="'cancel a queued job' and 'cancel a job before its first portrait' both"):
        transitions._by_edge([transitions.CANCEL_QUEUED_JOB, transitions.CANCEL_JOB_BEFORE_RESULTS])


# ---------------------------------------------------------------- each function moves its own row, with its columns


async def test_a_job_step_moves_only_its_job_and_writes_the_callers_columns(session: AsyncSession) -> None:
    job, bystander = await add_job(session, JobStatus.PROCESSING), await add_job(session, JobStatus.PROCESSING)

    assert await transitions.take_job_step(session, job.id, JobStatus.PROCESSING, JobStatus.FAILED, error="none left")

    assert ((await reloaded_job(session, job.id)).error) == "none left"
    row = await reloaded_job(session, bystander.id)
    assert (row.status, row.error) == (JobStatus.PROCESSING, None)


async def test_failing_without_selfies_moves_only_its_job_and_writes_the_callers_columns(session: AsyncSession) -> None:
    job, bystander = await add_job(session, JobStatus.QUEUED), await add_job(session, JobStatus.QUEUED)

    assert await transitions.fail_job_without_selfies(session, job.id, error="selfies gone")

    row = await reloaded_job(session, job.id)
    assert (row.status, row.error) == (JobStatus.FAILED, "selfies gone")
    assert (await reloaded_job(session, bystander.id)).status == JobStatus.QUEUED


async def test_reopening_writes_the_callers_columns(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PARTIAL)
    await add_task(session, job, TaskStatus.SKIPPED)

    assert await transitions.reopen_job(session, job.id, error="admin retry")

    row = await reloaded_job(session, job.id)
    assert (row.status, row.error) == (JobStatus.PROCESSING, "admin retry")


async def test_only_a_portrait_of_the_job_itself_stops_its_cancel(session: AsyncSession) -> None:
    """Unfinished or skipped tasks of the job, and portraits of other jobs, never block it."""
    job = await add_job(session, JobStatus.PROCESSING)
    await add_task(session, job, TaskStatus.PENDING)
    await add_task(session, job, TaskStatus.SKIPPED)
    other = await add_job(session, JobStatus.PROCESSING)
    await add_task(session, other, TaskStatus.STORED)
    order = Order(user_id=job.user_id, style="professional", pack="starter", photos=3, status="paid")
    session.add(order)
    await session.flush()
    job.order_id = order.id
    await session.flush()

    moved = await transitions.cancel_job(
        session, transitions.CANCEL_JOB_BEFORE_RESULTS, job.id, job.user_id, error="cancelled by the user"
    )

    assert moved == (job.user_id, order.id)
    row = await reloaded_job(session, job.id)
    assert (row.status, row.error) == (JobStatus.CANCELLED, "cancelled by the user")
    assert (await reloaded_job(session, other.id)).status == JobStatus.PROCESSING


async def test_a_retry_or_skip_needs_the_lease_it_names(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    task = await add_task(session, job, TaskStatus.SUBMITTED, claimed_by="worker-1")

    assert not await transitions.retry_task(session, task.id, TaskStatus.SUBMITTED, leased_by="worker-2")
    assert await transitions.skip_task(session, task.id, TaskStatus.SUBMITTED, leased_by="worker-2") is None
    assert (await reloaded_task(session, task.id)).status == TaskStatus.SUBMITTED


async def test_a_skip_acts_only_on_its_task_and_the_result_it_judged(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    task = await add_task(session, job, TaskStatus.SUCCEEDED, result_url="https://img/new")
    bystander = await add_task(session, job, TaskStatus.SUCCEEDED, result_url="https://img/new")

    stale = await transitions.skip_task(session, task.id, TaskStatus.SUCCEEDED, holding_result="https://img/old")
    current = await transitions.skip_task(
        session, task.id, TaskStatus.SUCCEEDED, holding_result="https://img/new", error="no face"
    )

    assert (stale, current) == (None, job.id)
    row = await reloaded_task(session, task.id)
    assert (row.status, row.error) == (TaskStatus.SKIPPED, "no face")
    assert (await reloaded_task(session, bystander.id)).status == TaskStatus.SUCCEEDED


async def test_a_result_is_recorded_for_its_provider_task_only(session: AsyncSession) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    task = await add_task(session, job, TaskStatus.SUBMITTED, provider="kie", provider_task_id="k-1")
    bystander = await add_task(session, job, TaskStatus.SUBMITTED, provider="kie", provider_task_id="k-2")

    assert await transitions.record_result(session, "kie", "k-1", result_url="https://img/1") == [task.id]

    row = await reloaded_task(session, bystander.id)
    assert (row.status, row.result_url) == (TaskStatus.SUBMITTED, None)


async def test_storing_and_delivering_move_only_the_named_task_with_the_callers_columns(
    session: AsyncSession,
) -> None:
    job = await add_job(session, JobStatus.PROCESSING)
    stored, stored_bystander = (
        await add_task(session, job, TaskStatus.SUCCEEDED),
        await add_task(session, job, TaskStatus.SUCCEEDED),
    )
    delivered, delivered_bystander = (
        await add_task(session, job, TaskStatus.STORED),
        await add_task(session, job, TaskStatus.STORED),
    )
    in_batch = await add_task(session, job, TaskStatus.STORED)

    assert await transitions.store_result(session, stored.id, result_key="r/1") == job.id
    assert await transitions.deliver_task(session, delivered.id, telegram_file_id="f-1")
    assert await transitions.deliver_tasks(session, [in_batch.id], telegram_file_id="f-2") == [in_batch.id]

    assert (await reloaded_task(session, stored.id)).result_key == "r/1"
    assert (await reloaded_task(session, delivered.id)).telegram_file_id == "f-1"
    assert (await reloaded_task(session, in_batch.id)).telegram_file_id == "f-2"
    assert (await reloaded_task(session, stored_bystander.id)).status == TaskStatus.SUCCEEDED
    assert (await reloaded_task(session, delivered_bystander.id)).status == TaskStatus.STORED


async def test_ending_or_reopening_a_job_touches_only_its_own_tasks(session: AsyncSession) -> None:
    ending, other = await add_job(session, JobStatus.PROCESSING), await add_job(session, JobStatus.PROCESSING)
    open_task, others_open = (
        await add_task(session, ending, TaskStatus.PENDING),
        await add_task(session, other, TaskStatus.PENDING),
    )
    reopened, others_skipped = (
        await add_task(session, ending, TaskStatus.SKIPPED),
        await add_task(session, other, TaskStatus.SKIPPED),
    )

    assert await transitions.reopen_skipped_tasks(session, ending.id, error="admin retry") == 1
    assert await transitions.skip_open_tasks(session, ending.id, error="job ended") == 2

    for task in (open_task, reopened):
        row = await reloaded_task(session, task.id)
        assert (row.status, row.error) == (TaskStatus.SKIPPED, "job ended")
    assert (await reloaded_task(session, others_open.id)).status == TaskStatus.PENDING
    assert (await reloaded_task(session, others_skipped.id)).status == TaskStatus.SKIPPED
