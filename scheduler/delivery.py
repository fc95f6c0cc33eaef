"""Delivery: stored portraits stream into the user's chat in the order they were stored.

Background work of the scheduler. A pass (an APScheduler job, woken whenever a portrait is stored)
starts one worker per pack with something to deliver; the worker holds the pack's delivery lease and
sends, against the chat's budget (studio.delivery), whatever the rules say to send now, then waits for
the next portrait, the album window or the budget. Telegram is reached only through the
:class:`AlbumSender` port that bot/ implements.

Crash safety: every send is a chunk recorded before it goes (open), marked sending by a conditional
UPDATE that also checks the lease, and confirmed after (sent). A chunk whose arrival cannot be known (a
crash while sending, a 5xx or a timeout) becomes uncertain: its portraits count as delivered (at most
once) and the user gets a Resend button.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.background import BackgroundTasks
from scheduler.notices import (
    DeliveryUncertain,
    GuaranteeSettled,
    PackFinished,
    ProgressShown,
    RedoFailed,
    ReferralPaid,
)
from scheduler.notify import UserNotifier
from storage import deliveries as queries
from storage import gifts, queue, redos
from storage.events import EventName, record_event
from storage.files import FileNotFoundInStore, FileStore
from storage.images import ImageRejected, fit_for_telegram_photo
from storage.models import Delivery, GenerationJob, GenerationTask, Redo, utcnow
from studio.catalogue import Catalogue
from studio.costs import micros_to_usd
from studio.delivery import ChatBudgets, Ready, next_send, progress_edit_due, split_albums
from studio.generation import settle_job
from studio.redo import RedoKind, guaranteed
from studio.states import DeliveryStatus, JobStatus, TaskStatus

log = logging.getLogger(__name__)

FINAL_TASK_STATUSES = (TaskStatus.STORED, TaskStatus.DELIVERED, TaskStatus.SKIPPED)


# ------------------------------------------------------------------ the port to the chat


@dataclass(frozen=True)
class Portrait:
    """One item to send: a Telegram file id (a resend never uploads again) or the bytes to upload."""

    file_id: str | None = None
    data: bytes | None = None
    filename: str = "portrait.jpg"
    as_document: bool = False


@dataclass(frozen=True)
class Sent:
    """These items arrived (a prefix of what was sent; shorter when Telegram stopped inside an album)."""

    file_ids: list[str | None]
    message_ids: list[int]


@dataclass(frozen=True)
class Blocked:
    """The user blocked the bot: nothing arrived."""


@dataclass(frozen=True)
class Refused:
    """Telegram refused the send (nothing arrived); ``item`` is the 0-based item it named, if any;
    ``transient`` when it only said "not now" (flood control outlasting the retries)."""

    reason: str
    item: int | None = None
    transient: bool = False


@dataclass(frozen=True)
class ArrivalUnknown:
    """The send may or may not have arrived (a 5xx, a timeout, a dropped connection)."""

    reason: str


SendOutcome = Sent | Blocked | Refused | ArrivalUnknown


class AlbumSender(Protocol):
    def text(self, key: str, language: str, **values: Any) -> str: ...

    async def send(
        self, chat_id: int, items: Sequence[Portrait], caption: str | None, reply_to: int | None = None
    ) -> SendOutcome:
        """One album (2-10 photos), or one photo or document alone; ``reply_to``: as a reply to that
        message of the chat (sent anyway if it is gone)."""

    async def edit_progress(
        self, chat_id: int, message_id: int, language: str, progress: ProgressShown
    ) -> SendOutcome: ...


def progress_bar(done: int, total: int, width: int = 10) -> str:
    filled = round(width * done / total) if total else 0
    return "▓" * filled + "░" * (width - filled)


@dataclass
class DeliveryConfig:
    worker_id: str
    lease_seconds: float = 90.0
    album_window_seconds: float = 3.0
    edit_interval_seconds: float = 3.0
    tick_seconds: float = 2.0
    # The likeness guarantee: this share of a pack passes the likeness check, or the missing ones
    # are redone free (studio/redo.py); 0 turns it off.
    likeness_guarantee: float = 0.0
    free_redos_per_pack: int = 0  # told in the closing message
    # Credits for the inviter when an invited user's first paid pack is delivered (0: no referral bonus).
    referral_bonus_photos: int = 0


@dataclass
class _PackState:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    as_document: set[int] = field(default_factory=set)
    last_edit_at: float | None = None
    last_text: str = ""
    # A redo job: no progress message and no closing one; a reply's redo answers the portrait it redoes.
    redo: Redo | None = None


def ready_portraits(
    stored: Sequence[GenerationTask], as_document: Collection[int], now: float, wall_now: datetime
) -> list[Ready]:
    """The stored portraits as delivery plans them, each ready since the provider finished it (wall
    clock, as recorded, moved onto the monotonic ``now``): the album window counts from then, so a
    portrait a poll found late has already waited for company that long. Stored before that was
    recorded: since it was stored."""
    return [
        Ready(
            task.id,
            now - max(0.0, (wall_now - (task.provider_done_at or task.stored_at or wall_now)).total_seconds()),
            task.id in as_document,
        )
        for task in stored
    ]


class DeliveryService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        sender: AlbumSender,
        budgets: ChatBudgets,
        files: FileStore,
        notifier: UserNotifier,
        catalogue: Catalogue,
        config: DeliveryConfig,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.sender = sender
        self.budgets = budgets
        self.files = files
        self.notifier = notifier
        self.catalogue = catalogue
        self.config = config
        self.worker_id = config.worker_id
        self.lease = timedelta(seconds=config.lease_seconds)
        self.workers = BackgroundTasks("delivery")
        self.resends = BackgroundTasks("resend")
        self._packs: dict[int, _PackState] = {}
        # Runs the pass again (wired to its WakeableJob): a wake that reached a worker on its way out.
        self.on_missed_wake: Any = None
        # Wakes the dispatcher (wired to WorkSignals.job_queued): the likeness guarantee queued a redo.
        self.on_job_queued: Any = None

    async def stop(self) -> None:
        await self.resends.stop()
        await self.workers.stop()

    # ------------------------------------------------------------------ the pass

    async def deliver_all(self) -> None:
        """Wake the worker of every pack with something to deliver, or start one."""
        async with self.sessionmaker() as session:
            job_ids = await queries.jobs_to_deliver(session)
        for job_id in job_ids:
            state = self._packs.get(job_id)
            if state is not None:
                state.wake.set()
                continue
            state = _PackState()
            if self.workers.spawn(self._worker(job_id, state), key=job_id, name=f"delivery-{job_id}"):
                self._packs[job_id] = state
            elif self.on_missed_wake is not None:
                self.on_missed_wake()  # the previous worker is just leaving: look again

    async def wait_idle(self, job_id: int) -> None:
        await self.workers.wait(job_id)

    async def _worker(self, job_id: int, state: _PackState) -> None:
        try:
            if not await self._claim(job_id):
                return  # another process is delivering this pack
            # A send can wait on the chat's budget longer than the lease; keep the lease alive meanwhile.
            keeper = asyncio.create_task(self._keep_lease(job_id), name=f"delivery-lease-{job_id}")
            try:
                await self._deliver(job_id, state)
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                async with self.sessionmaker() as session:
                    await queries.release_delivery(session, job_id, self.worker_id)
                    await session.commit()
        finally:
            if self._packs.get(job_id) is state:
                del self._packs[job_id]
            if state.wake.is_set() and self.on_missed_wake is not None:
                self.on_missed_wake()  # a portrait stored while this worker was leaving

    async def _keep_lease(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                if not await self._claim(job_id):
                    log.warning("delivery lease of job %s was taken over", job_id)
                    return
            except Exception:  # a missed renewal is retried; sending checks the lease itself
                log.exception("renewing the delivery lease of job %s failed", job_id)

    async def _claim(self, job_id: int) -> bool:
        async with self.sessionmaker() as session:
            claimed = await queries.claim_delivery(session, job_id, self.worker_id, self.lease)
            await session.commit()
        return claimed

    # ------------------------------------------------------------------ one pack

    async def _deliver(self, job_id: int, state: _PackState) -> None:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
        if job is None or job.status not in (JobStatus.PROCESSING, JobStatus.DELIVERING):
            return
        async with self.sessionmaker() as session:
            state.redo = await redos.redo_of_job(session, job_id)
        if job.progress_message_id is None and state.redo is None:
            await self._start_progress(job, state)
        if not await self._settle_leftovers(job):
            return
        while True:
            state.wake.clear()
            async with self.sessionmaker() as session:
                job = await session.get(GenerationJob, job_id)
                tasks = await queries.tasks_in_order(session, job_id)
            if job is None or job.status not in (JobStatus.PROCESSING, JobStatus.DELIVERING):
                return
            stored = sorted(
                (task for task in tasks if task.status == TaskStatus.STORED),
                key=lambda task: (task.stored_at or utcnow(), task.id),
            )
            now = time.monotonic()
            ready = ready_portraits(stored, state.as_document, now, utcnow())
            more_coming = not all(task.status in FINAL_TASK_STATUSES for task in tasks)
            started = any(task.status == TaskStatus.DELIVERED for task in tasks)
            budget = self.budgets.of(job.chat_id, now)
            plan = next_send(
                ready,
                started=started,
                more_coming=more_coming,
                now=now,
                window=self.config.album_window_seconds,
                budget=budget,
            )
            if plan is None:
                if await self._finish_if_done(job_id, state):
                    return
                if not await self._progress(job, state, final=False) and not state.wake.is_set():
                    return  # nothing to send and nothing to say: the next stored portrait wakes a new pass
                continue
            if plan.at > now:
                await self._sleep_or_wake(state, plan.at - now)
                continue
            chosen = {item.task_id for item in ready[: plan.count]}
            batch = [task for task in stored if task.id in chosen]
            outcome = await self._send_chunk(job, state, batch, caption=not started)
            if outcome is None:
                return  # the lease is lost or the chat is gone

    async def _sleep_or_wake(self, state: _PackState, seconds: float) -> None:
        try:
            await asyncio.wait_for(state.wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def _settle_leftovers(self, job: GenerationJob) -> bool:
        """Chunks an earlier worker left: sending → uncertain (a Resend is offered); open → abandoned
        (nothing of them left, their portraits are planned again). False when the lease is gone."""
        async with self.sessionmaker() as session:
            leftovers = await queries.unconfirmed_chunks(session, job.id)
        for chunk in leftovers:
            if chunk.status == DeliveryStatus.SENDING:
                await self._uncertain(job, chunk)
            else:
                async with self.sessionmaker() as session:
                    await queries.set_chunk_status(session, chunk.id, DeliveryStatus.OPEN, DeliveryStatus.FAILED)
                    await session.commit()
        return True

    async def _media(self, task: GenerationTask, state: _PackState) -> Portrait | None:
        """What to send for a task; None when its file is gone (the task is then skipped and credited)."""
        if task.telegram_file_id and task.id not in state.as_document:
            return Portrait(file_id=task.telegram_file_id)
        try:
            data = await self.files.get(task.result_key or "")
        except FileNotFoundInStore:
            await self._skip(task.id, "result file missing at delivery")
            return None
        name = f"portrait-{task.position + 1}"
        if task.id in state.as_document:
            return Portrait(data=data, filename=f"{name}.{_extension(data)}", as_document=True)
        try:
            fitted = await asyncio.to_thread(fit_for_telegram_photo, data)
        except ImageRejected as rejected:
            log.info("job %s task %s cannot go as a photo (%s): sending it as a file", task.job_id, task.id, rejected)
            state.as_document.add(task.id)
            return Portrait(data=data, filename=f"{name}.{_extension(data)}", as_document=True)
        return Portrait(data=fitted, filename=f"{name}.jpg")

    async def _skip(self, task_id: int, reason: str) -> None:
        async with self.sessionmaker() as session:
            skipped = await queue.skip_task(session, task_id, from_status=TaskStatus.STORED, error=reason)
            await session.commit()
        if skipped:
            log.warning("task %s skipped at delivery and credited: %s", task_id, reason)

    async def _send_chunk(
        self, job: GenerationJob, state: _PackState, batch: list[GenerationTask], *, caption: bool
    ) -> bool | None:
        """Send one album (or one portrait) as a recorded chunk. None: stop this worker."""
        items: list[Portrait] = []
        tasks: list[GenerationTask] = []
        for task in batch:
            portrait = await self._media(task, state)
            if portrait is None:
                return True  # skipped; plan again
            if portrait.as_document and len(batch) > 1:
                return True  # found out only now that it must go alone: plan again
            items.append(portrait)
            tasks.append(task)
        async with self.sessionmaker() as session:
            if not await queries.claim_delivery(session, job.id, self.worker_id, self.lease):
                return None  # our lease lapsed and another process took over
            chunk = await queries.open_chunk(session, job.id, [task.id for task in tasks])
            await session.commit()
        async with self.sessionmaker() as session:
            # From here until confirmed, a crash leaves it unknown whether the album arrived.
            handed = await queries.start_sending(session, chunk.id, job.id, self.worker_id)
            await session.commit()
        if not handed:
            log.warning("job %s: delivery lease lost before chunk %s; stopping", job.id, chunk.chunk_index)
            return None
        reply_to = state.redo.reply_to_message_id if state.redo is not None else None
        text = self._caption(job, state.redo) if caption else None
        outcome = await self.sender.send(job.chat_id, items, text, reply_to)
        if isinstance(outcome, Sent):
            arrived = tasks[: len(outcome.file_ids)]
            async with self.sessionmaker() as session:
                await queries.confirm_chunk(
                    session,
                    chunk.id,
                    {task.id: file_id for task, file_id in zip(arrived, outcome.file_ids, strict=True)},
                    outcome.message_ids,
                    complete=True,
                    task_ids=[task.id for task in arrived],
                    chat_id=job.chat_id,
                )
                await session.commit()
            return True
        if isinstance(outcome, ArrivalUnknown):
            log.warning("job %s chunk %s: arrival unknown (%s)", job.id, chunk.chunk_index, outcome.reason)
            await self._uncertain(job, chunk)
            return True
        async with self.sessionmaker() as session:  # nothing arrived
            await queries.set_chunk_status(session, chunk.id, DeliveryStatus.SENDING, DeliveryStatus.FAILED)
            await session.commit()
        if isinstance(outcome, Blocked):
            await self._user_blocked(job)
            return None
        return await self._refused(job, state, tasks, items, outcome)

    async def _refused(
        self,
        job: GenerationJob,
        state: _PackState,
        tasks: list[GenerationTask],
        items: list[Portrait],
        refusal: Refused,
    ) -> bool:
        """A photo Telegram refuses goes again as a file; a file it refuses is skipped and credited.
        Without a named item, a lone portrait is the culprit; an album is split into lone sends."""
        if refusal.transient:
            return True  # the chat's budget now holds the wait; the same portraits are planned again
        culprit = refusal.item if refusal.item is not None and refusal.item < len(tasks) else None
        if culprit is None and len(tasks) == 1:
            culprit = 0
        if culprit is None:
            log.warning("job %s: Telegram refused an album (%s); sending its portraits one by one", job.id, refusal)
            for task in tasks:
                await self._send_chunk(job, state, [task], caption=False)
            return True
        task = tasks[culprit]
        if items[culprit].as_document:
            await self._skip(task.id, f"Telegram refused it as a file: {refusal.reason}")
        else:
            log.warning(
                "job %s task %s: Telegram refused the photo (%s); sending it as a file", job.id, task.id, refusal
            )
            state.as_document.add(task.id)
        return True

    def _caption(self, job: GenerationJob, redo: Redo | None = None) -> str:
        if redo is not None:
            return self.sender.text(f"redo.caption.{redo.kind}", job.language)
        style = self.catalogue.find_style(job.style)
        return self.sender.text("delivery.caption", job.language, style=style.name.get(job.language) if style else "")

    async def _uncertain(self, job: GenerationJob, chunk: Delivery) -> None:
        """Offer a resend instead of sending twice: at most once when arrival cannot be known."""
        async with self.sessionmaker() as session:
            settled = await queries.settle_uncertain(session, chunk)
            await session.commit()
        if settled:
            log.warning("job %s chunk %s: delivery uncertain; resend offered", job.id, chunk.chunk_index)
            await self.notifier.tell(
                job.chat_id, job.language, DeliveryUncertain(job.id, chunk.chunk_index, portraits=len(chunk.task_ids))
            )

    # ------------------------------------------------------------------ resends

    def request_resend(self, job_id: int, chunk_index: int, user_id: int) -> None:
        """The user's "Resend" under an uncertain album: sent in the background, once."""
        self.resends.spawn(self._resend_chunk(job_id, chunk_index, user_id), key=(job_id, chunk_index))

    async def _resend_chunk(self, job_id: int, chunk_index: int, user_id: int) -> None:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            chunk = await queries.get_chunk(session, job_id, chunk_index)
            if job is None or chunk is None or job.user_id != user_id:
                return
            if not await queries.set_chunk_status(session, chunk.id, DeliveryStatus.UNCERTAIN, DeliveryStatus.SENT):
                return  # resent already
            tasks = [t for t in await queries.tasks_in_order(session, job_id) if t.id in chunk.task_ids]
            await session.commit()
        await self._send_in_albums(job, [t for t in tasks if t.telegram_file_id or t.result_key], caption=False)

    async def resend(self, job_id: int) -> int:
        """Send a job's delivered portraits to its chat again (an admin's "Resend to user"), as albums in
        task order; the delivery records do not change. Returns how many portraits were sent."""
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            tasks = [
                task
                for task in await queries.tasks_in_order(session, job_id)
                if task.status == TaskStatus.DELIVERED and (task.telegram_file_id or task.result_key)
            ]
        if job is None or not tasks:
            return 0
        await self._send_in_albums(job, tasks, caption=True)
        return len(tasks)

    async def _send_in_albums(self, job: GenerationJob, tasks: list[GenerationTask], *, caption: bool) -> None:
        """Portraits sent again outside the delivery records, in valid album sizes and task order; the
        new messages are remembered as showing their portraits (a reply or a reaction finds them)."""
        state = _PackState()
        pairs = [(task.id, portrait) for task in tasks if (portrait := await self._media(task, state)) is not None]
        photos = [pair for pair in pairs if not pair[1].as_document]
        start = 0
        for size in split_albums(len(photos)):
            album = photos[start : start + size]
            text = self._caption(job) if caption and start == 0 else None
            if not await self._send_again(job, album, text):
                return
            start += size
        for document in (pair for pair in pairs if pair[1].as_document):
            await self._send_again(job, [document], None)

    async def _send_again(self, job: GenerationJob, album: list[tuple[int, Portrait]], caption: str | None) -> bool:
        outcome = await self.sender.send(job.chat_id, [portrait for _, portrait in album], caption)
        if not isinstance(outcome, Sent):
            log.warning("resend to job %s stopped: %s", job.id, outcome)
            return False
        async with self.sessionmaker() as session:
            arrived = [task_id for task_id, _ in album][: len(outcome.message_ids)]
            await queries.record_portrait_messages(session, job.chat_id, arrived, outcome.message_ids)
            await session.commit()
        return True

    # ------------------------------------------------------------ progress and completion

    async def _start_progress(self, job: GenerationJob, state: _PackState) -> None:
        text = self._progress_text(job, done=job.photos_completed)
        message_id = await self.notifier.tell(job.chat_id, job.language, self._progress_notice(job, text, final=False))
        if message_id is not None:
            async with self.sessionmaker() as session:
                await queries.set_progress_message(session, job.id, message_id)
                await session.commit()
            job.progress_message_id = message_id
            state.last_edit_at, state.last_text = time.monotonic(), text

    @staticmethod
    def _progress_notice(job: GenerationJob, text: str, *, final: bool) -> ProgressShown:
        # Cancelling is offered only while nothing has been generated: after that the user keeps what is made.
        cancellable = not final and not job.photos_completed and job.status == JobStatus.PROCESSING
        return ProgressShown(job.id, text, cancellable)

    def _progress_text(self, job: GenerationJob, done: int, final: bool = False) -> str:
        text = self.sender.text
        if final:
            return text(
                "progress.done", job.language, delivered=done, total=job.photos_total, credited=job.photos_failed
            )
        remaining = job.photos_total - done - job.photos_failed
        eta = ""
        if job.started_at and done and remaining > 0:
            per_photo = (utcnow() - job.started_at).total_seconds() / done
            eta = text("progress.eta", job.language, minutes=max(1, round(per_photo * remaining / 60)))
        return text(
            "progress.running",
            job.language,
            done=done,
            total=job.photos_total,
            bar=progress_bar(done, job.photos_total),
            eta=eta,
        )

    async def _progress(self, job: GenerationJob, state: _PackState, *, final: bool) -> bool:
        """Edit the progress message when its text changed, within the chat's budget. True when the
        caller should look again (an edit waits for its turn: a portrait stored meanwhile goes first)."""
        async with self.sessionmaker() as session:
            fresh = await session.get(GenerationJob, job.id)
        if fresh is None or fresh.progress_message_id is None:
            return False
        text = self._progress_text(fresh, fresh.photos_completed, final=final)
        if text == state.last_text:
            return False
        now = time.monotonic()
        budget = self.budgets.of(fresh.chat_id, now)
        if not final:
            due = progress_edit_due(
                last_edit_at=state.last_edit_at,
                now=now,
                interval=self.config.edit_interval_seconds,
                waiting=0,
                budget=budget,
            )
            if due is not None and due > now:
                await self._sleep_or_wake(state, due - now)
                if state.wake.is_set():
                    return True
        outcome = await self.sender.edit_progress(
            fresh.chat_id, fresh.progress_message_id, fresh.language, self._progress_notice(fresh, text, final=final)
        )
        if not isinstance(outcome, Sent):
            log.warning("progress edit for job %s failed: %s", job.id, outcome)
        state.last_edit_at, state.last_text = time.monotonic(), text
        return not final

    async def _finish_if_done(self, job_id: int, state: _PackState) -> bool:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            counts = await queue.task_counts(session, job_id)
            if job is None or job.status != JobStatus.DELIVERING or counts.get(TaskStatus.STORED, 0):
                return False
            outcome = settle_job(
                job.photos_total, counts.get(TaskStatus.DELIVERED, 0), counts.get(TaskStatus.SKIPPED, 0)
            )
            if outcome is None:
                return False
            finished_at = utcnow()
            moved = await queue.move_job(
                session, job_id, JobStatus.DELIVERING, outcome.status, finished_at=finished_at, delivered_at=finished_at
            )
            referral = None
            if moved and state.redo is not None:
                # A redo is no pack: the guarantee's credits what it could not fix; a reply's says nothing more.
                notice = await self._redo_finished(session, job, state.redo, outcome.succeeded)
                await session.commit()
                if notice is not None:
                    await self.notifier.tell(job.chat_id, job.language, notice)
                return True
            promised, redone = 0, 0
            if moved and outcome.status != JobStatus.FAILED:  # in this transaction: a crash cannot lose it
                promised = guaranteed(job.photos_total, self.config.likeness_guarantee)
                guarantee = await redos.open_guarantee(session, job, promised)
                redone = guarantee.photos_total if guarantee is not None else 0
            if moved:  # total: from the job being queued (paid or trial) to its last portrait delivered
                await record_event(
                    session,
                    EventName.PACK_COMPLETED,
                    user_id=job.user_id,
                    job_id=job_id,
                    image_count=outcome.succeeded,
                    total_duration_ms=round((finished_at - job.created_at).total_seconds() * 1000),
                    skipped=outcome.skipped,
                    cost=float(micros_to_usd(await queue.job_cost_micros(session, job_id))),  # USD
                )
                # In the transaction that finishes the pack: the bonus is paid exactly when it is delivered.
                referral = await gifts.pay_referral(session, job, outcome.status, self.config.referral_bonus_photos)
            await session.commit()
        if not moved:
            return True
        if redone and self.on_job_queued is not None:
            self.on_job_queued()
        await self._progress(job, state, final=True)
        finished = PackFinished(
            job_id,
            job.avatar_id,
            outcome.succeeded,
            outcome.skipped,
            guarantee=redone,
            promised=promised,
            free_redos=self.config.free_redos_per_pack,
        )
        await self.notifier.tell(job.chat_id, job.language, finished)
        if referral is not None:
            await self.notifier.tell(referral.inviter_chat_id, referral.inviter_language, ReferralPaid(referral.photos))
        return True

    @staticmethod
    async def _redo_finished(
        session: AsyncSession, job: GenerationJob, redo: Redo, delivered: int
    ) -> GuaranteeSettled | RedoFailed | None:
        if redo.kind == RedoKind.GUARANTEE:
            return GuaranteeSettled(job.id, delivered, await redos.settle_guarantee(session, job))
        if not delivered:  # refused at delivery: its credit (paid) or allowance (free) is back
            return RedoFailed(job.id, paid=redo.kind == RedoKind.PAID)
        return None

    async def _user_blocked(self, job: GenerationJob) -> None:
        async with self.sessionmaker() as session:
            await queries.mark_user_blocked(session, job.user_id, True)
            await session.commit()
        log.info("user of job %s blocked the bot: delivery paused, portraits kept", job.id, extra={"job_id": job.id})


def _extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "jpg"
