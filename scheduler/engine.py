"""The generation engine: queued jobs become portraits, fire-and-forget, with fallback and recovery.

Its background work is APScheduler jobs (``jobs()``, registered by ``scheduler/jobs.py`` on the
process's one scheduler), each a ``WakeableJob``: events run it at once, its interval is the backstop.
- dispatch (woken by ``job_queued``; tick ``DISPATCH_TICK_SECONDS``): claim queued jobs (paid
  first), fan them out into tasks;
- submit (woken by ``task_pending``, and at the next retry; same tick): lease due pending tasks and
  create them at the provider within its rate budget;
- poll (run at the earliest due ``next_poll_at``; backstop ``POLL_INTERVAL_SECONDS``): ask the
  provider about submitted tasks (the backstop for callbacks, or the only source without
  ``PUBLIC_URL``);
- leases (every third of ``TASK_LEASE_SECONDS``): keep this process's claims alive;
and ``recover`` (a plain interval job): stuck tasks, results never stored, jobs left half-claimed.

Whoever learns a task finished (callback or poll) records it with a conditional UPDATE; the one
that wins downloads the image at once (provider URLs expire), stores it with a thumbnail and
signals delivery. Nothing here is the source of truth: every state lives in the database.

This class is the façade: it builds the parts in ``scheduler/generation/`` (roster, settler,
results, poller, submitter; each file says what it does), gives their jobs and answers for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.base import ImageProvider, TaskResult
from scheduler.generation.polling import Poller
from scheduler.generation.results import Results
from scheduler.generation.roster import Roster
from scheduler.generation.settle import Settler
from scheduler.generation.state import EngineConfig, EngineState
from scheduler.generation.submit import Submitter
from scheduler.notify import UserNotifier
from scheduler.signals import WorkSignals
from scheduler.wakeup import WakeableJob
from storage import queue
from storage.files import FileStore
from storage.models import utcnow
from studio.catalogue import Catalogue
from studio.faces import FaceChecker
from studio.latency import LatencyEstimate
from studio.policy import CircuitBreaker, FallbackPolicy

__all__ = ["EngineConfig", "GenerationEngine"]

log = logging.getLogger(__name__)


class GenerationEngine:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        files: FileStore,
        catalogue: Catalogue,
        providers: Sequence[ImageProvider],
        policy: FallbackPolicy,
        signals: WorkSignals,
        notifier: UserNotifier,
        config: EngineConfig,
        on_latency: Callable[[str, float], None] | None = None,
        faces: FaceChecker | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.catalogue = catalogue
        self.signals = signals
        self.notifier = notifier
        self.config = config
        self.faces = faces  # None: portraits are stored unscored
        self.state = EngineState()
        self.roster = Roster(sessionmaker, providers, policy, config)
        self.settler = Settler(sessionmaker, self.roster, signals, notifier)
        self.results = Results(
            sessionmaker,
            roster=self.roster,
            settler=self.settler,
            state=self.state,
            files=files,
            signals=signals,
            on_latency=on_latency,
            faces=faces,
        )
        self.poller = Poller(
            sessionmaker,
            roster=self.roster,
            settler=self.settler,
            results=self.results,
            state=self.state,
            config=config,
        )
        self.submitter = Submitter(
            sessionmaker,
            roster=self.roster,
            settler=self.settler,
            results=self.results,
            state=self.state,
            files=files,
            catalogue=catalogue,
            signals=signals,
            config=config,
        )
        # Paused until ``start()``: the process first reads the admins' overrides (no work before that).
        self.dispatch_job = WakeableJob("engine-dispatch", self.dispatch_jobs, config.tick_seconds, wait_for_wake=True)
        self.submit_job = WakeableJob("engine-submit", self._submit_pass, config.tick_seconds, wait_for_wake=True)
        self.poll_job = WakeableJob("engine-poll", self._poll_pass, config.poll_interval_seconds, wait_for_wake=True)
        self.lease_job = WakeableJob(
            "engine-leases", self.submitter.renew_leases, config.lease_seconds / 3, wait_for_wake=True
        )
        self._windows_restored = False
        self._started = False

    # ------------------------------------------------------------ the roster (admin, health, metrics)

    @property
    def enabled(self) -> bool:
        return bool(self.roster.providers)

    @property
    def callbacks_enabled(self) -> bool:
        return self.roster.callbacks_enabled

    @property
    def policy(self) -> FallbackPolicy:
        return self.roster.policy

    @property
    def providers(self) -> list[ImageProvider]:
        return self.roster.providers

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        return self.roster.breakers

    @property
    def paused(self) -> set[str]:
        return self.roster.paused

    def provider(self, name: str) -> ImageProvider | None:
        return self.roster.provider(name)

    def breaker_states(self) -> dict[str, str]:
        return self.roster.breaker_states()

    def primary_grid_capable(self) -> bool:
        """Can the primary provider's model draw a grid? (The pack picker offers grid packs only then.)"""
        return self.roster.primary_grid_capable()

    def apply_overrides(self, paused: set[str], primary: str | None) -> None:
        self.roster.apply_overrides(paused, primary)

    async def refresh_overrides(self) -> None:
        await self.roster.refresh_overrides()

    def recent_latency(self, provider: ImageProvider, now: datetime) -> LatencyEstimate | None:
        return self.roster.recent_latency(provider, now)

    async def load_recent_latency(self) -> None:
        await self.roster.load_recent_latency()

    # ------------------------------------------------------------ lifecycle

    def jobs(self) -> list[WakeableJob]:
        """The engine's background jobs, for ``scheduler/jobs.py`` to register (none without a provider)."""
        if not self.enabled:
            return []
        return [self.dispatch_job, self.submit_job, self.poll_job, self.lease_job]

    def start(self) -> None:
        """Once the scheduler runs and the overrides are read: run every job now, and from now on let
        events wake them (one that came earlier is picked up by these first runs)."""
        if not self.enabled:
            log.warning("no image provider is configured: queued jobs wait until one is")
            return
        if not self._started:
            self._started = True
            self.signals.on_job_queued(self.dispatch_job.wake)
            self.signals.on_task_pending(self.submit_job.wake)
            self.state.poll_at = self.poll_job.wake_at
        for job in self.jobs():
            job.wake()
        self.state.background.spawn(self.load_recent_latency(), name="engine-latency")

    async def stop(self) -> None:
        """Before the scheduler stops: the jobs' passes in flight are cancelled (a create waiting for its
        rate window, a poll waiting on the provider), then the creates in flight and the stores."""
        self.state.stopping = True
        for job in (self.dispatch_job, self.submit_job, self.poll_job, self.lease_job):
            await job.stop()
        await self.submitter.inflight.stop()
        await self.state.background.stop()

    async def _submit_pass(self) -> None:
        if not self._windows_restored:
            self._windows_restored = True
            try:
                await self.restore_create_windows()
            except Exception:  # a missing restore risks a 429 (honoured), never a lost task
                log.exception("could not restore the providers' create windows")
        await self.submit_due()

    async def _poll_pass(self) -> None:
        upcoming, retry_at = await self.poller.poll_round()
        if upcoming is not None:
            self.poll_job.wake_at(upcoming)
        if retry_at is not None:
            self.submit_job.wake_at(retry_at)  # a create put back until then is due again

    # ------------------------------------------------------------ the work, one round of each

    async def dispatch_jobs(self) -> int:
        return await self.submitter.dispatch_jobs()

    async def submit_due(self) -> int:
        return await self.submitter.submit_due()

    async def restore_create_windows(self) -> None:
        await self.submitter.restore_create_windows()

    async def poll_due(self) -> int:
        return await self.poller.poll_due()

    async def accept_callback(self, provider_name: str, headers: Mapping[str, str], body: bytes) -> int:
        """A provider callback: verify, record, answer at once with an HTTP status (downloads run in the background)."""
        return await self.results.accept_callback(provider_name, headers, body)

    async def handle_result(self, provider: ImageProvider, result: TaskResult, *, polled: bool = False) -> None:
        await self.results.handle_result(provider, result, polled=polled)

    async def hand_over_or_fail(self, job_id: int) -> None:
        await self.settler.hand_over_or_fail(job_id)

    async def fail_without_selfies(self, job_id: int, reason: str) -> None:
        await self.settler.fail_without_selfies(job_id, reason)

    # ------------------------------------------------------------ recovery

    async def recover(self) -> None:
        """Backstop for what a dead process or a lost event left behind. It reaches into every part,
        so it lives here rather than in one of them."""
        await self.refresh_overrides()
        now = utcnow()
        async with self.sessionmaker() as session:
            orphans = await queue.processing_jobs_without_tasks(session, now - timedelta(seconds=30))
            for job_id in orphans:
                await self.submitter.fan_out(session, job_id)
            stale = await queue.stale_succeeded(session, now - timedelta(seconds=self.config.store_retry_after_seconds))
            settle = await queue.unsettled_processing_jobs(session)
            await session.commit()
        if orphans:
            self.signals.task_pending()
        started: set[tuple[str | None, str | None]] = set()
        for task in stale:
            provider = self.provider(task.provider or "")
            # A grid's panels share one result: one store takes them all.
            if provider is not None and task.result_url and (task.provider, task.provider_task_id) not in started:
                started.add((task.provider, task.provider_task_id))
                self.results.store_in_background(task.id, provider, task.result_url)
        for job_id in settle:
            await self.hand_over_or_fail(job_id)
