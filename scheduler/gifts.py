"""Gifts and promo codes: buying a pack for someone else, opening it, taking it back; admins' codes.

A gift is bought through the ordinary payment machinery (an order like any other, so notifications,
polling, reconcile and duplicate-payment refunds all apply): ``storage.payments.apply_status`` opens
the gift instead of queueing a job, and the buyer is told the code. Opening a gift and taking it back
are conditional UPDATEs of the gift row: whichever comes first wins, the other changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.accounts import AccountService
from scheduler.payments import PaymentService
from storage import admin as admin_queries
from storage import gifts as queries
from storage import ledger
from storage import payments as payment_queries
from storage.models import Gift, User
from studio.catalogue import Catalogue, Pack
from studio.gifts import (
    GiftRefundRefusal,
    GiftRefusal,
    PromoRefusal,
    PromoTerms,
    gift_refund_refusal,
    gift_refusal,
    giftable,
    normalise_code,
)


class GiftUnavailable(Exception):
    """A forged or stale pack choice: nothing was ordered."""


@dataclass(frozen=True, slots=True)
class GiftOrder:
    order_id: int
    pack: Pack


@dataclass(frozen=True, slots=True)
class OpenGift:
    gift_id: int
    code: str
    photos: int


@dataclass(frozen=True, slots=True)
class GiftOverview:
    """What /gift shows: the packs one can give, and the buyer's gifts still waiting for an opener."""

    packs: list[Pack]
    waiting: list[OpenGift] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Redeemed:
    """The outcome of opening a gift or a promo code: ``photos`` credited (0 with a refusal)."""

    photos: int = 0
    balance: int = 0
    refusal: GiftRefusal | PromoRefusal | None = None
    has_previous: bool = False


@dataclass(frozen=True, slots=True)
class MintedPromo:
    code: str
    terms: PromoTerms
    expires_at: datetime


class GiftService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        catalogue: Catalogue,
        payments: PaymentService,
        accounts: AccountService,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalogue = catalogue
        self.payments = payments
        self.accounts = accounts

    # ------------------------------------------------------------ buying

    def packs(self) -> list[Pack]:
        return [pack for pack in self.catalogue.packs if giftable(pack)]

    async def overview(self, user: User) -> GiftOverview:
        async with self.sessionmaker() as session:
            waiting = await queries.open_gifts_of(session, user.id)
        return GiftOverview(self.packs(), [_open(gift) for gift in waiting])

    async def order(self, user: User, pack_id: str, tap: str | None = None) -> GiftOrder:
        """The order that buys ``pack_id`` as a gift (one per tap), waiting for its payment."""
        pack = self.catalogue.find_pack(pack_id)
        if pack is None or not giftable(pack) or user.is_banned:
            raise GiftUnavailable(pack_id)
        async with self.sessionmaker() as session:
            gift = await queries.create_gift_order(session, buyer_id=user.id, pack=pack, created_by=tap)
            await session.commit()
            return GiftOrder(gift.order_id, pack)

    # ------------------------------------------------------------ opening

    async def open_link(self, user: User, code_text: str | None, *, first_time: bool) -> Redeemed:
        """``/start gift_<code>``: the /start bookkeeping, then the gift."""
        has_previous = await self.accounts.started(user.id, source="gift", first_time=first_time)
        outcome = await self.redeem(user, code_text)
        return Redeemed(outcome.photos, outcome.balance, outcome.refusal, has_previous)

    async def redeem(self, user: User, code_text: str | None, now: datetime | None = None) -> Redeemed:
        """The first opener gets the gift's credits, once. The buyer cannot open their own gift (it is
        for someone else, and opening it would end the buyer's right to take the money back)."""
        code = normalise_code(code_text)
        if code is None:
            return Redeemed(refusal=GiftRefusal.UNKNOWN)
        async with self.sessionmaker() as session:
            gift = await queries.redeem(session, code, user.id, now or datetime.now(UTC))
            if gift is not None:
                balance = await ledger.balance(session, user.id)
                await session.commit()
                return Redeemed(gift.photos, balance)
            found = await queries.by_code(session, code)
            if found is None:
                return Redeemed(refusal=GiftRefusal.UNKNOWN)
            refusal = gift_refusal(
                found.status, buyer=found.buyer_id == user.id, opener_is_user=found.redeemed_by == user.id
            )
            return Redeemed(refusal=refusal)

    # ------------------------------------------------------------ taking it back

    async def refund(self, user: User, gift_id: int, now: datetime | None = None) -> GiftRefundRefusal | None:
        """The buyer's "Refund" under an unopened gift (within 14 days of paying): the gift closes and
        its payment is refunded through the usual refunds row (YooKassa refund or refundStarPayment;
        a provider that fails now is asked again by the settle job). None when it was refunded."""
        now = now or datetime.now(UTC)
        async with self.sessionmaker() as session:
            gift = await queries.get_gift(session, gift_id)
            if gift is None or gift.buyer_id != user.id:
                return GiftRefundRefusal.UNKNOWN
            if not await queries.close_for_buyer_refund(session, gift.id, user.id, now):
                await session.refresh(gift)
                return gift_refund_refusal(gift.status, gift.paid_at, now) or GiftRefundRefusal.REFUNDED
            assert gift.payment_id is not None  # an open gift has its payment
            refund = await payment_queries.return_gift_payment(session, gift.payment_id, gift.id)
            if refund is None:  # its payment was refunded some other way (an admin's /refund) meanwhile
                await session.rollback()
                return GiftRefundRefusal.REFUNDED
            await session.commit()
        await self.payments.carry_out(refund.id)
        return None

    # ------------------------------------------------------------ promo codes

    async def mint_promo(self, admin_id: int, terms: PromoTerms, now: datetime | None = None) -> MintedPromo:
        now = now or datetime.now(UTC)
        expires_at = queries.promo_expiry(now, terms.days)
        async with self.sessionmaker() as session:
            promo = await queries.create_promo(
                session, photos=terms.photos, uses=terms.uses, expires_at=expires_at, created_by=admin_id
            )
            await admin_queries.audit(
                session, admin_id, "promo_new", promo.code, photos=terms.photos, uses=terms.uses, days=terms.days
            )
            await session.commit()
            return MintedPromo(promo.code, terms, expires_at)

    async def open_promo_link(self, user: User, code_text: str | None, *, first_time: bool) -> Redeemed:
        """``/start promo_<code>``: the /start bookkeeping, then the code."""
        has_previous = await self.accounts.started(user.id, source="promo", first_time=first_time)
        outcome = await self.redeem_promo(user, code_text)
        return Redeemed(outcome.photos, outcome.balance, outcome.refusal, has_previous)

    async def redeem_promo(self, user: User, code_text: str | None, now: datetime | None = None) -> Redeemed:
        """A promo code's credits, once per user, while it has uses left and has not expired."""
        code = normalise_code(code_text)
        if code is None:
            return Redeemed(refusal=PromoRefusal.UNKNOWN)
        async with self.sessionmaker() as session:
            outcome = await queries.redeem_promo(session, code, user.id, now or datetime.now(UTC))
            if outcome.refusal is not None:
                await session.rollback()
                return Redeemed(refusal=outcome.refusal)
            balance = await ledger.balance(session, user.id)
            await session.commit()
            return Redeemed(outcome.photos, balance)


def _open(gift: Gift) -> OpenGift:
    return OpenGift(gift.id, gift.code, gift.photos)
