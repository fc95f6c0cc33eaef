"""Paying for an order: choose YooKassa or Stars, pay, check; free starts; cancelling a queued job."""

from __future__ import annotations

import contextlib
import re

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, LabeledPrice, Message, PreCheckoutQuery
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from bot.callbacks import CheckCb, JobCb, OrderCb, PayCb
from bot.handlers.chat import ChatTarget
from bot.i18n import counted
from bot.settings import Settings
from scheduler.payments import OrderNotPayable, PaymentService, PaymentUnavailable, parse_stars_payload, stars_payload
from storage import jobs as job_queries
from storage import ledger
from storage import orders as order_queries
from storage.models import User
from studio.catalogue import Catalogue
from studio.credits import Currency, format_price, price_for
from studio.states import JobStatus, OrderStatus, PaymentStatus

# FSM data: order id -> message ids of the Stars invoices sent for it.
INVOICES_KEY = "stars_invoices"
# FSM data: the tap (callback query id) that sent the newest invoice.
INVOICED_BY_KEY = "stars_invoiced_by"
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")


class Checkout(StatesGroup):
    email = State()


def _methods(settings: Settings) -> list[str]:
    methods = []
    if settings.yookassa_enabled:
        methods.append("yookassa")
    if settings.STARS_ENABLED:
        methods.append("stars")
    return methods


async def pay_order(
    query: CallbackQuery,
    callback_data: OrderCb,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    bot: Bot,
    settings: Settings,
    catalogue: Catalogue,
    payments: PaymentService,
) -> None:
    message = query.message
    assert message is not None  # the root router admits only buttons on a private chat's message
    order = await order_queries.get_order(session, callback_data.order_id, user.id)
    if order is None or order.status != OrderStatus.AWAITING_PAYMENT:
        await query.answer(_("payment.order_not_payable"), show_alert=True)
        return
    await query.answer()
    await _close_intake(state)
    methods = _methods(settings)
    if not methods:
        await message.answer(_("payment.no_methods"))
        return
    if len(methods) == 1:
        await _start_method(message, methods[0], order.id, user, bot, settings, catalogue, payments, state, query.id)
        return
    pack = catalogue.pack(order.pack)
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("button.pay_card").format(
            price=format_price(price_for(pack, Currency.RUB), Currency.RUB, user.language)
        ),
        callback_data=PayCb(order_id=order.id, method="yookassa"),
    )
    builder.button(
        text=_("button.pay_stars").format(
            price=format_price(price_for(pack, Currency.STARS), Currency.STARS, user.language)
        ),
        callback_data=PayCb(order_id=order.id, method="stars"),
    )
    builder.adjust(1)
    await message.answer(_("payment.choose_method"), reply_markup=builder.as_markup())


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
    bot: Bot,
    settings: Settings,
    catalogue: Catalogue,
    payments: PaymentService,
) -> None:
    if callback_data.method not in _methods(settings) or query.message is None:
        await query.answer(_("stale.button"))
        return
    await query.answer()
    await _start_method(
        query.message,
        callback_data.method,
        callback_data.order_id,
        user,
        bot,
        settings,
        catalogue,
        payments,
        state,
        query.id,
    )


async def _start_method(
    message: ChatTarget,
    method: str,
    order_id: int,
    user: User,
    bot: Bot,
    settings: Settings,
    catalogue: Catalogue,
    payments: PaymentService,
    state: FSMContext,
    tap: str,
) -> None:
    if method == "stars":
        await _send_invoice(message, order_id, user, bot, catalogue, payments, state, tap)
        return
    if settings.YOOKASSA_RECEIPTS and not user.email:
        await state.set_state(Checkout.email)
        await state.update_data(order_id=order_id)
        await message.answer(_("payment.ask_email"))
        return
    await _send_yookassa_link(message, order_id, user, payments, state)


async def _send_yookassa_link(
    message: ChatTarget, order_id: int, user: User, payments: PaymentService, state: FSMContext
) -> None:
    try:
        link = await payments.start_yookassa(order_id, user)
    except OrderNotPayable:
        await message.answer(_("payment.order_not_payable"))
        return
    except PaymentUnavailable as error:
        await message.answer(_("payment.unavailable_retry" if error.retryable else "payment.unavailable"))
        return
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("button.pay_link").format(price=format_price(link.amount, Currency.RUB, user.language)),
        url=link.confirmation_url,
    )
    builder.button(text=_("button.check_payment"), callback_data=CheckCb(payment_id=link.payment_id))
    builder.adjust(1)
    await message.answer(_("payment.link"), reply_markup=builder.as_markup())
    await _retire_invoices(message, order_id, state)


async def _retire_invoices(message: ChatTarget, order_id: int, state: FSMContext) -> None:
    """The card rail is offered: delete the order's Stars invoices, so one chat shows one way to pay.
    (A pending YooKassa payment cannot be cancelled the other way round: only a held one can.)"""
    invoices = dict((await state.get_data()).get(INVOICES_KEY) or {})
    for message_id in invoices.pop(str(order_id), []):
        with contextlib.suppress(TelegramBadRequest):  # already gone, or older than 48 h
            await message.chat.delete_message(message_id)
    await state.update_data({INVOICES_KEY: invoices})


async def _send_invoice(
    message: ChatTarget,
    order_id: int,
    user: User,
    bot: Bot,
    catalogue: Catalogue,
    payments: PaymentService,
    state: FSMContext,
    tap: str,
) -> None:
    data = await state.get_data()
    if data.get(INVOICED_BY_KEY) == tap:
        # The same tap delivered again (the process died before answering it): its invoice is in the
        # chat, and a second one could be paid as well. Recorded only once sent, so a kill before that
        # sends it on the second delivery.
        return
    async with payments.sessionmaker() as session:
        order = await order_queries.get_order(session, order_id, user.id)
    if order is None or order.status != OrderStatus.AWAITING_PAYMENT:
        await message.answer(_("payment.order_not_payable"))
        return
    pack = catalogue.pack(order.pack)
    title = pack.title.get(user.language)
    invoice = await bot.send_invoice(
        chat_id=message.chat.id,
        title=title[:32],
        description=_("payment.invoice_description").format(photos=pack.photos)[:255],
        payload=stars_payload(order.id),
        currency=Currency.STARS,
        prices=[LabeledPrice(label=title[:32], amount=price_for(pack, Currency.STARS))],
        provider_token="",
    )
    invoices = dict(data.get(INVOICES_KEY) or {})
    invoices[str(order.id)] = [*invoices.get(str(order.id), []), invoice.message_id]
    await state.update_data({INVOICES_KEY: invoices, INVOICED_BY_KEY: tap})


async def receive_email(
    message: Message, state: FSMContext, session: AsyncSession, user: User, payments: PaymentService
) -> None:
    email = (message.text or "").strip()
    if not EMAIL.match(email):
        await message.answer(_("payment.bad_email"))
        return
    user.email = email
    order_id = int((await state.get_data())["order_id"])
    await session.commit()
    await state.set_state(None)  # the data keeps the order's invoices, for _retire_invoices
    await _send_yookassa_link(message, order_id, user, payments, state)


async def check_payment(query: CallbackQuery, callback_data: CheckCb, user: User, payments: PaymentService) -> None:
    try:
        status = await payments.check(callback_data.payment_id, user)
    except OrderNotPayable:
        await query.answer(_("stale.button"))
        return
    except Exception:
        await query.answer(_("payment.check_failed"), show_alert=True)
        return
    key = {
        PaymentStatus.SUCCEEDED: "payment.check.succeeded",
        PaymentStatus.CANCELED: "payment.check.canceled",
        PaymentStatus.REFUNDED: "payment.check.refunded",
    }.get(PaymentStatus(status), "payment.check.pending")
    await query.answer(_(key), show_alert=True)


async def start_free(
    query: CallbackQuery,
    callback_data: OrderCb,
    state: FSMContext,
    user: User,
    payments: PaymentService,
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


async def cancel_job(query: CallbackQuery, callback_data: JobCb, session: AsyncSession, user: User) -> None:
    job = await job_queries.get_job(session, callback_data.job_id)
    if job is None or job.user_id != user.id or query.message is None:
        await query.answer(_("stale.button"))
        return
    if not await job_queries.cancel_before_results(session, job.id, user.id):
        await session.refresh(job)
        if job.status == JobStatus.CANCELLED:  # a repeated tap: the first one cancelled it
            await query.answer(_("stale.button"))
        else:
            await query.answer(_("job.cancel_too_late"), show_alert=True)
        return
    returned = await ledger.released_for_job(session, job.id)
    await session.commit()
    await query.answer()
    if isinstance(query.message, Message) and query.message.reply_markup is not None:
        # The button sat on the queued notice or the progress message: it has done its work.
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(counted("job.cancelled", returned), reply_markup=keyboards.use_credits(job.id, returned))


async def paysupport(message: Message) -> None:
    await message.answer(_("payment.support"))


def build_router() -> Router:
    router = Router(name="payment")
    router.callback_query.register(pay_order, OrderCb.filter(F.action == "pay"))
    router.callback_query.register(start_free, OrderCb.filter(F.action == "start"))
    router.callback_query.register(pay_with, PayCb.filter())
    router.callback_query.register(check_payment, CheckCb.filter())
    router.callback_query.register(cancel_job, JobCb.filter(F.action == "cancel"))
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, F.successful_payment)
    router.message.register(paysupport, Command("paysupport"))
    router.message.register(receive_email, StateFilter(Checkout.email), F.text)
    return router
