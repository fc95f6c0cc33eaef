"""After a pack: originals, spending the credits a pack returned, and /forget (delete my photos)."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import ForgetCb, ResendCb, ResultsAction, ResultsCb
from scheduler.credits import CreditService, CreditsUnavailable
from scheduler.delivery import DeliveryService
from scheduler.originals import OriginalsService
from scheduler.results import ResultsService
from storage.models import User


async def send_originals(
    query: CallbackQuery, callback_data: ResultsCb, user: User, results: ResultsService, originals: OriginalsService
) -> None:
    job = await results.owned_job(callback_data.job_id, user.id)
    if job is None:
        await query.answer(_("stale.button"))
        return
    favourites_only = callback_data.action == ResultsAction.ORIGINALS_FAVOURITES
    offer = await originals.offer(job.id, user.id)
    if not offer.count(favourites_only=favourites_only):
        await query.answer(_("originals.gone"), show_alert=True)
        return
    if callback_data.action == ResultsAction.ORIGINALS and offer.favourites:
        await query.answer()
        if query.message is not None:
            await query.message.answer(_("originals.choose"), reply_markup=keyboards.originals_choice(job.id))
        return
    started = originals.request(job, favourites_only=favourites_only)
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


async def forget_command(message: Message) -> None:
    await message.answer(_("forget.confirm"), reply_markup=keyboards.forget_confirm())


async def forget_answer(
    query: CallbackQuery, callback_data: ForgetCb, state: FSMContext, user: User, results: ResultsService
) -> None:
    if not callback_data.confirm:
        await query.answer()
        await _say(query, _("forget.kept"))
        return
    forgotten = await results.forget(user.id)
    if forgotten.busy:
        await query.answer(_("forget.busy"), show_alert=True)
        return
    await state.clear()  # an upload in progress pointed at the photos just removed
    await query.answer()
    cancelled = "\n\n" + _("forget.orders_cancelled") if forgotten.orders_cancelled else ""
    await _say(query, _("forget.done") + cancelled)


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
    originals_actions = (ResultsAction.ORIGINALS, ResultsAction.ORIGINALS_ALL, ResultsAction.ORIGINALS_FAVOURITES)
    router.callback_query.register(send_originals, ResultsCb.filter(F.action.in_(originals_actions)))
    router.callback_query.register(use_credits, ResultsCb.filter(F.action == ResultsAction.CREDITS))
    router.callback_query.register(resend_album, ResendCb.filter())
    router.message.register(forget_command, Command("forget"))
    router.callback_query.register(forget_answer, ForgetCb.filter())
    return router
