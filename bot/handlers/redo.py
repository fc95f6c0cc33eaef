"""Redo by reply: 🔁, "redo", "ещё" or /redo in reply to a portrait asks scheduler/redo.py for a new take."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import RedoCb
from bot.settings import Settings
from scheduler.redo import RedoAnswer, RedoOutcome, RedoService
from storage.models import User
from studio.redo import is_redo_trigger


def picker_promise(settings: Settings) -> str:
    """The guarantee and the free redos, as the pack picker states them ("" when both are off)."""
    # The guarantee stands on the face checks: without them nothing tells a like portrait from an unlike one.
    share = round(settings.LIKENESS_GUARANTEE * 100) if settings.FACE_CHECKS else 0
    free = settings.FREE_REDOS_PER_PACK
    return _("redo.picker").format(share=share, free=free) if share or free else ""


def _answer(answer: RedoAnswer, portrait: int, request: int) -> tuple[str, InlineKeyboardMarkup | None]:
    match answer.outcome:
        case RedoOutcome.QUEUED:
            text = _(f"redo.queued.{answer.kind}").format(free_left=answer.free_left, balance=answer.balance)
            return text, None
        case RedoOutcome.CONFIRM:
            return _("redo.confirm").format(balance=answer.balance), keyboards.redo_paid(portrait, request)
        case _:
            return _(f"redo.{answer.outcome}"), None


async def redo_reply(message: Message, user: User, redo: RedoService) -> None:
    replied = message.reply_to_message.message_id if message.reply_to_message else None
    answer = await redo.request(user, message.chat.id, replied, message.message_id)
    text, buttons = _answer(answer, replied or 0, message.message_id)
    await message.answer(text, reply_markup=buttons)


async def redo_paid(query: CallbackQuery, callback_data: RedoCb, user: User, redo: RedoService) -> None:
    assert query.message is not None  # the root router admits only queries from a private chat's message
    answer = await redo.confirm(user, query.message.chat.id, callback_data.portrait, callback_data.request)
    text, _buttons = _answer(answer, callback_data.portrait, callback_data.request)
    await query.answer()
    await query.message.answer(text)


def build_router() -> Router:
    router = Router(name="redo")
    router.message.register(redo_reply, Command("redo"))
    router.message.register(redo_reply, F.text.func(is_redo_trigger))
    router.callback_query.register(redo_paid, RedoCb.filter())
    return router
