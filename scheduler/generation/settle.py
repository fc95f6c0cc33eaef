"""Settling: a task that failed goes back for a retry or is skipped, and a job no task can change
any more goes to delivery or fails and is credited back. Submitting, polling and storing all end
here, so it sits below them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.generation.roster import Roster
from scheduler.notices import GuaranteeSettled, JobFailed, Notice, RedoFailed, SelfiesMissing
from scheduler.notify import UserNotifier
from scheduler.signals import WorkSignals
from storage import jobs as job_queries
from storage import ledger, queue, redos
from storage.events import EventName, record_event
from storage.models import GenerationJob, GenerationTask, utcnow
from studio.policy import Decision, DecisionAction, decide_after_failure
from studio.redo import RedoKind
from studio.states import JobStatus, TaskStatus

log = logging.getLogger(__name__)


def failure_type(error: str, retryable: bool) -> str:
    """A coarse class of why a task failed for good, for analytics (the full text stays on the task)."""
    if error == "stuck":
        return "stuck"
    if error.startswith("bad image"):
        return "bad_image"
    return "provider_error" if retryable else "rejected"


class Settler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        roster: Roster,
        signals: WorkSignals,
        notifier: UserNotifier,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.roster = roster
        self.signals = signals
        self.notifier = notifier

    async def after_failure(
        self,
        task_id: int,
        from_status: TaskStatus,
        provider_index: int,
        attempts_on_provider: int,
        retryable: bool,
        error: str,
        worker: str | None = None,
        result_url: str | None = None,
        riders: Sequence[int] = (),
    ) -> None:
        """Retry the task later (on this provider or the next), or skip it when the policy is spent.

        A grid's create fails for all its panels: the task's fate is theirs too. Those still pending
        with it (a create that failed) are the ``riders`` the submitter names; once created, they are
        the tasks sharing its provider task id (``queue.create_partners``). So a failed grid goes back
        to pending whole and is created again whole (on a fallback provider too), and a spent policy
        skips every panel, each releasing its own credit once."""
        decision = decide_after_failure(self.roster.policy, provider_index, attempts_on_provider, retryable, utcnow())
        async with self.sessionmaker() as session:
            partners = list(riders)
            if from_status != TaskStatus.PENDING:
                partners += await queue.create_partners(session, task_id, from_status)
            changed = await self._fail_one(session, decision, task_id, from_status, error, worker, result_url)
            # The panels are not leased (only the create's task is): its move is the guard for them.
            moved = [task_id] if changed else []
            for partner in partners if changed else []:
                if await self._fail_one(session, decision, partner, from_status, error, None, result_url):
                    moved.append(partner)
            task = await session.get(GenerationTask, task_id)
            job_id = task.job_id if task else None
            if decision.action == DecisionAction.SKIP:  # failed for good: retries and fallback spent
                for failed in moved:
                    await record_event(
                        session,
                        EventName.GENERATION_FAILED,
                        job_id=job_id,
                        scope="task",
                        task_id=failed,
                        error_type=failure_type(error, retryable),
                    )
            await session.commit()
        log.info(
            "task %s failed (%s): %s → %s",
            task_id,
            error[:120],
            from_status,
            decision.action,
            extra={"job_id": job_id, "task_id": task_id},
        )
        if changed and decision.action == DecisionAction.SKIP and job_id is not None:
            await self.hand_over_or_fail(job_id)
        elif changed:
            self.signals.task_pending()

    @staticmethod
    async def _fail_one(
        session: AsyncSession,
        decision: Decision,
        task_id: int,
        from_status: TaskStatus,
        error: str,
        worker: str | None,
        result_url: str | None,
    ) -> bool:
        if decision.action == DecisionAction.SKIP:
            return await queue.skip_task(
                session, task_id, from_status=from_status, error=error, worker=worker, result_url=result_url
            )
        assert decision.provider_index is not None and decision.retry_at is not None
        return await queue.retry_later(
            session,
            task_id,
            from_status=from_status,
            provider_index=decision.provider_index,
            attempts=decision.attempts_on_provider,
            retry_at=decision.retry_at,
            error=error,
            worker=worker,
            result_url=result_url,
        )

    async def drop_panel(self, task_id: int, result_url: str, error: str) -> None:
        """One panel of a grid is unusable (no clear single face): that portrait alone fails for good,
        releasing its one credit, and the grid's other panels stand. It is never redone alone: that
        would cost a whole create for one portrait."""
        async with self.sessionmaker() as session:
            changed = await queue.skip_task(
                session, task_id, from_status=TaskStatus.SUCCEEDED, error=error, result_url=result_url
            )
            task = await session.get(GenerationTask, task_id)
            job_id = task.job_id if task else None
            if changed:
                await record_event(
                    session,
                    EventName.GENERATION_FAILED,
                    job_id=job_id,
                    scope="task",
                    task_id=task_id,
                    error_type="no_face",
                )
            await session.commit()
        if changed and job_id is not None:
            log.info("task %s: grid panel dropped (%s)", task_id, error, extra={"job_id": job_id, "task_id": task_id})
            await self.hand_over_or_fail(job_id)

    async def fail_stuck(self, task: GenerationTask) -> None:
        await self.after_failure(
            task.id, TaskStatus.SUBMITTED, task.provider_index, max(task.attempts, 1), True, "stuck"
        )

    async def fail_without_selfies(self, job_id: int, reason: str) -> None:
        """The job's selfies are gone (/forget, retention): fail it, credit it and tell the user, once."""
        async with self.sessionmaker() as session:
            released = await job_queries.fail_for_local_reason(session, job_id)
            job = await session.get(GenerationJob, job_id)
            if released is not None and job is not None:
                await record_event(
                    session, EventName.GENERATION_FAILED, job_id=job_id, scope="job", error_type="missing_selfies"
                )
            await session.commit()
        if released is None or job is None:
            return  # another task of the job got here first
        log.warning("%s: job failed without a provider call", reason, extra={"job_id": job_id})
        await self.notifier.tell(job.chat_id, job.language, SelfiesMissing(job_id, released))

    async def hand_over_or_fail(self, job_id: int) -> None:
        """Once no task of a processing job can change any more, the job ends one of two ways: with a
        portrait stored it is handed to delivery; with none it fails, is credited back and the user is told."""
        async with self.sessionmaker() as session:
            counts = await queue.task_counts(session, job_id)
            job = await session.get(GenerationJob, job_id)
            if job is None or job.status != JobStatus.PROCESSING or not _every_task_finished(counts):
                return
            if _portraits_stored(counts):
                handed_over = await _hand_to_delivery(session, job_id)
                await session.commit()
                if handed_over:
                    self.signals.task_stored()
                return
            chat_id, language = job.chat_id, job.language  # read before the commit expires the row
            notice = await _fail_for_want_of_portraits(session, job_id)
            await session.commit()
        if notice is not None:
            await self.notifier.tell(chat_id, language, notice)


def _every_task_finished(counts: Mapping[str, int]) -> bool:
    """A job with no tasks yet is not finished: its fan-out has not happened."""
    open_tasks = sum(counts.get(s, 0) for s in (TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED))
    return bool(counts) and not open_tasks


def _portraits_stored(counts: Mapping[str, int]) -> bool:
    return counts.get(TaskStatus.STORED, 0) + counts.get(TaskStatus.DELIVERED, 0) > 0


async def _hand_to_delivery(session: AsyncSession, job_id: int) -> bool:
    """False when another worker moved the job first."""
    return await queue.move_job(session, job_id, JobStatus.PROCESSING, JobStatus.DELIVERING)


async def _fail_for_want_of_portraits(session: AsyncSession, job_id: int) -> Notice | None:
    """Fail the job and say what to tell the user: the credits its skipped tasks released (each as it
    was skipped). None when another worker moved the job first. A failed redo says so instead (and
    the guarantee's credits its unlike portraits back)."""
    if not await queue.move_job(session, job_id, JobStatus.PROCESSING, JobStatus.FAILED, finished_at=utcnow()):
        return None
    await record_event(session, EventName.GENERATION_FAILED, job_id=job_id, scope="job", error_type="all_tasks_failed")
    redo = await redos.redo_of_job(session, job_id)
    if redo is not None and redo.kind == RedoKind.GUARANTEE:
        job = await session.get(GenerationJob, job_id)
        assert job is not None
        return GuaranteeSettled(job_id, 0, await redos.settle_guarantee(session, job))
    if redo is not None:
        return RedoFailed(job_id, paid=redo.kind == RedoKind.PAID)
    return JobFailed(job_id, await ledger.released_for_job(session, job_id))
