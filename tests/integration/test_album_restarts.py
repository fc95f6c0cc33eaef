"""Real `python -m bot` in webhook mode, SIGKILLed in the middle of a selfie album.

An album is one update per photo. The webhook answers an update only after handling it, and the item
whose handler ends last sends the album's one reply, so until that reply is out at least that item is
unanswered: a kill then makes Telegram post it again, and the restarted bot replies. Photos already
saved are not saved twice (file_unique_id), and the conversation goes on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import create_engine, create_sessionmaker
from storage.models import ReferencePhoto
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.harness import app_settings, free_port, running_app
from tests.image_corpus import selfie_set
from tests.process_harness import AppProcess, start_process, webhook_settings

REPLY = 30.0
pytestmark = pytest.mark.timeout(300)


def with_button(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: any(fragment in button.get("text", "") for button in message.buttons)


async def answered(fake: FakeTelegram, update_ids: set[int], at_least: int) -> None:
    """Until the webhook has answered 200 to ``at_least`` of these updates."""
    async with asyncio.timeout(REPLY):
        while sum(1 for d in fake.webhook_deliveries if d.status == 200 and d.update["update_id"] in update_ids) < (
            at_least
        ):
            await asyncio.sleep(0.02)


async def redeliver_until_accepted(fake: FakeTelegram) -> None:
    """What Telegram does after a failed POST: try the pending updates again, until the webhook takes them."""
    async with asyncio.timeout(REPLY):
        while fake.pending_updates:
            await fake.flush_webhook()
            await asyncio.sleep(0.2)


async def album_update_ids(fake: FakeTelegram, user: FakeUser) -> set[int]:
    """The ids of the user's photo updates being posted (they stay pending until the webhook answers)."""
    async with asyncio.timeout(REPLY):
        while not (ids := {u["update_id"] for u in fake.pending_updates if "photo" in u.get("message", {})}):
            await asyncio.sleep(0.01)
    return ids


async def start_uploading(user: FakeUser) -> None:
    await user.send_command("/start")
    await user.wait_reply(with_button("New photo session"), timeout=REPLY)
    await user.click("New photo session")
    await user.wait_reply(lambda message: "selfies" in message.content, timeout=REPLY)


async def stored_photos(database_url: str) -> list[tuple[int, str | None]]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(select(ReferencePhoto.slot, ReferencePhoto.file_unique_id))
            return sorted((slot, unique) for slot, unique in rows)
    finally:
        await engine.dispose()


async def test_a_kill_after_part_of_an_album_was_acknowledged_still_gets_the_album_its_reply(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    fake, port = fake_telegram, free_port()
    settings = webhook_settings(fake, sqlite_url, tmp_path, port)
    process: AppProcess = await start_process(settings, tmp_path / "bot.log", module="bot", port=port)
    try:
        user = fake.user(language_code="en")
        await start_uploading(user)
        # Slow downloads: the album's photos are taken one at a time (one user, one lock), so the first
        # ones are done, and answered, while the last still waits for its file.
        slow = fake.delay("getFile", 1.5, times=None)
        sending = asyncio.create_task(user.send_album(selfie_set(5, first_seed=random.randrange(10_000))))
        album = await album_update_ids(fake, user)
        await answered(fake, album, at_least=3)
        assert not [m for m in fake.sent_messages(user.id) if "of 5–8" in m.content]  # no reply yet
        process.kill()
        await sending  # the POSTs the dead process never answered stay pending, as at Telegram
        assert fake.pending_updates, "the kill came too late: every item was answered"
        slow.times = 0
        process = await start_process(settings, tmp_path / "bot.log", module="bot", port=port)
        await redeliver_until_accepted(fake)

        reply = await user.wait_reply(with_button("Done"), timeout=REPLY)
        assert "5 of 5–8" in reply.content, reply.content
        photos = await stored_photos(sqlite_url)
        assert [slot for slot, _ in photos] == [1, 2, 3, 4, 5]
        assert len({unique for _, unique in photos}) == 5  # no photo saved twice
        await user.click("Done")
        await user.wait_reply(with_button("Professional"), timeout=REPLY)
    finally:
        if process.process.poll() is None:
            process.terminate()


async def test_a_new_session_tap_posted_again_mid_album_keeps_the_set(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """Killed after replying to "New photo session" but before answering its POST: Telegram posts the tap
    again, maybe together with the album the user sent on seeing that reply. The tap that started the
    set must not abandon it (the album's photos would split over two sets, and no reply ever offers Done).
    """
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, TELEGRAM_CHAT_RATE=1000.0)
    async with running_app(settings):
        user = fake_telegram.user(language_code="en")
        await start_uploading(user)
        tap = next(d.update for d in reversed(fake_telegram.webhook_deliveries) if "callback_query" in d.update)
        photos = selfie_set(5, first_seed=random.randrange(10_000))
        await user.send_album(photos[:3])
        await user.wait_reply(lambda message: "3 of 5–8" in message.content, timeout=REPLY)
        await fake_telegram.redeliver(tap)
        await user.send_album(photos[3:])
        reply = await user.wait_reply(with_button("Done"), timeout=REPLY)
        assert "5 of 5–8" in reply.content, reply.content
        assert [slot for slot, _ in await stored_photos(sqlite_url)] == [1, 2, 3, 4, 5]
