"""OriginalsService on a real SQLite database (a migrated copy per test) and a local file store, with
the in-process RecordingDocumentSender for the chat. Uploads to Telegram run end to end in
tests/integration/test_after_pack.py."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.notices import OriginalsGone, OriginalsNotSent
from scheduler.notify import RecordingNotifier
from scheduler.originals import OriginalsService, RecordingDocumentSender
from storage.db import create_engine, create_sessionmaker
from storage.files import LocalFileStore
from storage.models import GenerationJob, GenerationTask, User, utcnow
from studio.delivery import split_albums
from studio.generation import claim_key
from studio.states import JobStatus, TaskStatus


@dataclass
class Rig:
    sessionmaker: async_sessionmaker[AsyncSession]
    files: LocalFileStore
    sender: RecordingDocumentSender
    notifier: RecordingNotifier
    service: OriginalsService

    async def pack(self, delivered: int, telegram_id: int = 700_001) -> GenerationJob:
        """A finished job whose ``delivered`` portraits (inserted in reverse) are stored."""
        async with self.sessionmaker() as session:
            user = User(telegram_id=telegram_id, language="en")
            session.add(user)
            await session.flush()
            job = GenerationJob(
                user_id=user.id,
                chat_id=telegram_id,
                language="en",
                style="professional",
                priority=1,
                status=JobStatus.COMPLETED,
                photos_total=delivered,
                created_at=utcnow(),
            )
            session.add(job)
            await session.flush()
            for position in reversed(range(delivered)):
                key = f"results/{job.id}/{position}.png"
                await self.files.put(key, f"portrait {position}".encode())
                session.add(self._task(job, position, TaskStatus.DELIVERED, key))
            await session.commit()
        return job

    async def add_task(self, job: GenerationJob, position: int, status: str, key: str | None) -> None:
        async with self.sessionmaker() as session:
            session.add(self._task(job, position, status, key))
            await session.commit()

    @staticmethod
    def _task(job: GenerationJob, position: int, status: str, key: str | None) -> GenerationTask:
        return GenerationTask(
            job_id=job.id,
            position=position,
            prompt_index=position,
            seed=position,
            claim_key=claim_key(job.priority, job.created_at, job.id, position),
            status=status,
            result_key=key,
        )

    async def run(self, job: GenerationJob) -> None:
        assert self.service.request(job) is True
        await self.service.wait(job.id)


@pytest_asyncio.fixture
async def rig(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    engine = create_engine(sqlite_url)
    sessionmaker = create_sessionmaker(engine)
    files = LocalFileStore(tmp_path / "files")
    sender, notifier = RecordingDocumentSender(), RecordingNotifier()
    service = OriginalsService(sessionmaker, files=files, sender=sender, notifier=notifier)
    try:
        yield Rig(sessionmaker, files, sender, notifier, service)
    finally:
        await service.stop()
        await engine.dispose()


def _unzipped(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def test_the_delivered_originals_go_as_one_zip_in_pack_order(rig: Rig) -> None:
    job = await rig.pack(delivered=3)
    await rig.add_task(job, 3, TaskStatus.STORED, f"results/{job.id}/3.png")  # not delivered yet
    await rig.add_task(job, 4, TaskStatus.DELIVERED, None)  # removed by retention

    assert await rig.service.available(job.id, job.user_id) == 3
    await rig.run(job)

    [(chat_id, archive, portraits, language)] = rig.sender.zips
    assert (chat_id, archive.name, portraits, language) == (job.chat_id, f"pinglass-{job.id}.zip", 3, job.language)
    assert list(_unzipped(archive.data).items()) == [
        ("portrait-01.png", b"portrait 0"),
        ("portrait-02.png", b"portrait 1"),
        ("portrait-03.png", b"portrait 2"),
    ]
    assert rig.sender.groups == [] and rig.notifier.told == []


async def test_someone_elses_job_has_no_originals(rig: Rig) -> None:
    job = await rig.pack(delivered=2)
    other = await rig.pack(delivered=1, telegram_id=700_002)

    assert await rig.service.available(job.id, other.user_id) == 0
    assert await rig.service.available(other.id, other.user_id) == 1


async def test_one_run_per_job_at_a_time(rig: Rig) -> None:
    job = await rig.pack(delivered=2)

    assert rig.service.request(job) is True
    assert rig.service.request(job) is False  # a second tap while the first run is on its way
    await rig.service.wait(job.id)
    await rig.run(job)  # a tap after it finished sends again

    assert len(rig.sender.zips) == 2


async def test_a_file_gone_from_the_store_is_left_out(rig: Rig) -> None:
    job = await rig.pack(delivered=3)
    await rig.files.delete(f"results/{job.id}/1.png")

    await rig.run(job)

    [(_, archive, portraits, _)] = rig.sender.zips
    assert (list(_unzipped(archive.data)), portraits) == (["portrait-01.png", "portrait-03.png"], 2)


async def test_with_every_file_gone_the_user_is_told(rig: Rig) -> None:
    job = await rig.pack(delivered=2)
    for position in range(2):
        await rig.files.delete(f"results/{job.id}/{position}.png")

    await rig.run(job)

    assert rig.notifier.told == [(job.chat_id, job.language, OriginalsGone())]
    assert rig.sender.zips == [] and rig.sender.groups == []


@pytest.mark.parametrize("count", [1, 11, 23])
async def test_over_the_upload_limit_they_go_as_document_groups(rig: Rig, count: int) -> None:
    job = await rig.pack(delivered=count)
    rig.service.upload_limit_bytes = 64  # smaller than any archive

    await rig.run(job)

    assert rig.sender.zips == []
    assert [len(names) for _, names in rig.sender.groups] == split_albums(count)
    names = [name for _, group in rig.sender.groups for name in group]
    assert names == [f"portrait-{position:02d}.png" for position in range(1, count + 1)]
    assert {chat_id for chat_id, _ in rig.sender.groups} == {job.chat_id}


async def test_a_refused_group_stops_the_groups_after_it(rig: Rig) -> None:
    job = await rig.pack(delivered=23)
    rig.service.upload_limit_bytes = 64
    rig.sender.refused = {1}

    await rig.run(job)

    assert [len(names) for _, names in rig.sender.groups] == split_albums(23)[:1]
    assert rig.notifier.told == [(job.chat_id, job.language, OriginalsNotSent())]
    await rig.run(job)  # a later tap starts from the first again
    assert [len(names) for _, names in rig.sender.groups] == split_albums(23)[:1] * 2 + split_albums(23)[1:]


async def test_a_refused_archive_tells_the_user_to_ask_again(rig: Rig) -> None:
    job = await rig.pack(delivered=3)
    rig.sender.refused = {0}

    await rig.run(job)

    assert rig.sender.zips == []
    assert rig.notifier.told == [(job.chat_id, job.language, OriginalsNotSent())]
