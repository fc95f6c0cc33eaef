"""Payment updates pass the throttle and the ban middleware; a flooding user is throttled with one clear
notice while another user is unaffected (aiogram ``feed_update``, no network).

The handlers here only record what reached them: the point is what the middlewares let through.
"""

from __future__ import annotations

import datetime
from typing import Any

from aiogram import Bot, Dispatcher, F
from aiogram.types import CallbackQuery, Chat, Message, PreCheckoutQuery, SuccessfulPayment, Update
from aiogram.types import User as TelegramUser

from bot.i18n import build_i18n
from bot.middlewares.banned import BannedUserMiddleware
from bot.middlewares.throttling import ThrottlingMiddleware
from storage.models import User
from tests.support.telegram import MockedBot, Updates

PAYER = TelegramUser(id=500_001, is_bot=False, first_name="Anna")
NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)


def text_update(number: int) -> Update:
    message = Message(
        message_id=number, date=NOW, chat=Chat(id=PAYER.id, type="private"), from_user=PAYER, text=f"hi {number}"
    )
    return Update(update_id=number, message=message)


def payment_update(number: int) -> Update:
    paid = SuccessfulPayment(
        currency="XTR",
        total_amount=250,
        invoice_payload="order:1",
        telegram_payment_charge_id=f"stx{number}",
        provider_payment_charge_id="",
    )
    message = Message(
        message_id=number, date=NOW, chat=Chat(id=PAYER.id, type="private"), from_user=PAYER, successful_payment=paid
    )
    return Update(update_id=number, message=message)


def pre_checkout_update(number: int) -> Update:
    query = PreCheckoutQuery(
        id=str(number), from_user=PAYER, currency="XTR", total_amount=250, invoice_payload="order:1"
    )
    return Update(update_id=number, pre_checkout_query=query)


def recording_dispatcher(seen: list[str]) -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher["bot"] = Bot("123456:TEST-token-for-feed-update")  # never calls the API: handlers only record

    async def on_payment(message: Message) -> None:
        seen.append("successful_payment")

    async def on_text(message: Message) -> None:
        seen.append("text")

    async def on_pre_checkout(query: PreCheckoutQuery) -> None:
        seen.append("pre_checkout_query")

    dispatcher.message.register(on_payment, F.successful_payment)
    dispatcher.message.register(on_text, F.text)
    dispatcher.pre_checkout_query.register(on_pre_checkout)
    return dispatcher


async def feed(dispatcher: Dispatcher, update: Update, **data: Any) -> None:
    await dispatcher.feed_update(dispatcher["bot"], update, **data)


async def test_payment_updates_after_a_full_burst_are_not_throttled() -> None:
    seen: list[str] = []
    dispatcher = recording_dispatcher(seen)
    throttle = ThrottlingMiddleware(rate_per_second=0.01, burst=12)  # refills too slowly to matter here
    dispatcher.update.outer_middleware(throttle)
    for number in range(13):  # 12 fit the burst, the 13th is dropped
        await feed(dispatcher, text_update(number))
    assert seen.count("text") == 12 and throttle.dropped == 1
    await feed(dispatcher, pre_checkout_update(100))
    await feed(dispatcher, payment_update(101))
    assert seen[-2:] == ["pre_checkout_query", "successful_payment"]
    assert throttle.dropped == 1
    await feed(dispatcher, text_update(102))  # payments spent nothing, but the burst is still spent
    assert throttle.dropped == 2


async def test_a_banned_users_payment_updates_reach_the_payment_handlers() -> None:
    seen: list[str] = []
    dispatcher = recording_dispatcher(seen)
    dispatcher.update.outer_middleware(BannedUserMiddleware(build_i18n()))
    banned = User(id=1, telegram_id=PAYER.id, language="en", is_banned=True)
    await feed(dispatcher, pre_checkout_update(1), user=banned)
    await feed(dispatcher, payment_update(2), user=banned)
    assert seen == ["pre_checkout_query", "successful_payment"]


def throttled_dispatcher(seen: list[tuple[int, str]], throttle: ThrottlingMiddleware) -> Dispatcher:
    """The app's throttle in front of handlers that record who reached them."""
    dispatcher = Dispatcher()

    async def on_text(message: Message) -> None:
        assert message.from_user is not None
        seen.append((message.from_user.id, message.text or ""))

    async def on_tap(query: CallbackQuery) -> None:
        seen.append((query.from_user.id, f"tap {query.data}"))
        await query.answer()

    dispatcher.message.register(on_text, F.text)
    dispatcher.callback_query.register(on_tap)
    dispatcher.update.outer_middleware(throttle)
    return dispatcher


async def test_a_flooding_user_is_told_once_to_slow_down_and_another_user_is_unaffected() -> None:
    bot = MockedBot()
    seen: list[tuple[int, str]] = []
    # The app's burst of 12; a refill far too slow to matter within the test.
    throttle = ThrottlingMiddleware(rate_per_second=0.01, burst=12, i18n=build_i18n())
    dispatcher = throttled_dispatcher(seen, throttle)
    flooder, other = Updates(user_id=700_001, language="en"), Updates(user_id=700_002, language="ru")

    for number in range(30):
        await dispatcher.feed_update(bot, flooder.text(f"spam {number}"))
    await dispatcher.feed_update(bot, flooder.tap("again"))  # a dropped tap is still answered
    for number in range(3):
        await dispatcher.feed_update(bot, other.text(f"hello {number}"))

    assert [text for user, text in seen if user == 700_001] == [f"spam {n}" for n in range(12)]
    assert [text for user, text in seen if user == 700_002] == [f"hello {n}" for n in range(3)]
    assert throttle.dropped == 19 and throttle.notices == 1
    # One clear answer for the whole flood, in the flooder's language, in their chat; nothing to the other user.
    notices = bot.sent("sendMessage")
    assert len(notices) == 1 and notices[0].chat_id == 700_001
    assert notices[0].text == build_i18n().gettext("throttled", locale="en")
    assert "too fast" in notices[0].text
    # The dropped tap's spinner is stopped, without a second notice.
    answers = bot.sent("answerCallbackQuery")
    assert len(answers) == 1 and answers[0].text is None


async def test_the_slow_down_notice_comes_again_only_after_its_interval() -> None:
    bot = MockedBot()
    seen: list[tuple[int, str]] = []
    throttle = ThrottlingMiddleware(rate_per_second=0.01, burst=2, i18n=build_i18n(), notice_every=0.0)
    dispatcher = throttled_dispatcher(seen, throttle)
    flooder = Updates(user_id=700_003, language="ru")
    for number in range(4):
        await dispatcher.feed_update(bot, flooder.text(f"spam {number}"))
    # notice_every=0: each dropped update is a new flood; in Russian for a Russian client.
    assert [request.text for request in bot.sent("sendMessage")] == [build_i18n().gettext("throttled", locale="ru")] * 2
    assert throttle.notices == 2 and len(seen) == 2
