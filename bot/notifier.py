"""Messages that background work sends to users, in their language (implements UserNotifier): each
notice of scheduler/notices.py becomes a text and its buttons here, and nowhere else."""

from __future__ import annotations

import logging
from typing import Any, assert_never

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import (
    AgainCb,
    JobAction,
    JobCb,
    MenuAction,
    MenuCb,
    OrderAction,
    OrderCb,
    ResendCb,
    ResultsAction,
    ResultsCb,
)
from bot.locales.messages_plural import PLURAL_MESSAGES
from scheduler.notices import (
    BroadcastReport,
    DeliveryUncertain,
    JobFailed,
    JobQueued,
    Notice,
    OriginalsGone,
    PackFinished,
    PaymentCanceled,
    PaymentReturned,
    ProgressShown,
    RefundCanceled,
    SelfiesMissing,
)
from studio.credits import Currency, format_price

log = logging.getLogger(__name__)

Rendered = tuple[str, InlineKeyboardMarkup | None]


class TelegramNotifier:
    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self.bot = bot
        self.i18n = i18n

    def text(self, key: str, language: str, **values: Any) -> str:
        if key in PLURAL_MESSAGES:  # the form follows {count}
            return self.i18n.gettext(key, key, int(values["count"]), locale=language).format(**values)
        return self.i18n.gettext(key, locale=language).format(**values)

    def render(self, notice: Notice, language: str) -> Rendered:
        """The text and the buttons of ``notice`` in ``language``."""
        text = self.text
        match notice:
            case JobQueued(job_id=job_id, photos=photos, position=position, paid=paid):
                key = "payment.succeeded" if paid else "job.queued"
                return text(key, language, photos=photos, position=position), self._cancel_job(job_id, language)
            case PaymentCanceled(order_id=order_id, expired=expired):
                key = "payment.canceled.expired" if expired else "payment.canceled.other"
                pay_again = self._one(
                    text("button.pay_again", language), OrderCb(order_id=order_id, action=OrderAction.PAY).pack()
                )
                return text(key, language), pay_again
            case PaymentReturned(order_id=order_id, reason=reason, amount=amount, currency=currency):
                price = format_price(amount, currency, language)
                return text(f"payment.returned.{reason}", language, order_id=order_id, amount=price), None
            case RefundCanceled() as refund:
                values = {"provider_id": refund.provider_refund_id, "payment_id": refund.payment_id}
                price = format_price(refund.amount_kopecks, Currency.RUB, language)
                return text("admin.refund_canceled", language, refund_id=refund.refund_id, amount=price, **values), None
            case JobFailed(job_id=job_id, returned=returned):
                return text("job.failed", language, count=returned), self._use_credits(job_id, returned, language)
            case SelfiesMissing(released=released):
                new_photos = self._one(text("button.new_photos", language), MenuCb(action=MenuAction.NEW).pack())
                return text("job.failed_no_selfies", language, count=released), new_photos
            case ProgressShown(job_id=job_id, text=progress, cancellable=cancellable):
                return progress, self._cancel_job(job_id, language) if cancellable else None
            case DeliveryUncertain(job_id=job_id, chunk_index=chunk_index, portraits=portraits):
                resend = self._one(text("button.resend", language), ResendCb(job_id=job_id, chunk=chunk_index).pack())
                return text("delivery.uncertain", language, count=portraits), resend
            case PackFinished(delivered=delivered, credited=credited):
                key = "delivery.finished_partial" if credited else "delivery.finished"
                return text(key, language, count=delivered, credited=credited), self._after_pack(notice, language)
            case OriginalsGone():
                return text("originals.gone", language), None
            case BroadcastReport() as report:
                counts = {"sent": report.sent, "blocked": report.blocked, "failed": report.failed}
                return text(
                    "admin.broadcast.report", language, broadcast_id=report.broadcast_id, total=report.total, **counts
                ), None
            case _:
                assert_never(notice)

    @staticmethod
    def _one(label: str, callback_data: str) -> InlineKeyboardMarkup:
        builder = InlineKeyboardBuilder()
        builder.button(text=label, callback_data=callback_data)
        return builder.as_markup()

    def _cancel_job(self, job_id: int, language: str) -> InlineKeyboardMarkup:
        return self._one(self.text("button.cancel_job", language), JobCb(job_id=job_id, action=JobAction.CANCEL).pack())

    def _use_credits(self, job_id: int, credits: int, language: str) -> InlineKeyboardMarkup | None:
        """The credits a failed or cancelled job gave back, in one tap."""
        if not credits:
            return None
        label = self.text("button.use_credits", language, count=credits)
        return self._one(label, ResultsCb(job_id=job_id, action=ResultsAction.CREDITS).pack())

    def _after_pack(self, finished: PackFinished, language: str) -> InlineKeyboardMarkup:
        builder = InlineKeyboardBuilder()
        builder.button(
            text=self.text("button.originals", language),
            callback_data=ResultsCb(job_id=finished.job_id, action=ResultsAction.ORIGINALS),
        )
        if finished.avatar_id is not None:
            builder.button(
                text=self.text("button.same_photos", language), callback_data=AgainCb(avatar_id=finished.avatar_id)
            )
        builder.button(text=self.text("button.new_photos", language), callback_data=MenuCb(action=MenuAction.NEW))
        if finished.credited:
            builder.button(
                text=self.text("button.use_credits", language, count=finished.credited),
                callback_data=ResultsCb(job_id=finished.job_id, action=ResultsAction.CREDITS),
            )
        builder.adjust(1)
        return builder.as_markup()

    async def tell(self, chat_id: int, language: str, notice: Notice) -> int | None:
        text, buttons = self.render(notice, language)
        try:
            message = await self.bot.send_message(chat_id, text, reply_markup=buttons)
        except TelegramAPIError as error:
            # Telling the user is best effort: the durable state is already committed.
            log.warning("could not tell chat %s (%s): %s", chat_id, type(notice).__name__, error)
            return None
        return message.message_id
