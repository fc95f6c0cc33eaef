"""/promo new <photos> <uses> <days>: mint a promo code (users redeem it with /promo <code> or its link)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handlers.admin.texts import args_of, usage, when
from scheduler.gifts import GiftService
from storage.models import User
from studio.gifts import parse_promo_terms

PROMO_NEW = r"(?i)^\s*new(\s|$)"


async def promo_new(message: Message, command: CommandObject, gifts: GiftService, user: User, bot: Bot) -> None:
    terms = parse_promo_terms(args_of(command)[1:])
    if terms is None:
        await usage(message, "/promo new <photos> <uses> <days>")
        return
    minted = await gifts.mint_promo(user.telegram_id, terms)
    link = f"https://t.me/{(await bot.me()).username or ''}?start=promo_{minted.code}"
    await message.answer(
        _("admin.promo.minted").format(
            code=minted.code, photos=terms.photos, uses=terms.uses, expires=when(minted.expires_at), link=link
        )
    )


def build_router() -> Router:
    router = Router(name="admin.promo")
    # Only "/promo new ...": an admin's "/promo <code>" redeems like anyone's (the user router).
    router.message.register(promo_new, Command("promo", magic=F.args.regexp(PROMO_NEW)))
    return router
