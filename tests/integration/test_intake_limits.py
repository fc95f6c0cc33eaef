"""The intake under abuse and failure, end to end (real app, fake Telegram over real HTTP):
- rejected uploads spend an hourly per-user budget; beyond it nothing more is downloaded;
- an album whose item fails still gets exactly one reply, and the collector forgets the album.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.album import AlbumCollector
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.harness import app_settings, running_app
from tests.image_corpus import selfie_like_jpeg, selfie_set

REPLY_TIMEOUT = 20.0
ALBUM_SETTLE_SECONDS = 1.5  # longer than the collector's quiet period: a second reply would be sent by now


async def start_uploading(user: FakeUser) -> None:
    await user.send_command("/start")
    await user.wait_reply(timeout=REPLY_TIMEOUT)
    await user.click("New photo session")
    await user.wait_reply(timeout=REPLY_TIMEOUT)


async def send_photo(user: FakeUser, image: bytes) -> ChatMessage:
    await user.send_photo(image)
    return await user.wait_reply(timeout=REPLY_TIMEOUT)


def get_file_calls(fake: FakeTelegram) -> int:
    return len(fake.calls("getFile"))


async def test_fifty_faceless_photos_spend_the_budget_then_nothing_is_downloaded(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(
        fake_telegram, database_url, tmp_path / "files", FACE_CHECKS=True, TELEGRAM_CHAT_RATE=1000.0
    )
    async with running_app(settings):
        user = fake_telegram.user(language_code="en")
        await start_uploading(user)
        before = get_file_calls(fake_telegram)
        replies = [(await send_photo(user, selfie_like_jpeg(seed=5000 + index))).content for index in range(50)]
        downloads = get_file_calls(fake_telegram) - before
    budget = settings.INTAKE_REJECTS_PER_HOUR
    assert all("face" in reply.lower() for reply in replies[:budget]), replies[:budget]
    assert all("Too many photos that didn't pass" in reply for reply in replies[budget:]), replies[budget]
    assert downloads == budget  # photo 21 to 50: not fetched from Telegram at all


async def test_album_with_a_failing_item_gets_one_reply_and_leaves_nothing_behind(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", TELEGRAM_CHAT_RATE=1000.0)
    async with running_app(settings) as app:
        collector: AlbumCollector[Any] = app.dispatcher["album_collector"]
        store_put = app.files.put
        puts = 0

        async def put_failing_once(key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
            nonlocal puts
            puts += 1
            if puts == 2:  # the second photo of the album: the disk is full, say
                raise OSError("No space left on device")
            await store_put(key, data, content_type)

        monkeypatch.setattr(app.files, "put", put_failing_once)
        user = fake_telegram.user(language_code="en")
        await start_uploading(user)
        before = len(fake_telegram.sent_messages(user.id))
        await user.send_album(selfie_set(4, first_seed=7100))
        reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
        await asyncio.sleep(ALBUM_SETTLE_SECONDS)
        assert len(fake_telegram.sent_messages(user.id)) == before + 1
        assert "3 of the 4 photos in the album were accepted" in reply.content
        assert "Something went wrong with that photo" in reply.content
        assert len(collector) == 0
