"""/start (with a deep-link source) and /help."""

from __future__ import annotations

import re
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.settings import Settings
from scheduler.accounts import AccountService
from storage.models import User

DEEP_LINK_SOURCE = re.compile(r"^src_([A-Za-z0-9_-]{1,60})$")


def deep_link_source(args: str | None) -> str | None:
    """``src_<name>`` from t.me/<bot>?start=src_<name>; anything else is no source."""
    match = DEEP_LINK_SOURCE.match(args) if args else None
    return match.group(1) if match else None


async def start(
    message: Message, command: CommandObject, user: User, accounts: AccountService, user_created: bool = False
) -> None:
    source = deep_link_source(command.args)
    has_previous = await accounts.started(user.id, source=source, first_time=user_created)
    await message.answer(
        _("start.greeting").format(name=escape(user.first_name or "")),
        reply_markup=keyboards.start_menu(has_previous),
    )


async def help_command(message: Message, settings: Settings) -> None:
    await message.answer(
        _("help.text").format(
            reference_days=settings.REFERENCE_RETENTION_DAYS, result_days=settings.RESULT_RETENTION_DAYS
        )
    )


def build_router() -> Router:
    router = Router(name="common")
    router.message.register(start, CommandStart())
    router.message.register(help_command, Command("help"))
    return router
