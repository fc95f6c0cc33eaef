"""Messages that background work sends to users, in their language (implements UserNotifier): each
notice of scheduler/notices.py becomes a text and its buttons here, and nowhere else."""

from __future__ import annotations

import logging
from typing import Any, assert_never

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n

from bot import keyboards
from bot.locales.catalogue import plural_messages
from scheduler.notices import (
    BroadcastReport,
    CreditsReminder,
    DeliveryUncertain,
    GiftPaid,
    GuaranteeSettled,
    JobFailed,
    JobQueued,
    Notice,
    OriginalsGone,
    OriginalsNotSent,
    OriginalsReminder,
    PackFinished,
    PaymentCanceled,
    PaymentReminder,
    PaymentReturned,
    ProgressShown,
    ProviderAlert,
    RedoFailed,
    ReferralPaid,
    RefundCanceled,
    SelfiesMissing,
)
from studio.credits import Currency, format_price

log = logging.getLogger(__name__)

Rendered = tuple[str, InlineKeyboardMarkup | None]


def gift_link(bot_username: str, code: str) -> str:
    """The link a gift's buyer forwards: whoever opens it first gets the gift."""
    return f"https://t.me/{bot_username}?start=gift_{code}"


def credits_text(amount: float | None) -> str:
    """A provider balance as people write it: 1250, 42.5 (Kie answers fractions), ? when unknown."""
    if amount is None:
        return "?"
    return f"{amount:.2f}".rstrip("0").rstrip(".")


class TelegramNotifier:
    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self.bot = bot
        self.i18n = i18n
        self.plural_keys = frozenset(plural_messages())
        # t.me/<this>: the bot's username, asked once (getMe), for the links some notices carry.
        self.bot_username = ""

    def text(self, key: str, language: str, **values: Any) -> str:
        if key in self.plural_keys:  # the form follows {count}
            return self.i18n.gettext(key, key, int(values["count"]), locale=language).format(**values)
        return self.i18n.gettext(key, locale=language).format(**values)

    def render(self, notice: Notice, language: str) -> Rendered:
        """The text and the buttons of ``notice`` in ``language`` (keyboards read the active locale)."""
        with self.i18n.context(), self.i18n.use_locale(language):
            return self._render(notice, language)

    def _render(self, notice: Notice, language: str) -> Rendered:
        text = self.text
        match notice:
            case JobQueued(job_id=job_id, photos=photos, position=position, paid=paid):
                key = "payment.succeeded" if paid else "job.queued"
                return text(key, language, photos=photos, position=position), keyboards.cancel_job(job_id)
            case PaymentCanceled(order_id=order_id, expired=expired):
                key = "payment.canceled.expired" if expired else "payment.canceled.other"
                return text(key, language), keyboards.pay_again(order_id)
            case PaymentReturned(order_id=order_id, reason=reason, amount=amount, currency=currency):
                price = format_price(amount, currency, language)
                return text(f"payment.returned.{reason}", language, order_id=order_id, amount=price), None
            case RefundCanceled() as refund:
                values = {"provider_id": refund.provider_refund_id, "payment_id": refund.payment_id}
                price = format_price(refund.amount_kopecks, Currency.RUB, language)
                return text("admin.refund_canceled", language, refund_id=refund.refund_id, amount=price, **values), None
            case GiftPaid(gift_id=gift_id, code=code, photos=photos):
                link = gift_link(self.bot_username, code)
                return text("gift.paid", language, count=photos, code=code, link=link), keyboards.gift_link(
                    gift_id, link
                )
            case ReferralPaid(photos=photos):
                return text("referral.paid", language, count=photos), None
            case JobFailed(job_id=job_id, returned=returned):
                return text("job.failed", language, count=returned), keyboards.use_credits(job_id, returned)
            case SelfiesMissing(released=released):
                return text("job.failed_no_selfies", language, count=released), keyboards.new_photos()
            case ProgressShown(job_id=job_id, text=progress, cancellable=cancellable):
                return progress, keyboards.cancel_job(job_id) if cancellable else None
            case DeliveryUncertain(job_id=job_id, chunk_index=chunk_index, portraits=portraits):
                return text("delivery.uncertain", language, count=portraits), keyboards.resend(job_id, chunk_index)
            case PackFinished(job_id=job_id, avatar_id=avatar_id, delivered=delivered, credited=credited) as finished:
                key = "delivery.finished_partial" if credited else "delivery.finished"
                buttons = keyboards.after_pack(job_id, avatar_id, credited)
                return "\n\n".join(
                    [text(key, language, count=delivered, credited=credited), *self._redo_lines(finished, language)]
                ), buttons
            case RedoFailed(paid=paid):
                return text(f"redo.failed.{'paid' if paid else 'free'}", language), None
            case GuaranteeSettled(delivered=delivered, credited=credited):
                return text("redo.guarantee.settled", language, delivered=delivered, credited=credited), None
            case OriginalsGone():
                return text("originals.gone", language), None
            case OriginalsNotSent():
                return text("originals.not_sent", language), None
            case BroadcastReport() as report:
                counts = {"sent": report.sent, "blocked": report.blocked, "failed": report.failed}
                return text(
                    "admin.broadcast.report", language, broadcast_id=report.broadcast_id, total=report.total, **counts
                ), None
            case ProviderAlert() as alert:
                key = f"admin.provider_alert.{alert.condition}.{'on' if alert.active else 'off'}"
                values = {"balance": credits_text(alert.balance), "threshold": credits_text(alert.threshold)}
                return text(key, language, provider=alert.provider, model=alert.model or "?", **values), None
            case PaymentReminder(order_id=order_id, photos=photos):
                return text("reminder.unpaid_order", language, count=photos), keyboards.reminder_pay(order_id)
            case CreditsReminder(credits=credits, avatar_id=avatar_id):
                return text("reminder.idle_credits", language, count=credits), keyboards.reminder_credits(avatar_id)
            case OriginalsReminder(job_id=job_id, days=days):
                return text("reminder.originals_expiring", language, count=days), keyboards.reminder_originals(job_id)
            case _:
                assert_never(notice)

    def _redo_lines(self, finished: PackFinished, language: str) -> list[str]:
        """The closing message's word on the likeness guarantee and on redo by reply."""
        lines = []
        if finished.guarantee:
            lines.append(
                self.text("redo.guarantee.started", language, promised=finished.promised, count=finished.guarantee)
            )
        elif finished.promised:
            total = finished.delivered + finished.credited
            lines.append(self.text("redo.guarantee.promise", language, promised=finished.promised, total=total))
        if finished.free_redos:
            lines.append(self.text("redo.closing_hint", language, free=finished.free_redos))
        return lines

    async def tell(self, chat_id: int, language: str, notice: Notice) -> int | None:
        if isinstance(notice, GiftPaid) and not self.bot_username:
            try:
                self.bot_username = (await self.bot.me()).username or ""
            except TelegramAPIError as error:
                log.warning("getMe failed, the gift link goes without the bot's name: %s", error)
        text, buttons = self.render(notice, language)
        try:
            message = await self.bot.send_message(chat_id, text, reply_markup=buttons)
        except TelegramAPIError as error:
            # Telling the user is best effort: the durable state is already committed.
            log.warning("could not tell chat %s (%s): %s", chat_id, type(notice).__name__, error)
            return None
        return message.message_id
