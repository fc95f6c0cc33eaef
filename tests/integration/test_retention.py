"""Retention: the housekeeping job deletes exactly what is due (time moved, not waited for), and
/forget removes one user's photos — files and rows — and nothing of anyone else's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.housekeeping import Housekeeping, HousekeepingReport
from storage import ledger
from storage.db import create_engine, create_sessionmaker
from storage.files import FileStore, LocalFileStore
from storage.migrate import upgrade_async
from storage.models import Avatar, GenerationJob, GenerationTask, ReferencePhoto, User, utcnow
from studio.credits import grant_line, reserve_line
from studio.generation import claim_key
from studio.states import AvatarStatus, JobStatus, TaskStatus
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, callback_answer, running_app

DAY = timedelta(days=1)


@dataclass
class Seeded:
    user_id: int
    avatar_id: int
    job_id: int | None
    reference_keys: list[str] = field(default_factory=list)
    result_keys: list[str] = field(default_factory=list)


async def seed_user(
    session: AsyncSession,
    files: FileStore,
    *,
    telegram_id: int,
    avatar_created: datetime,
    job_status: JobStatus | None = JobStatus.COMPLETED,
    job_finished: datetime | None = None,
    stored_at: datetime | None = None,
) -> Seeded:
    """A user with a photo set of two selfies and, optionally, a job with two stored portraits."""
    user = User(telegram_id=telegram_id, language="en")
    session.add(user)
    await session.flush()
    avatar = Avatar(user_id=user.id, status=AvatarStatus.READY, created_at=avatar_created, ready_at=avatar_created)
    session.add(avatar)
    await session.flush()
    seeded = Seeded(user.id, avatar.id, None)
    for slot in (1, 2):
        key = f"refs/{user.id}/{avatar.id}/{slot}.jpg"
        await files.put(key, b"selfie %d" % slot)
        session.add(
            ReferencePhoto(
                avatar_id=avatar.id,
                user_id=user.id,
                slot=slot,
                storage_key=key,
                size_bytes=8,
                width=1024,
                height=1280,
                sha256=f"{telegram_id}{slot}".ljust(64, "0"),
            )
        )
        seeded.reference_keys.append(key)
    if job_status is None:
        return seeded
    job = GenerationJob(
        user_id=user.id,
        avatar_id=avatar.id,
        chat_id=telegram_id,
        style="professional",
        priority=100,
        status=job_status,
        photos_total=2,
        photos_completed=2,
        created_at=avatar_created,
        finished_at=job_finished,
    )
    session.add(job)
    await session.flush()
    seeded.job_id = job.id
    # Its two credits came from a grant and are reserved, as for any job (the money invariants check it).
    await ledger.record(session, user.id, grant_line(f"seed-{job.id}", 2, "seed"))
    await ledger.record(session, user.id, reserve_line(job.id, 2), job_id=job.id)
    for position in (0, 1):
        result_key, thumb_key = f"results/{job.id}/{position}.png", f"results/{job.id}/{position}.thumb.jpg"
        await files.put(result_key, b"portrait")
        await files.put(thumb_key, b"thumb")
        session.add(
            GenerationTask(
                job_id=job.id,
                position=position,
                prompt_index=position,
                seed=position,
                claim_key=claim_key(job.priority, job.created_at, job.id, position),
                status=TaskStatus.DELIVERED,
                stored_at=stored_at,
                result_key=result_key,
                thumb_key=thumb_key,
                telegram_file_id=f"file-{job.id}-{position}",
            )
        )
        seeded.result_keys += [result_key, thumb_key]
    return seeded


async def _migrated(url: str) -> async_sessionmaker[AsyncSession]:
    await upgrade_async(url)
    return create_sessionmaker(create_engine(url))


async def _reference_rows(sessionmaker: async_sessionmaker[AsyncSession], avatar_id: int) -> int:
    async with sessionmaker() as session:
        rows = await session.execute(select(ReferencePhoto.id).where(ReferencePhoto.avatar_id == avatar_id))
        return len(rows.all())


async def _result_keys(sessionmaker: async_sessionmaker[AsyncSession], job_id: int) -> list[str | None]:
    async with sessionmaker() as session:
        rows = await session.execute(select(GenerationTask.result_key).where(GenerationTask.job_id == job_id))
        return list(rows.scalars())


async def test_housekeeping_deletes_exactly_what_is_due(database_url: str, tmp_path: Path) -> None:
    sessionmaker = await _migrated(database_url)
    files = LocalFileStore(tmp_path / "files")
    now = utcnow()
    async with sessionmaker() as session:
        # Last job finished 31 days ago, portraits stored 91 days ago: selfies and portraits are due.
        expired = await seed_user(
            session, files, telegram_id=1, avatar_created=now - 95 * DAY, job_finished=now - 31 * DAY,
            stored_at=now - 91 * DAY,
        )  # fmt: skip
        # 29 and 89 days: nothing is due yet.
        recent = await seed_user(
            session, files, telegram_id=2, avatar_created=now - 95 * DAY, job_finished=now - 29 * DAY,
            stored_at=now - 89 * DAY,
        )  # fmt: skip
        # An old set whose owner has a pack in progress: kept, the provider may still need it.
        busy = await seed_user(
            session, files, telegram_id=3, avatar_created=now - 40 * DAY, job_status=JobStatus.PROCESSING,
            stored_at=now - 1 * DAY,
        )  # fmt: skip
        # A set never used for a pack, made 31 days ago: due.
        unused = await seed_user(session, files, telegram_id=4, avatar_created=now - 31 * DAY, job_status=None)
        await session.commit()
    orphans = ["results/999/0.png", "refs/999/999/stray.jpg"]
    for key in orphans:
        await files.put(key, b"left behind by a crash")

    housekeeping = Housekeeping(sessionmaker, files, reference_retention=30 * DAY, result_retention=90 * DAY)
    first = await housekeeping.run(now)
    assert first == HousekeepingReport(reference_sets=2, reference_files=4, result_files=4, orphan_files=0)
    kept = set(recent.reference_keys + recent.result_keys + busy.reference_keys + busy.result_keys)
    assert set(await files.list_keys()) == kept | set(orphans), "orphans younger than the grace period stay"
    assert await _reference_rows(sessionmaker, expired.avatar_id) == 0
    assert await _reference_rows(sessionmaker, unused.avatar_id) == 0
    assert await _reference_rows(sessionmaker, recent.avatar_id) == 2
    assert await _reference_rows(sessionmaker, busy.avatar_id) == 2
    assert expired.job_id is not None and recent.job_id is not None
    assert await _result_keys(sessionmaker, expired.job_id) == [None, None]
    assert None not in await _result_keys(sessionmaker, recent.job_id)
    async with sessionmaker() as session:
        statuses = {row.id: row.status for row in await session.execute(select(Avatar.id, Avatar.status))}
    assert statuses[expired.avatar_id] == statuses[unused.avatar_id] == AvatarStatus.DELETED
    assert statuses[recent.avatar_id] == statuses[busy.avatar_id] == AvatarStatus.READY

    # Seven hours later the stray files are past the grace period; everything else is unchanged.
    later = await housekeeping.run(now + timedelta(hours=7))
    assert later == HousekeepingReport(orphan_files=2)
    assert set(await files.list_keys()) == kept
    # Two days later still: the recent user's selfies fall due (29 + 2 > 30), portraits (89 + 2 > 90) too.
    final = await housekeeping.run(now + 2 * DAY)
    assert final == HousekeepingReport(reference_sets=1, reference_files=2, result_files=4, orphan_files=0)
    assert set(await files.list_keys()) == set(busy.reference_keys + busy.result_keys)


async def test_forget_removes_one_users_photos_after_confirmation(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, database_url, tmp_path / "files", webhook=True)
    async with running_app(settings) as app:
        alice, bob = fake_telegram.user(language_code="en"), fake_telegram.user(language_code="en")
        now = utcnow()
        async with app.sessionmaker() as session:
            mine = await seed_user(
                session, app.files, telegram_id=alice.id, avatar_created=now - DAY, job_finished=now, stored_at=now
            )
            theirs = await seed_user(
                session, app.files, telegram_id=bob.id, avatar_created=now - DAY, job_finished=now, stored_at=now
            )
            await session.commit()
        everything = set(await app.files.list_keys())

        await alice.send_command("/forget")
        question = await alice.wait_reply(lambda m: bool(m.buttons), timeout=10)
        assert "cannot be undone" in question.content
        await alice.click("Keep them")
        await fake_telegram.wait_until(lambda: "nothing was deleted" in _text_of(alice, question.message_id))
        assert set(await app.files.list_keys()) == everything

        await alice.send_command("/forget")
        await alice.wait_reply(lambda m: bool(m.buttons), timeout=10)
        await alice.click("Yes, delete them")
        await fake_telegram.wait_until(lambda: any("have been deleted" in m.content for m in alice.messages))

        assert set(await app.files.list_keys()) == set(theirs.reference_keys + theirs.result_keys)
        assert await _reference_rows(app.sessionmaker, mine.avatar_id) == 0
        assert await _reference_rows(app.sessionmaker, theirs.avatar_id) == 2
        assert mine.job_id is not None and theirs.job_id is not None
        assert await _result_keys(app.sessionmaker, mine.job_id) == [None, None]
        assert None not in await _result_keys(app.sessionmaker, theirs.job_id)

        # Afterwards the same-photos button and the originals say the photos are gone.
        await alice.send_command("/start")
        start = await alice.wait_reply(timeout=10)
        assert not any("previous photos" in button["text"] for button in start.buttons)


async def test_forget_waits_for_a_pack_in_progress(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, database_url, tmp_path / "files", webhook=True)
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        async with app.sessionmaker() as session:
            busy = await seed_user(
                session, app.files, telegram_id=user.id, avatar_created=utcnow(), job_status=JobStatus.PROCESSING
            )
            await session.commit()
        await user.send_command("/forget")
        await user.wait_reply(lambda m: bool(m.buttons), timeout=10)
        query_id = await user.click("Yes, delete them")
        answer = await callback_answer(fake_telegram, query_id)
        assert "in progress" in answer["text"]
        assert set(await app.files.list_keys()) == set(busy.reference_keys + busy.result_keys)


def _text_of(user: object, message_id: int) -> str:
    for message in user.messages:  # type: ignore[attr-defined]
        if message.message_id == message_id:
            return str(message.content)
    return ""
