"""After the pack, over real HTTP: packs of 21 and 22 (portraits skipped by the providers), the
closing buttons (originals as a ZIP or documents, the returned credits in one tap, the same photos
again), and the progress message's Cancel button while nothing has been generated."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import Application
from bot.callbacks import JobCb
from storage import ledger
from storage.models import GenerationJob, GenerationTask
from studio.states import JobStatus, TaskStatus
from tests.engine_support import FAST_POLICY, job_row, provider_settings, seed_paid_job, task_statuses
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.harness import album_sizes, app_settings, callback_answer, running_app

# One Kie attempt per portrait and no fallback: a failed portrait is skipped and credited back. A pack
# whose every portrait fails opens Kie's breaker: a one-second cool-down lets the next pack start at
# once instead of after the default 30 s.
ONE_ATTEMPT_POLICY: dict[str, Any] = {
    "providers": [
        FAST_POLICY["providers"][0] | {"max_attempts": 1, "backoff_seconds": [0.05], "breaker_cooldown_seconds": 1.0}
    ]
}


def _settings(fake: FakeTelegram, url: str, tmp_path: Path, kie: FakeKie, **extra: Any) -> Any:
    return app_settings(
        fake,
        url,
        tmp_path / "files",
        webhook=True,
        **provider_settings(kie, POLL_INTERVAL_SECONDS=1, FALLBACK_POLICY=json.dumps(ONE_ATTEMPT_POLICY), **extra),
    )


async def _until(app: Application, job_id: int, statuses: tuple[str, ...], timeout: float = 60) -> GenerationJob:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while (job := await job_row(app.sessionmaker, job_id)).status not in statuses:
            await asyncio.sleep(0.1)
    return job


def _closing_message(user: FakeUser) -> Any:
    return next(m for m in reversed(user.messages) if any("Originals" in b["text"] for b in m.buttons))


@pytest.mark.parametrize("skipped", [1, 2])
async def test_partial_pack_splits_validly_and_its_credits_start_a_new_pack_in_one_tap(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, skipped: int
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        kie.queue_outcomes(*[Outcome("fail")] * skipped)
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
            app.signals.job_queued()
            job = await _until(app, job_id, (JobStatus.PARTIAL, JobStatus.COMPLETED, JobStatus.FAILED))
            delivered = 23 - skipped
            assert job.status == JobStatus.PARTIAL and job.photos_failed == skipped
            sizes = album_sizes(fake_telegram, user.id)
            # Portraits stream: albums of 2-10 as they become ready, a lone one by sendPhoto.
            assert sum(sizes) == delivered and all(1 <= size <= 10 for size in sizes), sizes
            assert not [c for c in fake_telegram.calls("sendMediaGroup") if len(c.params["media"]) < 2]
            await user.wait_reply(lambda m: "could not be made" in m.content, timeout=10)
            closing = _closing_message(user)
            labels = [button["text"] for button in closing.buttons]
            assert any("same photos" in label for label in labels) and any("New photos" in label for label in labels)
            use_label = "Use 1 credit" if skipped == 1 else f"Use {skipped} credits"  # plural forms
            assert any(label.endswith(use_label) for label in labels)
            progress = next(m for m in user.messages if m.message_id == job.progress_message_id)
            assert not progress.buttons, "Cancel must be gone once portraits exist"

            async with app.sessionmaker() as session:
                assert await ledger.balance(session, job.user_id) == skipped
            await user.click(use_label)
            await user.wait_reply(lambda m: f"{skipped} portraits are queued" in m.content, timeout=10)
            second_tap = await user.click(use_label)  # makes no second pack
            assert "already been used" in (await callback_answer(fake_telegram, second_tap))["text"]
            async with app.sessionmaker() as session:
                new_jobs = (
                    (await session.execute(select(GenerationJob).where(GenerationJob.id != job_id))).scalars().all()
                )
            assert len(new_jobs) == 1
            again = new_jobs[0]
            assert (again.photos_total, again.style, again.avatar_id) == (skipped, job.style, job.avatar_id)
            again = await _until(app, again.id, (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED))
            assert again.status == JobStatus.COMPLETED
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, job.user_id) == 0


@contextlib.asynccontextmanager
async def finished_pack(
    fake: FakeTelegram, url: str, tmp_path: Path, pack: str
) -> AsyncIterator[tuple[Application, FakeUser, int]]:
    """A running app whose user has just received a complete pack and its closing message."""
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        async with running_app(_settings(fake, url, tmp_path, kie)) as app:
            user = fake.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack=pack)
            app.signals.job_queued()
            await _until(app, job_id, (JobStatus.COMPLETED,))
            await user.wait_reply(lambda m: any("Originals" in b["text"] for b in m.buttons), timeout=10)
            yield app, user, job_id


async def test_originals_arrive_as_one_zip_with_every_portrait(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with finished_pack(fake_telegram, sqlite_url, tmp_path, "p7") as (app, user, job_id):
        await user.click("Originals")
        document = await user.wait_reply(lambda m: m.kind == "document", timeout=20)
        assert document.file_id is not None
        archive = zipfile.ZipFile(io.BytesIO(fake_telegram.file_bytes(document.file_id)))
        names = archive.namelist()
        assert len(names) == 7 and names == sorted(names)
        async with app.sessionmaker() as session:
            keys = (
                await session.execute(
                    select(GenerationTask.result_key)
                    .where(GenerationTask.job_id == job_id)
                    .order_by(GenerationTask.position)
                )
            ).scalars()
            originals = [await app.files.get(key or "") for key in keys]
        assert [archive.read(name) for name in names] == originals  # full resolution, byte for byte


@pytest.mark.telegram_flood_off(
    reason="23 portraits and then 23 originals in one chat within seconds, more than Telegram's ~40 per 30 s; "
    "the app's real pace (TELEGRAM_CHAT_RATE=1) keeps to it but would make the test wait ~40 s"
)
async def test_originals_too_big_for_one_zip_arrive_as_document_groups(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with finished_pack(fake_telegram, sqlite_url, tmp_path, "p23") as (app, user, _job_id):
        app.originals.upload_limit_bytes = 1024  # every pack is "over 50 MB" for this test
        await user.click("Originals")
        async with asyncio.timeout(30):
            while sum(album_sizes(fake_telegram, user.id, kind="document")) < 23:
                await asyncio.sleep(0.1)
        sizes = album_sizes(fake_telegram, user.id, kind="document")
        assert sum(sizes) == 23 and all(2 <= size <= 10 for size in sizes), sizes
        documents = [m for m in fake_telegram.sent_messages(user.id) if m.kind == "document"]
        assert [m.raw["document"]["file_name"] for m in documents] == [f"portrait-{i:02d}.png" for i in range(1, 24)]


async def test_same_photos_button_offers_the_styles_for_that_set(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with finished_pack(fake_telegram, sqlite_url, tmp_path, "p7") as (_app, user, _job_id):
        await user.click("same photos")
        styles = await user.wait_reply(lambda m: any("Professional" in b["text"] for b in m.buttons), timeout=10)
        assert {b["text"] for b in styles.buttons} >= {"Professional", "Lifestyle", "Creative"}


async def test_cancel_on_the_progress_message_before_any_portrait_refunds_everything(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    # Portraits take long enough that the user cancels before the first one exists.
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(4.0, 5.0)) as kie:
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            progress = await user.wait_reply(lambda m: "Generating your portraits" in m.content, timeout=10)
            assert [b["text"] for b in progress.buttons] and "Cancel" in progress.buttons[0]["text"]
            await kie.wait_for_task_count(7, within_seconds=10)
            await user.click("Cancel")
            await user.wait_reply(lambda m: "cancel" in m.content.lower() and m.message_id != progress.message_id)
            job = await job_row(app.sessionmaker, job_id)
            assert job.status == JobStatus.CANCELLED
            assert await task_statuses(app.sessionmaker, job_id) == {TaskStatus.SKIPPED: 7}
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, job.user_id) == 7  # every credit back, once
            await kie.wait_for(lambda: all(task.final_state for task in kie.tasks.values()), within_seconds=15)
            await asyncio.sleep(1.5)  # the late results come back and find nothing to deliver into
            assert not [m for m in fake_telegram.sent_messages(user.id) if m.kind == "photo"]
            refreshed = next(m for m in user.messages if m.message_id == progress.message_id)
            assert not refreshed.buttons
            async with app.sessionmaker() as session:
                stored = await session.scalar(
                    select(func.count()).where(GenerationTask.job_id == job_id, GenerationTask.result_key.is_not(None))
                )
                assert await ledger.balance(session, job.user_id) == 7
            assert stored == 0


async def test_cancel_is_refused_once_a_portrait_exists(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.1)) as kie:
        kie.queue_outcomes(Outcome(latency=0.05), *[Outcome(latency=30.0)] * 6)
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            progress = await user.wait_reply(lambda m: "Generating your portraits" in m.content, timeout=10)
            async with asyncio.timeout(20):
                while (await job_row(app.sessionmaker, job_id)).photos_completed < 1:
                    await asyncio.sleep(0.1)
            # The Cancel button of the queued notice or of an older copy of the progress message.
            stale_cancel = JobCb(job_id=job_id, action="cancel").pack()
            query_id = await user.press_button(progress.message_id, stale_cancel)
            assert "can no longer be cancelled" in (await callback_answer(fake_telegram, query_id))["text"]
            assert (await job_row(app.sessionmaker, job_id)).status == JobStatus.PROCESSING
