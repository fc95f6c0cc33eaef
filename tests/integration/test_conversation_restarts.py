"""Real `python -m bot` processes: a SIGKILL at any conversation step, and the user's next action continues it.

Upload, style, pack, summary, the receipt e-mail and an admin's broadcast compose, each with a kill and a
restart just after the bot asked for it; the conversation state lives in the database without Redis and
in Redis with it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.fsm.storage.redis import RedisStorage

from storage.db import create_engine, create_sessionmaker
from storage.fsm import DatabaseStorage
from storage.migrate import upgrade_async
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa
from tests.image_corpus import selfie_set
from tests.process_harness import AppProcess, start_process

REPLY = 20.0
# Seven process starts per test, each importing the whole app: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(420)
ADMIN_ID = 910_001


def containing(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: fragment in message.content


def with_button(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: any(fragment in button.get("text", "") for button in message.buttons)


class Restarts:
    """One bot process at a time; ``kill_and_restart`` waits until the step is stored, SIGKILLs, starts anew."""

    def __init__(self, settings: dict[str, Any], log_path: Path, storage: BaseStorage, bot_id: int) -> None:
        self.settings, self.log_path, self.storage, self.bot_id = settings, log_path, storage, bot_id
        self.process: AppProcess | None = None
        self.kills = 0

    async def start(self) -> None:
        self.process = await start_process(self.settings, self.log_path, module="bot")

    async def kill_and_restart(self, user: FakeUser, expected_step: str) -> None:
        # The reply goes out before the update's transaction commits: wait for the commit, then kill.
        key = StorageKey(bot_id=self.bot_id, chat_id=user.id, user_id=user.id)
        async with asyncio.timeout(REPLY):
            while await self.storage.get_state(key) != expected_step:
                await asyncio.sleep(0.05)
        assert self.process is not None
        self.process.kill()
        self.kills += 1
        await self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.process.poll() is None:
            self.process.terminate()


@asynccontextmanager
async def conversation(
    fake: FakeTelegram, tmp_path: Path, database_url: str, redis_url: str = ""
) -> AsyncIterator[Restarts]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    storage: BaseStorage = (
        RedisStorage.from_url(redis_url) if redis_url else DatabaseStorage(create_sessionmaker(engine))
    )
    async with FakeYooKassa() as kassa:
        kassa.fiscalization = True  # a card payment needs the receipt e-mail
        settings = {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.base_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "files"),
            "ADMIN_IDS": str(ADMIN_ID),
            "YOOKASSA_SHOP_ID": kassa.shop_id,
            "YOOKASSA_SECRET_KEY": kassa.secret_key,
            "YOOKASSA_API_URL": kassa.api_url,
            "YOOKASSA_RETURN_URL": "https://t.me/pinglass_test_bot",
            "YOOKASSA_RECEIPTS": "true",
            "TELEGRAM_CHAT_RATE": 1000,
            "THROTTLE_UPDATES_PER_SECOND": 50,
            "LOG_LEVEL": "INFO",
        }
        restarts = Restarts(settings, tmp_path / "bot.log", storage, int(fake.token.split(":")[0]))
        try:
            await restarts.start()
            yield restarts
        finally:
            restarts.stop()
            await storage.close()
            await engine.dispose()


async def every_step_survives_a_kill(fake: FakeTelegram, restarts: Restarts, user: FakeUser, admin: FakeUser) -> None:
    await user.send_command("/start")
    await user.wait_reply(with_button("New photo session"), timeout=REPLY)
    await user.click("New photo session")
    await user.wait_reply(containing("selfies"), timeout=REPLY)
    photos = selfie_set(5, first_seed=random.randrange(10_000))
    await user.send_album(photos[:3])
    await user.wait_reply(containing("3 of 5–8"), timeout=REPLY)

    await restarts.kill_and_restart(user, "Intake:uploading")
    await user.send_album(photos[3:])
    await user.wait_reply(with_button("Done"), timeout=REPLY)
    await user.click("Done")
    await user.wait_reply(with_button("Professional"), timeout=REPLY)

    await restarts.kill_and_restart(user, "Intake:style")
    await user.click("Professional")
    await user.wait_reply(with_button("7 photos"), timeout=REPLY)

    await restarts.kill_and_restart(user, "Intake:pack")
    await user.click("7 photos")
    await user.wait_reply(containing("Your order"), timeout=REPLY)

    await restarts.kill_and_restart(user, "Intake:summary")
    await user.click("💳 Pay")
    await user.wait_reply(containing("How would you like to pay"), timeout=REPLY)
    await user.click("By card")
    await user.wait_reply(containing("e-mail"), timeout=REPLY)

    await restarts.kill_and_restart(user, "Checkout:email")
    await user.send_text("anna@example.com")
    await user.wait_reply(with_button("Check payment"), timeout=REPLY)

    await admin.send_command("/broadcast")
    await admin.wait_reply(containing("Send the broadcast text"), timeout=REPLY)
    await restarts.kill_and_restart(admin, "BroadcastCompose:text")
    await admin.send_text("Winter sale")
    await admin.wait_reply(containing("Who should get it"), timeout=REPLY)

    assert restarts.kills == 6
    assert not [m.content for m in fake.sent_messages() if "I didn't get that" in m.content]
    stale = [c for c in fake.calls("answerCallbackQuery") if "no longer active" in str(c.params.get("text"))]
    assert stale == []


async def test_a_kill_at_every_step_resumes_it_with_the_state_in_the_database(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with conversation(fake_telegram, tmp_path, sqlite_url) as restarts:
        user = fake_telegram.user(language_code="en")
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        await every_step_survives_a_kill(fake_telegram, restarts, user, admin)


async def test_a_kill_at_every_step_resumes_it_with_the_state_in_redis(
    fake_telegram: FakeTelegram, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    # Redis outlives a test: fresh ids keep earlier runs' FSM keys out of this one.
    user = fake_telegram.user(random.randrange(7_000_000_000, 8_000_000_000), language_code="en")
    admin = fake_telegram.user(ADMIN_ID, language_code="en")
    async with conversation(fake_telegram, tmp_path, sqlite_url, redis_url) as restarts:
        bot_id = restarts.bot_id
        for someone in (user, admin):
            await restarts.storage.set_state(StorageKey(bot_id=bot_id, chat_id=someone.id, user_id=someone.id), None)
            await restarts.storage.set_data(StorageKey(bot_id=bot_id, chat_id=someone.id, user_id=someone.id), {})
        await every_step_survives_a_kill(fake_telegram, restarts, user, admin)
