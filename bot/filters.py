"""Filters shared by the routers."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from aiogram.types import User as TelegramUser

from bot.settings import Settings


class IsAdmin(Filter):
    """True for the Telegram ids in ADMIN_IDS (read from settings in the workflow data)."""

    async def __call__(
        self, event: TelegramObject, settings: Settings, event_from_user: TelegramUser | None = None
    ) -> bool:
        return event_from_user is not None and event_from_user.id in settings.ADMIN_IDS
