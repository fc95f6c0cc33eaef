"""Delivery over real HTTP: albums of valid sizes in order, one progress message, 429s and partial
album failures survived with every photo exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from studio.states import JobStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app


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


def _album_sizes(fake: FakeTelegram, chat_id: int) -> list[int]:
    sizes: list[int] = []
    for call in fake.calls(chat_id=chat_id):
        if call.response_ok and call.method == "sendMediaGroup":
            sizes.append(len(call.params["media"]))
        elif call.response_ok and call.method == "sendPhoto":
            sizes.append(1)
    return sizes


@pytest.mark.parametrize("pack", ["p7", "p15", "p23"])
async def test_pack_arrives_as_valid_albums_with_one_progress_message(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, pack: str
) -> None:
    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=(0.02, 0.3)) as kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1),
        )
        async with running_app(settings) as app:
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
            sizes = _album_sizes(fake_telegram, user.id)
            assert sum(sizes) == total and all(size <= 10 for size in sizes)
            assert all(size >= 2 for size in sizes if size != 1) and sizes.count(1) <= 1
            progress = [m for m in user.messages if m.message_id == job.progress_message_id]
            assert progress and f"{total} of {total} delivered" in progress[0].content
            assert any("All" in m.content and "portraits are here" in m.content for m in user.messages)
            # the caption names the style, on the first item of the first album only
            captions = [m.caption for m in fake_telegram.sent_messages(user.id) if m.kind == "photo" and m.caption]
            assert captions == ["Your photo session — Professional style"]


async def test_429_on_every_third_send_and_a_partial_album_still_deliver_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1),
        )
        async with running_app(settings) as app:
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
    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1),
        )
        async with running_app(settings) as app:
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
