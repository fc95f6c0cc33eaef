"""Gifts, promo codes and invitations: /gift (and its menu button), gift and promo links, /promo,
/invite. Paying for a gift is the ordinary payment conversation (bot/handlers/payment.py)."""

from __future__ import annotations

import contextlib
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import GiftAction, GiftCb, MenuAction, MenuCb, PayMethod
from bot.handlers.chat import ChatTarget
from bot.i18n import counted
from bot.notifier import gift_link
from bot.settings import Settings
from scheduler.gifts import GiftOverview, GiftService, GiftUnavailable, Redeemed
from scheduler.referrals import ReferralService
from storage.models import User
from studio.credits import Currency
from studio.gifts import GIFT_LINK, PROMO_LINK, REF_LINK, link_code, referrer_telegram_id

METHOD_FOR = {Currency.RUB: PayMethod.YOOKASSA, Currency.STARS: PayMethod.STARS}


async def start_gift(
    message: Message, command: CommandObject, user: User, gifts: GiftService, user_created: bool = False
) -> None:
    outcome = await gifts.open_link(user, link_code(GIFT_LINK, command.args), first_time=user_created)
    await message.answer(_redeemed_text(outcome, "gift"), reply_markup=keyboards.start_menu(outcome.has_previous))


async def start_promo(
    message: Message, command: CommandObject, user: User, gifts: GiftService, user_created: bool = False
) -> None:
    outcome = await gifts.open_promo_link(user, link_code(PROMO_LINK, command.args), first_time=user_created)
    await message.answer(_redeemed_text(outcome, "promo"), reply_markup=keyboards.start_menu(outcome.has_previous))


async def start_ref(
    message: Message, command: CommandObject, user: User, referrals: ReferralService, user_created: bool = False
) -> None:
    has_previous = await referrals.started(user, referrer_telegram_id(command.args), first_time=user_created)
    await message.answer(
        _("start.greeting").format(name=escape(user.first_name or "")),
        reply_markup=keyboards.start_menu(has_previous),
    )


def _redeemed_text(outcome: Redeemed, kind: str) -> str:
    if outcome.refusal is not None:
        return _(f"{kind}.refused.{outcome.refusal}")
    return counted(f"{kind}.redeemed", outcome.photos, balance=outcome.balance)


async def gift_command(message: Message, user: User, settings: Settings, gifts: GiftService, bot: Bot) -> None:
    await _show_gifts(message, await gifts.overview(user), user, settings, bot)


async def gift_menu(query: CallbackQuery, user: User, settings: Settings, gifts: GiftService, bot: Bot) -> None:
    assert query.message is not None  # the root router admits only buttons on a private chat's message
    await query.answer()
    await _show_gifts(query.message, await gifts.overview(user), user, settings, bot)


async def _show_gifts(chat: ChatTarget, overview: GiftOverview, user: User, settings: Settings, bot: Bot) -> None:
    if overview.waiting:
        username = (await bot.me()).username or ""
        for gift in overview.waiting:
            link = gift_link(username, gift.code)
            text = counted("gift.waiting", gift.photos, code=gift.code, link=link)
            await chat.answer(text, reply_markup=keyboards.gift_link(gift.gift_id, link))
    markup = keyboards.gift_packs(overview.packs, user.language, settings.payable_currencies)
    await chat.answer(_("gift.choose_pack"), reply_markup=markup)


async def gift_pack(
    query: CallbackQuery, callback_data: GiftCb, user: User, settings: Settings, gifts: GiftService
) -> None:
    methods = [METHOD_FOR[currency] for currency in settings.payable_currencies]
    if query.message is None or not methods:
        await query.answer(_("payment.no_methods" if query.message else "stale.button"), show_alert=True)
        return
    try:
        order = await gifts.order(user, callback_data.pack_id, query.id)
    except GiftUnavailable:
        await query.answer(_("stale.button"))
        return
    await query.answer()
    markup = keyboards.gift_pay_methods(order.order_id, order.pack, user.language, methods)
    await query.message.answer(counted("gift.pay", order.pack.photos), reply_markup=markup)


async def gift_refund(query: CallbackQuery, callback_data: GiftCb, user: User, gifts: GiftService) -> None:
    refusal = await gifts.refund(user, callback_data.gift_id)
    if refusal is not None:
        await query.answer(_(f"gift.refund.{refusal}"), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramBadRequest):  # the link is dead now: its buttons go
            await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(_("gift.refunded"))


async def promo_command(message: Message, command: CommandObject, user: User, gifts: GiftService) -> None:
    if not command.args:
        await message.answer(_("promo.usage"))
        return
    await message.answer(_redeemed_text(await gifts.redeem_promo(user, command.args), "promo"))


async def invite_command(message: Message, user: User, referrals: ReferralService, bot: Bot) -> None:
    view = await referrals.invite(user)
    link = f"https://t.me/{(await bot.me()).username or ''}?start={view.start_parameter}"
    if view.bonus:
        await message.answer(counted("invite.text", view.bonus, link=link, invited=view.invited, paid=view.paid))
    else:
        await message.answer(_("invite.text_no_bonus").format(link=link, invited=view.invited))


def build_router() -> Router:
    """Before the common router: these /start links are more specific than its plain /start."""
    router = Router(name="gifts")
    router.message.register(start_gift, CommandStart(deep_link=True, magic=F.args.regexp(GIFT_LINK)))
    router.message.register(start_promo, CommandStart(deep_link=True, magic=F.args.regexp(PROMO_LINK)))
    router.message.register(start_ref, CommandStart(deep_link=True, magic=F.args.regexp(REF_LINK)))
    router.message.register(gift_command, Command("gift"))
    router.message.register(promo_command, Command("promo"))
    router.message.register(invite_command, Command("invite"))
    router.callback_query.register(gift_menu, MenuCb.filter(F.action == MenuAction.GIFT))
    router.callback_query.register(gift_pack, GiftCb.filter(F.action == GiftAction.PACK))
    router.callback_query.register(gift_refund, GiftCb.filter(F.action == GiftAction.REFUND))
    return router
