"""The money invariant, checked against the database after every money test.

The ledger is the only place credits move, so checking it against *itself* proves little. This
helper derives what each user should have from the other tables (succeeded payments → purchases,
jobs → reservations, cancelled jobs → releases) and requires the ledger to say exactly that:

    balance == purchases + trials + grants - reservations + releases - refunds,  balance >= 0

plus the per-row rules: every succeeded (or later refunded) payment has exactly one purchase line
of its order's size, nothing else has one; refund lines belong to refunded payments and take back
at most what was bought; every job has exactly one reserve line equal to ``photos_total``; a
cancelled job has its whole reservation released once; no job gets back more than it reserved.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import GenerationJob, LedgerEntry, Order, Payment, User
from studio.credits import CREDITING_REASONS, DEBITING_REASONS, check_invariant
from studio.states import JobStatus, LedgerReason, PaymentStatus

# A payment whose money we kept at some point: it must have bought credits exactly once.
CREDITED_PAYMENT_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED})


@dataclass
class UserTotals:
    """Magnitudes moved per reason for one user, and the balance (the ledger's sum)."""

    purchases: int = 0
    trials: int = 0
    grants: int = 0
    reservations: int = 0
    releases: int = 0
    refunds: int = 0
    balance: int = 0
    lines: int = 0


async def assert_ledger_balanced(
    source: AsyncSession | async_sessionmaker[AsyncSession],
) -> dict[int, UserTotals]:
    """Raise AssertionError listing every broken rule; return the totals per user id otherwise."""
    if isinstance(source, AsyncSession):
        return await _check(source)
    async with source() as session:
        return await _check(session)


async def _check(session: AsyncSession) -> dict[int, UserTotals]:
    users = list((await session.execute(select(User.id))).scalars())
    entries = list((await session.execute(select(LedgerEntry).order_by(LedgerEntry.id))).scalars())
    payments = list((await session.execute(select(Payment).order_by(Payment.id))).scalars())
    jobs = list((await session.execute(select(GenerationJob).order_by(GenerationJob.id))).scalars())
    orders = {order.id: order for order in (await session.execute(select(Order))).scalars()}

    problems: list[str] = []
    totals: dict[int, UserTotals] = {user_id: UserTotals() for user_id in users}
    by_reference: dict[tuple[str, str], list[LedgerEntry]] = defaultdict(list)

    for entry in entries:
        user_totals = totals.setdefault(entry.user_id, UserTotals())
        user_totals.balance += entry.delta
        user_totals.lines += 1
        by_reference[(entry.reason, entry.reference)].append(entry)
        reason = LedgerReason(entry.reason)
        if (reason in CREDITING_REASONS and entry.delta <= 0) or (reason in DEBITING_REASONS and entry.delta >= 0):
            problems.append(f"ledger {entry.id}: {reason} line with delta {entry.delta}")
        magnitude = abs(entry.delta)
        match reason:
            case LedgerReason.PURCHASE:
                user_totals.purchases += magnitude
            case LedgerReason.TRIAL:
                user_totals.trials += magnitude
            case LedgerReason.GRANT:
                user_totals.grants += magnitude
            case LedgerReason.RESERVE:
                user_totals.reservations += magnitude
            case LedgerReason.RELEASE:
                user_totals.releases += magnitude
            case LedgerReason.REFUND:
                user_totals.refunds += magnitude

    # Purchases: derived from the payments table, not from the ledger.
    expected_purchases: dict[int, int] = defaultdict(int)
    credited_payment_ids = set()
    for payment in payments:
        purchase_lines = [e for e in entries if e.reason == LedgerReason.PURCHASE and e.payment_id == payment.id]
        if payment.status in CREDITED_PAYMENT_STATUSES:
            credited_payment_ids.add(payment.id)
            order = orders.get(payment.order_id)
            photos = order.photos if order is not None else None
            expected_purchases[payment.user_id] += photos or 0
            if len(purchase_lines) != 1:
                problems.append(f"payment {payment.id} ({payment.status}) has {len(purchase_lines)} purchase lines")
            elif purchase_lines[0].delta != photos or purchase_lines[0].user_id != payment.user_id:
                problems.append(
                    f"payment {payment.id}: purchase of {purchase_lines[0].delta} for user "
                    f"{purchase_lines[0].user_id}, order {payment.order_id} is {photos} photos "
                    f"of user {payment.user_id}"
                )
        elif purchase_lines:
            problems.append(f"payment {payment.id} is {payment.status} but has {len(purchase_lines)} purchase lines")
    for entry in entries:
        if entry.reason == LedgerReason.PURCHASE and entry.payment_id not in credited_payment_ids:
            problems.append(f"ledger {entry.id}: purchase line without a credited payment ({entry.payment_id})")
    # Refunds: only of refunded payments, never more than the payment bought.
    refunded_payments = {payment.id: payment for payment in payments if payment.status == PaymentStatus.REFUNDED}
    refunded_by_payment: dict[int | None, int] = defaultdict(int)
    for entry in entries:
        if entry.reason == LedgerReason.REFUND:
            refunded_by_payment[entry.payment_id] += -entry.delta
            if entry.payment_id not in refunded_payments:
                problems.append(f"ledger {entry.id}: refund line without a refunded payment ({entry.payment_id})")
    for payment_id, taken in refunded_by_payment.items():
        payment_row = refunded_payments.get(payment_id) if payment_id is not None else None
        order = orders.get(payment_row.order_id) if payment_row is not None else None
        if order is not None and taken > order.photos:
            problems.append(f"payment {payment_id}: {taken} credits refunded of {order.photos} bought")

    # Reservations and releases: derived from the jobs table.
    expected_reservations: dict[int, int] = defaultdict(int)
    job_ids = set()
    for job in jobs:
        job_ids.add(job.id)
        expected_reservations[job.user_id] += job.photos_total
        reserves = by_reference.get((LedgerReason.RESERVE, f"job:{job.id}"), [])
        if len(reserves) != 1:
            problems.append(f"job {job.id} has {len(reserves)} reserve lines")
        elif reserves[0].delta != -job.photos_total or reserves[0].user_id != job.user_id:
            problems.append(
                f"job {job.id}: reserve of {reserves[0].delta} for user {reserves[0].user_id}, "
                f"job is {job.photos_total} photos of user {job.user_id}"
            )
        released = sum(e.delta for e in entries if e.reason == LedgerReason.RELEASE and e.job_id == job.id)
        if released > job.photos_total:
            problems.append(f"job {job.id}: {released} credits released of {job.photos_total} reserved")
        cancel_lines = by_reference.get((LedgerReason.RELEASE, f"cancel:job:{job.id}"), [])
        if job.status == JobStatus.CANCELLED and [e.delta for e in cancel_lines] != [job.photos_total]:
            problems.append(f"cancelled job {job.id}: cancel releases {[e.delta for e in cancel_lines]}")
        if job.status != JobStatus.CANCELLED and cancel_lines:
            problems.append(f"job {job.id} is {job.status} but has a cancel release")
    for entry in entries:
        if entry.reason == LedgerReason.RESERVE and (
            entry.job_id not in job_ids or entry.reference != f"job:{entry.job_id}"
        ):
            problems.append(f"ledger {entry.id}: reserve line {entry.reference} without its job")

    for user_id, user_totals in totals.items():
        if user_totals.purchases != expected_purchases.get(user_id, 0):
            problems.append(
                f"user {user_id}: ledger purchases {user_totals.purchases}, "
                f"succeeded payments bought {expected_purchases.get(user_id, 0)}"
            )
        if user_totals.reservations != expected_reservations.get(user_id, 0):
            problems.append(
                f"user {user_id}: ledger reservations {user_totals.reservations}, "
                f"jobs hold {expected_reservations.get(user_id, 0)}"
            )
        expected_balance = (
            expected_purchases.get(user_id, 0)
            + user_totals.trials
            + user_totals.grants
            - expected_reservations.get(user_id, 0)
            + user_totals.releases
            - user_totals.refunds
        )
        if user_totals.balance != expected_balance:
            problems.append(f"user {user_id}: balance {user_totals.balance}, expected {expected_balance}")
        if not check_invariant(
            purchased=user_totals.purchases,
            trial=user_totals.trials,
            granted=user_totals.grants,
            reserved=user_totals.reservations,
            released=user_totals.releases,
            refunded=user_totals.refunds,
            balance=user_totals.balance,
        ):
            problems.append(f"user {user_id}: invariant broken: {user_totals}")

    assert not problems, "ledger out of balance:\n  " + "\n  ".join(problems)
    return totals
