"""The generation engine: queued jobs become portraits, fire-and-forget, with fallback and recovery.

Loops (asyncio tasks, woken by events, with a short tick as a backstop):
- jobs: claim queued jobs (paid first), fan them out into tasks;
- submit: lease due pending tasks and create them at the provider within its rate budget;
- poll: ask the provider about submitted tasks whose ``next_poll_at`` has come (the backstop
  for callbacks, or the only source without ``PUBLIC_URL``);
and ``recover`` (an APScheduler job): stuck tasks, results never stored, jobs left half-claimed.

Whoever learns a task finished (callback or poll) records it with a conditional UPDATE; the one
that wins downloads the image at once (provider URLs expire), stores it with a thumbnail and
signals delivery. Nothing here is the source of truth: every state lives in the database.

This class is the façade: it builds the parts in ``scheduler/generation/`` (roster, settler,
results, poller, submitter; each file says what it does), runs their loops and answers for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
            signals=signals,
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
        self._loops: list[asyncio.Task[None]] = []

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

    def start(self) -> None:
        if not self.enabled:
            log.warning("no image provider is configured: queued jobs wait until one is")
            return
        self._loops = [
            asyncio.create_task(self._loop(self.signals.jobs_queued, self.dispatch_jobs), name="engine-jobs"),
            asyncio.create_task(self._submit_loop(), name="engine-submit"),
            asyncio.create_task(self.poller.run(), name="engine-poll"),
            asyncio.create_task(self.submitter.keep_leases(), name="engine-leases"),
        ]
        self.state.background.spawn(self.load_recent_latency(), name="engine-latency")

    async def stop(self) -> None:
        self.state.stopping = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(
            *self._loops, self.submitter.inflight.stop(), self.state.background.stop(), return_exceptions=True
        )

    async def _loop(self, event: asyncio.Event, work: Callable[[], Awaitable[object]]) -> None:
        while not self.state.stopping:
            event.clear()
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine loop %s failed; retrying after a tick", work.__name__)
            try:
                await asyncio.wait_for(event.wait(), timeout=self.config.tick_seconds)
            except TimeoutError:
                pass

    async def _submit_loop(self) -> None:
        try:
            await self.restore_create_windows()
        except Exception:  # a missing restore risks a 429 (honoured), never a lost task
            log.exception("could not restore the providers' create windows")
        await self._loop(self.signals.tasks_pending, self.submit_due)

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
