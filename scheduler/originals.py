"""Originals: a finished pack's full-resolution files, as one ZIP when it fits Telegram's 50 MB
upload limit, otherwise as documents in groups of up to ten. Sent in the background so the button's
handler answers at once; one run per job at a time. Telegram is reached only through the
:class:`DocumentSender` port that bot/ implements."""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.background import BackgroundTasks
from scheduler.notices import OriginalsGone, OriginalsNotSent
from scheduler.notify import UserNotifier
from storage.files import FileNotFoundInStore, FileStore
from storage.models import GenerationJob
from storage.originals import stored_originals
from studio.delivery import split_albums

log = logging.getLogger(__name__)

# Telegram's multipart limit for documents is 50 MB; keep room for the form's own bytes.
UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024 - 64 * 1024


# ------------------------------------------------------------------ the port to the chat


@dataclass(frozen=True, slots=True)
class NamedFile:
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Uploaded:
    """The file or group reached the chat."""


@dataclass(frozen=True, slots=True)
class NotUploaded:
    """Telegram refused it or could not be reached: the files after it are not sent either."""

    reason: str


UploadOutcome = Uploaded | NotUploaded


class DocumentSender(Protocol):
    async def send_zip(self, chat_id: int, archive: NamedFile, *, portraits: int, language: str) -> UploadOutcome:
        """One archive, captioned in ``language`` with how many ``portraits`` it holds."""

    async def send_documents(self, chat_id: int, files: Sequence[NamedFile]) -> UploadOutcome:
        """One group of 2-10 documents, or one document alone."""


class RecordingDocumentSender:
    """The in-process sender (tests, simulations): keeps what arrived, sends nothing.

    ``refused`` holds the 0-based numbers of the uploads Telegram would refuse; the others arrive.
    """

    def __init__(self) -> None:
        self.zips: list[tuple[int, NamedFile, int, str]] = []  # (chat, archive, portraits, language)
        self.groups: list[tuple[int, list[str]]] = []  # (chat, file names)
        self.refused: set[int] = set()
        self._uploads = 0

    async def send_zip(self, chat_id: int, archive: NamedFile, *, portraits: int, language: str) -> UploadOutcome:
        if self._refused():
            return NotUploaded("refused by the recording sender")
        self.zips.append((chat_id, archive, portraits, language))
        return Uploaded()

    async def send_documents(self, chat_id: int, files: Sequence[NamedFile]) -> UploadOutcome:
        if self._refused():
            return NotUploaded("refused by the recording sender")
        self.groups.append((chat_id, [file.name for file in files]))
        return Uploaded()

    def _refused(self) -> bool:
        self._uploads += 1
        return self._uploads - 1 in self.refused


# ------------------------------------------------------------------ the service


@dataclass(frozen=True, slots=True)
class OriginalsOffer:
    portraits: int
    favourites: int

    def count(self, *, favourites_only: bool) -> int:
        return self.favourites if favourites_only else self.portraits


class OriginalsService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        files: FileStore,
        sender: DocumentSender,
        notifier: UserNotifier,
        upload_limit_bytes: int = UPLOAD_LIMIT_BYTES,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.sender = sender
        self.notifier = notifier
        self.upload_limit_bytes = upload_limit_bytes
        self._runs = BackgroundTasks("originals")

    async def available(self, job_id: int, user_id: int) -> int:
        """How many originals of this user's job are still stored (0: none, or not their job)."""
        return len(await self._keys(job_id, user_id))

    async def offer(self, job_id: int, user_id: int) -> OriginalsOffer:
        """What the Originals button can send of this user's job: all its stored originals, and those of
        the user's favourites (both 0 when none are left, or it is not their job)."""
        async with self.sessionmaker() as session:
            portraits = await stored_originals(session, job_id, user_id)
            favourites = await stored_originals(session, job_id, user_id, favourites_only=True)
        return OriginalsOffer(len(portraits), len(favourites))

    def request(self, job: GenerationJob, *, favourites_only: bool = False) -> bool:
        """Start sending; False when this job's originals are already on their way."""
        return self._runs.spawn(self._send(job, favourites_only), key=job.id, name=f"originals-{job.id}")

    async def wait(self, job_id: int) -> None:
        await self._runs.wait(job_id)

    async def stop(self) -> None:
        await self._runs.stop()

    async def _keys(self, job_id: int, user_id: int, favourites_only: bool = False) -> list[tuple[int, str]]:
        async with self.sessionmaker() as session:
            return await stored_originals(session, job_id, user_id, favourites_only=favourites_only)

    async def _send(self, job: GenerationJob, favourites_only: bool = False) -> None:
        files: list[NamedFile] = []
        for position, key in await self._keys(job.id, job.user_id, favourites_only):
            try:
                data = await self.files.get(key)
            except FileNotFoundInStore:
                continue  # removed by retention meanwhile
            files.append(NamedFile(f"portrait-{position + 1:02d}.{key.rsplit('.', 1)[-1]}", data))
        if not files:
            await self.notifier.tell(job.chat_id, job.language, OriginalsGone())
            return
        archive = await asyncio.to_thread(_zip, files)
        if len(archive) <= self.upload_limit_bytes:
            outcome = await self.sender.send_zip(
                job.chat_id, NamedFile(f"pinglass-{job.id}.zip", archive), portraits=len(files), language=job.language
            )
        else:
            outcome = await self._send_groups(job.chat_id, files)
        if isinstance(outcome, NotUploaded):
            log.warning("originals of job %s not sent: %s", job.id, outcome.reason)
            await self.notifier.tell(job.chat_id, job.language, OriginalsNotSent())

    async def _send_groups(self, chat_id: int, files: Sequence[NamedFile]) -> UploadOutcome:
        start = 0
        for size in split_albums(len(files)):
            outcome = await self.sender.send_documents(chat_id, files[start : start + size])
            if isinstance(outcome, NotUploaded):
                return outcome
            start += size
        return Uploaded()


def _zip(files: Sequence[NamedFile]) -> bytes:
    buffer = io.BytesIO()
    # Images are already compressed: storing is as small as deflating and much cheaper.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.writestr(file.name, file.data)
    return buffer.getvalue()
