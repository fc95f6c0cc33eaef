"""Originals: a finished pack's full-resolution files, as one ZIP when it fits Telegram's 50 MB
upload limit, otherwise as documents in groups of up to ten. Sent in the background so the
button's handler answers at once; one run per job at a time."""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from collections.abc import Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BufferedInputFile
from aiogram.utils.media_group import MediaGroupBuilder
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notifier import TelegramNotifier
from scheduler.notices import OriginalsGone
from storage.files import FileNotFoundInStore, FileStore
from storage.models import GenerationJob, GenerationTask
from studio.delivery import split_albums
from studio.states import TaskStatus

log = logging.getLogger(__name__)

# Telegram's multipart limit for documents is 50 MB; keep room for the form's own bytes.
UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024 - 64 * 1024


class OriginalsService:
    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        files: FileStore,
        notifier: TelegramNotifier,
        upload_limit_bytes: int = UPLOAD_LIMIT_BYTES,
    ) -> None:
        self.bot = bot
        self.sessionmaker = sessionmaker
        self.files = files
        self.notifier = notifier
        self.upload_limit_bytes = upload_limit_bytes
        self._running: dict[int, asyncio.Task[None]] = {}

    async def available(self, job_id: int, user_id: int) -> int:
        """How many originals of this user's job are still stored (0: none, or not their job)."""
        return len(await self._keys(job_id, user_id))

    def request(self, job: GenerationJob) -> bool:
        """Start sending; False when this job's originals are already on their way."""
        if job.id in self._running:
            return False
        task = asyncio.create_task(self._send(job), name=f"originals-{job.id}")
        self._running[job.id] = task
        task.add_done_callback(lambda _: self._running.pop(job.id, None))
        return True

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _keys(self, job_id: int, user_id: int) -> list[tuple[int, str]]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(GenerationTask.position, GenerationTask.result_key)
                .join(GenerationJob, GenerationJob.id == GenerationTask.job_id)
                .where(
                    GenerationTask.job_id == job_id,
                    GenerationJob.user_id == user_id,
                    GenerationTask.status == TaskStatus.DELIVERED,
                    GenerationTask.result_key.is_not(None),
                )
                .order_by(GenerationTask.position)
            )
            return [(position, key) for position, key in rows.all() if key]

    async def _send(self, job: GenerationJob) -> None:
        try:
            files: list[tuple[str, bytes]] = []
            for position, key in await self._keys(job.id, job.user_id):
                try:
                    data = await self.files.get(key)
                except FileNotFoundInStore:
                    continue  # removed by retention meanwhile
                files.append((f"portrait-{position + 1:02d}.{key.rsplit('.', 1)[-1]}", data))
            if not files:
                await self.notifier.tell(job.chat_id, job.language, OriginalsGone())
                return
            archive = await asyncio.to_thread(_zip, files)
            if len(archive) <= self.upload_limit_bytes:
                await self.bot.send_document(
                    job.chat_id,
                    BufferedInputFile(archive, filename=f"pinglass-{job.id}.zip"),
                    caption=self.notifier.text("originals.caption", job.language, count=len(files)),
                )
            else:
                await self._send_groups(job, files)
        except TelegramAPIError as error:
            log.warning("originals of job %s not sent: %s", job.id, error)

    async def _send_groups(self, job: GenerationJob, files: Sequence[tuple[str, bytes]]) -> None:
        start = 0
        for size in split_albums(len(files)):
            group = files[start : start + size]
            start += size
            if size == 1:
                name, data = group[0]
                await self.bot.send_document(job.chat_id, BufferedInputFile(data, filename=name))
                continue
            builder = MediaGroupBuilder()
            for name, data in group:
                builder.add_document(media=BufferedInputFile(data, filename=name))
            await self.bot.send_media_group(job.chat_id, media=list(builder.build()))


def _zip(files: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    # Images are already compressed: storing is as small as deflating and much cheaper.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()
