"""ExampleService on a real SQLite database: the admin's selfies go through the intake's checks, the
fifth starts one free job per style (nothing reserved), a photo after that is refused without being
taken, /examples while a set is made shows its progress, and a set a style got nothing from fails
while the set live before stays."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.examples import NOT_COLLECTING, ExampleService
from scheduler.intake import IncomingPhoto, IntakeLimits, IntakeService
from scheduler.signals import WorkSignals
from storage import avatars as avatar_queries
from storage.files import LocalFileStore
from storage.models import ExampleJob, ExampleSet, GenerationJob, LedgerEntry, User
from studio.catalogue import load_catalogue
from studio.examples import ExampleSetStatus
from studio.states import JobStatus
from tests.image_corpus import selfie_like_jpeg

LIMITS = IntakeLimits(max_photo_bytes=20 * 1024 * 1024, min_photo_side=512, rejects_per_hour=20)


def _photo(seed: int) -> IncomingPhoto:
    async def fetch() -> bytes:
        return selfie_like_jpeg(seed=seed)

    return IncomingPhoto(file_unique_id=f"u{seed}", file_size=200_000, fetch=fetch)


async def test_five_selfies_start_one_free_job_per_style_and_the_set_then_takes_nothing(
    sqlite_sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    catalogue = load_catalogue()
    files = LocalFileStore(tmp_path / "files")
    intake = IntakeService(sqlite_sessionmaker, catalogue=catalogue, files=files, limits=LIMITS)
    signals = WorkSignals()
    queued: list[bool] = []
    signals.on_job_queued(lambda: queued.append(True))
    service = ExampleService(sqlite_sessionmaker, catalogue=catalogue, intake=intake, files=files, signals=signals)
    async with sqlite_sessionmaker() as session:
        admin = User(telegram_id=42, language="en")
        session.add(admin)
        await session.commit()

    start = await service.begin(admin)
    assert start.set_id is not None and start.current is None
    taken = [await service.take_photo(admin, start.set_id, _photo(seed)) for seed in range(4)]
    assert [t.count for t in taken] == [1, 2, 3, 4] and not any(t.started for t in taken)
    again = await service.take_photo(admin, start.set_id, _photo(0))
    assert again.reason_key == "photo.rejected.duplicate" and not again.accepted
    assert not queued
    fifth = await service.take_photo(admin, start.set_id, _photo(4))
    assert fifth.started and fifth.count == 5 and queued == [True]
    sixth = await service.take_photo(admin, start.set_id, _photo(5))
    assert sixth.reason_key == NOT_COLLECTING and not sixth.accepted

    async with sqlite_sessionmaker() as session:
        example_set = await session.get(ExampleSet, start.set_id)
        assert example_set is not None and example_set.status == ExampleSetStatus.GENERATING
        assert example_set.avatar_id is not None
        assert await avatar_queries.photo_count(session, example_set.avatar_id) == 5
        jobs = (
            (
                await session.execute(
                    select(GenerationJob)
                    .join(ExampleJob, ExampleJob.job_id == GenerationJob.id)
                    .order_by(GenerationJob.id)
                )
            )
            .scalars()
            .all()
        )
        assert [(j.style, j.photos_total, j.priority, j.order_id) for j in jobs] == [
            (style.id, 4, 0, None) for style in catalogue.styles
        ]
        assert (await session.execute(select(func.count()).select_from(LedgerEntry))).scalar_one() == 0

    busy = await service.begin(admin)
    assert busy.set_id is None and busy.generating is not None
    assert (busy.generating.ready, busy.generating.total) == (0, 12)

    # Every job ends with nothing made: the set fails, and /examples says so when it starts the next one.
    async with sqlite_sessionmaker() as session:
        await session.execute(update(GenerationJob).values(status=JobStatus.FAILED))
        await session.commit()
    fresh = await service.begin(admin)
    assert fresh.set_id is not None and fresh.current is not None
    assert fresh.current.status == ExampleSetStatus.FAILED
    assert await service.showcase() == []
