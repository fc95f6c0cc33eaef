"""After a pack: originals, spending the credits a pack returned, and /forget (delete my photos)."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ForgetCb, ResendCb, ResultsCb
from bot.originals import OriginalsService
from scheduler.credits import CreditService, CreditsUnavailable
from scheduler.delivery import DeliveryService
from storage import jobs as job_queries
from storage import orders as order_queries
from storage import retention
from storage.files import FileStore
from storage.models import User


async def send_originals(
    query: CallbackQuery, callback_data: ResultsCb, session: AsyncSession, user: User, originals: OriginalsService
) -> None:
    job = await job_queries.get_job(session, callback_data.job_id)
    if job is None or job.user_id != user.id:
        await query.answer(_("stale.button"))
        return
    if not await originals.available(job.id, user.id):
        await query.answer(_("originals.gone"), show_alert=True)
        return
    started = originals.request(job)
    await query.answer(_("originals.preparing") if started else _("originals.on_the_way"))


async def use_credits(query: CallbackQuery, callback_data: ResultsCb, user: User, credits: CreditService) -> None:
    try:
        await credits.spend_returned(callback_data.job_id, user, tap=query.id)
    except CreditsUnavailable as refusal:
        await query.answer(_(f"credits.{refusal.reason}"), show_alert=True)
        return
    await query.answer()


async def resend_album(query: CallbackQuery, callback_data: ResendCb, user: User, delivery: DeliveryService) -> None:
    delivery.request_resend(callback_data.job_id, callback_data.chunk, user.id)
    await query.answer(_("delivery.resending"))
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)


def _forget_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.forget_confirm"), callback_data=ForgetCb(confirm=True))
    builder.button(text=_("button.forget_keep"), callback_data=ForgetCb(confirm=False))
    builder.adjust(1)
    return builder.as_markup()


async def forget_command(message: Message) -> None:
    await message.answer(_("forget.confirm"), reply_markup=_forget_keyboard())


async def forget_answer(
    query: CallbackQuery,
    callback_data: ForgetCb,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    files: FileStore,
) -> None:
    if not callback_data.confirm:
        await query.answer()
        await _say(query, _("forget.kept"))
        return
    if await retention.user_has_active_job(session, user.id):
        await query.answer(_("forget.busy"), show_alert=True)
        return
    # An open invoice or card link would otherwise take money for a pack whose photos are gone.
    cancelled = await order_queries.cancel_awaiting_orders(session, user.id)
    keys = await retention.forget_user_photos(session, user.id)
    await session.commit()
    await state.clear()  # an upload in progress pointed at the photos just removed
    for key in keys:
        await files.delete(key)
    await query.answer()
    await _say(query, _("forget.done") + ("\n\n" + _("forget.orders_cancelled") if cancelled else ""))


async def _say(query: CallbackQuery, text: str) -> None:
    """Replace the question with the answer; an old question (no longer editable) gets a new message."""
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_text(text)
            return
    if query.message is not None:
        await query.message.answer(text)


def build_router() -> Router:
    router = Router(name="results")
    router.callback_query.register(send_originals, ResultsCb.filter(F.action == "originals"))
    router.callback_query.register(use_credits, ResultsCb.filter(F.action == "credits"))
    router.callback_query.register(resend_album, ResendCb.filter())
    router.message.register(forget_command, Command("forget"))
    router.callback_query.register(forget_answer, ForgetCb.filter())
    return router
