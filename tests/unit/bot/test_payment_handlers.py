"""The payment router through ``Dispatcher.feed_update``: a mocked Bot and stand-ins for the payment,
account and results services (``create_autospec``: calls recorded, answers scripted per test)."""

from __future__ import annotations

from typing import Any
from unittest.mock import create_autospec

import pytest
from aiogram import Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageReplyMarkup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from bot.callbacks import CheckCb, JobCb, OrderCb, PayCb, ResultsCb
from bot.handlers import payment
from bot.settings import Settings
from scheduler.accounts import AccountService
from scheduler.payments import OrderNotPayable, PayLink, PaymentService, PaymentUnavailable
from scheduler.results import CancelResult, JobCancel, ResultsService
from storage.models import Order
from studio.catalogue import load_catalogue
from tests.support.telegram import NOW, TOKEN, MockedBot, Updates, chat_user, handler_dispatcher

ORDER_ID = 11


def settings(*, card: bool = True, stars: bool = True, receipts: bool = False) -> Settings:
    values: dict[str, Any] = {"BOT_TOKEN": TOKEN, "STARS_ENABLED": stars, "YOOKASSA_RECEIPTS": receipts}
    if card:
        values |= {"YOOKASSA_SHOP_ID": "shop", "YOOKASSA_SECRET_KEY": "secret"}
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]  # pydantic-settings init kwarg


def an_order(pack: str = "p7") -> Order:
    return Order(id=ORDER_ID, user_id=1, pack=pack, photos=7, status="awaiting_payment")


class Chat:
    def __init__(self, **settings_values: Any) -> None:
        self.payments = create_autospec(PaymentService, instance=True)
        self.accounts = create_autospec(AccountService, instance=True)
        self.results = create_autospec(ResultsService, instance=True)
        self.payments.payable_order.return_value = an_order()
        self.dispatcher: Dispatcher = handler_dispatcher(
            payment.build_router(),
            settings=settings(**settings_values),
            catalogue=load_catalogue(),
            payments=self.payments,
            accounts=self.accounts,
            results=self.results,
        )
        self.bot = MockedBot()
        self.updates = Updates(language="en")
        self.user = chat_user(self.updates)

    async def feed(self, update: Update) -> Any:
        return await self.dispatcher.feed_update(self.bot, update, user=self.user)

    async def tap(self, data: str, on_message_id: int = 9_000) -> Any:
        return await self.feed(self.updates.tap(data, on_message_id=on_message_id))

    def texts(self) -> list[str]:
        return [request.text for request in self.bot.sent("sendMessage")]

    def answers(self) -> list[tuple[str | None, bool | None]]:
        return [(answer.text, answer.show_alert) for answer in self.bot.sent("answerCallbackQuery")]

    def buttons(self) -> list[InlineKeyboardButton]:
        markup = self.bot.sent("sendMessage")[-1].reply_markup
        assert isinstance(markup, InlineKeyboardMarkup)
        return [button for row in markup.inline_keyboard for button in row]

    async def step(self) -> str | None:
        return await self.dispatcher.fsm.get_context(self.bot, self.updates.chat.id, self.updates.user.id).get_state()


PAY = OrderCb(order_id=ORDER_ID, action="pay").pack()


def tap_on_keyboard(updates: Updates, data: str) -> Update:
    """A tap on a button of a message that carries a keyboard (``Updates.tap`` shows none)."""
    tap = updates.tap(data)
    query = tap.callback_query
    assert query is not None and isinstance(query.message, Message)
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="x", callback_data=data)]])
    shown = query.message.model_copy(update={"reply_markup": keyboard})
    return tap.model_copy(update={"callback_query": query.model_copy(update={"message": shown})})


# ---------------------------------------------------------------- Pay


async def test_pay_offers_both_methods_with_their_prices() -> None:
    chat = Chat()

    await chat.tap(PAY)

    chat.payments.payable_order.assert_awaited_once_with(ORDER_ID, chat.user.id)
    assert chat.texts() == ["How would you like to pay?"]
    assert [button.callback_data for button in chat.buttons()] == [
        PayCb(order_id=ORDER_ID, method="yookassa").pack(),
        PayCb(order_id=ORDER_ID, method="stars").pack(),
    ]
    assert chat.buttons()[0].text.startswith("💳 By card — ") and "⭐" in chat.buttons()[1].text
    assert chat.answers() == [(None, None)]


async def test_pay_on_an_order_no_longer_waiting_for_payment() -> None:
    chat = Chat()
    chat.payments.payable_order.return_value = None

    await chat.tap(PAY)

    assert chat.answers() == [("This order is already paid or cancelled. /status shows where it is.", True)]
    assert chat.texts() == []


async def test_pay_without_any_method() -> None:
    chat = Chat(card=False, stars=False)

    await chat.tap(PAY)

    assert chat.texts()[0].startswith("Payments are not available right now.")


async def test_with_stars_only_pay_sends_one_invoice_per_tap() -> None:
    chat = Chat(card=False)
    tap = chat.updates.tap(PAY)

    await chat.feed(tap)
    await chat.feed(tap)  # the same tap delivered again: its invoice is already in the chat
    await chat.tap(PAY)  # a new tap is a new invoice

    invoices = chat.bot.sent("sendInvoice")
    assert len(invoices) == 2
    assert invoices[0].payload == f"order:{ORDER_ID}" and invoices[0].currency == "XTR"
    assert invoices[0].provider_token == "" and invoices[0].chat_id == chat.updates.chat.id


async def test_an_invoice_is_not_sent_for_an_order_paid_meanwhile() -> None:
    chat = Chat(card=False)
    chat.payments.payable_order.side_effect = [an_order(), None]

    await chat.tap(PAY)

    assert chat.bot.sent("sendInvoice") == []
    assert chat.texts() == ["This order is already paid or cancelled. /status shows where it is."]


# ---------------------------------------------------------------- the card rail


async def test_card_sends_the_link_and_retires_the_orders_invoices() -> None:
    chat = Chat()
    chat.bot.answer("sendInvoice", Message(message_id=777, date=NOW, chat=chat.updates.chat, text="invoice"))
    await chat.tap(PayCb(order_id=ORDER_ID, method="stars").pack())
    chat.payments.start_yookassa.return_value = PayLink(5, "https://yookassa.example/pay/5", 149_000)

    await chat.tap(PayCb(order_id=ORDER_ID, method="yookassa").pack())

    chat.payments.start_yookassa.assert_awaited_once_with(ORDER_ID, chat.user)
    assert chat.texts()[-1].startswith("Tap Pay to open the YooKassa page.")
    link, check = chat.buttons()
    assert link.url == "https://yookassa.example/pay/5" and check.callback_data == CheckCb(payment_id=5).pack()
    [deleted] = chat.bot.sent("deleteMessage")
    assert deleted.message_id == 777  # the invoice's


async def test_an_invoice_already_gone_does_not_stop_the_link() -> None:
    chat = Chat()
    await chat.tap(PayCb(order_id=ORDER_ID, method="stars").pack())
    chat.bot.answer("deleteMessage", TelegramBadRequest(method=None, message="message to delete not found"))  # type: ignore[arg-type]
    chat.payments.start_yookassa.return_value = PayLink(5, "https://yookassa.example/pay/5", 149_000)

    await chat.tap(PayCb(order_id=ORDER_ID, method="yookassa").pack())

    assert chat.texts()[-1].startswith("Tap Pay to open the YooKassa page.")


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OrderNotPayable("11"), "This order is already paid or cancelled."),
        (PaymentUnavailable("down", retryable=True), "The payment service is not answering right now."),
        (PaymentUnavailable("refused", retryable=False), "The payment could not be created."),
    ],
)
async def test_card_link_failures(error: Exception, said: str) -> None:
    chat = Chat()
    chat.payments.start_yookassa.side_effect = error

    await chat.tap(PayCb(order_id=ORDER_ID, method="yookassa").pack())

    assert chat.texts()[0].startswith(said)


async def test_a_method_that_is_off_is_a_stale_button() -> None:
    chat = Chat(card=False)

    await chat.tap(PayCb(order_id=ORDER_ID, method="yookassa").pack())

    assert chat.answers() == [("This button is no longer active.", None)]
    chat.payments.start_yookassa.assert_not_awaited()


async def test_receipts_ask_for_an_email_first_and_then_send_the_link() -> None:
    chat = Chat(receipts=True)
    chat.payments.start_yookassa.return_value = PayLink(5, "https://yookassa.example/pay/5", 149_000)

    await chat.tap(PayCb(order_id=ORDER_ID, method="yookassa").pack())
    assert await chat.step() == "Checkout:email"
    await chat.feed(chat.updates.text("not an address"))
    await chat.feed(chat.updates.text("  anna@example.com "))

    assert chat.texts()[:2] == [
        "For the fiscal receipt, please send your e-mail address (only once).",
        "That address looks wrong. Please send an e-mail like name@example.com.",
    ]
    chat.accounts.set_email.assert_awaited_once_with(chat.user, "anna@example.com")
    chat.payments.start_yookassa.assert_awaited_once_with(ORDER_ID, chat.user)
    assert chat.texts()[-1].startswith("Tap Pay to open the YooKassa page.")
    assert await chat.step() is None


async def test_check_payment_says_what_yookassa_says() -> None:
    chat = Chat()
    chat.payments.check.side_effect = ["succeeded", "pending", OrderNotPayable("5"), RuntimeError("timeout")]

    for _ in range(4):
        await chat.tap(CheckCb(payment_id=5).pack())

    assert chat.answers() == [
        ("Payment received ✅", True),
        ("The payment has not arrived yet. If you have paid, please wait a minute.", True),
        ("This button is no longer active.", None),
        ("I couldn't check the payment right now. Please try again in a minute.", True),
    ]


# ---------------------------------------------------------------- free start, Stars updates


async def test_start_free_queues_the_trial_once() -> None:
    chat = Chat()
    chat.payments.start_free.side_effect = [None, OrderNotPayable("trial already used")]
    start = OrderCb(order_id=ORDER_ID, action="start").pack()

    await chat.tap(start)
    await chat.tap(start)

    assert chat.payments.start_free.await_args_list == [((ORDER_ID, chat.user),)] * 2
    assert chat.answers() == [(None, None), ("The trial pack has already been used. Please choose another pack.", True)]


@pytest.mark.parametrize(
    ("payload", "refusal", "answer"),
    [
        ("order:11", None, (True, None)),
        ("order:11", "payment.refused.price_changed", (False, "The price has changed — please open the order again.")),
        ("forged", None, (False, "Order not found.")),
    ],
)
async def test_pre_checkout(payload: str, refusal: str | None, answer: tuple[bool, str | None]) -> None:
    chat = Chat()
    chat.payments.stars_precheckout.return_value = refusal

    await chat.feed(chat.updates.pre_checkout(payload, 250))

    [sent] = chat.bot.sent("answerPreCheckoutQuery")
    assert (sent.ok, sent.error_message) == answer
    if payload == "forged":
        chat.payments.stars_precheckout.assert_not_awaited()
    else:
        chat.payments.stars_precheckout.assert_awaited_once_with(ORDER_ID, chat.updates.user.id, "XTR", 250, payload)


@pytest.mark.parametrize(("payload", "order_id"), [("order:11", ORDER_ID), ("forged", 0)])
async def test_a_successful_payment_goes_to_the_service(payload: str, order_id: int) -> None:
    chat = Chat()

    await chat.feed(chat.updates.paid(payload, 250, "stx-1"))

    chat.payments.stars_paid.assert_awaited_once_with(order_id, chat.updates.user.id, "stx-1", "XTR", 250)
    assert chat.bot.requests == []  # the service tells the user


async def test_paysupport() -> None:
    chat = Chat()

    await chat.feed(chat.updates.command("paysupport"))

    assert chat.texts()[0].startswith("Payment questions:")


# ---------------------------------------------------------------- cancelling a queued pack


async def test_cancel_returns_the_credits_and_offers_them() -> None:
    chat = Chat()
    chat.results.cancel.return_value = JobCancel(CancelResult.CANCELLED, returned=7)
    # The button sat on the queued notice (a message with a keyboard): the keyboard goes.
    await chat.feed(tap_on_keyboard(chat.updates, JobCb(job_id=4, action="cancel").pack()))

    chat.results.cancel.assert_awaited_once_with(4, chat.user.id)
    assert chat.answers() == [(None, None)]
    assert len([r for r in chat.bot.requests if isinstance(r, EditMessageReplyMarkup)]) == 1
    assert "7" in chat.texts()[0]
    [button] = chat.buttons()
    assert button.callback_data == ResultsCb(job_id=4, action="credits").pack()


@pytest.mark.parametrize(
    ("result", "answer"),
    [
        (
            CancelResult.TOO_LATE,
            ("Your first portraits are already made — the order can no longer be cancelled.", True),
        ),
        (CancelResult.ALREADY, ("This button is no longer active.", None)),
        (CancelResult.UNKNOWN, ("This button is no longer active.", None)),
    ],
)
async def test_cancel_that_cannot_be_done(result: CancelResult, answer: tuple[str, bool]) -> None:
    chat = Chat()
    chat.results.cancel.return_value = JobCancel(result)

    await chat.tap(JobCb(job_id=4, action="cancel").pack())

    assert chat.answers() == [answer]
    assert chat.texts() == []


async def test_other_job_actions_are_not_ours() -> None:
    chat = Chat()

    assert await chat.tap("j:4:explode") is UNHANDLED
    chat.results.cancel.assert_not_awaited()
