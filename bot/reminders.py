"""The Telegram side of reminders: :class:`TelegramReminderSender` implements scheduler.reminders'
ReminderSender port, with the notifier's words and buttons and the broadcast's reading of refusals."""

from __future__ import annotations

from aiogram import Bot

from bot.broadcast import outcome_of
from bot.notifier import TelegramNotifier
from scheduler.broadcast import BroadcastOutcome
from scheduler.notices import Reminder


class TelegramReminderSender:
    def __init__(self, bot: Bot, notifier: TelegramNotifier) -> None:
        # The shared Bot: its session middleware paces reminders together with deliveries and replies.
        self.bot = bot
        self.notifier = notifier

    async def remind(self, chat_id: int, language: str, reminder: Reminder) -> BroadcastOutcome:
        text, buttons = self.notifier.render(reminder, language)
        return await outcome_of(self.bot.send_message(chat_id, text, reply_markup=buttons))
