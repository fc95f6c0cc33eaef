"""The intake's buttons name what they act on (a set, a style, a pack, an order). On the intake router,
before its handler runs, a tapped button is checked against the conversation's current step and the
catalogue: a button of an earlier step, an abandoned session or forged data is turned away here, once,
with the stale-button answer; otherwise the handler is handed what the button names.

Handed to the handler: ``avatar_id`` (the step's set), ``style`` and ``pack`` (catalogue entries), as
far as the button names them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, TelegramObject

from bot.callbacks import OrderCb, PackCb, StyleCb, UploadCb
from scheduler.intake import IntakeService
from studio.catalogue import Catalogue

Rejected = Callable[[CallbackQuery, dict[str, Any]], Awaitable[Any]]


class IntakeButtonsMiddleware(BaseMiddleware):
    """Inner middleware of the intake router's callback queries (so the button's filter has matched and
    ``callback_data`` is unpacked); ``rejected`` answers a button that names something else."""

    def __init__(self, rejected: Rejected) -> None:
        self.rejected = rejected

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, CallbackQuery)  # registered on callback queries only
        named = await _named(data)
        if named is None:
            return await self.rejected(event, data)
        return await handler(event, {**data, **named})


async def _named(data: dict[str, Any]) -> dict[str, Any] | None:
    """What the button names, when it is what the current step shows; None for a stale or forged one."""
    button = data.get("callback_data")
    if not isinstance(button, UploadCb | StyleCb | PackCb | OrderCb):
        return {}  # buttons that carry all they act on (menu, reuse, spend)
    state: FSMContext = data["state"]
    step = await state.get_data()
    if isinstance(button, OrderCb):
        return {"avatar_id": step.get("avatar_id")} if step.get("order_id") == button.order_id else None
    if step.get("avatar_id") != button.avatar_id:
        return None
    if isinstance(button, UploadCb):
        return {"avatar_id": button.avatar_id}
    catalogue: Catalogue = data["catalogue"]
    style = catalogue.find_style(button.style)
    if style is None:
        return None
    if isinstance(button, StyleCb):
        return {"avatar_id": button.avatar_id, "style": style}
    pack = catalogue.find_pack(button.pack_id)
    if step.get("style") != button.style or pack is None:
        return None
    intake: IntakeService = data["intake"]
    if pack not in await intake.offered_packs(data["user"].id):
        return None  # the trial, taken since the picker was shown
    return {"avatar_id": button.avatar_id, "style": style, "pack": pack}
