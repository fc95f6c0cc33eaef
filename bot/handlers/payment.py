"""Paying for an order: choose YooKassa or Stars, pay, check; free starts; cancelling a queued job."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, LabeledPrice, Message, PreCheckoutQuery
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import CheckCb, JobAction, JobCb, OrderAction, OrderCb, PayCb, PayMethod
from bot.handlers.chat import ChatTarget
from bot.i18n import counted
from bot.settings import Settings
from scheduler.accounts import AccountService
from scheduler.payments import OrderNotPayable, PaymentService, PaymentUnavailable, parse_stars_payload, stars_payload
from scheduler.results import CancelResult, ResultsService
from storage.models import User
from studio.catalogue import Catalogue
from studio.credits import Currency, price_for
from studio.states import PaymentStatus

# FSM data: order id -> message ids of the Stars invoices sent for it.
INVOICES_KEY = "stars_invoices"
# FSM data: the tap (callback query id) that sent the newest invoice.
INVOICED_BY_KEY = "stars_invoiced_by"
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")
CHECK_ANSWERS = {
    PaymentStatus.SUCCEEDED: "payment.check.succeeded",
    PaymentStatus.CANCELED: "payment.check.canceled",
    PaymentStatus.REFUNDED: "payment.check.refunded",
}


class Checkout(StatesGroup):  # its name is in stored conversation steps: keep it
    email = State()


@dataclass(frozen=True, slots=True)
class Till:
    """One payment being started: the chat it happens in, the payer, their conversation, and the tap
    (callback query id) that asked, so the same tap delivered twice sends one Stars invoice."""

    chat: ChatTarget
    user: User
    state: FSMContext
    payments: PaymentService
    tap: str = ""


METHOD_FOR = {Currency.RUB: PayMethod.YOOKASSA, Currency.STARS: PayMethod.STARS}


def _methods(settings: Settings) -> list[PayMethod]:
    return [METHOD_FOR[currency] for currency in settings.payable_currencies]


async def pay_order(
    query: CallbackQuery,
    callback_data: OrderCb,
    state: FSMContext,
    user: User,
    settings: Settings,
    catalogue: Catalogue,
    payments: PaymentService,
) -> None:
    assert query.message is not None  # the root router admits only buttons on a private chat's message
    order = await payments.payable_order(callback_data.order_id, user.id)
    if order is None:
        await query.answer(_("payment.order_not_payable"), show_alert=True)
        return
    await query.answer()
    await _close_intake(state)
    till, methods = Till(query.message, user, state, payments, query.id), _methods(settings)
    if not methods:
        await till.chat.answer(_("payment.no_methods"))
        return
    if len(methods) == 1:
        await _start_method(till, methods[0], order.id, settings, catalogue)
        return
    markup = keyboards.pay_methods(order.id, catalogue.pack(order.pack), user.language)
    await till.chat.answer(_("payment.choose_method"), reply_markup=markup)


async def _close_intake(state: FSMContext) -> None:
    """The intake is over (payment buttons carry their own ids); the tap that sent the newest invoice
    stays known, so a Pay tap delivered twice (one payment method: Pay sends the invoice) sends one."""
    invoiced_by = (await state.get_data()).get(INVOICED_BY_KEY)
    await state.set_state(None)
    await state.set_data({INVOICED_BY_KEY: invoiced_by} if invoiced_by else {})


async def pay_with(
    query: CallbackQuery,
    callback_data: PayCb,
    state: FSMContext,
    user: User,
    settings: Settings,
    catalogue: Catalogue,
    payments: PaymentService,
) -> None:
    if callback_data.method not in _methods(settings) or query.message is None:
        await query.answer(_("stale.button"))
        return
    await query.answer()
    till = Till(query.message, user, state, payments, query.id)
    await _start_method(till, callback_data.method, callback_data.order_id, settings, catalogue)


async def _start_method(till: Till, method: PayMethod, order_id: int, settings: Settings, catalogue: Catalogue) -> None:
    if method == PayMethod.STARS:
        await _send_invoice(till, order_id, catalogue)
    elif settings.YOOKASSA_RECEIPTS and not till.user.email:
        await till.state.set_state(Checkout.email)
        await till.state.update_data(order_id=order_id)
        await till.chat.answer(_("payment.ask_email"))
    else:
        await _send_yookassa_link(till, order_id)


async def _send_yookassa_link(till: Till, order_id: int) -> None:
    try:
        link = await till.payments.start_yookassa(order_id, till.user)
    except OrderNotPayable:
        await till.chat.answer(_("payment.order_not_payable"))
        return
    except PaymentUnavailable as error:
        await till.chat.answer(_("payment.unavailable_retry" if error.retryable else "payment.unavailable"))
        return
    markup = keyboards.pay_link(link.payment_id, link.confirmation_url, link.amount, till.user.language)
    await till.chat.answer(_("payment.link"), reply_markup=markup)
    await _retire_invoices(till, order_id)


async def _retire_invoices(till: Till, order_id: int) -> None:
    """The card rail is offered: delete the order's Stars invoices, so one chat shows one way to pay.
    (A pending YooKassa payment cannot be cancelled the other way round: only a held one can.)"""
    invoices = dict((await till.state.get_data()).get(INVOICES_KEY) or {})
    for message_id in invoices.pop(str(order_id), []):
        with contextlib.suppress(TelegramBadRequest):  # already gone, or older than 48 h
            await till.chat.chat.delete_message(message_id)
    await till.state.update_data({INVOICES_KEY: invoices})


async def _send_invoice(till: Till, order_id: int, catalogue: Catalogue) -> None:
    data = await till.state.get_data()
    if data.get(INVOICED_BY_KEY) == till.tap:
        # The same tap delivered again (the process died before answering it): its invoice is in the
        # chat, and a second one could be paid as well. Recorded only once sent, so a kill before that
        # sends it on the second delivery.
        return
    order = await till.payments.payable_order(order_id, till.user.id)
    if order is None:
        await till.chat.answer(_("payment.order_not_payable"))
        return
    pack = catalogue.pack(order.pack)
    title = pack.title.get(till.user.language)[:32]
    invoice = await till.chat.answer_invoice(
        title=title,
        description=_("payment.invoice_description").format(photos=pack.photos)[:255],
        payload=stars_payload(order.id),
        currency=Currency.STARS,
        prices=[LabeledPrice(label=title, amount=price_for(pack, Currency.STARS))],
        provider_token="",
    )
    invoices = dict(data.get(INVOICES_KEY) or {})
    invoices[str(order.id)] = [*invoices.get(str(order.id), []), invoice.message_id]
    await till.state.update_data({INVOICES_KEY: invoices, INVOICED_BY_KEY: till.tap})


async def receive_email(
    message: Message, state: FSMContext, user: User, accounts: AccountService, payments: PaymentService
) -> None:
    email = (message.text or "").strip()
    if not EMAIL.match(email):
        await message.answer(_("payment.bad_email"))
        return
    order_id = int((await state.get_data())["order_id"])
    # The step moves first, so no write of this update's own session is pending while the address is
    # saved; a process killed in between is routed here again (bot/middlewares/replay.py).
    await state.set_state(None)  # the data keeps the order's invoices, for _retire_invoices
    await accounts.set_email(user, email)
    await _send_yookassa_link(Till(message, user, state, payments), order_id)


async def check_payment(query: CallbackQuery, callback_data: CheckCb, user: User, payments: PaymentService) -> None:
    try:
        status = await payments.check(callback_data.payment_id, user)
    except OrderNotPayable:
        await query.answer(_("stale.button"))
        return
    except Exception:
        await query.answer(_("payment.check_failed"), show_alert=True)
        return
    await query.answer(_(CHECK_ANSWERS.get(PaymentStatus(status), "payment.check.pending")), show_alert=True)


async def start_free(
    query: CallbackQuery, callback_data: OrderCb, state: FSMContext, user: User, payments: PaymentService
) -> None:
    try:
        await payments.start_free(callback_data.order_id, user)
    except OrderNotPayable:
        await query.answer(_("payment.trial_used"), show_alert=True)
        return
    await state.clear()
    await query.answer()


async def pre_checkout(query: PreCheckoutQuery, payments: PaymentService) -> None:
    order_id = parse_stars_payload(query.invoice_payload)
    refusal = (
        "payment.refused.unknown_order"
        if order_id is None
        else await payments.stars_precheckout(
            order_id, query.from_user.id, query.currency, query.total_amount, query.invoice_payload
        )
    )
    if refusal is None:
        await query.answer(ok=True)
    else:
        await query.answer(ok=False, error_message=_(refusal))


async def successful_payment(message: Message, payments: PaymentService) -> None:
    paid = message.successful_payment
    assert paid is not None and message.from_user is not None
    order_id = parse_stars_payload(paid.invoice_payload)
    await payments.stars_paid(
        order_id if order_id is not None else 0,  # an unknown order: the service refunds the charge
        message.from_user.id,
        paid.telegram_payment_charge_id,
        paid.currency,
        paid.total_amount,
    )


async def cancel_job(query: CallbackQuery, callback_data: JobCb, user: User, results: ResultsService) -> None:
    if query.message is None:
        await query.answer(_("stale.button"))
        return
    cancel = await results.cancel(callback_data.job_id, user.id)
    if cancel.result == CancelResult.TOO_LATE:
        await query.answer(_("job.cancel_too_late"), show_alert=True)
        return
    if cancel.result != CancelResult.CANCELLED:  # a stale button, or a repeated tap
        await query.answer(_("stale.button"))
        return
    await query.answer()
    if isinstance(query.message, Message) and query.message.reply_markup is not None:
        # The button sat on the queued notice or the progress message: it has done its work.
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(
        counted("job.cancelled", cancel.returned),
        reply_markup=keyboards.use_credits(callback_data.job_id, cancel.returned),
    )


async def paysupport(message: Message) -> None:
    await message.answer(_("payment.support"))


def build_router() -> Router:
    router = Router(name="payment")
    router.callback_query.register(pay_order, OrderCb.filter(F.action == OrderAction.PAY))
    router.callback_query.register(start_free, OrderCb.filter(F.action == OrderAction.START))
    router.callback_query.register(pay_with, PayCb.filter())
    router.callback_query.register(check_payment, CheckCb.filter())
    router.callback_query.register(cancel_job, JobCb.filter(F.action == JobAction.CANCEL))
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, F.successful_payment)
    router.message.register(paysupport, Command("paysupport"))
    router.message.register(receive_email, StateFilter(Checkout.email), F.text)
    return router
