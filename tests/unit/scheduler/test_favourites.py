"""FavouritesService on a real SQLite database and a local file store, with a recording album sender:
only the owner's reaction on a portrait counts, a repeated update records one event, a favourite
without a Telegram file id is uploaded again, and a profile photo whose file is gone says so. The
whole flow over real HTTP is tests/integration/test_favourites.py."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest_asyncio
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.delivery import Portrait, SendOutcome, Sent
from scheduler.favourites import FavouritesService, Reaction
from scheduler.notices import OriginalsGone, ProgressShown
from scheduler.notify import RecordingNotifier
from storage.db import create_engine, create_sessionmaker
from storage.deliveries import record_portrait_messages
from storage.files import LocalFileStore
from storage.models import Event, GenerationJob, GenerationTask, User, utcnow
from studio.generation import claim_key
from studio.states import JobStatus, TaskStatus


class RecordingAlbumSender:
    def __init__(self) -> None:
        self.sent: list[tuple[int, list[Portrait], str | None]] = []

    def text(self, key: str, language: str, **values: Any) -> str:
        return key

    async def send(self, chat_id: int, items: Sequence[Portrait], caption: str | None) -> SendOutcome:
        self.sent.append((chat_id, list(items), caption))
        first = 1000 + len(self.sent) * 10
        return Sent([f"f{first + i}" for i in range(len(items))], [first + i for i in range(len(items))])

    async def edit_progress(self, chat_id: int, message_id: int, language: str, progress: ProgressShown) -> SendOutcome:
        raise AssertionError("favourites never edit progress")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


class Rig:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], files: LocalFileStore) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.sender = RecordingAlbumSender()
        self.notifier = RecordingNotifier()
        self.service = FavouritesService(sessionmaker, files=files, sender=self.sender, notifier=self.notifier)

    async def pack(self, telegram_id: int, file_ids: Sequence[str | None]) -> tuple[int, list[int]]:
        """A delivered pack shown in messages 1, 2, …; returns (user id, task ids)."""
        async with self.sessionmaker() as session:
            user = User(telegram_id=telegram_id, language="en")
            session.add(user)
            await session.flush()
            job = GenerationJob(
                user_id=user.id,
                chat_id=telegram_id,
                style="creative",
                priority=1,
                status=JobStatus.COMPLETED,
                photos_total=len(file_ids),
                created_at=utcnow(),
            )
            session.add(job)
            await session.flush()
            tasks = []
            for position, file_id in enumerate(file_ids):
                key = f"results/{job.id}/{position}.png"
                await self.files.put(key, _png())
                task = GenerationTask(
                    job_id=job.id,
                    position=position,
                    prompt_index=position,
                    seed=position,
                    claim_key=claim_key(1, job.created_at, job.id, position),
                    status=TaskStatus.DELIVERED,
                    result_key=key,
                    telegram_file_id=file_id,
                )
                session.add(task)
                tasks.append(task)
            await session.flush()
            ids = [task.id for task in tasks]
            await record_portrait_messages(session, telegram_id, ids, list(range(1, len(ids) + 1)))
            await session.commit()
            return user.id, ids


@pytest_asyncio.fixture
async def rig(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    engine = create_engine(sqlite_url)
    rig = Rig(create_sessionmaker(engine), LocalFileStore(tmp_path / "files"))
    try:
        yield rig
    finally:
        await rig.service.stop()
        await engine.dispose()


async def _events(rig: Rig) -> int:
    async with rig.sessionmaker() as session:
        query = select(func.count()).select_from(Event).where(Event.name == "favourite_added")
        return int((await session.execute(query)).scalar_one())


async def test_only_the_owners_reaction_on_a_portrait_counts(rig: Rig) -> None:
    owner, _ = await rig.pack(800_001, ["a", "b"])
    stranger, _ = await rig.pack(800_002, ["c"])
    react = rig.service.react
    assert await react(stranger, 800_001, 1, ["❤"]) == Reaction.NOT_A_PORTRAIT  # someone else's portrait
    assert await react(owner, 800_001, 99, ["❤"]) == Reaction.NOT_A_PORTRAIT  # not a portrait message
    assert await react(owner, 800_001, 1, ["❤"]) == Reaction.MARKED
    assert await react(owner, 800_001, 1, ["❤"]) == Reaction.UNCHANGED  # the same update again
    assert await react(owner, 800_001, 2, ["👎"]) == Reaction.UNCHANGED
    assert await react(owner, 800_001, 1, []) == Reaction.UNMARKED
    assert await react(owner, 800_001, 1, []) == Reaction.UNCHANGED
    assert await _events(rig) == 1


async def test_resend_uses_file_ids_and_uploads_a_favourite_without_one(rig: Rig) -> None:
    owner, tasks = await rig.pack(800_003, ["a", None, "c"])
    assert await rig.service.resend(owner, 800_003) == 0  # nothing marked: nothing sent
    for message_id in (1, 2, 3):
        await rig.service.react(owner, 800_003, message_id, ["🔥"])
    assert await rig.service.resend(owner, 800_003) == 3
    await rig.service.wait()
    [(chat_id, items, _)] = rig.sender.sent
    assert chat_id == 800_003 and [item.file_id for item in items] == ["a", None, "c"]
    assert items[1].data is not None and items[1].data[:2] == b"\xff\xd8"  # re-uploaded as a JPEG photo
    # The resent copies are portraits too: a reaction on one reaches the same task.
    assert await rig.service.react(owner, 800_003, 1011, []) == Reaction.UNMARKED


async def test_a_profile_photo_whose_file_is_gone_says_so(rig: Rig) -> None:
    owner, tasks = await rig.pack(800_004, ["a"])
    async with rig.sessionmaker() as session:
        task = await session.get(GenerationTask, tasks[0])
        assert task is not None
        await rig.files.delete(task.result_key or "")
    request = await rig.service.request_profile_photo(task.job_id, owner, 800_004, "en")
    assert request.started
    await rig.service.wait()
    assert rig.sender.sent == [] and rig.notifier.notices == [OriginalsGone()]
    assert not (await rig.service.request_profile_photo(task.job_id, owner + 1, 800_004, "en")).started
