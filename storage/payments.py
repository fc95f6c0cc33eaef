"""Payments: attempts with their stored Idempotence-Key, and the one path that credits a payment.

Whatever learns a payment's status (a YooKassa notification, the reconciliation poll, the
"Check payment" button, a Telegram ``successful_payment``) calls :func:`apply_status` with what
the provider's own API says. The conditional UPDATE of the payment row and the UNIQUE ledger
references make any number of such calls credit exactly once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import jobs, ledger
from storage.events import EventName, record_event
from storage.models import GenerationJob, Order, Payment, User, utcnow
from storage.sql import insert_for
from studio.credits import purchase_line, refund_line
from studio.states import OrderStatus, PaymentProviderName, PaymentStatus

PAYABLE_ORDER_STATUSES = (OrderStatus.AWAITING_PAYMENT,)
# Money that arrives for an order the user cancelled meanwhile is still honoured.
CREDITABLE_ORDER_STATUSES = (OrderStatus.AWAITING_PAYMENT, OrderStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    payment: Payment
    changed: bool  # this call moved the payment to a new status
    credited: bool  # this call credited the purchase (at most once per payment, ever)
    job: GenerationJob | None = None
    mismatch: str | None = None  # the provider's amount/currency disagree with the order


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


async def record_stars_payment(
    session: AsyncSession, order: Order, charge_id: str, amount: int, currency: str
) -> Payment:
    """A Telegram Stars payment arrives already paid; keyed by telegram_payment_charge_id."""
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
    if inserted.rowcount:  # a repeated successful_payment finds the row and records nothing
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
    return bool(result.rowcount)


async def _reload(session: AsyncSession, payment: Payment) -> Payment:
    await session.refresh(payment)
    return payment


async def _succeed(
    session: AsyncSession, payment: Payment, *, amount: int, currency: str, detail: dict[str, Any] | None
) -> ApplyResult:
    order = await session.get(Order, payment.order_id)
    assert order is not None
    if amount != payment.amount or currency != payment.currency:
        # Never credit what we did not sell: keep the payment visible for an admin instead.
        return ApplyResult(
            payment=payment,
            changed=False,
            credited=False,
            mismatch=f"expected {payment.amount} {payment.currency}, provider says {amount} {currency}",
        )
    moved = await _move(
        session, payment, PaymentStatus.SUCCEEDED, detail, from_=[PaymentStatus.CREATING, PaymentStatus.PENDING]
    )
    if not moved:
        return ApplyResult(payment=await _reload(session, payment), changed=False, credited=False)
    # Recorded only by the call whose conditional UPDATE won: duplicates and races record nothing.
    await _payment_event(session, EventName.PAYMENT_SUCCEEDED, payment)
    await session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status.in_(CREDITABLE_ORDER_STATUSES))
        .values(status=OrderStatus.PAID, paid_at=utcnow(), currency=currency, amount=amount)
    )
    credited = await ledger.record(
        session, order.user_id, purchase_line(payment.id, order.photos), order_id=order.id, payment_id=payment.id
    )
    job = None
    if credited:
        user = await session.get(User, order.user_id)
        assert user is not None
        job = await jobs.create_job_for_order(session, order, user, priority=jobs.PRIORITY_PAID)
    return ApplyResult(payment=await _reload(session, payment), changed=True, credited=credited, job=job)


async def record_refund(session: AsyncSession, payment: Payment, photos: int, refund_reference: str) -> bool:
    """Mark the payment refunded and take back up to ``photos`` credits, once per refund.

    The order's job first gives back what it has not made yet (a queued job is cancelled, a running
    one stops its unstarted portraits), so money back never comes with the pack too. Credits already
    turned into portraits cannot be taken back: the balance never goes below zero. Returns whether
    credits were taken by this call.
    """
    await jobs.stop_for_refund(session, payment.order_id)
    await ledger.lock_user(session, payment.user_id)
    if await _move(
        session, payment, PaymentStatus.REFUNDED, {"refund": refund_reference}, from_=[PaymentStatus.SUCCEEDED]
    ):
        await _payment_event(session, EventName.PAYMENT_REFUNDED, payment)
    take = min(photos, await ledger.balance(session, payment.user_id))
    if take <= 0:
        return False
    return await ledger.record(
        session,
        payment.user_id,
        refund_line(refund_reference, take),
        order_id=payment.order_id,
        payment_id=payment.id,
    )
