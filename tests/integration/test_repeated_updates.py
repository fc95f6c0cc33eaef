"""Real `python -m bot` in webhook mode: each step's update delivered twice, before and after a SIGKILL.

The webhook answers Telegram only after handling an update, and Telegram posts an update again when its
POST got no answer. A process killed after a handler did its work, but before the answer, therefore
gets (in its successor) the same update a second time. Here each step is handled, the process is
killed and restarted, and Telegram's copy of the update arrives again: the user gets the same answer
again and nothing is made twice — one photo set, one order, one invoice, one payment, one job. Two
steps are killed mid-handler instead: the pack choice after its order is stored but before the step
moves on, the style choice after the step moved on but before its answer went out.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import func, select

from bot.app import Application
from bot.callbacks import OrderCb
from storage.db import create_engine, create_sessionmaker
from storage.fsm import DatabaseStorage
from storage.migrate import upgrade_async
from storage.models import Avatar, Broadcast, GenerationJob, Order, Payment, User
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa
from tests.harness import app_settings, free_port, running_app
from tests.image_corpus import selfie_set
from tests.integration.test_credit_spends import _user_with_balance
from tests.process_harness import AppProcess, start_process, webhook_settings

REPLY = 30.0
# Ten process starts, each importing the whole app: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(600)


def containing(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: fragment in message.content


def with_button(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: any(fragment in button.get("text", "") for button in message.buttons)


@dataclass
class Bot:
    """One bot process at a time on a fixed port, the fake Telegram, and a look into the database."""

    fake: FakeTelegram
    settings: dict[str, Any]
    log_path: Path
    storage: DatabaseStorage
    sessionmaker: Any
    process: AppProcess | None = None

    async def start(self) -> None:
        self.process = await start_process(self.settings, self.log_path, module="bot", port=self.settings["port"])

    async def restart(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.start()

    async def again(self, user: FakeUser, update: dict[str, Any]) -> list[ChatMessage]:
        """Kill, restart, and post ``update`` again; the bot's messages answering it (accepted with 200)."""
        await self.restart()
        mark = len(self.fake.sent_messages(user.id))
        await self.fake.redeliver(update)
        last = [d for d in self.fake.webhook_deliveries if d.update["update_id"] == update["update_id"]][-1]
        assert last.status == 200, last.error
        return self.fake.sent_messages(user.id)[mark:]

    async def killed_mid_handler(self, user: FakeUser, handled: Callable[[], Any]) -> None:
        """Once ``handled()`` holds, kill: the update is unanswered, and the next process is posted it again."""
        async with asyncio.timeout(REPLY):
            while not await handled():
                await asyncio.sleep(0.05)
        pending = len(self.fake.webhook_deliveries)
        await self.restart()
        assert [d for d in self.fake.webhook_deliveries[pending:] if d.status is None], "the kill came too late"
        async with asyncio.timeout(REPLY):
            while self.fake.pending_updates:
                await self.fake.flush_webhook()
                await asyncio.sleep(0.2)

    async def step(self, user: FakeUser) -> str | None:
        key = StorageKey(bot_id=int(self.fake.token.split(":")[0]), chat_id=user.id, user_id=user.id)
        return await self.storage.get_state(key)

    async def count(self, model: Any, user: FakeUser) -> int:
        async with self.sessionmaker() as session:
            query = select(func.count(model.id)).join(User, User.id == model.user_id).where(User.telegram_id == user.id)
            return int((await session.execute(query)).scalar_one())


@asynccontextmanager
async def bot_process(fake: FakeTelegram, tmp_path: Path, database_url: str) -> AsyncIterator[Bot]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    port = free_port()
    async with FakeYooKassa() as kassa:
        settings: dict[str, Any] = {
            **webhook_settings(fake, database_url, tmp_path, port),
            "YOOKASSA_SHOP_ID": kassa.shop_id,
            "YOOKASSA_SECRET_KEY": kassa.secret_key,
            "YOOKASSA_API_URL": kassa.api_url,
            "YOOKASSA_RETURN_URL": "https://t.me/pinglass_test_bot",
            "port": port,
        }
        bot = Bot(fake, settings, tmp_path / "bot.log", DatabaseStorage(sessionmaker), sessionmaker)
        try:
            await bot.start()
            yield bot
        finally:
            if bot.process is not None and bot.process.process.poll() is None:
                bot.process.terminate()
            await engine.dispose()


def tap_update(fake: FakeTelegram, query_id: str) -> dict[str, Any]:
    return next(d.update for d in fake.webhook_deliveries if d.update.get("callback_query", {}).get("id") == query_id)


async def test_each_step_delivered_again_after_a_kill_answers_again_and_makes_nothing_twice(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    fake = fake_telegram
    async with bot_process(fake, tmp_path, sqlite_url) as bot:
        user = fake.user(language_code="en")
        await user.send_command("/start")
        await user.wait_reply(with_button("New photo session"), timeout=REPLY)

        tap = await user.click("New photo session")
        await user.wait_reply(containing("Send 5"), timeout=REPLY)
        assert [m.content for m in await bot.again(user, tap_update(fake, tap)) if "Send 5" in m.content]
        await user.send_album(selfie_set(5, first_seed=random.randrange(10_000)))
        await user.wait_reply(with_button("Done"), timeout=REPLY)
        assert await bot.count(Avatar, user) == 1

        tap = await user.click("Done")
        await user.wait_reply(with_button("Professional"), timeout=REPLY)
        assert [m for m in await bot.again(user, tap_update(fake, tap)) if with_button("Professional")(m)]

        # Style: the step moves on, then the answer is held up and the process killed before it goes out.
        held = fake.delay("sendMessage", 120.0, chat_id=user.id)
        tapping = asyncio.create_task(user.click("Professional"))  # its POST waits for the handler
        # Kill once the answer is held, not merely once the step moved on: killed in between, the successor's
        # answer would be the one held.
        await bot.killed_mid_handler(user, lambda: _held_after(held, _is(bot.step(user), "Intake:pack")))
        await tapping
        assert held.fired == 1
        await fake.wait_for_message(user.id, with_button("7 photos"), timeout=REPLY)

        # Pack: the order is stored, then the process is killed before the step moves on.
        held = fake.delay("answerCallbackQuery", 120.0)
        tapping = asyncio.create_task(user.click("7 photos"))
        await bot.killed_mid_handler(user, lambda: _held_after(held, _at_least(bot.count(Order, user), 1)))
        await tapping
        assert held.fired == 1
        summary = await fake.wait_for_message(user.id, lambda m: containing("Your order")(m) and bool(m.buttons))
        assert await bot.count(Order, user) == 1
        order_id = OrderCb.unpack(summary.buttons[0]["callback_data"]).order_id

        tap = await user.click("💳 Pay")
        await user.wait_reply(containing("How would you like to pay"), timeout=REPLY)
        assert [m for m in await bot.again(user, tap_update(fake, tap)) if "How would you like" in m.content]

        tap = await user.click("Telegram Stars")
        await user.wait_reply(lambda m: m.kind == "invoice", timeout=REPLY)
        assert await bot.again(user, tap_update(fake, tap)) == []  # no second invoice: both could be paid
        assert len([m for m in fake.sent_messages(user.id) if m.kind == "invoice"]) == 1

        invoice = next(m for m in fake.sent_messages(user.id) if m.kind == "invoice")
        payload, currency, amount = invoice.invoice_payload or "", "XTR", invoice.raw["invoice"]["total_amount"]
        query = await user.pre_checkout(payload, currency, amount)
        await fake.wait_for(lambda call: call.method == "answerPreCheckoutQuery", timeout=REPLY)
        await bot.again(user, query)  # its second answer is refused by Telegram, and the POST still succeeds
        paid = await user.successful_payment(payload, currency, amount)
        await user.wait_reply(containing("queued"), timeout=REPLY)
        await bot.again(user, paid)

        assert await bot.count(Avatar, user) == 1
        assert await bot.count(Order, user) == 1
        assert await bot.count(Payment, user) == 1
        assert await bot.count(GenerationJob, user) == 1
        async with bot.sessionmaker() as session:
            assert (await session.get(Order, order_id)) is not None
        assert [a for a in fake.pre_checkout_answers.values() if a.get("ok")], "the pre-checkout was approved"
        stale = [c for c in fake.calls("answerCallbackQuery") if "no longer active" in str(c.params.get("text"))]
        assert stale == []
        assert not [m.content for m in fake.sent_messages(user.id) if "buttons above" in m.content]


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def _at_least(value: Any, least: int) -> bool:
    return int(await value) >= least


async def _held_after(held: Any, condition: Any) -> bool:
    return bool(await condition) and held.fired == 1


# ---------------------------------------------------------------- in one process: more steps delivered twice

ADMIN_ID = 920_001


@asynccontextmanager
async def app_with_cards(fake: FakeTelegram, database_url: str, tmp_path: Path) -> AsyncIterator[Application]:
    async with FakeYooKassa() as kassa:
        settings = app_settings(
            fake,
            database_url,
            tmp_path / "files",
            webhook=True,  # getUpdates would skip an update older than its offset; Telegram re-posts to a webhook
            YOOKASSA_SHOP_ID=kassa.shop_id,
            YOOKASSA_SECRET_KEY=kassa.secret_key,
            YOOKASSA_API_URL=kassa.api_url,
            YOOKASSA_RETURN_URL="https://t.me/pinglass_test_bot",
            ADMIN_IDS=str(ADMIN_ID),
        )
        async with running_app(settings) as app:
            yield app


async def delivered_again(
    fake: FakeTelegram, user: FakeUser, update: dict[str, Any], answer: Callable[[ChatMessage], bool]
) -> list[ChatMessage]:
    """Post ``update`` again; once the bot has answered it with ``answer``, everything it sent since."""
    mark = len(fake.sent_messages(user.id))
    await fake.redeliver(update)
    await fake.wait_until(lambda: any(answer(m) for m in fake.sent_messages(user.id)[mark:]), timeout=REPLY)
    return fake.sent_messages(user.id)[mark:]


async def count_of(app: Application, model: Any, user: FakeUser) -> int:
    async with app.sessionmaker() as session:
        query = select(func.count(model.id)).join(User, User.id == model.user_id).where(User.telegram_id == user.id)
        return int((await session.execute(query)).scalar_one())


async def test_a_card_choice_delivered_again_gives_the_same_link_and_one_payment(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    fake = fake_telegram
    async with app_with_cards(fake, sqlite_url, tmp_path) as app:
        user = fake.user(language_code="en")
        await to_summary(user)
        await user.click("💳 Pay")
        await user.wait_reply(containing("How would you like to pay"), timeout=REPLY)
        tap = await user.click("By card")
        link = await user.wait_reply(lambda m: any("url" in b for b in m.buttons), timeout=REPLY)
        again = await delivered_again(fake, user, tap_update(fake, tap), lambda m: any("url" in b for b in m.buttons))
        assert [b.get("url") for b in again[-1].buttons] == [b.get("url") for b in link.buttons]
        assert await count_of(app, Payment, user) == 1
        assert await count_of(app, Order, user) == 1


async def test_a_new_session_tap_delivered_after_the_user_moved_on_starts_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """The tap comes again after the user sent photos and tapped Done: it is older than the step, so
    the set stays as it is and the user goes on choosing a style."""
    fake = fake_telegram
    async with app_with_cards(fake, sqlite_url, tmp_path) as app:
        user = fake.user(language_code="en")
        await user.send_command("/start")
        await user.wait_reply(with_button("New photo session"), timeout=REPLY)
        tap = await user.click("New photo session")
        await user.wait_reply(containing("Send 5"), timeout=REPLY)
        await user.send_album(selfie_set(5, first_seed=random.randrange(10_000)))
        await user.wait_reply(with_button("Done"), timeout=REPLY)
        await user.click("Done")
        await user.wait_reply(with_button("Professional"), timeout=REPLY)
        await delivered_again(fake, user, tap_update(fake, tap), containing("Send 5"))
        assert await count_of(app, Avatar, user) == 1
        await user.click("Professional")
        await user.wait_reply(with_button("7 photos"), timeout=REPLY)


async def test_a_broadcast_text_delivered_again_is_one_draft(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    fake = fake_telegram
    async with app_with_cards(fake, sqlite_url, tmp_path) as app:
        admin = fake.user(ADMIN_ID, language_code="en")
        await admin.send_command("/broadcast")
        await admin.wait_reply(containing("Send the broadcast text"), timeout=REPLY)
        text = await admin.send_text("Winter sale")
        await admin.wait_reply(containing("Who should get it"), timeout=REPLY)
        await delivered_again(fake, admin, text, containing("Who should get it"))
        async with app.sessionmaker() as session:
            drafts = (await session.execute(select(Broadcast.id).where(Broadcast.created_by == ADMIN_ID))).all()
        assert len(drafts) == 1


async def to_summary(user: FakeUser, pack: str = "7 photos") -> None:
    await user.send_command("/start")
    await user.wait_reply(with_button("New photo session"), timeout=REPLY)
    await user.click("New photo session")
    await user.wait_reply(containing("Send 5"), timeout=REPLY)
    await user.send_album(selfie_set(5, first_seed=random.randrange(10_000)))
    await user.wait_reply(with_button("Done"), timeout=REPLY)
    await user.click("Done")
    await user.wait_reply(with_button("Professional"), timeout=REPLY)
    await user.click("Professional")
    await user.wait_reply(with_button(pack), timeout=REPLY)
    await user.click(pack)
    await user.wait_reply(lambda m: containing("Your order")(m) and bool(m.buttons), timeout=REPLY)


async def test_a_picker_spend_delivered_again_is_one_pack_and_no_used_credits_answer(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    fake = fake_telegram
    async with app_with_cards(fake, sqlite_url, tmp_path) as app:
        user, _row, _avatar_id = await _user_with_balance(app, fake)
        await user.send_command("/start")
        await user.wait_reply(with_button("Use my previous photos"), timeout=REPLY)
        await user.click("Use my previous photos")
        await user.wait_reply(with_button("Professional"), timeout=REPLY)
        await user.click("Professional")
        await user.wait_reply(with_button("use 7 credits"), timeout=REPLY)
        tap = await user.click("use 7 credits")
        await user.wait_reply(containing("7 portraits are queued"), timeout=REPLY)
        # Answered already, so Telegram refuses a second answer: the bot's words are in its call.
        answers = len(fake.calls("answerCallbackQuery"))
        await delivered_again(fake, user, tap_update(fake, tap), containing("7 portraits are queued"))
        again = [call.params for call in fake.calls("answerCallbackQuery")[answers:]]
        assert again and not [params for params in again if params.get("text")], again
        assert await count_of(app, GenerationJob, user) == 1


async def test_a_free_start_delivered_again_is_one_job_and_no_trial_used_answer(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    fake = fake_telegram
    async with app_with_cards(fake, sqlite_url, tmp_path) as app:
        user = fake.user(language_code="en")
        await to_summary(user, pack="Trial")
        tap = await user.click("Start for free")
        await user.wait_reply(containing("portraits are queued"), timeout=REPLY)
        answers = len(fake.calls("answerCallbackQuery"))
        await delivered_again(fake, user, tap_update(fake, tap), containing("portraits are queued"))
        again = [call.params for call in fake.calls("answerCallbackQuery")[answers:]]
        assert again and not [params for params in again if params.get("text")], again
        assert await count_of(app, GenerationJob, user) == 1
        assert await count_of(app, Order, user) == 1
