"""Telegram Stars: charges as Telegram lists them, and refunds, through the Bot API (digital goods sell for Stars)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import TransactionPartnerUser

from providers.payments import PaymentProviderError


@dataclass(frozen=True, slots=True)
class StarsCharge:
    """An incoming invoice payment as ``getStarTransactions`` lists it (``charge_id`` = its ``id``)."""

    charge_id: str
    user_telegram_id: int
    amount: int
    invoice_payload: str
    date: datetime


class StarsPayments:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def charges(self, offset: int, limit: int = 100) -> tuple[list[StarsCharge], int]:
        """Incoming invoice payments among ``limit`` transactions from ``offset`` (oldest first), and
        how many transactions that page held (refunds and other kinds are counted, not returned)."""
        page = await self.bot.get_star_transactions(offset=offset, limit=limit)
        charges = []
        for transaction in page.transactions:
            source = transaction.source
            if (
                isinstance(source, TransactionPartnerUser)
                and source.transaction_type == "invoice_payment"
                and source.invoice_payload is not None
            ):
                charges.append(
                    StarsCharge(
                        transaction.id, source.user.id, transaction.amount, source.invoice_payload, transaction.date
                    )
                )
        return charges, len(page.transactions)

    async def refund(self, user_telegram_id: int, charge_id: str) -> bool:
        """Refund a Stars payment; False when Telegram says it was already refunded."""
        try:
            return await self.bot.refund_star_payment(user_id=user_telegram_id, telegram_payment_charge_id=charge_id)
        except TelegramBadRequest as error:
            if "CHARGE_ALREADY_REFUNDED" in error.message:
                return False
            raise PaymentProviderError(error.message, retryable=False) from error
