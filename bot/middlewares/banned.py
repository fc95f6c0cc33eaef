"""Banned users get one polite message, once per ban, and nothing else happens for them.

Runs after the user middleware (it needs the ``user`` row). "Once" is a conditional UPDATE of the
ban row (``storage.admin.claim_ban_notice``), so it holds across updates, restarts and processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, Update
from aiogram.utils.i18n import I18n

from bot.middlewares.throttling import is_payment_update
from storage.admin import claim_ban_notice
from storage.models import User


class BannedUserMiddleware(BaseMiddleware):
    def __init__(self, i18n: I18n) -> None:
        self.i18n = i18n

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("user")
        if user is None or not user.is_banned or is_payment_update(event):
            # A banned user's pre-checkout is refused and their payment returned by the payment
            # handlers; swallowing either would keep money without a word.
            return await handler(event, data)
        if not isinstance(event, Update):
            return None
        message, query = event.message, event.callback_query
        if not isinstance(message, Message) and not isinstance(query, CallbackQuery):
            return None  # nothing to answer (membership changes, ...)
        session = data["session"]
        first = await claim_ban_notice(session, user.id)
        await session.commit()
        text = self.i18n.gettext("banned", locale=user.language)
        if isinstance(message, Message):
            if first:
                await message.answer(text)
        elif isinstance(query, CallbackQuery):
            # A button must be answered or the client spins; only the first answer carries words.
            await query.answer(text if first else None, show_alert=first)
        return None
