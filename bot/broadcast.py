"""The Telegram side of broadcasts: :class:`TelegramBroadcastSender` implements scheduler.broadcast's
BroadcastSender port with aiogram and turns Telegram's answers into the port's outcomes."""

from __future__ import annotations

from collections.abc import Awaitable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError

from scheduler.broadcast import Blocked, BroadcastOutcome, Failed, Sent


class TelegramBroadcastSender:
    def __init__(self, bot: Bot) -> None:
        # The shared Bot: its session middleware paces broadcasts together with deliveries and replies.
        self.bot = bot

    async def send_text(self, chat_id: int, html: str) -> BroadcastOutcome:
        return await outcome_of(self.bot.send_message(chat_id, html))

    async def send_photo(self, chat_id: int, photo_file_id: str, caption_html: str | None) -> BroadcastOutcome:
        return await outcome_of(self.bot.send_photo(chat_id, photo_file_id, caption=caption_html))


async def outcome_of(send: Awaitable[object]) -> BroadcastOutcome:
    """A one-off message's outcome as the broadcast and reminder ports read it: the user blocked the
    bot, Telegram refused it, or it went."""
    try:
        await send
    except TelegramForbiddenError as failure:
        return Blocked(failure.message)
    except TelegramAPIError as failure:
        return Failed(failure.message)
    return Sent()
