"""The intake conversation: 5–8 selfies in, a style and a pack chosen, an order saved.

Handlers only translate between the chat and scheduler.intake.IntakeService, which owns every change
(photos, sets, orders) and its transactions; the conversation step lives here (steps.py).
"""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.callbacks import (
    AgainCb,
    MenuAction,
    MenuCb,
    OrderAction,
    OrderCb,
    PackCb,
    SpendCb,
    StyleCb,
    UploadAction,
    UploadCb,
)
from bot.handlers.intake.choice import order_cancel, order_change, pick_pack, pick_style, spend_pack, stray_input
from bot.handlers.intake.menu import cancel_command, new_session, reuse_photos, reuse_set, status_command
from bot.handlers.intake.steps import AFTER_UPLOAD, Intake, stale_button
from bot.handlers.intake.upload import is_image_document, receive_image, upload_done, wrong_upload_input
from bot.middlewares.intake_buttons import IntakeButtonsMiddleware

__all__ = ["Intake", "build_fallback_router", "build_router"]


async def _reject_button(query: CallbackQuery, data: dict[str, Any]) -> None:
    await stale_button(query, data["state"], data["user"], data["catalogue"], data["intake"])


def build_router() -> Router:
    router = Router(name="intake")
    router.callback_query.middleware(IntakeButtonsMiddleware(_reject_button))
    router.message.register(cancel_command, Command("cancel"))
    router.message.register(status_command, Command("status"))
    router.callback_query.register(new_session, MenuCb.filter(F.action == MenuAction.NEW))
    router.callback_query.register(reuse_photos, MenuCb.filter(F.action == MenuAction.REUSE))
    router.callback_query.register(reuse_set, AgainCb.filter())
    router.callback_query.register(
        upload_done, UploadCb.filter(F.action == UploadAction.DONE), StateFilter(Intake.uploading)
    )
    router.callback_query.register(pick_style, StyleCb.filter(), StateFilter(Intake.style))
    router.callback_query.register(pick_pack, PackCb.filter(), StateFilter(Intake.pack))
    # The button carries all it spends on (and the spend is once per picker), so no step is required.
    router.callback_query.register(spend_pack, SpendCb.filter())
    summary = StateFilter(Intake.summary)
    router.callback_query.register(order_change, OrderCb.filter(F.action == OrderAction.CHANGE), summary)
    router.callback_query.register(order_cancel, OrderCb.filter(F.action == OrderAction.CANCEL), summary)

    image_filter = F.photo | F.func(is_image_document)
    router.message.register(receive_image, image_filter, StateFilter(Intake.uploading, None, *AFTER_UPLOAD))
    router.message.register(wrong_upload_input, StateFilter(Intake.uploading))
    router.message.register(stray_input, StateFilter(*AFTER_UPLOAD), ~F.text.startswith("/"))
    return router


def build_fallback_router() -> Router:
    """Registered last: any button no other handler took is stale or forged."""
    router = Router(name="fallback")
    router.callback_query.register(stale_button)
    router.message.register(unknown_message)
    return router


async def unknown_message(message: Message) -> None:
    await message.answer(_("unknown.message"))
