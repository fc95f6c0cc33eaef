"""/settings: the user's own switches (for now, gentle reminders on or off)."""

from __future__ import annotations

import contextlib

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import SettingsCb
from scheduler.accounts import AccountService
from storage.models import User


async def settings_command(message: Message, user: User) -> None:
    await message.answer(_("settings.text"), reply_markup=keyboards.settings(user.reminders_enabled))


async def set_reminders(query: CallbackQuery, callback_data: SettingsCb, user: User, accounts: AccountService) -> None:
    await accounts.set_reminders(user, callback_data.reminders)
    await query.answer(_("settings.reminders_on") if callback_data.reminders else _("settings.reminders_off"))
    if isinstance(query.message, Message):
        # "message is not modified" when an old message's button set what was already set.
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=keyboards.settings(callback_data.reminders))


def build_router() -> Router:
    router = Router(name="settings")
    router.message.register(settings_command, Command("settings"))
    router.callback_query.register(set_reminders, SettingsCb.filter())
    return router
