"""Inline keyboards of the conversation; texts come from the active locale."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import MenuCb, OrderCb, PackCb, ResultsCb, SpendCb, StyleCb, UploadCb
from bot.i18n import counted
from studio.catalogue import Catalogue, Pack
from studio.credits import Currency, format_price, price_for


def start_menu(has_previous_photos: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.new_session"), callback_data=MenuCb(action="new"))
    if has_previous_photos:
        builder.button(text=_("button.reuse_photos"), callback_data=MenuCb(action="reuse"))
    builder.adjust(1)
    return builder.as_markup()


def upload_done(avatar_id: int, count: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("button.done").format(count=count), callback_data=UploadCb(action="done", avatar_id=avatar_id)
    )
    return builder.as_markup()


def styles(catalogue: Catalogue, avatar_id: int, language: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for style in catalogue.styles:
        builder.button(text=style.name.get(language), callback_data=StyleCb(avatar_id=avatar_id, style=style.id))
    builder.adjust(1)
    return builder.as_markup()


def pack_label(pack: Pack, language: str, currencies: tuple[Currency, ...]) -> str:
    if pack.is_trial:
        return counted("pack.trial_label", pack.photos)
    prices = " / ".join(format_price(price_for(pack, currency), currency, language) for currency in currencies)
    return counted("pack.label", pack.photos, prices=prices)


def packs(
    packs_offered: list[Pack],
    avatar_id: int,
    style: str,
    language: str,
    currencies: tuple[Currency, ...],
    balance: int = 0,
) -> InlineKeyboardMarkup:
    """The pack picker. A pack the balance covers starts from it in one tap, no payment; a balance
    that is no pack's size gets its own button, so every credit can be spent."""
    builder = InlineKeyboardBuilder()
    for pack in packs_offered:
        if not pack.is_trial and pack.photos <= balance:
            builder.button(
                text=counted("pack.spend_label", pack.photos),
                callback_data=SpendCb(avatar_id=avatar_id, style=style, photos=pack.photos),
            )
        else:
            builder.button(
                text=pack_label(pack, language, currencies),
                callback_data=PackCb(avatar_id=avatar_id, style=style, pack_id=pack.id),
            )
    sizes = {pack.photos for pack in packs_offered}
    largest = max(sizes, default=0)
    if 0 < balance < largest and balance not in sizes:
        builder.button(
            text=counted("pack.spend_label", balance),
            callback_data=SpendCb(avatar_id=avatar_id, style=style, photos=balance),
        )
    builder.adjust(1)
    return builder.as_markup()


def use_credits(job_id: int, returned: int) -> InlineKeyboardMarkup | None:
    """Under a cancelled or failed pack: the credits it gave back start a new pack in one tap."""
    if returned <= 0:
        return None
    builder = InlineKeyboardBuilder()
    builder.button(
        text=counted("button.use_credits", returned), callback_data=ResultsCb(job_id=job_id, action="credits")
    )
    return builder.as_markup()


def summary(order_id: int, free: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if free:
        builder.button(text=_("button.start_free"), callback_data=OrderCb(order_id=order_id, action="start"))
    else:
        builder.button(text=_("button.pay"), callback_data=OrderCb(order_id=order_id, action="pay"))
    builder.button(text=_("button.change"), callback_data=OrderCb(order_id=order_id, action="change"))
    builder.button(text=_("button.cancel"), callback_data=OrderCb(order_id=order_id, action="cancel"))
    builder.adjust(1, 2)
    return builder.as_markup()
