"""The router tree: private chats only at the root; one router per conversation area."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.enums import ChatType

from bot.handlers import admin, common, favourites, gifts, intake, payment, redo, results, settings


def build_root_router() -> Router:
    root = Router(name="root")
    root.message.filter(F.chat.type == ChatType.PRIVATE)
    root.callback_query.filter(F.message.chat.type == ChatType.PRIVATE)
    root.message_reaction.filter(F.chat.type == ChatType.PRIVATE)
    # First, so admin commands work in any conversation state; filtered on ADMIN_IDS as a whole, so
    # for everyone else the update falls through to the routers below as if it did not exist.
    root.include_router(admin.build_router())
    # Before common: a gift, promo or invitation link is a /start with more to do than greet.
    root.include_router(gifts.build_router())
    root.include_router(common.build_router())
    root.include_router(payment.build_router())
    root.include_router(results.build_router())
    # Before intake: a reply 🔁 to a portrait is a redo in any conversation step.
    root.include_router(redo.build_router())
    root.include_router(favourites.build_router())
    root.include_router(settings.build_router())
    root.include_router(intake.build_router())
    root.include_router(intake.build_fallback_router())
    return root
