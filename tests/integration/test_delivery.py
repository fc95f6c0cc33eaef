"""Delivery over real HTTP: portraits stream in the order they are stored, in albums of valid sizes, with
one progress message; 429s, partial albums, 5xx, lost leases and refused portraits survived exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import Application
from storage import deliveries
from storage.models import Delivery, GenerationJob, GenerationTask, LedgerEntry, utcnow
from studio.generation import claim_key
from studio.states import DeliveryStatus, JobStatus, LedgerReason, TaskStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job, task_statuses
from tests.fakes.kie import FakeKie, Latency, render_result_png
from tests.fakes.telegram import TELEGRAM_FLOOD_LIMITS, FakeTelegram
from tests.harness import album_sizes, app_settings, running_app


@contextlib.asynccontextmanager
async def delivery_app(
    fake: FakeTelegram, url: str, tmp_path: Path, *, latency: Latency, **overrides: Any
) -> AsyncIterator[Application]:
    """The app in webhook mode with a fake Kie.ai fast enough that delivery is what a test watches."""
    async with delivery_stack(fake, url, tmp_path, latency=latency, **overrides) as (app, _):
        yield app


@contextlib.asynccontextmanager
async def delivery_stack(
    fake: FakeTelegram, url: str, tmp_path: Path, *, latency: Latency, **overrides: Any
) -> AsyncIterator[tuple[Application, FakeKie]]:
    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=latency) as kie:
        settings = app_settings(
            fake,
            url,
            tmp_path / "files",
            webhook=True,
            # Telegram's real pace per chat (the harness lifts it for tests of other things).
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1, **({"TELEGRAM_CHAT_RATE": 1.0} | overrides)),
        )
        async with running_app(settings) as app:
            yield app, kie


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
        # as the delivery records say: sent chunk by sent chunk, each chunk's portraits in its order (a chunk
        # left open when a busy machine outlasted the delivery lease is failed, and its portraits go again)
        async with app.sessionmaker() as session:
            chunks = (
                await session.execute(
                    select(Delivery)
                    .where(Delivery.job_id == job_id, Delivery.status == DeliveryStatus.SENT)
                    .order_by(Delivery.chunk_index)
                )
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
        # each photo message names the portrait it shows (a reply or a reaction to it finds that portrait)
        async with app.sessionmaker() as session:
            for message in (m for m in fake_telegram.sent_messages(user.id) if m.kind == "photo"):
                shown = await deliveries.portrait_for_message(session, user.id, message.message_id)
                assert shown is not None and shown.telegram_file_id == message.file_id
            progress_id = job.progress_message_id or 0
            assert await deliveries.portrait_for_message(session, user.id, progress_id) is None
        # the caption names the style, on the first item of the first album only
        captions = [m.caption for m in fake_telegram.sent_messages(user.id) if m.kind == "photo" and m.caption]
        assert captions == ["Your photo session — Professional style"]
        # at Telegram's real per-chat pace, against its flood control (the fixture's, on): not one 429
        assert fake_telegram.flood_limits == TELEGRAM_FLOOD_LIMITS
        assert fake_telegram.flood_429s == 0 and app.metrics.telegram_429._value.get() == 0


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
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, TELEGRAM_CHAT_RATE=1.0)
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
                    claim_key=claim_key(job.priority, job.created_at, job_id, position),
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
        # the resent album's messages name their portraits too
        async with app.sessionmaker() as session:
            photo_messages = [m for m in fake_telegram.sent_messages(user.id) if m.kind == "photo"]
            shown = [await deliveries.portrait_for_message(session, user.id, m.message_id) for m in photo_messages]
        assert sorted(task.id for task in shown if task is not None) == sorted(task.id for task in tasks)


# ------------------------------------------------------------------ streaming delivery


async def _seed_stored_pack(app: Application, job_id: int, sizes: list[tuple[int, int] | None]) -> list[GenerationTask]:
    """Turn a seeded job into one that finished generating: one stored task per size (None: its file is gone)."""
    async with app.sessionmaker() as session:
        job = await session.get(GenerationJob, job_id)
        assert job is not None
        job.status, job.photos_completed, job.started_at = JobStatus.DELIVERING, len(sizes), utcnow()
        tasks = []
        for position, size in enumerate(sizes):
            key = f"results/{job_id}/{position}.png"
            if size is not None:
                await app.files.put(key, render_result_png(f"task-{position}", size))
            task = GenerationTask(
                job_id=job_id,
                position=position,
                prompt_index=position,
                seed=position,
                claim_key=claim_key(job.priority, job.created_at, job_id, position),
                status=TaskStatus.STORED,
                result_key=key,
                stored_at=utcnow(),
            )
            session.add(task)
            tasks.append(task)
        await session.commit()
    return tasks


async def _file_ids_by_provider_task(app: Application, job_id: int) -> dict[str, str]:
    async with app.sessionmaker() as session:
        rows = (
            await session.execute(
                select(GenerationTask.provider_task_id, GenerationTask.telegram_file_id).where(
                    GenerationTask.job_id == job_id
                )
            )
        ).all()
    return {provider_id: file_id for provider_id, file_id in rows if provider_id and file_id}


async def test_portraits_arrive_in_completion_order_not_task_order(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """Provider latencies fall as tasks are created, so the last task created finishes first: the chat
    shows the portraits in the order the provider finished them."""
    latencies = iter([4.8, 4.0, 3.2, 2.4, 1.6, 0.8, 0.1])  # below stuck_after (5 s)
    async with delivery_stack(fake_telegram, sqlite_url, tmp_path, latency=lambda: next(latencies, 0.2)) as (
        app,
        kie,
    ):
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        app.signals.job_queued()
        await _until_finished(app, job_id)
        finished = sorted(kie.tasks.values(), key=lambda task: task.created_monotonic + task.latency)
        file_ids = await _file_ids_by_provider_task(app, job_id)
        chat_order = [m.file_id for m in fake_telegram.sent_messages(user.id) if m.kind == "photo"]
        assert chat_order == [file_ids[task.task_id] for task in finished]


async def test_a_slow_first_task_holds_back_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    latencies = iter([4.5])  # below the policy's stuck_after (5 s), so it is not generated twice
    async with delivery_stack(
        fake_telegram, sqlite_url, tmp_path, latency=lambda: next(latencies, 0.3), ALBUM_WINDOW_SECONDS=0.5
    ) as (app, kie):
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        app.signals.job_queued()
        await _until_finished(app, job_id)
        slow = max(kie.tasks.values(), key=lambda task: task.latency)
        file_ids = await _file_ids_by_provider_task(app, job_id)
        chat_order = [m.file_id for m in fake_telegram.sent_messages(user.id) if m.kind == "photo"]
        # The slow one is the first task: held in task order it would lead the chat; streamed, it comes last.
        assert len(chat_order) == 7 and chat_order[-1] == file_ids[slow.task_id]


async def test_three_packs_finishing_at_once_stay_within_the_chat_budget(sqlite_url: str, tmp_path: Path) -> None:
    """Telegram's flood control (TELEGRAM_FLOOD_LIMITS: 40 messages per chat per 30 s) against the app's
    real per-chat budget (a burst of one album, then 1/s less its margin: at most 37 in any 30 s), both
    run 5 times faster (40 per 6 s; 10, then 5/s). Three 15-portrait packs finishing at once for one
    user are 51 messages, more than a window takes: unpaced they would provoke 429s; paced, none."""
    speed = 5
    global_count, global_window, chat_count, chat_window = TELEGRAM_FLOOD_LIMITS
    async with FakeTelegram(flood_limits=(global_count, global_window, chat_count, chat_window / speed)) as fake:
        async with delivery_app(fake, sqlite_url, tmp_path, latency=(0.5, 0.8), TELEGRAM_CHAT_RATE=speed) as app:
            user = fake.user(language_code="en")
            job_ids = [
                await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p15")
                for _ in range(3)
            ]
            app.signals.job_queued()
            for job_id in job_ids:
                await _until_finished(app, job_id, timeout=90)
                assert (await job_row(app.sessionmaker, job_id)).status == JobStatus.COMPLETED
            await fake.wait_until(lambda: sum("portraits are here" in m.content for m in user.messages) == 3)
            photos = _delivered_photos(fake, user.id)
            assert len(photos) == 45 and len(set(photos)) == 45
            assert fake.flood_429s == 0
            assert app.metrics.telegram_429._value.get() == 0


async def test_a_502_after_telegram_accepted_an_album_is_uncertain_never_sent_twice(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with delivery_app(fake_telegram, database_url, tmp_path, latency=(0.2, 0.6)) as app:
        user = fake_telegram.user(language_code="en")
        rule = fake_telegram.inject("sendMediaGroup", status=502, after_accepting=True, times=1, chat_id=user.id)
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        app.signals.job_queued()
        await _until_finished(app, job_id)
        assert rule.fired == 1
        notice = await user.wait_reply(lambda m: "may not have arrived" in m.content, timeout=10)
        photos = _delivered_photos(fake_telegram, user.id)
        assert len(photos) == 7 and len(set(photos)) == 7, "the accepted album was sent a second time"
        async with app.sessionmaker() as session:
            chunks = list((await session.execute(select(Delivery).where(Delivery.job_id == job_id))).scalars())
        uncertain = [chunk for chunk in chunks if chunk.status == DeliveryStatus.UNCERTAIN]
        assert len(uncertain) == 1
        assert (await job_row(app.sessionmaker, job_id)).status == JobStatus.COMPLETED
        await user.press_button(notice.message_id, notice.buttons[0]["callback_data"])
        async with asyncio.timeout(10):
            while len(_delivered_photos(fake_telegram, user.id)) < 7 + len(uncertain[0].task_ids):
                await asyncio.sleep(0.1)


async def test_a_delivery_that_lost_its_lease_sends_nothing_more(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    latencies = iter([0.2])  # the first portrait goes alone, long before the rest
    async with delivery_app(fake_telegram, sqlite_url, tmp_path, latency=lambda: next(latencies, 3.0)) as app:
        user = fake_telegram.user(language_code="en")
        fake_telegram.delay("sendPhoto", 2.0, times=1, chat_id=user.id)
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        app.signals.job_queued()
        await fake_telegram.wait_for(lambda call: call.method == "sendPhoto" and call.chat_id == user.id, timeout=30)
        async with app.sessionmaker() as session:  # meanwhile another process took the pack over
            job = await session.get(GenerationJob, job_id)
            assert job is not None
            job.delivery_owner, job.delivery_lease_until = "another-process", utcnow() + timedelta(hours=1)
            await session.commit()
        async with asyncio.timeout(30):
            while {TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED} & set(
                await task_statuses(app.sessionmaker, job_id)
            ):
                await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        assert len(_delivered_photos(fake_telegram, user.id)) == 1


async def test_open_to_sending_needs_the_lease(fake_telegram: FakeTelegram, database_url: str, tmp_path: Path) -> None:
    """The guard itself: a chunk is handed to Telegram only by the holder of a live lease."""
    settings = app_settings(fake_telegram, database_url, tmp_path / "files", webhook=True, TELEGRAM_CHAT_RATE=1.0)
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        async with app.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            assert job is not None
            job.delivery_owner, job.delivery_lease_until = "me", utcnow() - timedelta(seconds=1)
            chunk = await deliveries.open_chunk(session, job_id, [])
            await session.commit()
            assert not await deliveries.start_sending(session, chunk.id, job_id, "me")  # lapsed
            job.delivery_lease_until = utcnow() + timedelta(seconds=60)
            await session.commit()
            assert not await deliveries.start_sending(session, chunk.id, job_id, "someone-else")
            assert await deliveries.start_sending(session, chunk.id, job_id, "me")
            assert not await deliveries.start_sending(session, chunk.id, job_id, "me")  # once only


async def test_a_portrait_telegram_refuses_as_a_photo_goes_as_a_file_and_a_missing_one_is_credited(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, TELEGRAM_CHAT_RATE=1.0)
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        sizes: list[tuple[int, int] | None] = [(256, 320)] * 7
        sizes[2] = (2500, 100)  # 25:1, more than Telegram takes as a photo
        sizes[5] = None  # its file is gone
        tasks = await _seed_stored_pack(app, job_id, sizes)
        app.signals.task_stored()
        await _until_finished(app, job_id)
        job = await job_row(app.sessionmaker, job_id)
        assert job.status == JobStatus.PARTIAL and job.photos_failed == 1
        photos = _delivered_photos(fake_telegram, user.id)
        assert len(photos) == 5 and len(set(photos)) == 5
        documents = [m for m in fake_telegram.sent_messages(user.id) if m.kind == "document"]
        assert len(documents) == 1
        async with app.sessionmaker() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(GenerationTask.id, GenerationTask.status).where(GenerationTask.job_id == job_id)
                    )
                ).all()
            )
            assert statuses[tasks[2].id] == TaskStatus.DELIVERED and statuses[tasks[5].id] == TaskStatus.SKIPPED
            releases = (
                await session.execute(
                    select(LedgerEntry).where(LedgerEntry.reason == LedgerReason.RELEASE, LedgerEntry.job_id == job_id)
                )
            ).scalars()
            assert [entry.delta for entry in releases] == [1]
        await user.wait_reply(lambda m: "1 could not be made" in m.content, timeout=10)
