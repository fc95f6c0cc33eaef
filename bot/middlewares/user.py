"""Registers the sender once and hands the ``user`` row to handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from aiogram.types import User as TelegramUser
from aiogram.utils.i18n import I18n

from bot.i18n import pick_language
from storage.users import TelegramProfile, register_user


class UserMiddleware(BaseMiddleware):
    def __init__(self, i18n: I18n, on_unblocked: Callable[[], None] | None = None) -> None:
        self.i18n = i18n
        self.on_unblocked = on_unblocked

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        from_user: TelegramUser | None = data.get("event_from_user")
        if from_user is None or from_user.is_bot:
            return await handler(event, data)
        profile = TelegramProfile(
            telegram_id=from_user.id,
            username=from_user.username,
            first_name=from_user.first_name,
            language=pick_language(from_user.language_code),
        )
        session = data["session"]
        user, created = await register_user(session, profile)
        if session.in_transaction():
            # Release SQLite's write lock now, not at the end of a long handler.
            await session.commit()
        data["user"] = user
        data["user_created"] = created
        if user.is_blocked and isinstance(event, Update) and (event.message or event.callback_query):
            # Writing to us again means the bot is unblocked: resume any paused delivery. Committed
            # here, so delivery reads it when woken and no write lock is held through the handler.
            user.is_blocked = False
            await session.commit()
            if self.on_unblocked is not None:
                self.on_unblocked()
        # Banned users stop in the next middleware (bot/middlewares/banned.py), which tells them once.
        return await handler(event, data)
