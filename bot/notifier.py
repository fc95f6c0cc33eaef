"""Messages that background work sends to users, in their language (implements UserNotifier)."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import (
    AgainCb,
    JobAction,
    JobCb,
    MenuAction,
    MenuCb,
    OrderAction,
    OrderCb,
    ResendCb,
    ResultsAction,
    ResultsCb,
)
from bot.locales.messages_plural import PLURAL_MESSAGES

log = logging.getLogger(__name__)


class TelegramNotifier:
    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self.bot = bot
        self.i18n = i18n

    def text(self, key: str, language: str, **values: Any) -> str:
        if key in PLURAL_MESSAGES:  # the form follows {count}
            return self.i18n.gettext(key, key, int(values["count"]), locale=language).format(**values)
        return self.i18n.gettext(key, locale=language).format(**values)

    def buttons(self, spec: Any, language: str) -> InlineKeyboardMarkup | None:
        """The keyboard a background message carries: ``(kind, target, *details)`` or None."""
        if not spec:
            return None
        kind, target, *details = spec
        if target is None:
            return None
        builder = InlineKeyboardBuilder()
        if kind == "pay_again":
            builder.button(
                text=self.text("button.pay_again", language),
                callback_data=OrderCb(order_id=target, action=OrderAction.PAY),
            )
        elif kind == "cancel_job":
            builder.button(
                text=self.text("button.cancel_job", language),
                callback_data=JobCb(job_id=target, action=JobAction.CANCEL),
            )
        elif kind == "resend_chunk":
            (chunk_index,) = details
            builder.button(
                text=self.text("button.resend", language), callback_data=ResendCb(job_id=target, chunk=chunk_index)
            )
        elif kind == "after_pack":
            avatar_id, credited = details
            builder.button(
                text=self.text("button.originals", language),
                callback_data=ResultsCb(job_id=target, action=ResultsAction.ORIGINALS),
            )
            if avatar_id is not None:
                builder.button(
                    text=self.text("button.same_photos", language), callback_data=AgainCb(avatar_id=avatar_id)
                )
            builder.button(text=self.text("button.new_photos", language), callback_data=MenuCb(action=MenuAction.NEW))
            if credited:
                builder.button(
                    text=self.text("button.use_credits", language, count=credited),
                    callback_data=ResultsCb(job_id=target, action=ResultsAction.CREDITS),
                )
            builder.adjust(1)
        elif kind == "use_credits":  # the credits a failed or cancelled job gave back, in one tap
            (returned,) = details
            builder.button(
                text=self.text("button.use_credits", language, count=returned),
                callback_data=ResultsCb(job_id=target, action=ResultsAction.CREDITS),
            )
        elif kind == "new_photos":
            builder.button(text=self.text("button.new_photos", language), callback_data=MenuCb(action=MenuAction.NEW))
        else:
            return None
        return builder.as_markup()

    async def tell(self, chat_id: int, language: str, key: str, *, buttons: Any = None, **values: Any) -> int | None:
        try:
            message = await self.bot.send_message(
                chat_id, self.text(key, language, **values), reply_markup=self.buttons(buttons, language)
            )
        except TelegramAPIError as error:
            # Telling the user is best effort: the durable state is already committed.
            log.warning("could not tell chat %s (%s): %s", chat_id, key, error)
            return None
        return message.message_id
