"""Delivery over real HTTP: albums of valid sizes in the order portraits are stored, one progress message, 429s and partial
album failures survived with every photo exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import Application
from storage.models import Delivery, GenerationJob, GenerationTask, utcnow
from studio.states import DeliveryStatus, JobStatus, TaskStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie, render_result_png
from tests.fakes.telegram import FakeTelegram
from tests.harness import album_sizes, app_settings, running_app


@contextlib.asynccontextmanager
async def delivery_app(
    fake: FakeTelegram, url: str, tmp_path: Path, *, latency: tuple[float, float]
) -> AsyncIterator[Application]:
    """The app in webhook mode with a fake Kie.ai fast enough that delivery is what a test watches."""
    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=latency) as kie:
        settings = app_settings(
            fake, url, tmp_path / "files", webhook=True, **provider_settings(kie, POLL_INTERVAL_SECONDS=1)
        )
        async with running_app(settings) as app:
            yield app


async def _until_finished(app: object, job_id: int, timeout: float = 60) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while (await job_row(app.sessionmaker, job_id)).status not in (  # type: ignore[attr-defined]
            JobStatus.COMPLETED,
            JobStatus.PARTIAL,
            JobStatus.FAILED,
        ):
            await asyncio.sleep(0.1)


def _delivered_photos(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.file_unique_id or "" for m in fake.sent_messages(chat_id) if m.kind == "photo"]


@pytest.mark.parametrize("pack", ["p7", "p15", "p23"])
async def test_pack_arrives_as_valid_albums_with_one_progress_message(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, pack: str
) -> None:
    async with delivery_app(fake_telegram, sqlite_url, tmp_path, latency=(0.02, 0.3)) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack=pack)
        app.signals.job_queued()
        await _until_finished(app, job_id)
        await user.wait_reply(lambda m: "portraits are here" in m.content, timeout=10)
        job = await job_row(app.sessionmaker, job_id)
        total = job.photos_total
        assert job.status == JobStatus.COMPLETED
        photos = _delivered_photos(fake_telegram, user.id)
        assert len(photos) == total and len(set(photos)) == total
        sizes = album_sizes(fake_telegram, user.id)
        assert sum(sizes) == total and all(1 <= size <= 10 for size in sizes)
        progress = [m for m in user.messages if m.message_id == job.progress_message_id]
        assert progress and f"{total} of {total} delivered" in progress[0].content
        assert any("All" in m.content and "portraits are here" in m.content for m in user.messages)
        # as the delivery records say: chunk by chunk, each chunk's portraits in its order
        async with app.sessionmaker() as session:
            chunks = (
                await session.execute(select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.chunk_index))
            ).scalars()
            file_ids = dict(
                (
                    await session.execute(
                        select(GenerationTask.id, GenerationTask.telegram_file_id).where(
                            GenerationTask.job_id == job_id
                        )
                    )
                ).all()
            )
            expected_order = [file_ids[task_id] for chunk in chunks for task_id in chunk.task_ids]
        chat_order = [m.file_id for m in fake_telegram.sent_messages(user.id) if m.kind == "photo"]
        assert None not in expected_order and chat_order == expected_order
        # the caption names the style, on the first item of the first album only
        captions = [m.caption for m in fake_telegram.sent_messages(user.id) if m.kind == "photo" and m.caption]
        assert captions == ["Your photo session — Professional style"]


async def test_429_on_every_third_send_and_a_partial_album_still_deliver_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with delivery_app(fake_telegram, sqlite_url, tmp_path, latency=(0.02, 0.2)) as app:
        user = fake_telegram.user(language_code="ru")
        fake_telegram.inject("sendMediaGroup", status=429, retry_after=1, every=3, chat_id=user.id)
        fake_telegram.inject_album_failure(4, retry_after=1, chat_id=user.id)
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
        app.signals.job_queued()
        await _until_finished(app, job_id, timeout=90)
        photos = _delivered_photos(fake_telegram, user.id)
        assert len(photos) == 23
        assert len(set(photos)) == 23, "a portrait was delivered twice"
        assert (await job_row(app.sessionmaker, job_id)).status == JobStatus.COMPLETED


async def test_user_who_blocks_the_bot_gets_the_rest_after_unblocking(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with delivery_app(fake_telegram, sqlite_url, tmp_path, latency=(0.02, 0.2)) as app:
        user = fake_telegram.user(language_code="en")
        await user.block_bot()
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        app.signals.job_queued()
        async with asyncio.timeout(30):
            while (await job_row(app.sessionmaker, job_id)).status != JobStatus.DELIVERING:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert _delivered_photos(fake_telegram, user.id) == []
        await user.unblock_bot()
        await user.send_command("/status")
        await _until_finished(app, job_id)
        assert len(set(_delivered_photos(fake_telegram, user.id))) == 7


async def test_an_album_a_crash_left_unconfirmed_is_offered_for_resend_not_sent_twice(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """Killed between handing an album to Telegram and recording that it arrived: nobody knows if it
    did, so it is not sent again by itself (at most once) — the user gets a Resend button instead."""
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True)
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p15")
        async with app.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            assert job is not None
            job.status, job.photos_completed, job.started_at = JobStatus.DELIVERING, 15, utcnow()
            tasks = []
            for position in range(15):
                key = f"results/{job_id}/{position}.png"
                await app.files.put(key, render_result_png(f"task-{position}", (256, 320)))
                task = GenerationTask(
                    job_id=job_id,
                    position=position,
                    prompt_index=position,
                    seed=position,
                    status=TaskStatus.STORED,
                    result_key=key,
                    stored_at=utcnow(),
                )
                session.add(task)
                tasks.append(task)
            await session.flush()
            # The dead process had handed the first album to Telegram and never heard back.
            session.add(
                Delivery(
                    job_id=job_id,
                    chunk_index=0,
                    task_ids=[task.id for task in tasks[:10]],
                    status=DeliveryStatus.SENDING,
                    message_ids=[],
                )
            )
            await session.commit()
        app.signals.task_stored()
        await _until_finished(app, job_id)
        assert len(_delivered_photos(fake_telegram, user.id)) == 5  # only the album that never left
        notice = await user.wait_reply(lambda m: "may not have arrived" in m.content, timeout=10)
        await user.click("Resend")
        async with asyncio.timeout(20):
            while len(_delivered_photos(fake_telegram, user.id)) < 15:
                await asyncio.sleep(0.1)
        await user.press_button(notice.message_id, notice.buttons[0]["callback_data"])  # a second tap: no-op
        await asyncio.sleep(1.0)
        photos = _delivered_photos(fake_telegram, user.id)
        assert len(photos) == 15 and len(set(photos)) == 15
        assert (await job_row(app.sessionmaker, job_id)).status == JobStatus.COMPLETED
