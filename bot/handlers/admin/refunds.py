"""/refund <payment id> [photos]: money back at the provider, credits taken back, once."""

from __future__ import annotations

from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handlers.admin.texts import args_of, money, to_int, usage
from providers.payments import PaymentProviderError
from scheduler.admin import AdminService, RefundOutcome, RefundResult
from scheduler.payments import OrderNotPayable, PaymentUnavailable
from storage.models import User


async def refund_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = args_of(command)
    payment_id = to_int(args[0]) if args else None
    photos = to_int(args[1]) if len(args) == 2 else None
    if payment_id is None or len(args) > 2 or (len(args) == 2 and (photos is None or photos < 1)):
        await usage(message, "/refund <payment id> [photos]")
        return
    try:
        outcome = await admin.refund(user.telegram_id, payment_id, photos)
    except OrderNotPayable:
        await message.answer(_("admin.no_payment").format(payment_id=payment_id))
        return
    except (PaymentProviderError, PaymentUnavailable) as error:
        await message.answer(_("admin.error").format(error=escape(str(error))[:500]))
        return
    await message.answer(_refund_text(payment_id, outcome, user.language))


def _refund_text(payment_id: int, outcome: RefundOutcome, language: str) -> str:
    if outcome.result == RefundResult.REPEATED:
        return _("admin.refund_repeated").format(payment_id=payment_id)
    if outcome.result == RefundResult.PENDING:
        return _("admin.refund_pending").format(payment_id=payment_id, status=escape(outcome.status))
    return _("admin.refunded_short" if outcome.spent else "admin.refunded").format(
        payment_id=payment_id,
        amount=money({outcome.currency: outcome.amount}, language),
        photos=outcome.photos,
        spent=outcome.spent,
    )


def build_router() -> Router:
    router = Router(name="admin.refunds")
    router.message.register(refund_command, Command("refund"))
    return router
