"""Inline keyboards of the conversation; texts come from the active locale."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import (
    AdminBroadcastAction,
    AdminBroadcastCb,
    AdminJobAction,
    AdminJobCb,
    AdminProviderAction,
    AdminProviderCb,
    AdminUserAction,
    AdminUserCb,
    AgainCb,
    BroadcastSegment,
    CheckCb,
    ForgetCb,
    GiftAction,
    GiftCb,
    JobAction,
    JobCb,
    MenuAction,
    MenuCb,
    OrderAction,
    OrderCb,
    PackCb,
    PayCb,
    PayMethod,
    RedoCb,
    ResendCb,
    ResultsAction,
    ResultsCb,
    SettingsCb,
    SpendCb,
    StyleCb,
    UploadAction,
    UploadCb,
)
from bot.i18n import counted
from scheduler.admin import ProviderHealth
from studio.catalogue import Catalogue, Pack
from studio.credits import Currency, format_price, price_for


def start_menu(has_previous_photos: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.new_session"), callback_data=MenuCb(action=MenuAction.NEW))
    if has_previous_photos:
        builder.button(text=_("button.reuse_photos"), callback_data=MenuCb(action=MenuAction.REUSE))
    builder.button(text=_("button.gift"), callback_data=MenuCb(action=MenuAction.GIFT))
    builder.adjust(1)
    return builder.as_markup()


def upload_done(avatar_id: int, count: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("button.done").format(count=count), callback_data=UploadCb(action=UploadAction.DONE, avatar_id=avatar_id)
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
        text=counted("button.use_credits", returned),
        callback_data=ResultsCb(job_id=job_id, action=ResultsAction.CREDITS),
    )
    return builder.as_markup()


def _one(text: str, callback_data: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=text, callback_data=callback_data)
    return builder.as_markup()


def cancel_job(job_id: int) -> InlineKeyboardMarkup:
    return _one(_("button.cancel_job"), JobCb(job_id=job_id, action=JobAction.CANCEL).pack())


def pay_again(order_id: int) -> InlineKeyboardMarkup:
    return _one(_("button.pay_again"), OrderCb(order_id=order_id, action=OrderAction.PAY).pack())


def new_photos() -> InlineKeyboardMarkup:
    return _one(_("button.new_photos"), MenuCb(action=MenuAction.NEW).pack())


def resend(job_id: int, chunk_index: int) -> InlineKeyboardMarkup:
    return _one(_("button.resend"), ResendCb(job_id=job_id, chunk=chunk_index).pack())


def after_pack(job_id: int, avatar_id: int | None, credited: int) -> InlineKeyboardMarkup:
    """Under the closing message: originals, a profile photo, the same photos again, new photos, what came back."""
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.originals"), callback_data=ResultsCb(job_id=job_id, action=ResultsAction.ORIGINALS))
    builder.button(
        text=_("button.profile_photo"), callback_data=ResultsCb(job_id=job_id, action=ResultsAction.PROFILE_PHOTO)
    )
    if avatar_id is not None:
        builder.button(text=_("button.same_photos"), callback_data=AgainCb(avatar_id=avatar_id))
    builder.button(text=_("button.new_photos"), callback_data=MenuCb(action=MenuAction.NEW))
    if credited:
        builder.button(
            text=counted("button.use_credits", credited),
            callback_data=ResultsCb(job_id=job_id, action=ResultsAction.CREDITS),
        )
    builder.adjust(1)
    return builder.as_markup()


def originals_choice(job_id: int) -> InlineKeyboardMarkup:
    """The pack has favourites: all its originals, or only those."""
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("button.originals_favourites"),
        callback_data=ResultsCb(job_id=job_id, action=ResultsAction.ORIGINALS_FAVOURITES),
    )
    builder.button(
        text=_("button.originals_all"), callback_data=ResultsCb(job_id=job_id, action=ResultsAction.ORIGINALS_ALL)
    )
    builder.adjust(1)
    return builder.as_markup()


def reminder_pay(order_id: int) -> InlineKeyboardMarkup:
    """Under the unpaid-order reminder: the order summary's own Pay button."""
    return _one(_("button.pay"), OrderCb(order_id=order_id, action=OrderAction.PAY).pack())


def reminder_credits(avatar_id: int | None) -> InlineKeyboardMarkup:
    """Under the idle-credits reminder: a pack from the last photo set (the picker offers the balance),
    or new photos when no set is left."""
    if avatar_id is not None:
        return _one(_("button.same_photos"), AgainCb(avatar_id=avatar_id).pack())
    return new_photos()


def reminder_originals(job_id: int) -> InlineKeyboardMarkup:
    return _one(_("button.originals"), ResultsCb(job_id=job_id, action=ResultsAction.ORIGINALS).pack())


def settings(reminders: bool) -> InlineKeyboardMarkup:
    """/settings: each button carries the value it sets, so a double tap or an old message sets it
    again instead of flipping it back."""
    key = "button.reminders_on" if reminders else "button.reminders_off"
    return _one(_(key), SettingsCb(reminders=not reminders).pack())


def redo_paid(portrait_message_id: int, request_message_id: int) -> InlineKeyboardMarkup:
    """The one-tap confirmation of a redo that costs a credit."""
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("button.redo_paid"), callback_data=RedoCb(portrait=portrait_message_id, request=request_message_id)
    )
    return builder.as_markup()


def summary(order_id: int, free: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if free:
        builder.button(text=_("button.start_free"), callback_data=OrderCb(order_id=order_id, action=OrderAction.START))
    else:
        builder.button(text=_("button.pay"), callback_data=OrderCb(order_id=order_id, action=OrderAction.PAY))
    builder.button(text=_("button.change"), callback_data=OrderCb(order_id=order_id, action=OrderAction.CHANGE))
    builder.button(text=_("button.cancel"), callback_data=OrderCb(order_id=order_id, action=OrderAction.CANCEL))
    builder.adjust(1, 2)
    return builder.as_markup()


# ---------------------------------------------------------------- payment


def pay_methods(order_id: int, pack: Pack, language: str) -> InlineKeyboardMarkup:
    """Card or Stars, each with the pack's price in its currency."""
    builder = InlineKeyboardBuilder()
    for method, currency, key in (
        (PayMethod.YOOKASSA, Currency.RUB, "button.pay_card"),
        (PayMethod.STARS, Currency.STARS, "button.pay_stars"),
    ):
        price = format_price(price_for(pack, currency), currency, language)
        builder.button(text=_(key).format(price=price), callback_data=PayCb(order_id=order_id, method=method))
    builder.adjust(1)
    return builder.as_markup()


def pay_link(payment_id: int, url: str, amount: int, language: str) -> InlineKeyboardMarkup:
    """The YooKassa link, and a button that asks YooKassa about the payment now."""
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.pay_link").format(price=format_price(amount, Currency.RUB, language)), url=url)
    builder.button(text=_("button.check_payment"), callback_data=CheckCb(payment_id=payment_id))
    builder.adjust(1)
    return builder.as_markup()


# ---------------------------------------------------------------- results


def forget_confirm() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.forget_confirm"), callback_data=ForgetCb(confirm=True))
    builder.button(text=_("button.forget_keep"), callback_data=ForgetCb(confirm=False))
    builder.adjust(1)
    return builder.as_markup()


# ---------------------------------------------------------------- admin

ADMIN_GRANT_PHOTOS = (1, 5, 10)


def segment_label(segment: BroadcastSegment) -> str:
    return {
        BroadcastSegment.ALL: _("admin.broadcast.segment.all"),
        BroadcastSegment.PAID: _("admin.broadcast.segment.paid"),
        BroadcastSegment.NEVER_PAID: _("admin.broadcast.segment.never_paid"),
        BroadcastSegment.LANG_RU: _("admin.broadcast.segment.lang_ru"),
        BroadcastSegment.LANG_EN: _("admin.broadcast.segment.lang_en"),
    }[segment]


def admin_job(job_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for action, text in (
        (AdminJobAction.RETRY, _("admin.button.retry")),
        (AdminJobAction.CANCEL, _("admin.button.cancel")),
        (AdminJobAction.RESEND, _("admin.button.resend")),
    ):
        builder.button(text=text, callback_data=AdminJobCb(action=action, job_id=job_id))
    builder.adjust(1)
    return builder.as_markup()


def admin_user(user_id: int, banned: bool) -> InlineKeyboardMarkup:
    """Grant buttons in a row, then ban or unban."""
    builder = InlineKeyboardBuilder()
    for photos in ADMIN_GRANT_PHOTOS:
        builder.button(
            text=_("admin.button.grant").format(photos=photos),
            callback_data=AdminUserCb(action=AdminUserAction.GRANT, user_id=user_id, photos=photos),
        )
    if banned:
        action, text = AdminUserAction.UNBAN, _("admin.button.unban")
    else:
        action, text = AdminUserAction.BAN, _("admin.button.ban")
    builder.button(text=text, callback_data=AdminUserCb(action=action, user_id=user_id))
    builder.adjust(len(ADMIN_GRANT_PHOTOS), 1)
    return builder.as_markup()


def admin_providers(providers: Sequence[ProviderHealth]) -> InlineKeyboardMarkup | None:
    """Pause or resume each provider; make any but the first the primary."""
    if not providers:
        return None
    builder = InlineKeyboardBuilder()
    for index, provider in enumerate(providers):
        if provider.paused:
            switch, text = AdminProviderAction.RESUME, _("admin.button.resume")
        else:
            switch, text = AdminProviderAction.PAUSE, _("admin.button.pause")
        builder.button(
            text=text.format(name=provider.name), callback_data=AdminProviderCb(action=switch, name=provider.name)
        )
        if index:
            builder.button(
                text=_("admin.button.primary").format(name=provider.name),
                callback_data=AdminProviderCb(action=AdminProviderAction.PRIMARY, name=provider.name),
            )
    builder.adjust(2)
    return builder.as_markup()


def broadcast_segments(broadcast_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for segment in BroadcastSegment:
        builder.button(
            text=segment_label(segment),
            callback_data=AdminBroadcastCb(
                action=AdminBroadcastAction.SEGMENT, broadcast_id=broadcast_id, segment=segment
            ),
        )
    _broadcast_button(builder, broadcast_id, AdminBroadcastAction.DISCARD)
    builder.adjust(1, 2, 2, 1)
    return builder.as_markup()


def broadcast_confirm(broadcast_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    _broadcast_button(builder, broadcast_id, AdminBroadcastAction.SEND)
    _broadcast_button(builder, broadcast_id, AdminBroadcastAction.DISCARD)
    return builder.as_markup()


def broadcast_running(broadcast_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    _broadcast_button(builder, broadcast_id, AdminBroadcastAction.STOP)
    return builder.as_markup()


def _broadcast_button(builder: InlineKeyboardBuilder, broadcast_id: int, action: AdminBroadcastAction) -> None:
    text = {
        AdminBroadcastAction.SEND: _("admin.button.send"),
        AdminBroadcastAction.DISCARD: _("admin.button.discard"),
        AdminBroadcastAction.STOP: _("admin.button.stop"),
    }[action]
    builder.button(text=text, callback_data=AdminBroadcastCb(action=action, broadcast_id=broadcast_id))


# ---------------------------------------------------------------- gifts


def gift_packs(packs: Sequence[Pack], language: str, currencies: tuple[Currency, ...]) -> InlineKeyboardMarkup:
    """The packs one can give, each with its price in the currencies on offer."""
    builder = InlineKeyboardBuilder()
    for pack in packs:
        builder.button(
            text=pack_label(pack, language, currencies), callback_data=GiftCb(action=GiftAction.PACK, pack_id=pack.id)
        )
    builder.adjust(1)
    return builder.as_markup()


def gift_pay_methods(order_id: int, pack: Pack, language: str, methods: Sequence[PayMethod]) -> InlineKeyboardMarkup:
    """The payment methods on offer for a gift's order (the ordinary Pay buttons)."""
    builder = InlineKeyboardBuilder()
    for method, currency, key in (
        (PayMethod.YOOKASSA, Currency.RUB, "button.pay_card"),
        (PayMethod.STARS, Currency.STARS, "button.pay_stars"),
    ):
        if method in methods:
            price = format_price(price_for(pack, currency), currency, language)
            builder.button(text=_(key).format(price=price), callback_data=PayCb(order_id=order_id, method=method))
    builder.adjust(1)
    return builder.as_markup()


def gift_link(gift_id: int, link: str) -> InlineKeyboardMarkup:
    """Under a paid gift: share its link, or take the money back while it is unopened."""
    builder = InlineKeyboardBuilder()
    builder.button(text=_("button.gift_share"), url=f"https://t.me/share/url?url={quote(link, safe='')}")
    builder.button(text=_("button.gift_refund"), callback_data=GiftCb(action=GiftAction.REFUND, gift_id=gift_id))
    builder.adjust(1)
    return builder.as_markup()
