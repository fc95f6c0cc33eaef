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
from bot.settings import Settings
from storage.avatars import latest_ready_avatar
from storage.events import EventName, record_event
from storage.models import User
from storage.users import set_source_once

DEEP_LINK_SOURCE = re.compile(r"^src_([A-Za-z0-9_-]{1,60})$")


async def start(
    message: Message, command: CommandObject, session: AsyncSession, user: User, user_created: bool = False
) -> None:
    source = match.group(1) if command.args and (match := DEEP_LINK_SOURCE.match(command.args)) else None
    if source is not None:
        await set_source_once(session, user.id, source)
    if user_created:
        # A new user's first update is their /start (Telegram sends it when they open the bot).
        await record_event(session, EventName.USER_STARTED, user_id=user.id, source=source)
    if session.in_transaction():
        await session.commit()  # release the write lock before talking to Telegram
    has_previous = await latest_ready_avatar(session, user.id) is not None
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
