"""Admin commands, one module per area. The router is filtered on ADMIN_IDS as a whole (the filter
sits on this parent router, so no area router is even looked at for anyone else): for other users
these commands do not exist, and their updates fall through to the rest of the tree exactly like an
unknown command (same fallback, same answer). Handlers parse and answer; ``scheduler.admin.AdminService``
acts, reads and audits.
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.filters import IsAdmin
from bot.handlers.admin import broadcast, examples, jobs, promo, providers, refunds, stats, users


async def admin_help(message: Message) -> None:
    await message.answer(_("admin.usage"))


def build_router() -> Router:
    router = Router(name="admin")
    router.message.filter(IsAdmin())
    router.callback_query.filter(IsAdmin())
    router.message.register(admin_help, Command("admin"))
    # Broadcast last: while an admin composes, a photo whose caption is a command is that command.
    for area in (stats, jobs, users, refunds, promo, providers, examples, broadcast):
        router.include_router(area.build_router())
    return router
