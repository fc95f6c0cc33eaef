"""Payments: attempts with their stored Idempotence-Key, and the one path that credits a payment.

Whatever learns a payment's status (a YooKassa notification, the reconciliation poll, the
"Check payment" button, a Telegram ``successful_payment``) calls :func:`apply_status` with what
the provider's own API says. The conditional UPDATE of the payment row and the UNIQUE ledger
references make any number of such calls credit exactly once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import gifts, jobs, ledger
from storage.events import EventName, record_event
from storage.models import Avatar, GenerationJob, Gift, Order, Payment, Refund, User, utcnow
from storage.sql import insert_for, rows_changed
from studio.credits import purchase_line, refund_line
from studio.states import AvatarStatus, OrderStatus, PaymentProviderName, PaymentStatus

log = logging.getLogger(__name__)

PAYABLE_ORDER_STATUSES = (OrderStatus.AWAITING_PAYMENT,)
# Money that arrives for an order the user cancelled meanwhile is still honoured.
CREDITABLE_ORDER_STATUSES = (OrderStatus.AWAITING_PAYMENT, OrderStatus.CANCELLED)


class ReturnReason(StrEnum):
    """Why money that arrived is sent back instead of buying the order."""

    DUPLICATE = "duplicate"  # the order was already bought by another payment
    BANNED = "banned"  # the payer is banned
    AVATAR_GONE = "avatar_gone"  # the selfies the order was for were deleted
    AMOUNT = "amount"  # the amount or currency paid is not the order's price
    ADMIN = "admin"  # an admin's /refund
    PROVIDER = "provider"  # refunded outside the bot (the YooKassa dashboard)
    GIFT = "gift"  # the buyer took back an unopened gift


class RefundStatus(StrEnum):
    REQUESTED = "requested"  # decided and recorded; the provider has not confirmed it yet
    PENDING = "pending"  # the provider has it and is still working on it
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"  # the provider refused it: the money was not returned


OPEN_REFUND_STATUSES = (RefundStatus.REQUESTED, RefundStatus.PENDING)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    payment: Payment
    changed: bool  # this call moved the payment to a new status
    credited: bool  # this call credited the purchase (at most once per payment, ever)
    job: GenerationJob | None = None
    mismatch: str | None = None  # the provider's amount/currency disagree with the order
    returned: ReturnReason | None = None  # this call decided to send the payment back
    refund_id: int | None = None  # the refunds row of that return
    kept_payment_id: int | None = None  # for a duplicate: the payment that bought the order
    gift: Gift | None = None  # the gift this call's payment bought (opened now)


def new_idempotence_key(order_id: int) -> str:
    return f"pg-{order_id}-{uuid.uuid4().hex}"[:64]


async def lock_order(session: AsyncSession, order_id: int, user_id: int) -> Order | None:
    """The user's order, re-read after taking its row lock for the rest of the transaction.

    A no-op UPDATE is the one lock that works on both databases: the row lock on PostgreSQL, the
    write lock on SQLite (where SELECT ... FOR UPDATE does nothing). A concurrent caller waits here,
    then sees what the first one committed, e.g. the attempt it opened.
    """
    await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.user_id == user_id)
        .values(status=Order.status)
        .execution_options(synchronize_session=False)
    )
    return (
        await session.execute(
            select(Order)
            .where(Order.id == order_id, Order.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def open_attempt(
    session: AsyncSession, order: Order, provider: PaymentProviderName, amount: int, currency: str
) -> Payment:
    """The attempt to pay this order with this provider: the live one if any, else a new one.

    A second tap on Pay reuses a pending payment (or retries a creation that never got an
    answer with the same key) instead of creating another. Call it under :func:`lock_order`, or
    two concurrent taps may both find nothing and open two attempts.
    """
    live = (
        await session.execute(
            select(Payment)
            .where(
                Payment.order_id == order.id,
                Payment.provider == provider,
                Payment.status.in_([PaymentStatus.CREATING, PaymentStatus.PENDING]),
            )
            .order_by(Payment.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if live is not None:
        return live
    payment = Payment(
        order_id=order.id,
        user_id=order.user_id,
        provider=provider,
        idempotence_key=new_idempotence_key(order.id),
        amount=amount,
        currency=currency,
        status=PaymentStatus.CREATING,
        status_history=[],
    )
    session.add(payment)
    await session.flush()
    return payment


async def attach_provider_payment(
    session: AsyncSession, payment_id: int, provider_payment_id: str, confirmation_url: str | None
) -> None:
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.CREATING)
        .values(
            provider_payment_id=provider_payment_id,
            confirmation_url=confirmation_url,
            status=PaymentStatus.PENDING,
            updated_at=utcnow(),
        )
        .returning(Payment)
    )
    created = result.scalar_one_or_none()
    if created is not None:  # the provider made it; a repeat of this transition records nothing
        await _payment_event(session, EventName.PAYMENT_CREATED, created)


async def abandon_attempt(session: AsyncSession, payment_id: int, reason: str) -> None:
    """A creation the provider refused for good: close the attempt so a new tap starts afresh."""
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.CREATING)
        .values(status=PaymentStatus.CANCELED, updated_at=utcnow(), status_history=[{"refused": reason[:200]}])
    )


async def find_by_provider_id(session: AsyncSession, provider: str, provider_payment_id: str) -> Payment | None:
    return (
        await session.execute(
            select(Payment).where(Payment.provider == provider, Payment.provider_payment_id == provider_payment_id)
        )
    ).scalar_one_or_none()


async def get_payment(session: AsyncSession, payment_id: int) -> Payment | None:
    return await session.get(Payment, payment_id)


async def pending_to_reconcile(session: AsyncSession, checked_before: datetime, limit: int = 100) -> list[Payment]:
    return list(
        (
            await session.execute(
                select(Payment)
                .where(
                    Payment.provider == PaymentProviderName.YOOKASSA,
                    Payment.status == PaymentStatus.PENDING,
                    (Payment.last_checked_at.is_(None)) | (Payment.last_checked_at < checked_before),
                )
                .order_by(Payment.last_checked_at.is_(None).desc(), Payment.last_checked_at, Payment.id)
                .limit(limit)
            )
        ).scalars()
    )


async def record_stars_intent(session: AsyncSession, order: Order, amount: int, payload: str) -> Payment:
    """At pre-checkout: the order is about to be paid in Stars. The intent is the row the charge
    claims when its ``successful_payment`` (or the Stars reconcile) arrives; one open intent per order."""
    intent = await _open_stars_intent(session, order.id)
    if intent is not None:
        return intent
    payment = Payment(
        order_id=order.id,
        user_id=order.user_id,
        provider=PaymentProviderName.STARS,
        idempotence_key=f"stars-intent-{order.id}-{uuid.uuid4().hex}"[:64],
        amount=amount,
        currency="XTR",
        status=PaymentStatus.PENDING,
        status_history=[{"intent": payload[:128], "at": utcnow().isoformat()}],
    )
    session.add(payment)
    await session.flush()
    return payment


async def _open_stars_intent(session: AsyncSession, order_id: int) -> Payment | None:
    return (
        await session.execute(
            select(Payment)
            .where(
                Payment.order_id == order_id,
                Payment.provider == PaymentProviderName.STARS,
                Payment.provider_payment_id.is_(None),
                Payment.status == PaymentStatus.PENDING,
            )
            .order_by(Payment.id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def record_stars_payment(
    session: AsyncSession, order: Order, charge_id: str, amount: int, currency: str
) -> Payment:
    """A Telegram Stars payment arrives already paid; keyed by telegram_payment_charge_id.

    ``amount``/``currency`` are what the order costs (the paid amount is compared in apply_status).
    The charge claims the order's pre-checkout intent if there is one; a second charge of the same
    order (a second invoice) finds none and gets a row of its own.
    """
    known = await find_by_provider_id(session, PaymentProviderName.STARS, charge_id)
    if known is not None:
        return known
    intent = await _open_stars_intent(session, order.id)
    if intent is not None:
        claimed = await session.execute(
            update(Payment)
            .where(Payment.id == intent.id, Payment.provider_payment_id.is_(None))
            .values(provider_payment_id=charge_id, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if rows_changed(claimed):
            await session.refresh(intent)
            await _payment_event(session, EventName.PAYMENT_CREATED, intent)
            return intent
    inserted = await session.execute(
        insert_for(session, Payment)
        .values(
            order_id=order.id,
            user_id=order.user_id,
            provider=PaymentProviderName.STARS,
            provider_payment_id=charge_id,
            idempotence_key=f"stars-{charge_id}"[:64],
            amount=amount,
            currency=currency,
            status=PaymentStatus.PENDING,
            status_history=[],
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    payment = await find_by_provider_id(session, PaymentProviderName.STARS, charge_id)
    assert payment is not None
    if rows_changed(inserted):  # a repeated successful_payment finds the row and records nothing
        await _payment_event(session, EventName.PAYMENT_CREATED, payment)
    return payment


async def _payment_event(session: AsyncSession, name: EventName, payment: Payment) -> None:
    """payment_* events; ``amount`` is in the payment's minor units (kopecks, or Stars)."""
    await record_event(
        session,
        name,
        user_id=payment.user_id,
        provider=payment.provider,
        amount=payment.amount,
        currency=payment.currency,
        order_id=payment.order_id,
        payment_id=payment.id,
    )


async def apply_status(
    session: AsyncSession,
    payment: Payment,
    status: str,
    *,
    amount: int,
    currency: str,
    detail: dict[str, Any] | None = None,
) -> ApplyResult:
    """Move the payment to what the provider says and, on its first success, credit and queue.

    A success that cannot buy the order (it is already bought, the payer is banned, the selfies are
    gone, the amount is wrong) is still booked as a purchase, then returned: a refund line and a
    refunds row in the same transaction, for the caller to carry out at the provider after commit.
    All in the caller's transaction: the caller commits, then tells the user.
    """
    now = utcnow()
    await session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .values(last_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    if status == PaymentStatus.SUCCEEDED:
        return await _succeed(session, payment, amount=amount, currency=currency, detail=detail)
    if status == PaymentStatus.CANCELED:
        moved = await _move(session, payment, PaymentStatus.CANCELED, detail, from_=[PaymentStatus.PENDING])
        if moved:
            await _payment_event(session, EventName.PAYMENT_CANCELED, payment)
        return ApplyResult(payment=await _reload(session, payment), changed=moved, credited=False)
    return ApplyResult(payment=payment, changed=False, credited=False)


async def _move(
    session: AsyncSession,
    payment: Payment,
    target: PaymentStatus,
    detail: dict[str, Any] | None,
    *,
    from_: list[PaymentStatus],
) -> bool:
    history = [*(payment.status_history or []), {"status": str(target), "at": utcnow().isoformat(), **(detail or {})}]
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status.in_(from_))
        .values(status=target, updated_at=utcnow(), status_history=history[-20:])
        .execution_options(synchronize_session=False)
    )
    return bool(rows_changed(result))


async def _reload(session: AsyncSession, payment: Payment) -> Payment:
    await session.refresh(payment)
    return payment


async def _succeed(
    session: AsyncSession, payment: Payment, *, amount: int, currency: str, detail: dict[str, Any] | None
) -> ApplyResult:
    order = await session.get(Order, payment.order_id)
    assert order is not None
    user = await session.get(User, order.user_id)
    assert user is not None
    # A gift's order buys credits for someone else: no selfies, no job, no credits for the buyer.
    gift = await gifts.for_order(session, order.id)
    mismatch = None
    reason: ReturnReason | None = None
    if amount != payment.amount or currency != payment.currency:
        # Never credit what we did not sell: the money goes back, whatever it was.
        mismatch = f"expected {payment.amount} {payment.currency}, provider says {amount} {currency}"
        reason = ReturnReason.AMOUNT
    elif user.is_banned:
        reason = ReturnReason.BANNED
    elif gift is None and not await avatar_ready(session, order):
        reason = ReturnReason.AVATAR_GONE
    moved = await _move(
        session, payment, PaymentStatus.SUCCEEDED, detail, from_=[PaymentStatus.CREATING, PaymentStatus.PENDING]
    )
    if not moved:
        return ApplyResult(payment=await _reload(session, payment), changed=False, credited=False, mismatch=mismatch)
    # Recorded only by the call whose conditional UPDATE won: duplicates and races record nothing.
    await _payment_event(session, EventName.PAYMENT_SUCCEEDED, payment)
    if reason is None:
        # The conditional UPDATE is the "one order, one payment" guard: of two payments racing for
        # one order, the second waits on the row and then finds it paid.
        claimed = await session.execute(
            update(Order)
            .where(Order.id == order.id, Order.status.in_(CREDITABLE_ORDER_STATUSES))
            .values(status=OrderStatus.PAID, paid_at=utcnow(), currency=currency, amount=amount)
            .execution_options(synchronize_session=False)
        )
        if not rows_changed(claimed):
            reason = ReturnReason.DUPLICATE
    if reason is None and gift is not None:
        # The money stays with the gift until someone opens it (or the buyer takes it back).
        opened = await gifts.mark_paid(session, gift.id, payment)
        return ApplyResult(payment=await _reload(session, payment), changed=True, credited=False, gift=opened)
    credited = await ledger.record(
        session, order.user_id, purchase_line(payment.id, order.photos), order_id=order.id, payment_id=payment.id
    )
    if reason is not None:
        refund = await _return_payment(session, payment, order, reason, amount)
        return ApplyResult(
            payment=await _reload(session, payment),
            changed=True,
            credited=False,
            mismatch=mismatch,
            returned=reason,
            refund_id=refund.id,
            kept_payment_id=await _kept_payment_id(session, order.id, payment.id)
            if reason == ReturnReason.DUPLICATE
            else None,
        )
    job = None
    if credited:
        await session.refresh(order)
        job = await jobs.create_job_for_order(session, order, user, priority=jobs.PRIORITY_PAID)
    return ApplyResult(payment=await _reload(session, payment), changed=True, credited=credited, job=job)


async def payable_without_selfies(session: AsyncSession, order: Order) -> bool:
    """Whether the order needs no photo set to be paid (a gift's)."""
    return await gifts.for_order(session, order.id) is not None


async def return_gift_payment(session: AsyncSession, payment_id: int, gift_id: int) -> Refund | None:
    """After :func:`storage.gifts.close_for_buyer_refund` won, in its transaction: the payment is
    refunded and a refunds row is written for the provider call (carried out after the commit, and
    by the settle job if that call fails). No ledger line: the gift never credited anyone."""
    payment = await session.get(Payment, payment_id)
    if payment is None:
        return None
    if not await _move(session, payment, PaymentStatus.REFUNDED, {"gift": gift_id}, from_=[PaymentStatus.SUCCEEDED]):
        return None
    await _payment_event(session, EventName.PAYMENT_REFUNDED, payment)
    return await add_refund(
        session, payment, reason=ReturnReason.GIFT, amount=payment.amount, idempotence_key=f"pg-gift-{gift_id}"
    )


async def avatar_ready(session: AsyncSession, order: Order) -> bool:
    if order.avatar_id is None:
        return False
    avatar = await session.get(Avatar, order.avatar_id)
    return avatar is not None and avatar.status == AvatarStatus.READY


async def _kept_payment_id(session: AsyncSession, order_id: int, returned_id: int) -> int | None:
    return (
        await session.execute(
            select(Payment.id)
            .where(Payment.order_id == order_id, Payment.id != returned_id, Payment.status == PaymentStatus.SUCCEEDED)
            .order_by(Payment.id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def _return_payment(
    session: AsyncSession, payment: Payment, order: Order, reason: ReturnReason, amount: int
) -> Refund:
    """Book the return of a payment that just succeeded: purchase and refund lines (the balance
    does not move), the payment refunded, and a refunds row the provider call works from."""
    await _move(session, payment, PaymentStatus.REFUNDED, {"returned": str(reason)}, from_=[PaymentStatus.SUCCEEDED])
    await _payment_event(session, EventName.PAYMENT_REFUNDED, payment)
    await ledger.record(
        session,
        payment.user_id,
        refund_line(f"return:{payment.id}", order.photos),
        order_id=order.id,
        payment_id=payment.id,
    )
    return await add_refund(session, payment, reason=reason, amount=amount, idempotence_key=f"pg-return-{payment.id}")


async def add_refund(
    session: AsyncSession,
    payment: Payment,
    *,
    reason: ReturnReason,
    amount: int,
    idempotence_key: str,
    provider_refund_id: str | None = None,
    status: RefundStatus = RefundStatus.REQUESTED,
) -> Refund:
    """The refunds row for this key, written once (a repeat, or a concurrent caller, gets the row
    already there)."""
    now = utcnow()
    await session.execute(
        insert_for(session, Refund)
        .values(
            payment_id=payment.id,
            provider=payment.provider,
            provider_refund_id=provider_refund_id,
            idempotence_key=idempotence_key,
            reason=str(reason),
            amount=amount,
            status=str(status),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Refund.idempotence_key])
    )
    refund = await refund_by_key(session, idempotence_key)
    assert refund is not None
    return refund


async def has_paid_payment(session: AsyncSession, order_id: int) -> bool:
    """Whether a payment of this order has succeeded (or succeeded and was returned since)."""
    query = select(Payment.id).where(
        Payment.order_id == order_id, Payment.status.in_([PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED])
    )
    return (await session.execute(query.limit(1))).first() is not None


async def live_provider_ids(session: AsyncSession, order_id: int, provider: str) -> list[str]:
    """Provider ids of the order's payments of ``provider`` that are still pending."""
    rows = await session.execute(
        select(Payment.provider_payment_id).where(
            Payment.order_id == order_id,
            Payment.provider == provider,
            Payment.status == PaymentStatus.PENDING,
            Payment.provider_payment_id.is_not(None),
        )
    )
    return [provider_id for provider_id in rows.scalars() if provider_id]


async def get_refund(session: AsyncSession, refund_id: int) -> Refund | None:
    return await session.get(Refund, refund_id)


async def find_refund(session: AsyncSession, provider: str, provider_refund_id: str) -> Refund | None:
    return (
        await session.execute(
            select(Refund).where(Refund.provider == provider, Refund.provider_refund_id == provider_refund_id)
        )
    ).scalar_one_or_none()


async def refund_by_key(session: AsyncSession, idempotence_key: str) -> Refund | None:
    return (await session.execute(select(Refund).where(Refund.idempotence_key == idempotence_key))).scalar_one_or_none()


async def refund_in_flight(session: AsyncSession, payment_id: int, amount: int) -> Refund | None:
    """An open refund of this payment and amount whose provider id we have not stored yet: the
    provider's notification can overtake the answer to our own request."""
    return (
        await session.execute(
            select(Refund)
            .where(
                Refund.payment_id == payment_id,
                Refund.amount == amount,
                Refund.provider_refund_id.is_(None),
                Refund.status.in_(OPEN_REFUND_STATUSES),
            )
            .order_by(Refund.id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def open_refunds(session: AsyncSession, untouched_since: datetime, limit: int = 100) -> list[Refund]:
    """Open refunds nobody has moved on since ``untouched_since`` (fresh ones are still being worked on)."""
    return list(
        (
            await session.execute(
                select(Refund)
                .where(Refund.status.in_(OPEN_REFUND_STATUSES), Refund.updated_at < untouched_since)
                .order_by(Refund.id)
                .limit(limit)
            )
        ).scalars()
    )


async def mark_refund(
    session: AsyncSession,
    refund_id: int,
    status: RefundStatus,
    *,
    provider_refund_id: str | None = None,
    detail: str | None = None,
) -> bool:
    """Move an open refund on; False when it was already final (a repeat changes nothing)."""
    values: dict[str, Any] = {"status": str(status), "updated_at": utcnow()}
    if provider_refund_id is not None:
        values["provider_refund_id"] = provider_refund_id
    if detail is not None:
        values["detail"] = detail[:255]
    result = await session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status.in_(OPEN_REFUND_STATUSES))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(rows_changed(result))


async def payments_by_charge_ids(session: AsyncSession, charge_ids: list[str]) -> dict[str, Payment]:
    if not charge_ids:
        return {}
    rows = await session.execute(
        select(Payment).where(
            Payment.provider == PaymentProviderName.STARS, Payment.provider_payment_id.in_(charge_ids)
        )
    )
    return {payment.provider_payment_id or "": payment for payment in rows.scalars()}


async def record_refund(session: AsyncSession, payment: Payment, photos: int, refund_reference: str) -> bool:
    """Mark the payment refunded and take back up to ``photos`` credits, once per refund.

    The order's job first gives back what it has not made yet (a queued job is cancelled, a running
    one stops its unstarted portraits), so money back never comes with the pack too. Credits already
    turned into portraits cannot be taken back: the balance never goes below zero. Returns whether
    credits were taken by this call.
    """
    await jobs.stop_for_refund(session, payment.order_id)
    # A gift's payment credited whoever opened the gift, not the buyer: an unopened gift just closes.
    # An opened one's credits are its opener's to give back.
    holder: int | None = payment.user_id
    gift = await gifts.for_payment(session, payment.id)
    if gift is not None:
        closed = await gifts.close_for_refund(session, gift.id)
        await session.refresh(gift)
        holder = None if closed else gift.redeemed_by
    if holder is not None:
        await ledger.lock_user(session, holder)
    if await _move(
        session, payment, PaymentStatus.REFUNDED, {"refund": refund_reference}, from_=[PaymentStatus.SUCCEEDED]
    ):
        await _payment_event(session, EventName.PAYMENT_REFUNDED, payment)
    if holder is None:
        return False
    take = min(photos, await ledger.balance(session, holder))
    if take < photos:
        # Spent credits cannot be taken back: take what the balance holds, and say so.
        log.warning(
            "refund %s of payment %s: %s credits to take back, the balance holds %s",
            refund_reference,
            payment.id,
            photos,
            max(take, 0),
        )
    if take <= 0:
        return False
    return await ledger.record(
        session,
        holder,
        refund_line(refund_reference, take),
        order_id=payment.order_id,
        payment_id=payment.id,
    )
