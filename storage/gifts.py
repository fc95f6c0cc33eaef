"""Gifts, promo codes and referral bonuses: their rows and the ledger lines they write.

Every status change of a gift and every use of a promo code is a conditional UPDATE, so two users
opening one gift link at once, or an opener and the buyer's refund, cannot both win; every credit
is a ledger line with its UNIQUE (reason, reference), so nothing credits twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import ledger
from storage.events import EventName, record_event
from storage.models import GenerationJob, Gift, LedgerEntry, Order, Payment, PromoCode, User, utcnow
from storage.sql import insert_for, insert_or_find, rows_changed
from studio.catalogue import Pack
from studio.credits import gift_line, promo_line, referral_line
from studio.gifts import (
    GIFT_REFUND_WINDOW,
    GIFT_STYLE,
    GiftStatus,
    PromoRefusal,
    new_code,
    promo_refusal,
    referral_allowed,
)
from studio.states import JobStatus, LedgerReason, OrderStatus, PaymentStatus

# ------------------------------------------------------------------ gifts


async def create_gift_order(session: AsyncSession, *, buyer_id: int, pack: Pack, created_by: str | None) -> Gift:
    """The order that buys ``pack`` as a gift, and its gift row (code fixed now, shown once paid); one
    per tap (the order's UNIQUE (user_id, created_by)), so a tap delivered twice makes one gift."""
    values = {
        "user_id": buyer_id,
        "avatar_id": None,
        "style": GIFT_STYLE,
        "pack": pack.id,
        "photos": pack.photos,
        "price_rub_kopecks": pack.price_rub_kopecks,
        "price_stars": pack.price_stars,
        "status": OrderStatus.AWAITING_PAYMENT,
        "created_by": created_by,
        "created_at": utcnow(),
    }
    order, _created = await insert_or_find(session, Order, values, key=("user_id", "created_by"))
    await session.execute(
        insert_for(session, Gift)
        .values(
            code=new_code(),
            order_id=order.id,
            buyer_id=buyer_id,
            pack=pack.id,
            photos=pack.photos,
            status=GiftStatus.AWAITING_PAYMENT,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[Gift.order_id])
    )
    gift = await for_order(session, order.id)
    assert gift is not None
    return gift


async def for_order(session: AsyncSession, order_id: int) -> Gift | None:
    return (await session.execute(select(Gift).where(Gift.order_id == order_id))).scalar_one_or_none()


async def for_payment(session: AsyncSession, payment_id: int) -> Gift | None:
    return (await session.execute(select(Gift).where(Gift.payment_id == payment_id))).scalar_one_or_none()


async def by_code(session: AsyncSession, code: str) -> Gift | None:
    return (await session.execute(select(Gift).where(Gift.code == code))).scalar_one_or_none()


async def get_gift(session: AsyncSession, gift_id: int) -> Gift | None:
    return await session.get(Gift, gift_id)


async def mark_paid(session: AsyncSession, gift_id: int, payment: Payment) -> Gift | None:
    """The payment that bought the gift's order: the gift opens (once; a repeat finds it open)."""
    now = utcnow()
    opened = await session.execute(
        update(Gift)
        .where(Gift.id == gift_id, Gift.status == GiftStatus.AWAITING_PAYMENT)
        .values(status=GiftStatus.OPEN, payment_id=payment.id, paid_at=now)
        .execution_options(synchronize_session=False)
    )
    gift = await session.get(Gift, gift_id, populate_existing=True)
    if rows_changed(opened) and gift is not None:
        await record_event(
            session,
            EventName.GIFT_BOUGHT,
            user_id=gift.buyer_id,
            gift_id=gift.id,
            photos=gift.photos,
            provider=payment.provider,
            amount=payment.amount,
            currency=payment.currency,
        )
    return gift


async def redeem(session: AsyncSession, code: str, user_id: int, now: datetime) -> Gift | None:
    """Open the gift for ``user_id``: its credits on their balance. None when the conditional UPDATE
    found it not open (taken, refunded, unpaid) or the opener is its buyer: then nothing moved."""
    taken = await session.execute(
        update(Gift)
        .where(Gift.code == code, Gift.status == GiftStatus.OPEN, Gift.buyer_id != user_id)
        .values(status=GiftStatus.REDEEMED, redeemed_by=user_id, redeemed_at=now)
        .execution_options(synchronize_session=False)
    )
    if not rows_changed(taken):
        return None
    gift = await by_code(session, code)
    assert gift is not None
    await session.refresh(gift)
    await ledger.record(session, user_id, gift_line(gift.id, gift.photos), order_id=gift.order_id)
    await record_event(session, EventName.GIFT_REDEEMED, user_id=user_id, gift_id=gift.id, photos=gift.photos)
    return gift


async def close_for_buyer_refund(session: AsyncSession, gift_id: int, buyer_id: int, now: datetime) -> bool:
    """The buyer takes an unopened gift back within the window: it closes here, before any money moves,
    so an opener arriving at the same moment either got it first or finds it refunded."""
    closed = await session.execute(
        update(Gift)
        .where(
            Gift.id == gift_id,
            Gift.buyer_id == buyer_id,
            Gift.status == GiftStatus.OPEN,
            Gift.paid_at >= now - GIFT_REFUND_WINDOW,
        )
        .values(status=GiftStatus.REFUNDED, refunded_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(rows_changed(closed))


async def close_for_refund(session: AsyncSession, gift_id: int) -> bool:
    """Any other refund of a gift's payment (an admin's): an unopened gift closes; True when it did."""
    closed = await session.execute(
        update(Gift)
        .where(Gift.id == gift_id, Gift.status == GiftStatus.OPEN)
        .values(status=GiftStatus.REFUNDED, refunded_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(rows_changed(closed))


async def open_gifts_of(session: AsyncSession, buyer_id: int, limit: int = 10) -> list[Gift]:
    """The buyer's paid, unopened gifts, newest first (their codes, for /gift)."""
    rows = await session.execute(
        select(Gift)
        .where(Gift.buyer_id == buyer_id, Gift.status == GiftStatus.OPEN)
        .order_by(Gift.id.desc())
        .limit(limit)
    )
    return list(rows.scalars())


# ------------------------------------------------------------------ promo codes


async def create_promo(
    session: AsyncSession, *, photos: int, uses: int, expires_at: datetime, created_by: int
) -> PromoCode:
    promo = PromoCode(
        code=new_code(), photos=photos, max_uses=uses, used=0, expires_at=expires_at, created_by=created_by
    )
    session.add(promo)
    await session.flush()
    return promo


@dataclass(frozen=True, slots=True)
class PromoOutcome:
    photos: int = 0
    refusal: PromoRefusal | None = None


async def redeem_promo(session: AsyncSession, code: str, user_id: int, now: datetime) -> PromoOutcome:
    """Credit the code's photos to ``user_id``. A refusal leaves writes in the transaction that the
    caller must roll back (the ledger line goes in first: its UNIQUE key is "once per user")."""
    promo = (await session.execute(select(PromoCode).where(PromoCode.code == code))).scalar_one_or_none()
    if promo is None:
        return PromoOutcome(refusal=PromoRefusal.UNKNOWN)
    if not await ledger.record(session, user_id, promo_line(code, user_id, promo.photos)):
        return PromoOutcome(refusal=PromoRefusal.USED)
    # The use counter moves only while uses are left: two users taking the last use take turns on the
    # row, and the second finds none.
    counted = await session.execute(
        update(PromoCode)
        .where(PromoCode.id == promo.id, PromoCode.used < PromoCode.max_uses, PromoCode.expires_at > now)
        .values(used=PromoCode.used + 1)
        .execution_options(synchronize_session=False)
    )
    if not rows_changed(counted):
        await session.refresh(promo)
        return PromoOutcome(
            refusal=promo_refusal(promo.used, promo.max_uses, promo.expires_at, now) or PromoRefusal.EXHAUSTED
        )
    await record_event(session, EventName.PROMO_REDEEMED, user_id=user_id, code=code, photos=promo.photos)
    return PromoOutcome(photos=promo.photos)


def promo_expiry(now: datetime, days: int) -> datetime:
    return now + timedelta(days=days)


# ------------------------------------------------------------------ referrals


async def set_referrer(session: AsyncSession, user_id: int, inviter_telegram_id: int) -> bool:
    """Remember who invited ``user_id`` (once; never themselves, never an unknown inviter)."""
    inviter_id = (
        await session.execute(select(User.id).where(User.telegram_id == inviter_telegram_id))
    ).scalar_one_or_none()
    if not referral_allowed(user_id, inviter_id):
        return False
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.referrer_id.is_(None))
        .values(referrer_id=inviter_id)
        .execution_options(synchronize_session=False)
    )
    return bool(rows_changed(result))


@dataclass(frozen=True, slots=True)
class ReferralPayout:
    inviter_chat_id: int
    inviter_language: str
    photos: int


DELIVERED_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.PARTIAL)


async def pay_referral(
    session: AsyncSession, job: GenerationJob, finished_as: JobStatus, bonus: int
) -> ReferralPayout | None:
    """In the transaction that finishes ``job`` (as ``finished_as``): the inviter's bonus, if this is a
    delivered pack bought by a payment that still stands (not a trial, not credits, not refunded) and
    the invited user's inviter has not been paid for them yet (the ledger reference names the invitee)."""
    if bonus <= 0 or job.order_id is None or finished_as not in DELIVERED_JOB_STATUSES:
        return None
    invitee = await session.get(User, job.user_id)
    if invitee is None or not referral_allowed(invitee.id, invitee.referrer_id):
        return None
    paid = (
        await session.execute(
            select(Payment.id)
            .where(Payment.order_id == job.order_id, Payment.status == PaymentStatus.SUCCEEDED)
            .limit(1)
        )
    ).scalar_one_or_none()
    if paid is None:
        return None  # a trial, a pack paid from credits, or a payment refunded before delivery ended
    inviter = await session.get(User, invitee.referrer_id)
    if inviter is None or inviter.is_banned:
        return None
    line = referral_line(invitee.id, bonus)
    if not await ledger.record(session, inviter.id, line):
        return None
    await record_event(session, EventName.REFERRAL_PAID, user_id=inviter.id, invitee_id=invitee.id, photos=bonus)
    return ReferralPayout(inviter.telegram_id, inviter.language, bonus)


async def invited_count(session: AsyncSession, inviter_id: int) -> tuple[int, int]:
    """(users who came by the inviter's link, how many of them paid a bonus)."""
    invited = (await session.execute(select(func.count(User.id)).where(User.referrer_id == inviter_id))).scalar_one()
    paid = (
        await session.execute(
            select(func.count(LedgerEntry.id)).where(
                LedgerEntry.user_id == inviter_id, LedgerEntry.reason == LedgerReason.REFERRAL
            )
        )
    ).scalar_one()
    return int(invited), int(paid)
