"""The intake under abuse and failure, end to end (real app, fake Telegram over real HTTP):
- a user flooding the bot is throttled with one clear notice, and another user is answered as usual;
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


async def test_a_flooding_user_is_told_to_slow_down_once_and_another_user_is_answered(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    # The production throttle (3 updates/s per user after a burst of 12), not the harness's lifted one.
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", THROTTLE_UPDATES_PER_SECOND=3)
    async with running_app(settings):
        flooder, other = fake_telegram.user(language_code="en"), fake_telegram.user(language_code="en")
        texts = 40  # 12 pass at once, then 3/s: even a 9 s stall while sending leaves some dropped
        for number in range(texts):
            await flooder.send_text(f"spam {number}")
        notice = await flooder.wait_reply(lambda message: "too fast" in message.content, timeout=REPLY_TIMEOUT)
        assert "wait a few seconds" in notice.content
        await other.send_command("/start")
        greeting = await other.wait_reply(timeout=REPLY_TIMEOUT)
        assert "PinGlass" in greeting.content
        # The flooder's own requests are answered again once the bucket refills (1 update in 1/3 s).
        await asyncio.sleep(1.0)
        await flooder.send_command("/start")
        assert "PinGlass" in (await flooder.wait_reply(has_text("PinGlass"), timeout=REPLY_TIMEOUT)).content
    flooder_chat = [message.content for message in fake_telegram.sent_messages(flooder.id)]
    notices = [content for content in flooder_chat if "too fast" in content]
    answered = [content for content in flooder_chat if "I didn't get that" in content]
    # One notice for the flood (a second only if sending it took longer than the notice interval); the
    # burst of 12 was handled as usual, and not every text: the throttle dropped the rest.
    assert 1 <= len(notices) <= 2, flooder_chat
    assert 12 <= len(answered) < texts, flooder_chat
    assert not any("too fast" in message.content for message in fake_telegram.sent_messages(other.id))


def has_text(fragment: str) -> Any:
    return lambda message: fragment in message.content


@pytest.mark.telegram_flood_off(
    reason="19 replies in one chat within seconds, faster than Telegram's pace per chat; the app's real pace "
    "(TELEGRAM_CHAT_RATE=1) would keep to it but make the test wait ~20 s, and the pace is not its subject"
)
async def test_a_flood_of_faceless_photos_spends_the_budget_then_nothing_is_downloaded(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    # A budget of 5 instead of the default 20: the rule is the same, and every face reading of a faceless
    # photo costs dlib two passes (0.5 CPU s).
    budget = 5
    settings = app_settings(
        fake_telegram,
        database_url,
        tmp_path / "files",
        FACE_CHECKS=True,
        TELEGRAM_CHAT_RATE=1000.0,
        INTAKE_REJECTS_PER_HOUR=budget,
    )
    async with running_app(settings):
        user = fake_telegram.user(language_code="en")
        await start_uploading(user)
        before = get_file_calls(fake_telegram)
        replies = [(await send_photo(user, selfie_like_jpeg(seed=5000 + index))).content for index in range(3 * budget)]
        downloads = get_file_calls(fake_telegram) - before
    assert all("face" in reply.lower() for reply in replies[:budget]), replies[:budget]
    assert all("Too many photos that didn't pass" in reply for reply in replies[budget:]), replies[budget]
    assert downloads == budget  # photo 6 to 15: not fetched from Telegram at all


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
