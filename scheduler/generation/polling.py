"""Polling: ask the provider about submitted tasks whose ``next_poll_at`` has come — the backstop
for callbacks, or the only source of results without ``PUBLIC_URL``. The engine's poll job runs a
round at the earliest due poll (its interval, ``POLL_INTERVAL_SECONDS``, is the backstop), and a poll
that finds a task past its deadline fails it as stuck.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.base import PermanentProviderError, ProviderError
from scheduler.generation.results import Results
from scheduler.generation.roster import Roster
from scheduler.generation.settle import Settler
from scheduler.generation.state import EngineConfig, EngineState
from storage import queue
from storage.models import GenerationTask, utcnow
from studio.policy import is_stuck as policy_is_stuck
from studio.policy import next_poll_at as policy_next_poll_at
from studio.states import TaskStatus

log = logging.getLogger(__name__)

MIN_POLL_GAP = timedelta(seconds=0.05)


class Poller:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        roster: Roster,
        settler: Settler,
        results: Results,
        state: EngineState,
        config: EngineConfig,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.roster = roster
        self.settler = settler
        self.results = results
        self.state = state
        self.config = config

    async def poll_round(self) -> tuple[datetime | None, datetime | None]:
        """Poll what is due; then when the next poll falls due, and when the next create retry
        does if it is still to come (one already past due is the submit job's: it may be waiting
        for a provider, and must not make the poll job spin)."""
        await self.poll_due()
        async with self.sessionmaker() as session:
            upcoming = await queue.next_poll_time(session)
            pending_at = await queue.next_pending_time(session)
        if upcoming is not None:
            # A due poll the round's quotas left for the next round: soon, never in a tight loop.
            upcoming = max(upcoming, utcnow() + MIN_POLL_GAP)
        retry_at = pending_at if pending_at is not None and pending_at > utcnow() else None
        return upcoming, retry_at

    async def poll_due(self) -> int:
        """One poll round: the due tasks a round may take (oldest first; per provider no more than its
        status budget admits in one window, so polls never queue long behind the limiter while newer
        work waits), asked concurrently; the provider's status limiter paces the calls."""
        async with self.sessionmaker() as session:
            due = await queue.due_polls(session, self.config.polls_per_round, per_provider=self._poll_quotas())
        outcomes = await asyncio.gather(*(self._poll(task) for task in due), return_exceptions=True)
        for task, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("poll of task %s failed", task.id, exc_info=outcome, extra={"task_id": task.id})
        return len(due)

    def _poll_quotas(self) -> dict[str, int]:
        quotas = {}
        for provider in self.roster.providers:
            budget = provider.limits.status
            soon = int(budget.max_calls * self.config.poll_round_seconds / budget.period_seconds)
            quotas[provider.name] = max(1, budget.max_calls, soon)
        return quotas

    async def _poll(self, task: GenerationTask) -> None:
        provider = self.roster.provider(task.provider or "")
        now = utcnow()
        if provider is None or task.provider_task_id is None:
            # Its provider is no longer configured: ask again an interval later, never in a tight loop.
            async with self.sessionmaker() as session:
                await queue.reschedule_poll(
                    session, task.id, now + timedelta(seconds=self.config.poll_interval_seconds)
                )
                await session.commit()
            return
        stuck = task.submitted_at is not None and policy_is_stuck(
            self.roster.policy, task.provider_index, task.submitted_at, now
        )
        if not stuck and (provider.name, task.provider_task_id) in self.state.callbacks_in_flight:
            await self._reschedule(task, now)  # its callback came and is being handled: nothing to back up
            return
        # A task past its deadline is asked once more: one that finished meanwhile is not thrown away.
        try:
            result = await provider.get_task(task.provider_task_id)
        except ProviderError as error:
            if isinstance(error, PermanentProviderError):
                await self.settler.after_failure(
                    task.id, TaskStatus.SUBMITTED, task.provider_index, max(task.attempts, 1), False, str(error)
                )
            elif stuck:
                await self.settler.fail_stuck(task)
            else:
                await self._reschedule(task, utcnow())
            return
        if result.terminal:
            await self.results.handle_result(provider, result, polled=True)
        elif stuck:
            await self.settler.fail_stuck(task)
        else:
            await self._reschedule(task, utcnow())

    async def _reschedule(self, task: GenerationTask, now: datetime) -> None:
        assert task.submitted_at is not None
        provider = self.roster.provider(task.provider or "")
        upcoming = policy_next_poll_at(
            self.roster.policy,
            task.provider_index,
            task.submitted_at,
            task.polls + 1,
            now,
            self.roster.callbacks_enabled,
            self.config.poll_interval_seconds,
            latency=None if provider is None else self.roster.recent_latency(provider, now),
        )
        async with self.sessionmaker() as session:
            await queue.reschedule_poll(session, task.id, upcoming)
            await session.commit()
