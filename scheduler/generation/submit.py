"""Submitting: queued jobs are claimed and fanned out into tasks; due tasks are claimed as fast as
the provider's create budget admits them and created there, fire-and-forget. The selfies are
uploaded once per job; each claim is leased until its create is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import timedelta

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.base import GenerationOptions, ImageProvider, ProviderError, RateLimitedError, Room
from scheduler.background import BackgroundTasks, KeyedLocks
from scheduler.generation.results import Results
from scheduler.generation.roster import Roster, grid_capable, model_of, price_of
from scheduler.generation.settle import Settler
from scheduler.generation.state import EngineConfig, EngineState
from scheduler.signals import WorkSignals
from storage import queue, redos
from storage.events import EventName, record_event
from storage.files import FileNotFoundInStore, FileStore
from storage.models import GenerationJob, GenerationTask, Order, ReferencePhoto, utcnow
from studio.catalogue import Catalogue
from studio.costs import usd_to_micros
from studio.generation import build_grid_prompt, build_prompt, plan_grid_tasks, plan_tasks
from studio.pace import CreatePace
from studio.policy import next_poll_at as policy_next_poll_at
from studio.redo import plan_redo_tasks
from studio.states import TaskStatus

log = logging.getLogger(__name__)

# How long a grid waits for its grid-capable provider while the breakers send fresh work to a fallback
# that cannot draw one: a few looks per breaker cool-down, never a tight loop.
GRID_PROVIDER_WAIT_SECONDS = 5.0
# Jobs whose selfie URLs this process keeps at hand (a few hundred bytes each).
KNOWN_REFERENCES_KEPT = 4096


class MissingSelfies(Exception):
    """The job's reference photos are gone (rows or files): a local failure, never a provider's."""


class Submitter:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        roster: Roster,
        settler: Settler,
        results: Results,
        state: EngineState,
        files: FileStore,
        catalogue: Catalogue,
        signals: WorkSignals,
        config: EngineConfig,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.roster = roster
        self.settler = settler
        self.results = results
        self.state = state
        self.files = files
        self.catalogue = catalogue
        self.signals = signals
        self.config = config
        self.inflight = BackgroundTasks("engine-create")  # its size bounds the creates in flight
        self._upload_locks = KeyedLocks()  # one upload of a job's selfies per provider at a time
        # The selfies' URLs of recent jobs per provider: every task of a job needs them, and reading them
        # under the job's lock made its creates queue behind one another (bench, F = 0.05: 92 ms p50,
        # 0.57 s p90 from asking to having them). Bounded: the oldest go first.
        self._known_refs: OrderedDict[tuple[int, str], list[str]] = OrderedDict()
        self._before_admission: set[int] = set()  # claimed creates not yet at the provider's limiter
        self._leased: set[int] = set()  # claimed tasks whose create is not recorded yet
        self._paces: dict[int, CreatePace] = {}  # per create limiter (by identity)

    async def dispatch_jobs(self) -> int:
        claimed_total = 0
        while True:
            async with self.sessionmaker() as session:
                claimed = await queue.claim_queued_jobs(session, self.config.worker_id, self.config.jobs_per_claim)
                for job_id in claimed:
                    await self.fan_out(session, job_id)
                await session.commit()
            claimed_total += len(claimed)
            if claimed:
                self.signals.task_pending()
            if len(claimed) < self.config.jobs_per_claim:
                return claimed_total

    async def fan_out(self, session: AsyncSession, job_id: int) -> None:
        job = await session.get(GenerationJob, job_id)
        assert job is not None
        sources = await redos.redo_sources(session, job.id)
        if sources is not None:  # a new take of delivered portraits: their prompts and poses, new seeds
            planned = plan_redo_tasks(job.id, [(task.prompt_index, task.variant) for task in sources])
            await queue.add_tasks(session, job.id, planned)
            return
        style = self.catalogue.style(job.style)
        order = await session.get(Order, job.order_id) if job.order_id is not None else None
        pack = self.catalogue.find_pack(order.pack) if order is not None else None
        plan = plan_grid_tasks if pack is not None and pack.grid else plan_tasks
        await queue.add_tasks(session, job.id, plan(style, job.photos_total, job.id))

    async def submit_due(self) -> int:
        """Claim due tasks as fast as the provider's create budget admits them, and no faster.

        A task is chosen at the moment its create can start: claimed earlier, it would wait in the
        limiter while a newer payer's first portrait (first in the queue's order) waited behind it.
        """
        submitted = 0
        while not self.state.stopping:
            free = self.config.max_inflight_creates - len(self.inflight)
            if free <= 0:
                await self.inflight.wait_any()
                continue
            room, pace = await self.create_room()
            if room.free <= 0:
                if not await self._due_work_waits():
                    break
                await asyncio.sleep(room.wait_seconds)
                continue
            free = min(free, room.free)
            async with self.sessionmaker() as session:
                ids = await queue.claim_pending_tasks(
                    session, self.config.worker_id, free, timedelta(seconds=self.config.lease_seconds)
                )
                await session.commit()
            if not ids:
                break
            if pace is not None:
                pace.take(time.monotonic(), len(ids))
            for task_id in ids:
                self._before_admission.add(task_id)
                self.inflight.spawn(self._submit(task_id), name=f"engine-create-{task_id}")
            submitted += len(ids)
        return submitted

    async def create_room(self) -> tuple[Room, CreatePace | None]:
        """What the budget of the provider fresh work goes to can admit now, minus the creates
        this process has claimed that have not reached the limiter yet (uploading selfies), and the
        pace the claimed creates count against."""
        limiter = self.roster.fresh_work_limiter()
        if limiter is None:
            return Room(self.config.max_inflight_creates, 0.0), None
        room = await limiter.room()
        free = room.free - len(self._before_admission)
        pace = self._paces.get(id(limiter))
        if pace is None:
            pace = self._paces[id(limiter)] = CreatePace(limiter.max_calls, limiter.period_seconds)
        if free <= 0:
            # A claimed create still uploading will take the next slot: look again shortly.
            return Room(0, room.wait_seconds or self._admission_step()), pace
        paced = pace.room(time.monotonic(), free)
        if paced.allowed == 0 and await self._first_portrait_is_next():
            # A payer's first portrait waits for a free slot, never for the pace (taken all the same).
            return Room(1, 0.0), pace
        return Room(paced.allowed, paced.wait), pace

    def _admission_step(self) -> float:
        return min(0.05, self.config.tick_seconds)

    async def _first_portrait_is_next(self) -> bool:
        async with self.sessionmaker() as session:
            return await queue.first_portrait_is_next(session)

    async def _due_work_waits(self) -> bool:
        async with self.sessionmaker() as session:
            return await queue.pending_due_exists(session)

    async def _submit(self, task_id: int) -> None:
        self._leased.add(task_id)
        try:
            await self._submit_claimed(task_id)
        finally:
            self._admitted(task_id)
            self._leased.discard(task_id)

    def _admitted(self, task_id: int) -> None:
        """The create reached the provider's limiter (or ended before it): its slot is its own now."""
        self._before_admission.discard(task_id)

    async def _submit_claimed(self, task_id: int) -> None:
        worker = self.config.worker_id
        async with self.sessionmaker() as session:
            task = await session.get(GenerationTask, task_id)
            job = await session.get(GenerationJob, task.job_id) if task else None
            if task is None or job is None or task.status != TaskStatus.PENDING or task.claimed_by != worker:
                return
            index = self.roster.provider_index_for(task)
            if index is None:  # every provider is paused or open: wait, this is not a failure
                await queue.release_claim(session, task.id, worker)
                await session.commit()
                return
            provider = self.roster.providers[index]
            # A grid's slot-0 task creates the grid for its pending panels too (they are never
            # claimed alone while it is pending); a panel retried alone is an ordinary portrait.
            riders = [rider.id for rider in await queue.grid_riders(session, task)]
            if riders and task.grid_group is not None:
                variants = await queue.grid_variants(session, task.job_id, task.grid_group)
                prompt = build_grid_prompt(self.catalogue, task.prompt_index, variants, None)
            else:
                prompt = build_prompt(self.catalogue, task.prompt_index, task.variant, None)
            options = GenerationOptions(seed=task.seed)
            attempts_before = task.attempts if index == task.provider_index else 0
            task_provider_index, task_attempts = task.provider_index, task.attempts
            job_id = job.id
            never_submitted = task.submitted_at is None
        if riders and not grid_capable(provider) and index > task_provider_index:
            # The breakers sent fresh work past the provider whose turn it is to a fallback that cannot
            # draw a grid: the grid waits for that provider to recover instead (no attempt spent).
            await self._put_back(
                task_id,
                task_provider_index,
                task_attempts,
                GRID_PROVIDER_WAIT_SECONDS,
                "waiting for a provider that can draw a grid",
                worker,
            )
            return
        if riders and not grid_capable(provider):
            # It is this provider's turn and its model cannot draw a grid: the grid moves on to the
            # next provider, or, when none is left, all its panels are skipped with their credits
            # back. Not the provider's fault, so its breaker is not touched; and four single creates
            # instead would cost four times what the pack was priced for.
            await self.settler.after_failure(
                task_id,
                TaskStatus.PENDING,
                index,
                attempts_before + 1,
                False,
                f"{model_of(provider) or provider.name} cannot draw a grid",
                worker,
                riders=riders,
            )
            return
        self.state.create_started(provider.name)
        try:
            references = await self._references(job_id, provider)
            self._admitted(task_id)
            provider_task_id = await provider.create_task(
                prompt, references, options, self.roster.callback_url(provider)
            )
        except MissingSelfies as error:
            # Ours, not the provider's: no retry budget spent, no breaker touched, the job ends here.
            await self.settler.fail_without_selfies(job_id, str(error))
            return
        except RateLimitedError as error:
            # The provider dropped the request (it never ran): wait out the window, spend no attempt.
            delay = error.retry_after or provider.limits.create.period_seconds
            await self._put_back(task_id, task_provider_index, task_attempts, delay, str(error), worker)
            self.signals.task_pending()
            return
        except ProviderError as error:
            self.roster.breakers[provider.name].record_failure(utcnow())
            # A failed grid create goes back (or is skipped) with all its panels.
            await self.settler.after_failure(
                task_id,
                TaskStatus.PENDING,
                index,
                attempts_before + 1,
                error.retryable,
                str(error),
                worker,
                riders=riders,
            )
            return
        finally:
            self.state.create_ended(provider.name)
        self.state.create_started(provider.name)  # until recorded
        try:
            # The lease is kept until the create is recorded: a lapse in between would let another
            # claim create the same portrait again.
            recorded = await self._record_submitted(
                task_id, job_id, provider, index, provider_task_id, never_submitted, worker, riders
            )
        finally:
            self.state.create_ended(provider.name)
        key = (provider.name, provider_task_id)
        if recorded and self.state.take_early_callback(key) and key not in self.state.callbacks_in_flight:
            # Marked as a callback being handled, so a repeat of it meanwhile is answered without a
            # second status call.
            self.state.callbacks_in_flight.add(key)
            try:
                await self.results.handle_result(provider, await provider.get_task(provider_task_id))
            except ProviderError as error:  # the poll is the backstop
                log.warning("%s task %s: early callback re-fetch failed: %s", provider.name, provider_task_id, error)
            finally:
                self.state.callbacks_in_flight.discard(key)

    async def _put_back(
        self, task_id: int, provider_index: int, attempts: int, delay_seconds: float, error: str, worker: str
    ) -> None:
        """Pending again on the same provider after ``delay_seconds``, with no attempt spent."""
        async with self.sessionmaker() as session:
            await queue.retry_later(
                session,
                task_id,
                from_status=TaskStatus.PENDING,
                provider_index=provider_index,
                attempts=attempts,
                retry_at=utcnow() + timedelta(seconds=delay_seconds),
                error=error,
                worker=worker,
            )
            await session.commit()

    async def _record_submitted(
        self,
        task_id: int,
        job_id: int,
        provider: ImageProvider,
        index: int,
        provider_task_id: str,
        never_submitted: bool,
        worker: str,
        riders: list[int],
    ) -> bool:
        self.roster.breakers[provider.name].record_success(utcnow())
        now = utcnow()
        first_poll = policy_next_poll_at(
            self.roster.policy,
            index,
            now,
            0,
            now,
            self.roster.callbacks_enabled,
            self.config.poll_interval_seconds,
            latency=self.roster.recent_latency(provider, now),
        )
        async with self.sessionmaker() as session:
            recorded = await queue.mark_submitted(
                session,
                task_id,
                worker,
                provider=provider.name,
                provider_index=index,
                provider_task_id=provider_task_id,
                next_poll_at=first_poll,
                # Priced when the provider accepts the create, the one moment every create passes. A
                # create that then fails may not be billed (these image models bill per image made),
                # so the recorded cost is an upper bound, never an undercount.
                model=model_of(provider),
                cost_micros=usd_to_micros(price_of(provider)),
                panels=riders,
            )
            # generation_started is per job: its first submission; retries and later tasks record nothing.
            if (
                recorded
                and never_submitted
                and not await queue.other_task_submitted(session, job_id, task_id, same_create=riders)
            ):
                await record_event(
                    session,
                    EventName.GENERATION_STARTED,
                    job_id=job_id,
                    provider=provider.name,
                    model=model_of(provider),
                )
            await session.commit()
        if not recorded:
            log.warning(
                "task %s: %s accepted create %s but the task was no longer ours to record (lease lapsed)",
                task_id,
                provider.name,
                provider_task_id,
            )
        if recorded:
            self.state.poll_due_by(first_poll)
        return recorded

    async def renew_leases(self) -> None:
        """Keep every claim of this process alive until its create is recorded, in one statement:
        a create waiting for selfies to upload or for the database must not be claimed twice. The
        engine's lease job runs this every third of a lease."""
        if not self._leased:
            return
        lease = timedelta(seconds=self.config.lease_seconds)
        try:
            async with self.sessionmaker() as session:
                await queue.renew_claims(session, sorted(self._leased), self.config.worker_id, lease)
                await session.commit()
        except Exception:
            log.exception("could not renew the leases of %d claimed tasks", len(self._leased))

    async def restore_create_windows(self) -> None:
        """After a restart, the creates of the provider's current window count again (a limiter in
        this process forgets them; the database recorded each create's time)."""
        now = utcnow()
        for provider in self.roster.providers:
            limiter = provider.create_limiter
            if limiter is None:
                continue
            since = now - timedelta(seconds=limiter.period_seconds * 2)  # the limiter drops what expired
            async with self.sessionmaker() as session:
                moments = await queue.recent_creates(session, provider.name, since)
            limiter.restore(moment.timestamp() for moment in moments)

    async def _references(self, job_id: int, provider: ImageProvider) -> list[str]:
        """Upload the job's selfies to this provider once per job; later tasks reuse the URLs."""
        key = (job_id, provider.name)
        if (known_here := self._known_refs.get(key)) is not None:
            return list(known_here)
        async with self._upload_locks.hold(key):
            if (known_here := self._known_refs.get(key)) is not None:
                return list(known_here)
            urls = await self._upload_references(job_id, provider)
        self._known_refs[key] = urls
        while len(self._known_refs) > KNOWN_REFERENCES_KEPT:
            self._known_refs.popitem(last=False)
        return list(urls)

    async def _upload_references(self, job_id: int, provider: ImageProvider) -> list[str]:
        """The job's selfie URLs at this provider: as recorded, else uploaded now and recorded."""
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            assert job is not None
            known = (job.provider_refs or {}).get(provider.name)
            if known:
                return list(known["urls"])
            photos = list(
                (
                    await session.execute(
                        ReferencePhoto.__table__.select()
                        .where(ReferencePhoto.avatar_id == job.avatar_id)
                        .order_by(ReferencePhoto.slot)
                    )
                ).mappings()
            )
        if not photos:
            raise MissingSelfies(f"job {job_id} has no reference photos")

        async def upload(photo: RowMapping) -> str:
            try:
                data = await self.files.get(photo["storage_key"])
            except FileNotFoundInStore as error:
                raise MissingSelfies(f"job {job_id}: selfie {photo['slot']} is gone") from error
            return await provider.upload_reference(
                data, f"job{job_id}-ref{photo['slot']}.jpg", stored_key=photo["storage_key"]
            )

        # The first alone, then the rest at once: a payer's first create waits for every selfie, and
        # one after another five uploads were most of payment → first create (bench: 2.1 s p50 at
        # F = 0.05); the first going alone keeps a provider that is down at one failed call a try.
        urls = [await upload(photos[0])]
        outcomes = await asyncio.gather(*(upload(photo) for photo in photos[1:]), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the first failure in slot order; the others have finished
            urls.append(outcome)
        async with self.sessionmaker() as session:
            urls = await queue.set_provider_refs(session, job_id, provider.name, urls)
            await session.commit()
        return urls
