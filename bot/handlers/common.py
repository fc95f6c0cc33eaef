"""/start (with a deep-link source) and /help."""

from __future__ import annotations

import re
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from storage.avatars import latest_ready_avatar
from storage.models import User
from storage.users import set_source_once

DEEP_LINK_SOURCE = re.compile(r"^src_([A-Za-z0-9_-]{1,60})$")


async def start(message: Message, command: CommandObject, session: AsyncSession, user: User) -> None:
    if command.args and (match := DEEP_LINK_SOURCE.match(command.args)):
        await set_source_once(session, user.id, match.group(1))
    has_previous = await latest_ready_avatar(session, user.id) is not None
    await message.answer(
        _("start.greeting").format(name=escape(user.first_name or "")),
        reply_markup=keyboards.start_menu(has_previous),
    )


async def help_command(message: Message) -> None:
    await message.answer(_("help.text"))


def build_router() -> Router:
    router = Router(name="common")
    router.message.register(start, CommandStart())
    router.message.register(help_command, Command("help"))
    return router
