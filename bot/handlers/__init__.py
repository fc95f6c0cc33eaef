"""The router tree: private chats only at the root; one router per conversation area."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.enums import ChatType

from bot.handlers import common, intake, payment


def build_root_router() -> Router:
    root = Router(name="root")
    root.message.filter(F.chat.type == ChatType.PRIVATE)
    root.callback_query.filter(F.message.chat.type == ChatType.PRIVATE)
    root.include_router(common.build_router())
    root.include_router(payment.build_router())
    root.include_router(intake.build_router())
    root.include_router(intake.build_fallback_router())
    return root
