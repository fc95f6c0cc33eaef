"""Results: what a provider says about a task (by callback, or through the poller or the submitter)
is recorded with a conditional UPDATE; the one that wins downloads the image at once (provider URLs
expire), scores its likeness, stores it with a thumbnail and signals delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.base import (
    BadSignatureError,
    ImageProvider,
    MalformedCallbackError,
    ProviderError,
    TaskResult,
    TaskState,
)
from scheduler.generation.roster import Roster
from scheduler.generation.settle import Settler
from scheduler.generation.state import EngineState
from scheduler.signals import WorkSignals
from storage import faces as face_queries
from storage import queue
from storage.events import EventName, record_event
from storage.files import FileStore
from storage.images import make_thumbnail, split_grid
from storage.models import GenerationJob, GenerationTask, utcnow
from studio.costs import micros_to_usd
from studio.faces import FaceChecker, IdentityScore
from studio.policy import DecisionAction, decide_after_failure
from studio.states import TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Portrait:
    """What storing one task's portrait needs of its row, read before the download."""

    task_id: int
    job_id: int
    index: int  # the provider index its create ran on
    attempts: int
    submitted_at: datetime | None
    cost_micros: int
    grid_slot: int | None

    @classmethod
    def of(cls, task: GenerationTask) -> _Portrait:
        return cls(
            task.id,
            task.job_id,
            task.provider_index,
            max(task.attempts, 1),
            task.submitted_at,
            task.cost_micros,
            task.grid_slot,
        )


class Results:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        roster: Roster,
        settler: Settler,
        state: EngineState,
        files: FileStore,
        signals: WorkSignals,
        on_latency: Callable[[str, float], None] | None = None,
        faces: FaceChecker | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.roster = roster
        self.settler = settler
        self.state = state
        self.files = files
        self.signals = signals
        self.on_latency = on_latency
        self.faces = faces  # None: portraits are stored unscored

    async def accept_callback(self, provider_name: str, headers: Mapping[str, str], body: bytes) -> int:
        """A provider callback: verify, record, answer at once (downloads run in the background)."""
        provider = self.roster.provider(provider_name)
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
        if self.state.creating(provider.name):
            self.state.remember_early_callback(key)
        async with self.state.callback_locks.hold(key):
            return await self._accept_checked_callback(provider, key, headers, body)

    async def _accept_checked_callback(
        self, provider: ImageProvider, key: tuple[str, str], headers: Mapping[str, str], body: bytes
    ) -> int:
        # Ours first: a forged id costs one indexed lookup, never a call with our credentials.
        async with self.sessionmaker() as session:
            status = await queue.provider_task_status(session, provider.name, key[1])
        if status is None:
            return 404
        self.state.forget_early_callback(key)
        if status != TaskStatus.SUBMITTED:
            return 200  # a duplicate of a settled task: nothing to do, nothing to fetch
        if key in self.state.callbacks_in_flight:
            # The submitter is fetching this task (its callback came early): that one fetch settles
            # the task, and if it fails the backstop poll does.
            return 200
        self.state.callbacks_in_flight.add(key)  # the backstop poll leaves this task alone meanwhile
        try:
            try:
                result = await provider.parse_callback(headers, body)
            except BadSignatureError:
                return 401
            except ProviderError as error:
                log.warning("%s callback could not be checked: %s", provider.name, error)
                return 503 if error.retryable else 400
            await self.handle_result(provider, result)
        finally:
            self.state.callbacks_in_flight.discard(key)
        return 200

    async def handle_result(self, provider: ImageProvider, result: TaskResult, *, polled: bool = False) -> None:
        if result.state == TaskState.SUCCEEDED and result.image_urls:
            async with self.sessionmaker() as session:
                task = await queue.mark_provider_succeeded(
                    session,
                    provider.name,
                    result.provider_task_id,
                    result.image_urls[0],
                    finished_at=result.finished_at,
                )
                await session.commit()
            if task is not None:
                self.roster.breakers[provider.name].record_success(utcnow())
                if task.submitted_at and task.provider_done_at:
                    done_at = task.provider_done_at
                    seconds = (done_at - task.submitted_at).total_seconds()  # never negative (storage)
                    # With callbacks on, a task a poll finds done had its callback lost or late: unless
                    # the provider said when it finished, that delay is not the provider's, and counting
                    # it would push the backstop ever later.
                    if result.finished_at is not None or not (polled and self.roster.callbacks_enabled):
                        self.roster.observe_latency(provider, done_at, seconds)
                    if self.on_latency:
                        self.on_latency(provider.name, seconds)
                self.store_in_background(task.id, provider, result.image_urls[0])
        elif result.state == TaskState.FAILED or (result.state == TaskState.SUCCEEDED and not result.image_urls):
            async with self.sessionmaker() as session:
                task = await queue.find_submitted(session, provider.name, result.provider_task_id)
            if task is None:
                return  # a duplicate, a task settled another way, or one not yet recorded as submitted
            self.roster.breakers[provider.name].record_failure(utcnow())
            await self.settler.after_failure(
                task.id,
                TaskStatus.SUBMITTED,
                task.provider_index,
                max(task.attempts, 1),
                result.retryable,
                result.error or "provider reported failure",
            )

    def store_in_background(self, task_id: int, provider: ImageProvider, url: str) -> None:
        # One store per task at a time: a recovery pass may find a task this process is still storing
        # (scoring takes a while).
        self.state.background.spawn(
            self._store(task_id, provider, url), key=("store", task_id), name=f"engine-store-{task_id}"
        )

    async def _store(self, task_id: int, provider: ImageProvider, url: str) -> None:
        """Download at once (provider URLs expire), store original + thumbnail, mark stored, signal.

        A grid create's image is downloaded and split once, and each panel is stored (and scored)
        into its own task; the panels still waiting for this result are those in slot order."""
        async with self.sessionmaker() as session:
            task = await session.get(GenerationTask, task_id)
            if task is None or task.status != TaskStatus.SUCCEEDED:
                return
            made = await queue.tasks_of_create(session, task.provider or "", task.provider_task_id or "")
            is_grid = len(made) > 1
            waiting = [
                _Portrait.of(row) for row in made if row.status == TaskStatus.SUCCEEDED and row.result_url == url
            ]
            if not is_grid:
                waiting = [_Portrait.of(task)]
        if not waiting:
            return
        first = waiting[0]  # the create's failure settles every panel with it (Settler.after_failure)
        try:
            data = await provider.download(url)
            images = await asyncio.to_thread(split_grid, data) if is_grid else [data]
        except ProviderError as error:
            await self.settler.after_failure(
                first.task_id,
                TaskStatus.SUCCEEDED,
                first.index,
                first.attempts,
                error.retryable,
                str(error),
                result_url=url,
            )
            return
        except Exception as error:  # an undecodable image is the provider's failure, not ours
            if self.state.stopping:  # our HTTP client closed under it: recovery stores it after the restart
                return
            await self.settler.after_failure(
                first.task_id,
                TaskStatus.SUCCEEDED,
                first.index,
                first.attempts,
                True,
                f"bad image: {error}",
                result_url=url,
            )
            return
        for portrait in waiting:
            image = images[portrait.grid_slot] if is_grid and portrait.grid_slot is not None else images[0]
            await self._keep(portrait, provider, image, url, panel=is_grid)

    async def _keep(self, portrait: _Portrait, provider: ImageProvider, data: bytes, url: str, *, panel: bool) -> None:
        """Score one portrait, store it with its thumbnail, mark its task stored and signal delivery."""
        task_id, job_id = portrait.task_id, portrait.job_id
        try:
            thumbnail = await asyncio.to_thread(make_thumbnail, data)
        except Exception as error:
            if self.state.stopping:
                return
            if panel:  # one unreadable panel is that portrait's loss alone
                await self.settler.drop_panel(task_id, url, f"bad image: {error}")
            else:
                await self.settler.after_failure(
                    task_id,
                    TaskStatus.SUCCEEDED,
                    portrait.index,
                    portrait.attempts,
                    True,
                    f"bad image: {error}",
                    result_url=url,
                )
            return
        likeness: tuple[float | None, bool] | None = (None, False)
        if self.faces and panel:
            likeness = await self._panel_likeness(task_id, job_id, data, url)
        elif self.faces:
            likeness = await self._likeness(task_id, job_id, portrait.index, portrait.attempts, data, url)
        if likeness is None:
            return  # no face, or sent back once for a better likeness: the failure path has it now
        extension = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg"
        result_key = f"results/{job_id}/{task_id}.{extension}"
        thumb_key = f"results/{job_id}/{task_id}.thumb.jpg"
        await self.files.put(result_key, data, f"image/{'png' if extension == 'png' else 'jpeg'}")
        await self.files.put(thumb_key, thumbnail, "image/jpeg")
        stored_at = utcnow()
        submitted_at = portrait.submitted_at
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
                    cost=float(micros_to_usd(portrait.cost_micros)),  # USD, every create of this portrait
                )
                await record_event(
                    session, EventName.IMAGE_STORED, job_id=job_id, task_id=task_id, size_bytes=len(data)
                )
            await session.commit()
        if stored:
            self.signals.task_stored()
            await self.settler.hand_over_or_fail(job_id)

    async def _panel_likeness(
        self, task_id: int, job_id: int, data: bytes, url: str
    ) -> tuple[float | None, bool] | None:
        """A grid panel's (identity score, flagged); None when it had no clear single face and was
        dropped. Unlike a single portrait, an unlike face is not regenerated (a redo would cost a
        whole grid for one portrait): it is delivered flagged."""
        assert self.faces is not None
        scored, score = await self._score(task_id, job_id, data)
        if not scored:
            return None, False
        if score is None:
            await self.settler.drop_panel(task_id, url, "no face in the grid panel")
            return None
        return score.score, score.score < self.faces.limits.identity_min_score

    async def _score(self, task_id: int, job_id: int, data: bytes) -> tuple[bool, IdentityScore | None]:
        """(scored, how much the portrait looks like the selfies: None when it shows no face). Not
        scored when there is nothing to compare with (the selfies were deleted by /forget) or our
        checker failed: the portrait is then stored unscored."""
        assert self.faces is not None
        try:
            async with self.sessionmaker() as session:
                job = await session.get(GenerationJob, job_id)
                assert job is not None
                if job.avatar_id is None:
                    return False, None
                references = await face_queries.reference_embeddings(session, self.files, self.faces, job.avatar_id)
                await session.commit()
            if not references:
                return False, None
            score = await self.faces.score_portrait_async(data, references)
            if score is not None and score.face is not None:
                async with self.sessionmaker() as session:
                    await face_queries.record_face_box(session, task_id, score.face)
                    await session.commit()
            return True, score
        except Exception:  # our checker failing must not cost the user a portrait
            log.exception("identity scoring failed for task %s; storing it unscored", task_id)
            return False, None

    async def _likeness(
        self, task_id: int, job_id: int, index: int, attempts: int, data: bytes, url: str
    ) -> tuple[float | None, bool] | None:
        """(identity score, flagged) of a portrait; None when the task went back to the failure path.

        No face at all is a failed portrait (retry / fallback as usual). A face unlike the person's
        selfies is regenerated once, on the task's retry budget (the user's credits are untouched);
        if it is still unlike them, or the budget is spent, it is delivered and flagged.
        """
        assert self.faces is not None
        scored, score = await self._score(task_id, job_id, data)
        if not scored:
            return None, False
        if score is None:
            # Scoring takes a while: the task may have moved on to a newer result, which this verdict
            # must not fail — hence the result URL in the transition's condition.
            await self.settler.after_failure(
                task_id, TaskStatus.SUCCEEDED, index, attempts, True, "no face in the portrait", result_url=url
            )
            return None
        if score.score >= self.faces.limits.identity_min_score:
            return score.score, False
        decision = decide_after_failure(self.roster.policy, index, attempts, True, utcnow())
        if decision.action != DecisionAction.SKIP:
            async with self.sessionmaker() as session:
                claimed = await face_queries.begin_identity_redo(session, task_id, url, score.score)
                await session.commit()
            if claimed:
                error = f"unlike the person (identity {score.score:.2f}): regenerated once"
                await self.settler.after_failure(
                    task_id, TaskStatus.SUCCEEDED, index, attempts, True, error, result_url=url
                )
                return None
        log.info(
            "task %s delivered flagged: identity %.2f below %.2f",
            task_id,
            score.score,
            self.faces.limits.identity_min_score,
        )
        return score.score, True
