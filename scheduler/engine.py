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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.base import (
    BadSignatureError,
    CreateLimiter,
    GenerationOptions,
    ImageProvider,
    MalformedCallbackError,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    Room,
    TaskResult,
    TaskState,
)
from scheduler.background import BackgroundTasks
from scheduler.notify import UserNotifier
from scheduler.signals import WorkSignals
from storage import faces as face_queries
from storage import jobs as job_queries
from storage import ledger, queue
from storage.admin import provider_switches
from storage.events import EventName, record_event
from storage.faces import FaceAnalyser
from storage.files import FileNotFoundInStore, FileStore
from storage.images import make_thumbnail
from storage.models import GenerationJob, GenerationTask, ReferencePhoto, utcnow
from studio.catalogue import Catalogue
from studio.generation import build_prompt, plan_tasks
from studio.latency import LatencyEstimate, LatencyTracker
from studio.policy import (
    CircuitBreaker,
    DecisionAction,
    FallbackPolicy,
    choose_provider,
    decide_after_failure,
    peek_provider,
)
from studio.policy import is_stuck as policy_is_stuck
from studio.policy import next_poll_at as policy_next_poll_at
from studio.states import JobStatus, TaskStatus

log = logging.getLogger(__name__)

CALLBACK_PATHS = {"kie": "/providers/kie/callback", "replicate": "/providers/replicate/webhook"}


class MissingSelfies(Exception):
    """The job's reference photos are gone (rows or files): a local failure, never a provider's."""


def _model_of(provider: ImageProvider) -> str | None:
    model = getattr(provider, "model", None)
    return model if isinstance(model, str) else None


def failure_type(error: str, retryable: bool) -> str:
    """A coarse class of why a task failed for good, for analytics (the full text stays on the task)."""
    if error == "stuck":
        return "stuck"
    if error.startswith("bad image"):
        return "bad_image"
    return "provider_error" if retryable else "rejected"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    worker_id: str
    public_url: str = ""
    poll_interval_seconds: float = 60.0
    tick_seconds: float = 2.0
    lease_seconds: float = 120.0
    # A ceiling on creates in HTTP at once. What is claimed is sized by the provider's create
    # budget (``_create_room``): a task is claimed only when its create can start at once.
    max_inflight_creates: int = 200
    jobs_per_claim: int = 20
    # At most this many polls per round, and per provider no more than its status budget admits
    # within poll_round_seconds (at least one window's worth).
    polls_per_round: int = 200
    poll_round_seconds: float = 1.0
    # Recent submit → done durations older than this are not trusted for the poll schedule.
    latency_window_seconds: float = 3600.0
    store_retry_after_seconds: float = 120.0


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
        faces: FaceAnalyser | None = None,
    ) -> None:
        by_name = {provider.name: provider for provider in providers}
        # The policy decides the order; providers without credentials simply are not in it.
        configured = tuple(p for p in policy.providers if p.name in by_name)
        self.policy = FallbackPolicy(providers=configured) if configured else policy
        self.providers: list[ImageProvider] = [by_name[p.name] for p in self.policy.providers if p.name in by_name]
        self.sessionmaker = sessionmaker
        self.files = files
        self.catalogue = catalogue
        self.signals = signals
        self.notifier = notifier
        self.config = config
        self.on_latency = on_latency
        # Recent latency per provider and model: the poll schedule follows it (studio/latency.py).
        self.latency = LatencyTracker(max_age_seconds=config.latency_window_seconds)
        self.faces = faces  # None: portraits are stored unscored
        self.breakers: dict[str, CircuitBreaker] = {p.name: CircuitBreaker() for p in self.providers}
        self.paused: set[str] = set()
        self._configured_policy = self.policy  # the order before any admin switch of the primary
        self._inflight = BackgroundTasks("engine-create")  # its size bounds the creates in flight
        self._background = BackgroundTasks("engine")
        self._loops: list[asyncio.Task[None]] = []
        self._ref_locks: dict[tuple[int, str], asyncio.Lock] = {}
        # A fast provider can call back before our "submitted" commit lands. Such a callback names an
        # id the database does not know yet; while a create is in flight its id is kept (never
        # fetched: a forger could name any id), and the submitter re-fetches it if it proves ours.
        self._creating: dict[str, int] = {}
        self._early_callbacks: dict[tuple[str, str], None] = {}
        self._before_admission: set[int] = set()  # claimed creates not yet at the provider's limiter
        self._leased: set[int] = set()  # claimed tasks whose create is not recorded yet
        self._stopping = False
        # The poll loop sleeps until the earliest due poll; a submit whose first poll comes earlier wakes it.
        self._poll_wakeup = asyncio.Event()
        self._poll_wake_at: datetime | None = None  # None: the poll loop is at work
        self._callbacks_in_flight: set[tuple[str, str]] = set()  # (provider, task id) being re-fetched

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    @property
    def callbacks_enabled(self) -> bool:
        return bool(self.config.public_url)

    def provider(self, name: str) -> ImageProvider | None:
        return next((provider for provider in self.providers if provider.name == name), None)

    def breaker_states(self) -> dict[str, str]:
        """Each configured provider's circuit breaker state now, for /healthz and /metrics.
        Read-only: unlike ``allow_request`` it never takes a half-open probe slot."""
        now = utcnow()
        return {name: breaker.state(now).value for name, breaker in self.breakers.items()}

    # ------------------------------------------------------------ admin switches (persisted in the DB)

    def apply_overrides(self, paused: set[str], primary: str | None) -> None:
        """Pause providers and choose the primary at run time. Fresh work follows the new order at
        once; a task already moved to a fallback index may be read against the new order once,
        which at worst retries it on the other provider (both are valid targets)."""
        by_name = {provider.name: provider for provider in self.providers}
        self.paused = {name for name in paused if name in by_name}
        base = self._configured_policy
        policy = base.with_primary(primary) if primary in by_name and primary is not None else base
        if policy != self.policy:
            self.policy = policy
            self.providers = [by_name[p.name] for p in policy.providers]

    async def refresh_overrides(self) -> None:
        """Re-read the admins' switches (every recover round, so other processes follow within seconds)."""
        async with self.sessionmaker() as session:
            paused, primary = await provider_switches(session)
        self.apply_overrides(paused, primary)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.enabled:
            log.warning("no image provider is configured: queued jobs wait until one is")
            return
        self._loops = [
            asyncio.create_task(self._loop(self.signals.jobs_queued, self.dispatch_jobs), name="engine-jobs"),
            asyncio.create_task(self._submit_loop(), name="engine-submit"),
            asyncio.create_task(self._poll_loop(), name="engine-poll"),
            asyncio.create_task(self._keep_leases(), name="engine-leases"),
        ]
        self._background.spawn(self.load_recent_latency(), name="engine-latency")

    async def stop(self) -> None:
        self._stopping = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, self._inflight.stop(), self._background.stop(), return_exceptions=True)

    async def _loop(self, event: asyncio.Event, work: Callable[[], Awaitable[object]]) -> None:
        while not self._stopping:
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

    async def restore_create_windows(self) -> None:
        """After a restart, the creates of the provider's current window count again (a limiter in
        this process forgets them; the database recorded each create's time)."""
        now = utcnow()
        for provider in self.providers:
            limiter = provider.create_limiter
            if limiter is None:
                continue
            since = now - timedelta(seconds=limiter.period_seconds * 2)  # the limiter drops what expired
            async with self.sessionmaker() as session:
                moments = await queue.recent_creates(session, provider.name, since)
            limiter.restore(moment.timestamp() for moment in moments)

    # ------------------------------------------------------------ jobs → tasks

    async def dispatch_jobs(self) -> int:
        claimed_total = 0
        while True:
            async with self.sessionmaker() as session:
                claimed = await queue.claim_queued_jobs(session, self.config.worker_id, self.config.jobs_per_claim)
                for job_id in claimed:
                    await self._fan_out(session, job_id)
                await session.commit()
            claimed_total += len(claimed)
            if claimed:
                self.signals.task_pending()
            if len(claimed) < self.config.jobs_per_claim:
                return claimed_total

    async def _fan_out(self, session: AsyncSession, job_id: int) -> None:
        job = await session.get(GenerationJob, job_id)
        assert job is not None
        style = self.catalogue.style(job.style)
        await queue.add_tasks(session, job.id, plan_tasks(style, job.photos_total, job.id))

    # ------------------------------------------------------------ submitting

    async def submit_due(self) -> int:
        """Claim due tasks as fast as the provider's create budget admits them, and no faster.

        A task is chosen at the moment its create can start: claimed earlier, it would wait in the
        limiter while a newer payer's first portrait (first in the queue's order) waited behind it.
        """
        submitted = 0
        while not self._stopping:
            free = self.config.max_inflight_creates - len(self._inflight)
            if free <= 0:
                await self._inflight.wait_any()
                continue
            room = await self._create_room()
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
            for task_id in ids:
                self._before_admission.add(task_id)
                self._inflight.spawn(self._submit(task_id), name=f"engine-create-{task_id}")
            submitted += len(ids)
        return submitted

    async def _create_room(self) -> Room:
        """What the budget of the provider fresh work goes to can admit now, minus the creates
        this process has claimed that have not reached the limiter yet (uploading selfies)."""
        limiter = self._fresh_work_limiter()
        if limiter is None:
            return Room(self.config.max_inflight_creates, 0.0)
        room = await limiter.room()
        free = room.free - len(self._before_admission)
        # A claimed create still uploading will take the next slot: look again shortly.
        return Room(free, 0.0) if free > 0 else Room(0, room.wait_seconds or self._admission_step())

    def _fresh_work_limiter(self) -> CreateLimiter | None:
        """The limiter of the provider new tasks go to (read-only: no half-open probe is taken)."""
        index = peek_provider(self.policy, self.breakers, self.paused, utcnow())
        return None if index is None else self.providers[index].create_limiter

    def _admission_step(self) -> float:
        return min(0.05, self.config.tick_seconds)

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
            index = self._provider_index_for(task)
            if index is None:  # every provider is paused or open: wait, this is not a failure
                await queue.release_claim(session, task.id, worker)
                await session.commit()
                return
            provider = self.providers[index]
            prompt = build_prompt(self.catalogue, task.prompt_index, task.variant, None)
            options = GenerationOptions(seed=task.seed)
            attempts_before = task.attempts if index == task.provider_index else 0
            task_provider_index, task_attempts = task.provider_index, task.attempts
            job_id = job.id
            never_submitted = task.submitted_at is None
        self._creating[provider.name] = self._creating.get(provider.name, 0) + 1
        try:
            references = await self._references(job_id, provider)
            self._admitted(task_id)
            provider_task_id = await provider.create_task(prompt, references, options, self._callback_url(provider))
        except MissingSelfies as error:
            # Ours, not the provider's: no retry budget spent, no breaker touched, the job ends here.
            await self.fail_without_selfies(job_id, str(error))
            return
        except RateLimitedError as error:
            # The provider dropped the request (it never ran): wait out the window, spend no attempt.
            delay = error.retry_after or provider.limits.create.period_seconds
            async with self.sessionmaker() as session:
                await queue.retry_later(
                    session,
                    task_id,
                    from_status=TaskStatus.PENDING,
                    provider_index=task_provider_index,
                    attempts=task_attempts,
                    retry_at=utcnow() + timedelta(seconds=delay),
                    error=str(error),
                    worker=worker,
                )
                await session.commit()
            self.signals.task_pending()
            return
        except ProviderError as error:
            self.breakers[provider.name].record_failure(utcnow())
            await self._after_failure(
                task_id, TaskStatus.PENDING, index, attempts_before + 1, error.retryable, str(error), worker
            )
            return
        finally:
            self._creating[provider.name] -= 1
        self._creating[provider.name] = self._creating.get(provider.name, 0) + 1  # until recorded
        try:
            # The lease is kept until the create is recorded: a lapse in between would let another
            # claim create the same portrait again.
            recorded = await self._record_submitted(
                task_id, job_id, provider, index, provider_task_id, never_submitted, worker
            )
        finally:
            self._creating[provider.name] -= 1
        early = (provider.name, provider_task_id)
        if recorded and early in self._early_callbacks:
            del self._early_callbacks[early]
            try:
                await self.handle_result(provider, await provider.get_task(provider_task_id))
            except ProviderError as error:  # the poll is the backstop
                log.warning("%s task %s: early callback re-fetch failed: %s", provider.name, provider_task_id, error)

    async def _record_submitted(
        self,
        task_id: int,
        job_id: int,
        provider: ImageProvider,
        index: int,
        provider_task_id: str,
        never_submitted: bool,
        worker: str,
    ) -> bool:
        self.breakers[provider.name].record_success(utcnow())
        now = utcnow()
        first_poll = policy_next_poll_at(
            self.policy,
            index,
            now,
            0,
            now,
            self.callbacks_enabled,
            self.config.poll_interval_seconds,
            latency=self.recent_latency(provider, now),
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
            )
            # generation_started is per job: its first submission; retries and later tasks record nothing.
            if recorded and never_submitted and not await queue.other_task_submitted(session, job_id, task_id):
                await record_event(
                    session,
                    EventName.GENERATION_STARTED,
                    job_id=job_id,
                    provider=provider.name,
                    model=getattr(provider, "model", None),
                )
            await session.commit()
        if not recorded:
            log.warning(
                "task %s: %s accepted create %s but the task was no longer ours to record (lease lapsed)",
                task_id,
                provider.name,
                provider_task_id,
            )
        if recorded and self._poll_wake_at is not None and first_poll < self._poll_wake_at:
            self._poll_wakeup.set()
        return recorded

    async def _keep_leases(self) -> None:
        """Keep every claim of this process alive until its create is recorded, in one statement:
        a create waiting for selfies to upload or for the database must not be claimed twice."""
        lease = timedelta(seconds=self.config.lease_seconds)
        while not self._stopping:
            await asyncio.sleep(self.config.lease_seconds / 3)
            if not self._leased:
                continue
            try:
                async with self.sessionmaker() as session:
                    await queue.renew_claims(session, sorted(self._leased), self.config.worker_id, lease)
                    await session.commit()
            except Exception:
                log.exception("could not renew the leases of %d claimed tasks", len(self._leased))

    def _provider_index_for(self, task: GenerationTask) -> int | None:
        now = utcnow()
        if task.provider_index == 0:
            # Fresh work follows the breakers: while the primary fails, go straight to the fallback.
            return choose_provider(self.policy, self.breakers, self.paused, now)
        index = task.provider_index
        if index >= len(self.providers) or self.providers[index].name in self.paused:
            return None
        return index

    def _callback_url(self, provider: ImageProvider) -> str | None:
        if not self.callbacks_enabled or provider.name not in CALLBACK_PATHS:
            return None
        return f"{self.config.public_url}{CALLBACK_PATHS[provider.name]}"

    async def _references(self, job_id: int, provider: ImageProvider) -> list[str]:
        """Upload the job's selfies to this provider once per job; later tasks reuse the URLs."""
        lock = self._ref_locks.setdefault((job_id, provider.name), asyncio.Lock())
        async with lock:
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
            urls = []
            for photo in photos:
                try:
                    data = await self.files.get(photo["storage_key"])
                except FileNotFoundInStore as error:
                    raise MissingSelfies(f"job {job_id}: selfie {photo['slot']} is gone") from error
                urls.append(await provider.upload_reference(data, f"job{job_id}-ref{photo['slot']}.jpg"))
            async with self.sessionmaker() as session:
                urls = await queue.set_provider_refs(session, job_id, provider.name, urls)
                await session.commit()
            return urls

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
        await self.notifier.tell(
            job.chat_id, job.language, "job.failed_no_selfies", count=released, buttons=("new_photos", job_id)
        )

    # ------------------------------------------------------------ results

    async def accept_callback(self, provider_name: str, headers: Mapping[str, str], body: bytes) -> int:
        """A provider callback: verify, record, answer at once (downloads run in the background)."""
        provider = self.provider(provider_name)
        if provider is None:
            return 404
        try:
            provider_task_id = await provider.callback_task_id(headers, body)
        except MalformedCallbackError:
            return 400
        except BadSignatureError:
            return 401
        except ProviderError as error:  # e.g. Replicate's signing key could not be fetched
            log.warning("%s callback could not be checked: %s", provider_name, error)
            return 503 if error.retryable else 400
        key = (provider.name, provider_task_id)
        if self._creating.get(provider.name):
            if len(self._early_callbacks) > 10_000:  # forged ids must not pile up
                self._early_callbacks.clear()
            self._early_callbacks[key] = None
        # Ours first: a forged id costs one indexed lookup, never a call with our credentials.
        async with self.sessionmaker() as session:
            status = await queue.provider_task_status(session, provider.name, provider_task_id)
        if status is None:
            return 404
        self._early_callbacks.pop(key, None)
        if status != TaskStatus.SUBMITTED:
            return 200  # a duplicate of a settled task: nothing to do, nothing to fetch
        self._callbacks_in_flight.add(key)  # the backstop poll leaves this task alone meanwhile
        try:
            try:
                result = await provider.parse_callback(headers, body)
            except BadSignatureError:
                return 401
            except ProviderError as error:
                log.warning("%s callback could not be checked: %s", provider_name, error)
                return 503 if error.retryable else 400
            await self.handle_result(provider, result)
        finally:
            self._callbacks_in_flight.discard(key)
        return 200

    async def handle_result(self, provider: ImageProvider, result: TaskResult, *, polled: bool = False) -> None:
        if result.state == TaskState.SUCCEEDED and result.image_urls:
            async with self.sessionmaker() as session:
                task = await queue.mark_provider_succeeded(
                    session, provider.name, result.provider_task_id, result.image_urls[0]
                )
                await session.commit()
            if task is not None:
                self.breakers[provider.name].record_success(utcnow())
                if task.submitted_at:
                    done_at = utcnow()
                    seconds = (done_at - task.submitted_at).total_seconds()
                    # With callbacks on, a task a poll finds done had its callback lost or late: that
                    # delay is not the provider's, and counting it would push the backstop ever later.
                    if not (polled and self.callbacks_enabled):
                        self.latency.observe(provider.name, _model_of(provider), done_at, seconds)
                    if self.on_latency:
                        self.on_latency(provider.name, seconds)
                self._store_in_background(task.id, provider, result.image_urls[0])
        elif result.state == TaskState.FAILED or (result.state == TaskState.SUCCEEDED and not result.image_urls):
            async with self.sessionmaker() as session:
                task = await queue.find_submitted(session, provider.name, result.provider_task_id)
            if task is None:
                return  # a duplicate, a task settled another way, or one not yet recorded as submitted
            self.breakers[provider.name].record_failure(utcnow())
            await self._after_failure(
                task.id,
                TaskStatus.SUBMITTED,
                task.provider_index,
                max(task.attempts, 1),
                result.retryable,
                result.error or "provider reported failure",
            )

    def _store_in_background(self, task_id: int, provider: ImageProvider, url: str) -> None:
        # One store per task at a time: a recovery pass may find a task this process is still storing
        # (scoring takes a while).
        self._background.spawn(
            self._store(task_id, provider, url), key=("store", task_id), name=f"engine-store-{task_id}"
        )

    async def _store(self, task_id: int, provider: ImageProvider, url: str) -> None:
        """Download at once (provider URLs expire), store original + thumbnail, mark stored, signal."""
        async with self.sessionmaker() as session:
            task = await session.get(GenerationTask, task_id)
            if task is None or task.status != TaskStatus.SUCCEEDED:
                return
            job_id, index, attempts = task.job_id, task.provider_index, max(task.attempts, 1)
            submitted_at = task.submitted_at
        try:
            data = await provider.download(url)
            thumbnail = await asyncio.to_thread(make_thumbnail, data)
        except ProviderError as error:
            await self._after_failure(
                task_id, TaskStatus.SUCCEEDED, index, attempts, error.retryable, str(error), result_url=url
            )
            return
        except Exception as error:  # an undecodable image is the provider's failure, not ours
            if self._stopping:  # our HTTP client closed under it: recovery stores it after the restart
                return
            await self._after_failure(
                task_id, TaskStatus.SUCCEEDED, index, attempts, True, f"bad image: {error}", result_url=url
            )
            return
        likeness = await self._likeness(task_id, job_id, index, attempts, data, url) if self.faces else (None, False)
        if likeness is None:
            return  # no face, or sent back once for a better likeness: the failure path has it now
        extension = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg"
        result_key = f"results/{job_id}/{task_id}.{extension}"
        thumb_key = f"results/{job_id}/{task_id}.thumb.jpg"
        await self.files.put(result_key, data, f"image/{'png' if extension == 'png' else 'jpeg'}")
        await self.files.put(thumb_key, thumbnail, "image/jpeg")
        stored_at = utcnow()
        async with self.sessionmaker() as session:
            if likeness[0] is not None:
                await face_queries.record_identity(session, task_id, likeness[0], flagged=likeness[1])
            stored = await queue.mark_stored(
                session, task_id, result_key=result_key, thumb_key=thumb_key, stored_at=stored_at
            )
            if stored:
                duration_ms = round((stored_at - submitted_at).total_seconds() * 1000) if submitted_at else None
                await record_event(
                    session,
                    EventName.GENERATION_COMPLETED,
                    job_id=job_id,
                    task_id=task_id,
                    provider=provider.name,
                    duration_ms=duration_ms,
                )
                await record_event(
                    session, EventName.IMAGE_STORED, job_id=job_id, task_id=task_id, size_bytes=len(data)
                )
            await session.commit()
        if stored:
            self.signals.task_stored()
            await self.settle_job(job_id)

    async def _likeness(
        self, task_id: int, job_id: int, index: int, attempts: int, data: bytes, url: str
    ) -> tuple[float | None, bool] | None:
        """(identity score, flagged) of a portrait; None when the task went back to the failure path.

        No face at all is a failed portrait (retry / fallback as usual). A face unlike the person's
        selfies is regenerated once, on the task's retry budget (the user's credits are untouched);
        if it is still unlike them, or the budget is spent, it is delivered and flagged.
        """
        assert self.faces is not None
        try:
            async with self.sessionmaker() as session:
                job = await session.get(GenerationJob, job_id)
                assert job is not None
                if job.avatar_id is None:  # the selfies were deleted (/forget): nothing to compare with
                    return None, False
                references = await face_queries.reference_embeddings(session, self.files, self.faces, job.avatar_id)
                await session.commit()
            if not references:
                return None, False
            score = await self.faces.score_portrait_async(data, references)
        except Exception:  # our checker failing must not cost the user a portrait
            log.exception("identity scoring failed for task %s; storing it unscored", task_id)
            return None, False
        if score is None:
            # Scoring takes a while: the task may have moved on to a newer result, which this verdict
            # must not fail — hence the result URL in the transition's condition.
            await self._after_failure(
                task_id, TaskStatus.SUCCEEDED, index, attempts, True, "no face in the portrait", result_url=url
            )
            return None
        if score.score >= self.faces.limits.identity_min_score:
            return score.score, False
        decision = decide_after_failure(self.policy, index, attempts, True, utcnow())
        if decision.action != DecisionAction.SKIP:
            async with self.sessionmaker() as session:
                claimed = await face_queries.begin_identity_redo(session, task_id, url, score.score)
                await session.commit()
            if claimed:
                error = f"unlike the person (identity {score.score:.2f}): regenerated once"
                await self._after_failure(task_id, TaskStatus.SUCCEEDED, index, attempts, True, error, result_url=url)
                return None
        log.info(
            "task %s delivered flagged: identity %.2f below %.2f",
            task_id,
            score.score,
            self.faces.limits.identity_min_score,
        )
        return score.score, True

    async def _after_failure(
        self,
        task_id: int,
        from_status: TaskStatus,
        provider_index: int,
        attempts_on_provider: int,
        retryable: bool,
        error: str,
        worker: str | None = None,
        result_url: str | None = None,
    ) -> None:
        decision = decide_after_failure(self.policy, provider_index, attempts_on_provider, retryable, utcnow())
        async with self.sessionmaker() as session:
            if decision.action == DecisionAction.SKIP:
                changed = await queue.skip_task(
                    session, task_id, from_status=from_status, error=error, worker=worker, result_url=result_url
                )
            else:
                assert decision.provider_index is not None and decision.retry_at is not None
                changed = await queue.retry_later(
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
            task = await session.get(GenerationTask, task_id)
            job_id = task.job_id if task else None
            if changed and decision.action == DecisionAction.SKIP:  # failed for good: retries and fallback spent
                await record_event(
                    session,
                    EventName.GENERATION_FAILED,
                    job_id=job_id,
                    scope="task",
                    task_id=task_id,
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
            await self.settle_job(job_id)
        elif changed:
            self.signals.task_pending()

    # ------------------------------------------------------------ polling

    async def _poll_loop(self) -> None:
        while not self._stopping:
            self._poll_wakeup.clear()
            self._poll_wake_at = None
            try:
                await self.poll_due()
                async with self.sessionmaker() as session:
                    upcoming = await queue.next_poll_time(session)
                    pending_at = await queue.next_pending_time(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("poll round failed")
                upcoming = pending_at = None
            # Sleep until the earliest due poll or retry (not a fixed minute), capped by the interval.
            # A retry already past due is the submit loop's (it may be waiting for a provider), so
            # it must not make this loop spin.
            now = utcnow()
            wait = self.config.poll_interval_seconds
            if upcoming is not None:
                wait = min(wait, max(0.05, (upcoming - now).total_seconds()))
            retry_due = pending_at is not None and pending_at > now
            if retry_due:
                wait = min(wait, (pending_at - now).total_seconds())  # type: ignore[operator]
            self._poll_wake_at = now + timedelta(seconds=wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_wakeup.wait(), timeout=wait)
            if retry_due and pending_at <= utcnow():  # type: ignore[operator]
                self.signals.task_pending()

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
        for provider in self.providers:
            budget = provider.limits.status
            soon = int(budget.max_calls * self.config.poll_round_seconds / budget.period_seconds)
            quotas[provider.name] = max(1, budget.max_calls, soon)
        return quotas

    async def _poll(self, task: GenerationTask) -> None:
        provider = self.provider(task.provider or "")
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
            self.policy, task.provider_index, task.submitted_at, now
        )
        if not stuck and (provider.name, task.provider_task_id) in self._callbacks_in_flight:
            await self._reschedule(task, now)  # its callback came and is being handled: nothing to back up
            return
        # A task past its deadline is asked once more: one that finished meanwhile is not thrown away.
        try:
            result = await provider.get_task(task.provider_task_id)
        except ProviderError as error:
            if isinstance(error, PermanentProviderError):
                await self._after_failure(
                    task.id, TaskStatus.SUBMITTED, task.provider_index, max(task.attempts, 1), False, str(error)
                )
            elif stuck:
                await self._fail_stuck(task)
            else:
                await self._reschedule(task, utcnow())
            return
        if result.terminal:
            await self.handle_result(provider, result, polled=True)
        elif stuck:
            await self._fail_stuck(task)
        else:
            await self._reschedule(task, utcnow())

    async def _fail_stuck(self, task: GenerationTask) -> None:
        await self._after_failure(
            task.id, TaskStatus.SUBMITTED, task.provider_index, max(task.attempts, 1), True, "stuck"
        )

    async def _reschedule(self, task: GenerationTask, now: datetime) -> None:
        assert task.submitted_at is not None
        provider = self.provider(task.provider or "")
        upcoming = policy_next_poll_at(
            self.policy,
            task.provider_index,
            task.submitted_at,
            task.polls + 1,
            now,
            self.callbacks_enabled,
            self.config.poll_interval_seconds,
            latency=None if provider is None else self.recent_latency(provider, now),
        )
        async with self.sessionmaker() as session:
            await queue.reschedule_poll(session, task.id, upcoming)
            await session.commit()

    def recent_latency(self, provider: ImageProvider, now: datetime) -> LatencyEstimate | None:
        """What this provider's recent tasks took (None: too few known, the policy's guesses apply)."""
        return self.latency.estimate(provider.name, _model_of(provider), now)

    async def load_recent_latency(self) -> None:
        """Seed the latency figures from the tasks finished in the recent window, so a restart does not
        forget them. The rows do not say which model ran; they are taken as the provider's current one
        (after a model switch the window's own samples replace them)."""
        now = utcnow()
        since = now - timedelta(seconds=self.config.latency_window_seconds)
        try:
            async with self.sessionmaker() as session:
                rows = await queue.recent_provider_latencies(
                    session, since, self.latency.max_samples * max(1, len(self.providers))
                )
        except Exception:  # the figures are an optimisation: the static guesses still work
            log.exception("could not read recent provider latency; polling starts from the policy's guesses")
            return
        for name, submitted_at, done_at in rows:
            provider = self.provider(name)
            if provider is not None:
                self.latency.observe(name, _model_of(provider), done_at, (done_at - submitted_at).total_seconds())

    # ------------------------------------------------------------ recovery and completion

    async def recover(self) -> None:
        """Backstop for what a dead process or a lost event left behind."""
        await self.refresh_overrides()
        now = utcnow()
        async with self.sessionmaker() as session:
            orphans = await queue.processing_jobs_without_tasks(session, now - timedelta(seconds=30))
            for job_id in orphans:
                await self._fan_out(session, job_id)
            stale = await queue.stale_succeeded(session, now - timedelta(seconds=self.config.store_retry_after_seconds))
            settle = await queue.unsettled_processing_jobs(session)
            await session.commit()
        if orphans:
            self.signals.task_pending()
        for task in stale:
            provider = self.provider(task.provider or "")
            if provider is not None and task.result_url:
                self._store_in_background(task.id, provider, task.result_url)
        for job_id in settle:
            await self.settle_job(job_id)

    async def settle_job(self, job_id: int) -> None:
        """When no task can change any more: hand the job to delivery, or fail it and tell the user."""
        async with self.sessionmaker() as session:
            counts = await queue.task_counts(session, job_id)
            job = await session.get(GenerationJob, job_id)
            if job is None or job.status != JobStatus.PROCESSING:
                return
            open_tasks = sum(counts.get(s, 0) for s in (TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED))
            if open_tasks or not counts:
                return
            succeeded = counts.get(TaskStatus.STORED, 0) + counts.get(TaskStatus.DELIVERED, 0)
            if succeeded:
                moved = await queue.move_job(session, job_id, JobStatus.PROCESSING, JobStatus.DELIVERING)
            else:
                moved = await queue.move_job(
                    session, job_id, JobStatus.PROCESSING, JobStatus.FAILED, finished_at=utcnow()
                )
                if moved:
                    await record_event(
                        session, EventName.GENERATION_FAILED, job_id=job_id, scope="job", error_type="all_tasks_failed"
                    )
            chat_id, language = job.chat_id, job.language
            returned = await ledger.released_for_job(session, job_id)
            await session.commit()
        if moved and not succeeded:
            await self.notifier.tell(
                chat_id, language, "job.failed", count=returned, buttons=("use_credits", job_id, returned)
            )
        if moved and succeeded:
            self.signals.task_stored()
