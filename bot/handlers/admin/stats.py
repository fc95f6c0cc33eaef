"""/stats [today|7d|30d] and /queue."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.handlers.admin.texts import args_of, queue_text, stats_text, usage
from bot.html_split import answer_html
from scheduler.admin import STATS_PERIODS, AdminService
from storage.models import User


async def stats_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    period = (args_of(command) or ["today"])[0].lower()
    if period not in STATS_PERIODS:
        await usage(message, f"/stats [{'|'.join(STATS_PERIODS)}]")
        return
    report = await admin.stats(user.telegram_id, period)
    await answer_html(message, stats_text(period, report, user.language))


async def queue_command(message: Message, admin: AdminService, user: User) -> None:
    snapshot = await admin.queue(user.telegram_id)
    await answer_html(message, queue_text(snapshot, await admin.provider_health()))


def build_router() -> Router:
    router = Router(name="admin.stats")
    router.message.register(stats_command, Command("stats"))
    router.message.register(queue_command, Command("queue"))
    return router
