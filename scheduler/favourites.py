"""Favourites: a positive reaction on a delivered portrait marks it, taking the reaction away unmarks
it; /favourites sends them again (by Telegram file id, nothing is uploaded twice); and a profile photo
is cut from a pack's first favourite (else its first portrait) around the face. Sending runs in the
background so the handler answers at once; Telegram is reached only through delivery's AlbumSender
port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.background import BackgroundTasks
from scheduler.delivery import AlbumSender, Portrait, Sent
from scheduler.notices import OriginalsGone
from scheduler.notify import UserNotifier
from storage import deliveries
from storage import favourites as queries
from storage.events import EventName, record_event
from storage.files import FileNotFoundInStore, FileStore
from storage.images import ImageRejected, fit_for_telegram_photo, profile_photo
from storage.models import GenerationJob, GenerationTask
from studio.delivery import split_albums
from studio.favourites import marks_favourite

log = logging.getLogger(__name__)


class Reaction(StrEnum):
    MARKED = "marked"  # now a favourite
    UNMARKED = "unmarked"  # no longer one
    UNCHANGED = "unchanged"  # a repeated or irrelevant change
    NOT_A_PORTRAIT = "not_a_portrait"  # any other message, or someone else's portrait


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    started: bool  # False: nothing to make it from (not their pack, or its files are gone)
    busy: bool = False  # one is being made for this pack already


class FavouritesService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        files: FileStore,
        sender: AlbumSender,
        notifier: UserNotifier,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.sender = sender
        self.notifier = notifier
        self._runs = BackgroundTasks("favourites")

    async def react(self, user_id: int, chat_id: int, message_id: int, reactions: Sequence[str]) -> Reaction:
        """The user's reactions on a message are now ``reactions`` (Telegram sends the whole list)."""
        async with self.sessionmaker() as session:
            task = await deliveries.portrait_for_message(session, chat_id, message_id)
            job = await session.get(GenerationJob, task.job_id) if task is not None else None
            if task is None or job is None or job.user_id != user_id:
                return Reaction.NOT_A_PORTRAIT
            if marks_favourite(reactions):
                changed = await queries.mark(session, user_id, task.id)
                if changed:
                    await record_event(
                        session,
                        EventName.FAVOURITE_ADDED,
                        user_id=user_id,
                        job_id=job.id,
                        style=job.style,
                        position=task.position,
                    )
                result = Reaction.MARKED if changed else Reaction.UNCHANGED
            else:
                result = Reaction.UNMARKED if await queries.unmark(session, user_id, task.id) else Reaction.UNCHANGED
            await session.commit()
        return result

    async def resend(self, user_id: int, chat_id: int) -> int:
        """/favourites: send the user's favourites again, as albums; how many there are (0: nothing sent)."""
        async with self.sessionmaker() as session:
            tasks = await queries.favourite_portraits(session, user_id)
        if tasks:
            self._runs.spawn(self._send_albums(chat_id, tasks), key=("resend", user_id), name=f"favourites-{user_id}")
        return len(tasks)

    async def request_profile_photo(self, job_id: int, user_id: int, chat_id: int, language: str) -> ProfileRequest:
        async with self.sessionmaker() as session:
            source = await queries.profile_source(session, job_id, user_id)
        if source is None:
            return ProfileRequest(started=False)
        started = self._runs.spawn(
            self._send_profile_photo(source, chat_id, language), key=("profile", job_id), name=f"profile-{job_id}"
        )
        return ProfileRequest(started=True, busy=not started)

    async def wait(self) -> None:
        """Until every send under way has ended."""
        while len(self._runs):
            await self._runs.wait_any()

    async def stop(self) -> None:
        await self._runs.stop()

    async def _send_albums(self, chat_id: int, tasks: Sequence[GenerationTask]) -> None:
        start = 0
        for size in split_albums(len(tasks)):
            album = list(tasks[start : start + size])
            start += size
            items = [await self._media(task) for task in album]
            sendable = [(task, item) for task, item in zip(album, items, strict=True) if item is not None]
            if not sendable:
                continue
            outcome = await self.sender.send(chat_id, [item for _, item in sendable], None)
            if not isinstance(outcome, Sent):
                log.warning("favourites to chat %s stopped: %s", chat_id, outcome)
                return
            # The copies are portraits too: a reaction on one of them counts like one on the original.
            async with self.sessionmaker() as session:
                arrived = [task.id for task, _ in sendable][: len(outcome.message_ids)]
                await deliveries.record_portrait_messages(session, chat_id, arrived, outcome.message_ids)
                await session.commit()

    async def _media(self, task: GenerationTask) -> Portrait | None:
        if task.telegram_file_id:
            return Portrait(file_id=task.telegram_file_id)
        # Delivered without Telegram naming the file (an album whose arrival was uncertain): upload it.
        try:
            data = await self.files.get(task.result_key or "")
            return Portrait(data=await asyncio.to_thread(fit_for_telegram_photo, data), filename="portrait.jpg")
        except (FileNotFoundInStore, ImageRejected):
            return None

    async def _send_profile_photo(self, source: GenerationTask, chat_id: int, language: str) -> None:
        try:
            data = await self.files.get(source.result_key or "")
        except FileNotFoundInStore:  # removed by retention meanwhile
            await self.notifier.tell(chat_id, language, OriginalsGone())
            return
        box = source.face_box
        face = (float(box[0]), float(box[1]), float(box[2])) if box and len(box) == 3 else None
        try:
            photo = await asyncio.to_thread(profile_photo, data, face)
        except ImageRejected as rejected:
            log.warning("profile photo of task %s could not be made: %s", source.id, rejected)
            return
        caption = self.sender.text("profile.caption", language)
        name = f"profile-{source.job_id}-{source.position + 1}.jpg"
        for item in (Portrait(data=photo, filename=name, as_document=True), Portrait(data=photo, filename=name)):
            outcome = await self.sender.send(chat_id, [item], caption if not item.as_document else None)
            if not isinstance(outcome, Sent):
                log.warning("profile photo to chat %s not sent: %s", chat_id, outcome)
                return
