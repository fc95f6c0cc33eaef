"""Delivery: stored portraits go to the user's chat as albums, in task order, with one progress
message that is edited as the pack advances. State lives in the database (``deliveries``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError, TelegramNetworkError
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.media_group import MediaGroupBuilder
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notifier import TelegramNotifier
from bot.telegram_limits import PartialAlbumError
from scheduler.signals import WorkSignals
from storage import deliveries as queries
from storage import queue
from storage.events import EventName, record_event
from storage.files import FileStore
from storage.images import fit_for_telegram_photo
from storage.models import Delivery, GenerationJob, GenerationTask, utcnow
from studio.catalogue import Catalogue
from studio.generation import settle_job
from studio.states import DeliveryStatus, JobStatus, TaskStatus

log = logging.getLogger(__name__)

ALBUM_MAX = 10
FINAL_TASK_STATUSES = (TaskStatus.STORED, TaskStatus.DELIVERED, TaskStatus.SKIPPED)


def split_albums(count: int) -> list[int]:
    """Sizes that Telegram accepts (2-10 per album; a lone photo goes alone): 21 → 10, 9, 2."""
    sizes: list[int] = []
    while count > ALBUM_MAX:
        take = ALBUM_MAX if count - ALBUM_MAX != 1 else ALBUM_MAX - 1
        sizes.append(take)
        count -= take
    if count:
        sizes.append(count)
    return sizes


def progress_bar(done: int, total: int, width: int = 10) -> str:
    filled = round(width * done / total) if total else 0
    return "▓" * filled + "░" * (width - filled)


class DeliveryService:
    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        files: FileStore,
        notifier: TelegramNotifier,
        signals: WorkSignals,
        catalogue: Catalogue,
        worker_id: str,
        lease_seconds: float = 90.0,
        edit_interval_seconds: float = 3.0,
        tick_seconds: float = 2.0,
    ) -> None:
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease_seconds)
        self.bot = bot
        self.sessionmaker = sessionmaker
        self.files = files
        self.notifier = notifier
        self.signals = signals
        self.catalogue = catalogue
        self.edit_interval = edit_interval_seconds
        self.tick_seconds = tick_seconds
        self._job_locks: dict[int, asyncio.Lock] = {}
        self._last_edit: dict[int, tuple[float, str]] = {}
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self._resends: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="delivery")

    async def stop(self) -> None:
        self._stopping = True
        for resend in list(self._resends):
            resend.cancel()
        await asyncio.gather(*self._resends, return_exceptions=True)
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    async def _run(self) -> None:
        event = self.signals.tasks_stored
        while not self._stopping:
            event.clear()
            try:
                await self.deliver_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery round failed")
            try:
                await asyncio.wait_for(event.wait(), timeout=self.tick_seconds)
            except TimeoutError:
                pass

    async def deliver_all(self) -> None:
        async with self.sessionmaker() as session:
            job_ids = await queries.jobs_to_deliver(session)
        # Different users' packs go out side by side (bounded: the Telegram limiter is the real
        # pace, and unbounded writers starve each other on SQLite); one user's chunks stay in order.
        gate = asyncio.Semaphore(8)

        async def one(job_id: int) -> None:
            async with gate:
                await self.deliver_job(job_id)

        await asyncio.gather(*(one(job_id) for job_id in job_ids))

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

    async def deliver_job(self, job_id: int) -> None:
        lock = self._job_locks.setdefault(job_id, asyncio.Lock())
        if lock.locked():
            return  # the running pass will see the new portraits too (it re-reads after each chunk)
        async with lock:
            if not await self._claim(job_id):
                self._job_locks.pop(job_id, None)
                return  # another process is delivering this job
            # A send can wait on the rate limiter or a RetryAfter longer than the lease; keep the lease
            # alive meanwhile, or another process would take the job and send the open chunk again.
            keeper = asyncio.create_task(self._keep_lease(job_id), name=f"delivery-lease-{job_id}")
            try:
                await self._deliver_job(job_id)
            except TelegramForbiddenError:
                await self._user_blocked(job_id)
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                self._job_locks.pop(job_id, None)
                async with self.sessionmaker() as session:
                    await queries.release_delivery(session, job_id, self.worker_id)
                    await session.commit()

    async def _keep_lease(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                if not await self._claim(job_id):
                    log.warning("delivery lease of job %s was taken over", job_id)
                    return
            except Exception:  # a missed renewal is retried; the next chunk's claim also checks
                log.exception("renewing the delivery lease of job %s failed", job_id)

    async def _claim(self, job_id: int) -> bool:
        async with self.sessionmaker() as session:
            claimed = await queries.claim_delivery(session, job_id, self.worker_id, self.lease)
            await session.commit()
        return claimed

    async def _deliver_job(self, job_id: int) -> None:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
        if job is None or job.status not in (JobStatus.PROCESSING, JobStatus.DELIVERING):
            return
        if job.progress_message_id is None:
            await self._start_progress(job)
        # First whatever a crash (or a failed send) left unconfirmed, then the next ready chunks.
        async with self.sessionmaker() as session:
            for chunk in await queries.unconfirmed_chunks(session, job_id):
                if chunk.status == DeliveryStatus.SENDING:
                    await self._uncertain(job, chunk)
                    continue
                tasks = [t for t in await queries.tasks_in_order(session, job_id) if t.id in chunk.task_ids]
                await self._send_chunk(job, chunk.id, [t for t in tasks if t.status == TaskStatus.STORED])
        while True:
            async with self.sessionmaker() as session:
                job = await session.get(GenerationJob, job_id)
                assert job is not None
                tasks = await queries.tasks_in_order(session, job_id)
                batch = self._next_batch(job, tasks)
                if not batch:
                    break
                if not await queries.claim_delivery(session, job_id, self.worker_id, self.lease):
                    break  # our lease lapsed and another process took over
                chunk = await queries.open_chunk(session, job_id, [task.id for task in batch])
                await session.commit()
            await self._send_chunk(job, chunk.id, batch)
        await self._update_progress(job_id)
        await self._finish_if_done(job_id)

    def _next_batch(self, job: GenerationJob, tasks: Sequence[GenerationTask]) -> list[GenerationTask]:
        """The next album: 10 ready portraits in task order, or the rest once nothing is pending."""
        ready: list[GenerationTask] = []
        for task in tasks:
            if task.status == TaskStatus.DELIVERED or task.status == TaskStatus.SKIPPED:
                continue
            if task.status != TaskStatus.STORED:
                break  # order matters: wait for the earlier portrait
            ready.append(task)
        if len(ready) >= ALBUM_MAX:
            return ready[:ALBUM_MAX]
        all_final = all(task.status in FINAL_TASK_STATUSES for task in tasks)
        if job.status == JobStatus.DELIVERING and all_final and ready:
            return ready[: split_albums(len(ready))[0]]
        return []

    async def _send_chunk(self, job: GenerationJob, chunk_id: int, tasks: list[GenerationTask]) -> None:
        remaining = list(tasks)
        first_album = not await self._anything_delivered(job.id)
        while remaining:
            delivered: dict[int, str | None] = {}
            message_ids: list[int] = []
            media = await self._media(remaining)
            async with self.sessionmaker() as session:
                # From here until confirmed, a crash leaves it unknown whether the album arrived.
                await queries.set_chunk_status(session, chunk_id, DeliveryStatus.OPEN, DeliveryStatus.SENDING)
                await session.commit()
            try:
                sent = await self._send_media(job, media, caption=first_album)
                for task, message in zip(remaining, sent, strict=False):
                    delivered[task.id] = message.photo[-1].file_id if message.photo else None
                    message_ids.append(message.message_id)
                remaining = []
            except PartialAlbumError as partial:
                # Telegram delivered the items before #k: record them, send only the rest later.
                arrived = remaining[: max(partial.failed_item - 1, 0)]
                remaining = remaining[len(arrived) :]
                async with self.sessionmaker() as session:
                    await queries.confirm_chunk(
                        session, chunk_id, {task.id: None for task in arrived}, [], complete=False
                    )
                    await queries.set_chunk_status(session, chunk_id, DeliveryStatus.SENDING, DeliveryStatus.OPEN)
                    await session.commit()
                await asyncio.sleep(partial.retry_after)
                first_album = False
                continue
            except TelegramNetworkError:
                raise  # the request may have arrived: the chunk stays "sending", i.e. uncertain
            except TelegramAPIError:
                # Telegram answered with a refusal: nothing of it arrived, so it is safe to send again.
                async with self.sessionmaker() as session:
                    await queries.set_chunk_status(session, chunk_id, DeliveryStatus.SENDING, DeliveryStatus.OPEN)
                    await session.commit()
                raise
            async with self.sessionmaker() as session:
                await queries.confirm_chunk(session, chunk_id, delivered, message_ids, complete=not remaining)
                await session.commit()
            first_album = False

    async def _anything_delivered(self, job_id: int) -> bool:
        async with self.sessionmaker() as session:
            counts = await queue.task_counts(session, job_id)
        return counts.get(TaskStatus.DELIVERED, 0) > 0

    async def _uncertain(self, job: GenerationJob, chunk: Delivery) -> None:
        """Offer a resend instead of sending twice: we prefer at most once when it cannot be known."""
        async with self.sessionmaker() as session:
            settled = await queries.settle_uncertain(session, chunk)
            await session.commit()
        if settled:
            log.warning("job %s chunk %s: delivery uncertain after a crash; resend offered", job.id, chunk.chunk_index)
            await self.notifier.tell(
                job.chat_id,
                job.language,
                "delivery.uncertain",
                count=len(chunk.task_ids),
                buttons=("resend_chunk", job.id, chunk.chunk_index),
            )

    def request_resend(self, job_id: int, chunk_index: int, user_id: int) -> None:
        """The user's "Resend" under an uncertain album: sent in the background, once."""
        task = asyncio.create_task(self._resend_chunk(job_id, chunk_index, user_id), name=f"resend-{job_id}")
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)

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
        try:
            await self._send_in_albums(job, [t for t in tasks if t.telegram_file_id or t.result_key], caption=False)
        except TelegramAPIError as error:
            log.warning("resend of job %s chunk %s failed: %s", job_id, chunk_index, error)

    async def _send_in_albums(self, job: GenerationJob, tasks: list[GenerationTask], *, caption: bool) -> None:
        """Portraits sent again outside the delivery records, in valid album sizes and task order."""
        start = 0
        for size in split_albums(len(tasks)):
            media = await self._media(tasks[start : start + size])
            await self._send_media(job, media, caption=caption and start == 0)
            start += size

    async def _media(self, tasks: list[GenerationTask]) -> list[BufferedInputFile | str]:
        media: list[BufferedInputFile | str] = []
        for task in tasks:
            if task.telegram_file_id:
                media.append(task.telegram_file_id)  # a resend never uploads again
            else:
                data = await self.files.get(task.result_key or "")
                fitted = await asyncio.to_thread(fit_for_telegram_photo, data)
                media.append(BufferedInputFile(fitted, filename=f"portrait-{task.position + 1}.jpg"))
        return media

    async def _send_media(
        self, job: GenerationJob, media: list[BufferedInputFile | str], *, caption: bool
    ) -> list[Message]:
        style = self.catalogue.find_style(job.style)
        caption_text = (
            self.notifier.text("delivery.caption", job.language, style=style.name.get(job.language) if style else "")
            if caption
            else None
        )
        if len(media) == 1:
            message = await self.bot.send_photo(job.chat_id, media[0], caption=caption_text)
            return [message]
        builder = MediaGroupBuilder(caption=caption_text)
        for item in media:
            builder.add_photo(media=item)
        return await self.bot.send_media_group(job.chat_id, media=builder.build())

    # ------------------------------------------------------------ progress and completion

    async def _start_progress(self, job: GenerationJob) -> None:
        text = self._progress_text(job, done=job.photos_completed)
        message_id = await self.notifier.tell(
            job.chat_id, job.language, "progress.raw", text=text, buttons=self._progress_buttons(job, final=False)
        )
        if message_id is not None:
            async with self.sessionmaker() as session:
                await queries.set_progress_message(session, job.id, message_id)
                await session.commit()
            job.progress_message_id = message_id
            self._last_edit[job.id] = (time.monotonic(), text)

    @staticmethod
    def _progress_buttons(job: GenerationJob, *, final: bool) -> tuple[str, int] | None:
        # Cancelling is offered only while nothing has been generated: after that the user keeps what is made.
        if final or job.photos_completed or job.status != JobStatus.PROCESSING:
            return None
        return ("cancel_job", job.id)

    def _progress_text(self, job: GenerationJob, done: int, final: bool = False) -> str:
        if final:
            return self.notifier.text(
                "progress.done", job.language, delivered=done, total=job.photos_total, credited=job.photos_failed
            )
        remaining = job.photos_total - done - job.photos_failed
        eta = ""
        if job.started_at and done and remaining > 0:
            per_photo = (utcnow() - job.started_at).total_seconds() / done
            eta = self.notifier.text("progress.eta", job.language, minutes=max(1, round(per_photo * remaining / 60)))
        return self.notifier.text(
            "progress.running",
            job.language,
            done=done,
            total=job.photos_total,
            bar=progress_bar(done, job.photos_total),
            eta=eta,
        )

    async def _update_progress(self, job_id: int, *, final: bool = False) -> None:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
        if job is None or job.progress_message_id is None:
            return
        text = self._progress_text(job, job.photos_completed, final=final)
        last_at, last_text = self._last_edit.get(job_id, (0.0, ""))
        if text == last_text or (not final and time.monotonic() - last_at < self.edit_interval):
            return
        try:
            await self.bot.edit_message_text(
                text=text,
                chat_id=job.chat_id,
                message_id=job.progress_message_id,
                reply_markup=self.notifier.buttons(self._progress_buttons(job, final=final), job.language),
            )
        except TelegramBadRequest as error:
            if "not modified" not in error.message:
                log.warning("progress edit for job %s failed: %s", job_id, error.message)
        except TelegramAPIError as error:
            log.warning("progress edit for job %s failed: %s", job_id, error)
        self._last_edit[job_id] = (time.monotonic(), text)

    async def _finish_if_done(self, job_id: int) -> None:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            counts = await queue.task_counts(session, job_id)
            if job is None or job.status != JobStatus.DELIVERING or counts.get(TaskStatus.STORED, 0):
                return
            outcome = settle_job(
                job.photos_total, counts.get(TaskStatus.DELIVERED, 0), counts.get(TaskStatus.SKIPPED, 0)
            )
            if outcome is None:
                return
            finished_at = utcnow()
            moved = await queue.move_job(
                session, job_id, JobStatus.DELIVERING, outcome.status, finished_at=finished_at, delivered_at=finished_at
            )
            if moved:  # total: from the job being queued (paid or trial) to its last portrait delivered
                await record_event(
                    session,
                    EventName.PACK_COMPLETED,
                    user_id=job.user_id,
                    job_id=job_id,
                    image_count=outcome.succeeded,
                    total_duration_ms=round((finished_at - job.created_at).total_seconds() * 1000),
                    skipped=outcome.skipped,
                )
            await session.commit()
        if not moved:
            return
        await self._update_progress(job_id, final=True)
        key = "delivery.finished_partial" if outcome.skipped else "delivery.finished"
        await self.notifier.tell(
            job.chat_id,
            job.language,
            key,
            delivered=outcome.succeeded,
            credited=outcome.skipped,
            buttons=("after_pack", job_id, job.avatar_id, outcome.skipped),
        )
        self._last_edit.pop(job_id, None)

    async def _user_blocked(self, job_id: int) -> None:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            if job is not None:
                await queries.mark_user_blocked(session, job.user_id, True)
                await session.commit()
        log.info("user of job %s blocked the bot: delivery paused, portraits kept", job_id, extra={"job_id": job_id})
