"""The money invariants of PinGlass, stated once and checked against the database.

Checked after every test whose database moved credits (the test database fixtures of
``tests/conftest.py``: every app, engine, delivery, admin, process and service test), by the payment
tests, at the end of every chaos scenario (``bench/chaos_invariants.py``) and after every step of the
ledger state machine (``tests/integration/test_ledger_machine.py``).

The ledger is the only place credits move, so checking it against *itself* proves little. The
statement derives what each user should have from the other tables (payments → purchases, jobs →
reservations, tasks → portraits and releases) and requires the ledger to say exactly that:

1. Balance ≥ 0 for every user; every line moves credits in its reason's direction.
2. Every succeeded payment is exactly one job (its order's, bought by it alone) or exactly one refund:
   a payment whose money we took has one purchase line of its order's size; a refunded one has at
   most one refund line, taking back at most what it bought; no order has two unrefunded payments.
3. Per job: one reserve line of ``photos_total``; released ≤ reserved; a queued job has released
   nothing, a cancelled one everything (once), and a job with tasks released one credit per skipped
   task: so reserved − released is exactly its portraits plus its still-open tasks. Two exceptions move
   no credits at all (no line names them): a job that makes style examples, and a free redo (one of a
   pack's free redos, or the likeness guarantee's). The guarantee's credits back are grants, one per
   portrait of a pack the guarantee redid.
4. Per user: credits bought (purchases, trial, grants) − credits refunded = credits turned into
   portraits by finished jobs + credits reserved by unfinished jobs + the balance.
5. Credits a job returned are spent once: at most one order per source job, no bigger than what
   that job returned.
6. A gift's payment buys no credits for its buyer and no job: an opened gift is exactly one gift
   line of its size for its opener; an unopened one none; one taken back has its payment refunded.

Rules that known, not yet merged defects still break are behind the flags below; the integrator
turns each one on (True) once its fix is merged, and from then on every check above enforces it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import create_engine, create_sessionmaker
from storage.models import ExampleJob, GenerationJob, GenerationTask, Gift, LedgerEntry, Order, Payment, Redo, User
from studio.credits import CREDITING_REASONS, DEBITING_REASONS, GIVEN_REASONS, check_invariant
from studio.states import ACTIVE_JOB_STATUSES, JobStatus, LedgerReason, OrderStatus, PaymentStatus, TaskStatus

# Defect "crossed card/Stars payments are not refunded": a card payment and a Stars payment for one
# order both succeed and both stay kept (the second only credits the balance). Guards rule 2's
# "no order has two unrefunded payments" (so also "a kept payment is its order's only one").
CROSSED_RAILS_REFUNDED = True
# Defect "cancel after skips over-releases": cancelling a processing job with skipped tasks releases
# its whole reservation on top of the per-task releases. Guards the state machine's rule that
# cancels such a job (rule 3 itself is always checked, and no other test cancels after a skip).
CANCEL_AFTER_SKIPS_RELEASES_ONLY_THE_REST = True
# Defect "a double tap on spending returned credits makes two jobs": two concurrent taps both find
# no order yet. Guards rule 5's "at most one order per source job" and the state machine's
# concurrent double tap.
DOUBLE_TAP_SPENDS_ONCE = True
# Defect "/refund of a queued job takes 0 credits back": the job's reserve holds every credit, so
# the refund finds an empty balance and the job still runs. Guards the state machine's check that a
# refund of a payment whose job had not started takes back all the credits it was asked for.
QUEUED_REFUND_TAKES_CREDITS_BACK = True

# A payment whose money we kept at some point: it must have bought credits exactly once.
CREDITED_PAYMENT_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED})
# Tasks whose credit is still held by the job: a portrait, or work that may still become one.
HOLDING_TASK_STATUSES = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.SUBMITTED,
        TaskStatus.SUCCEEDED,
        TaskStatus.STORED,
        TaskStatus.DELIVERED,
    }
)
PORTRAIT_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.STORED, TaskStatus.DELIVERED})
CREDITS_PACK_PREFIX = "credits-"  # storage.orders.credits_pack_id


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
    portraits: int = 0  # credits turned into portraits by finished jobs
    held: int = 0  # credits still reserved by unfinished jobs


async def assert_money_invariants(
    source: AsyncSession | async_sessionmaker[AsyncSession],
) -> dict[int, UserTotals]:
    """Raise AssertionError listing every broken rule; return the totals per user id otherwise."""
    if isinstance(source, AsyncSession):
        return await _check(source)
    async with source() as session:
        return await _check(session)


# The name every money test has used since the ledger's first check.
assert_ledger_balanced = assert_money_invariants


async def assert_money_invariants_at(database_url: str) -> dict[int, UserTotals]:
    """The same check through a connection of its own (after the app that used the database stopped)."""
    engine = create_engine(database_url)
    try:
        return await assert_money_invariants(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def assert_money_invariants_if_moved(database_url: str) -> bool:
    """The check at ``database_url`` when its ledger has lines; False (nothing checked) when it has none
    or no ledger table at all (a test of migrations, or one that never used its database)."""
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            try:
                moved = (await session.execute(select(LedgerEntry.id).limit(1))).first() is not None
            except DBAPIError:
                return False
            if moved:
                await _check(session)
            return moved
    finally:
        await engine.dispose()


async def _check(session: AsyncSession) -> dict[int, UserTotals]:
    users = list((await session.execute(select(User.id))).scalars())
    entries = list((await session.execute(select(LedgerEntry).order_by(LedgerEntry.id))).scalars())
    payments = list((await session.execute(select(Payment).order_by(Payment.id))).scalars())
    jobs = list((await session.execute(select(GenerationJob).order_by(GenerationJob.id))).scalars())
    # Style examples (issue 19): free jobs that hold no credits, so none of the job rules apply to them.
    example_jobs = set((await session.execute(select(ExampleJob.job_id))).scalars())
    jobs = [job for job in jobs if job.id not in example_jobs]
    orders = {order.id: order for order in (await session.execute(select(Order))).scalars()}
    task_rows = (await session.execute(select(GenerationTask.id, GenerationTask.job_id, GenerationTask.status))).all()
    redos = list((await session.execute(select(Redo))).scalars())
    gifts = list((await session.execute(select(Gift).order_by(Gift.id))).scalars())

    problems: list[str] = []
    problems += [f"ledger {e.id}: example job {e.job_id} moved credits" for e in entries if e.job_id in example_jobs]
    totals: dict[int, UserTotals] = {user_id: UserTotals() for user_id in users}
    by_reference: dict[tuple[str, str], list[LedgerEntry]] = defaultdict(list)
    _ledger_totals(entries, totals, by_reference, problems)
    gift_payment_ids = {gift.payment_id for gift in gifts if gift.payment_id is not None}
    expected_purchases = _payments(payments, entries, orders, jobs, problems, gift_payment_ids)
    _gifts(gifts, payments, entries, problems)
    free_jobs = _free_redos(redos, entries, problems)
    expected_reservations = _jobs(
        [job for job in jobs if job.id not in free_jobs], entries, by_reference, task_rows, totals, problems
    )
    _credits_orders(orders, jobs, problems)

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
        bought = user_totals.purchases + user_totals.trials + user_totals.grants
        accounted = user_totals.portraits + user_totals.held + user_totals.balance
        if bought - user_totals.refunds != accounted:
            problems.append(
                f"user {user_id}: bought {bought} - refunded {user_totals.refunds} != portraits "
                f"{user_totals.portraits} + reserved by unfinished jobs {user_totals.held} "
                f"+ balance {user_totals.balance}"
            )

    assert not problems, "ledger out of balance:\n  " + "\n  ".join(problems)
    return totals


def _ledger_totals(
    entries: list[LedgerEntry],
    totals: dict[int, UserTotals],
    by_reference: dict[tuple[str, str], list[LedgerEntry]],
    problems: list[str],
) -> None:
    """Rule 1: every line in its reason's direction; the magnitudes per reason and the balance."""
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
            case given if given in GIVEN_REASONS:  # an admin's grant, a gift, a promo code, a referral bonus
                user_totals.grants += magnitude
            case LedgerReason.RESERVE:
                user_totals.reservations += magnitude
            case LedgerReason.RELEASE:
                user_totals.releases += magnitude
            case LedgerReason.REFUND:
                user_totals.refunds += magnitude
    for user_id, user_totals in totals.items():
        if user_totals.balance < 0:
            problems.append(f"user {user_id}: balance {user_totals.balance} is negative")


def _payments(
    payments: list[Payment],
    entries: list[LedgerEntry],
    orders: dict[int, Order],
    jobs: list[GenerationJob],
    problems: list[str],
    gift_payment_ids: set[int],
) -> dict[int, int]:
    """Rule 2; returns the credits each user's payments bought, derived from the payments table. The
    payment that bought a gift is rule 6's: it neither buys its payer credits nor makes a job."""
    expected_purchases: dict[int, int] = defaultdict(int)
    credited_payment_ids = set()
    jobs_by_order = Counter(job.order_id for job in jobs if job.order_id is not None)
    kept_by_order: dict[int, list[int]] = defaultdict(list)
    for payment in payments:
        purchase_lines = [e for e in entries if e.reason == LedgerReason.PURCHASE and e.payment_id == payment.id]
        if payment.id in gift_payment_ids:
            if purchase_lines:
                problems.append(f"gift payment {payment.id} has {len(purchase_lines)} purchase lines")
            if payment.status == PaymentStatus.SUCCEEDED:
                kept_by_order[payment.order_id].append(payment.id)
                if jobs_by_order[payment.order_id]:
                    problems.append(f"gift payment {payment.id}: order {payment.order_id} has a job")
            continue
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
        if payment.status == PaymentStatus.SUCCEEDED:
            kept_by_order[payment.order_id].append(payment.id)
            order = orders.get(payment.order_id)
            if order is None or order.status != OrderStatus.PAID:
                problems.append(f"payment {payment.id} succeeded but its order is {order and order.status}")
            if jobs_by_order[payment.order_id] != 1:
                problems.append(
                    f"payment {payment.id} succeeded: order {payment.order_id} has "
                    f"{jobs_by_order[payment.order_id]} jobs"
                )
    if CROSSED_RAILS_REFUNDED:
        for order_id, kept in kept_by_order.items():
            if len(kept) > 1:
                problems.append(f"order {order_id} has {len(kept)} unrefunded payments {kept}")
    for entry in entries:
        if entry.reason == LedgerReason.PURCHASE and entry.payment_id not in credited_payment_ids:
            problems.append(f"ledger {entry.id}: purchase line without a credited payment ({entry.payment_id})")
    # Refunds: only of refunded payments, at most one each, never more than the payment bought.
    refunded_payments = {payment.id: payment for payment in payments if payment.status == PaymentStatus.REFUNDED}
    refunded_by_payment: dict[int | None, int] = defaultdict(int)
    refund_lines: Counter[int | None] = Counter()
    for entry in entries:
        if entry.reason == LedgerReason.REFUND:
            refunded_by_payment[entry.payment_id] += -entry.delta
            refund_lines[entry.payment_id] += 1
            if entry.payment_id not in refunded_payments:
                problems.append(f"ledger {entry.id}: refund line without a refunded payment ({entry.payment_id})")
    for payment_id, taken in refunded_by_payment.items():
        payment_row = refunded_payments.get(payment_id) if payment_id is not None else None
        order = orders.get(payment_row.order_id) if payment_row is not None else None
        if order is not None and taken > order.photos:
            problems.append(f"payment {payment_id}: {taken} credits refunded of {order.photos} bought")
        if refund_lines[payment_id] > 1:
            problems.append(f"payment {payment_id}: refunded {refund_lines[payment_id]} times")
    return expected_purchases


def _gifts(gifts: list[Gift], payments: list[Payment], entries: list[LedgerEntry], problems: list[str]) -> None:
    """Rule 6."""
    payment_status = {payment.id: payment.status for payment in payments}
    lines: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        if entry.reason == LedgerReason.GIFT:
            lines[entry.reference].append(entry)
    known = set()
    for gift in gifts:
        reference = f"gift:{gift.id}"
        known.add(reference)
        own = lines.get(reference, [])
        status = payment_status.get(gift.payment_id) if gift.payment_id is not None else None
        if gift.status == "redeemed":
            if len(own) != 1 or own[0].delta != gift.photos or own[0].user_id != gift.redeemed_by:
                found = [(e.user_id, e.delta) for e in own]
                problems.append(f"gift {gift.id} opened by {gift.redeemed_by}: lines {found}")
            if gift.redeemed_by == gift.buyer_id:
                problems.append(f"gift {gift.id} was opened by its own buyer")
        elif own:
            problems.append(f"gift {gift.id} is {gift.status} but credited {[e.delta for e in own]}")
        if gift.status == "refunded" and status != PaymentStatus.REFUNDED:
            problems.append(f"gift {gift.id} was taken back but its payment is {status}")
        if gift.status == "open" and status != PaymentStatus.SUCCEEDED:
            problems.append(f"gift {gift.id} is open but its payment is {status}")
    for reference in lines.keys() - known:
        problems.append(f"gift line {reference} without its gift")


def _jobs(
    jobs: list[GenerationJob],
    entries: list[LedgerEntry],
    by_reference: dict[tuple[str, str], list[LedgerEntry]],
    task_rows: list[tuple[int, int, str]],
    totals: dict[int, UserTotals],
    problems: list[str],
) -> dict[int, int]:
    """Rule 3 (and the job side of rule 4); returns the credits each user's jobs reserve."""
    tasks_by_job: dict[int, Counter[str]] = defaultdict(Counter)
    task_refs: dict[int, set[str]] = defaultdict(set)
    skipped_refs: dict[int, set[str]] = defaultdict(set)
    for task_id, job_id, status in task_rows:
        tasks_by_job[job_id][status] += 1
        task_refs[job_id].add(f"task:{task_id}")
        if status == TaskStatus.SKIPPED:
            skipped_refs[job_id].add(f"task:{task_id}")
    releases_by_job: dict[int | None, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        if entry.reason == LedgerReason.RELEASE:
            releases_by_job[entry.job_id].append(entry)
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
        releases = releases_by_job.get(job.id, [])
        released = sum(e.delta for e in releases)
        if released > job.photos_total:
            problems.append(f"job {job.id}: {released} credits released of {job.photos_total} reserved")
        cancel_lines = by_reference.get((LedgerReason.RELEASE, f"cancel:job:{job.id}"), [])
        if len(cancel_lines) > 1:
            problems.append(f"cancelled job {job.id}: cancel releases {[e.delta for e in cancel_lines]}")
        if job.status != JobStatus.CANCELLED and cancel_lines:
            problems.append(f"job {job.id} is {job.status} but has a cancel release")
        # Each skipped task gave back its one credit, and only its own tasks did. A released task that
        # is no longer skipped was reopened by an admin's retry, on the house: it holds no credit.
        task_releases = {e.reference for e in releases if e.reference.startswith("task:")}
        skipped, own = skipped_refs.get(job.id, set()), task_refs.get(job.id, set())
        on_the_house = len(task_releases - skipped)
        # A job stopped as a whole (missing selfies, a refund) gives its skipped tasks back in one line.
        stop_lines = by_reference.get((LedgerReason.RELEASE, f"stop:job:{job.id}"), [])
        if len(stop_lines) > 1:
            problems.append(f"job {job.id}: {len(stop_lines)} stop releases")
        unreleased = skipped - task_releases
        if job.status != JobStatus.CANCELLED and len(unreleased) > sum(e.delta for e in stop_lines):
            problems.append(f"job {job.id}: skipped tasks {sorted(unreleased)} released nothing")
        if not task_releases <= own:
            problems.append(f"job {job.id}: releases for tasks {sorted(task_releases - own)} it does not have")
        counts = tasks_by_job.get(job.id, Counter())
        # Photos not fanned out into tasks yet hold their credits too.
        unplanned = max(0, job.photos_total - sum(counts.values()))
        holding = sum(counts[status] for status in HOLDING_TASK_STATUSES) + unplanned - on_the_house
        portraits = sum(counts[status] for status in PORTRAIT_TASK_STATUSES) - on_the_house
        kept = job.photos_total - released
        if job.status == JobStatus.CANCELLED:
            if kept != 0:
                problems.append(f"cancelled job {job.id} keeps {kept} credits")
        elif counts and kept != holding:
            problems.append(
                f"job {job.id} ({job.status}) keeps {kept} credits for {holding} live tasks: {dict(counts)}"
            )
        elif not counts and released:
            problems.append(f"job {job.id} ({job.status}) has no tasks but released {released}")
        if job.status in ACTIVE_JOB_STATUSES:
            totals.setdefault(job.user_id, UserTotals()).held += kept
        else:
            totals.setdefault(job.user_id, UserTotals()).portraits += kept
            if job.status != JobStatus.CANCELLED and kept != portraits:
                problems.append(f"finished job {job.id} ({job.status}) kept {kept} credits for {portraits} portraits")
    for entry in entries:
        if entry.reason == LedgerReason.RESERVE and (
            entry.job_id not in job_ids or entry.reference != f"job:{entry.job_id}"
        ):
            problems.append(f"ledger {entry.id}: reserve line {entry.reference} without its job")
        if entry.reason == LedgerReason.RELEASE and entry.job_id not in job_ids:
            problems.append(f"ledger {entry.id}: release line {entry.reference} without its job")
    return expected_reservations


def _free_redos(redos: list[Redo], entries: list[LedgerEntry], problems: list[str]) -> set[int]:
    """The jobs of free redos, which must move no credits; and the guarantee's grants, each for a
    portrait a guarantee redo redid, once (the UNIQUE reference). Returns the free redo job ids."""
    free_jobs = {redo.job_id for redo in redos if redo.kind in ("free", "guarantee")}
    guaranteed = {task_id for redo in redos if redo.kind == "guarantee" for task_id in redo.source_task_ids}
    for entry in entries:
        if entry.job_id in free_jobs:
            problems.append(f"ledger {entry.id}: free redo job {entry.job_id} moved credits ({entry.reference})")
        if entry.reason == LedgerReason.GRANT and entry.reference.startswith("guarantee:task:"):
            if int(entry.reference.removeprefix("guarantee:task:")) not in guaranteed or entry.delta != 1:
                problems.append(f"ledger {entry.id}: guarantee credit {entry.reference} for a portrait never redone")
    return free_jobs


def _credits_orders(orders: dict[int, Order], jobs: list[GenerationJob], problems: list[str]) -> None:
    """Rule 5: the credits a job returned buy at most one order, of at most what it returned."""
    jobs_by_id = {job.id: job for job in jobs}
    spent: Counter[tuple[int, str]] = Counter()
    for order in orders.values():
        if not order.pack.startswith(CREDITS_PACK_PREFIX):
            continue
        spent[(order.user_id, order.pack)] += 1
        source = jobs_by_id.get(int(order.pack.removeprefix(CREDITS_PACK_PREFIX)))
        if source is None or source.user_id != order.user_id or order.photos > source.photos_failed:
            problems.append(
                f"order {order.id} spends {order.photos} credits of job {order.pack}, which returned "
                f"{source.photos_failed if source else 'nothing'} to user {source.user_id if source else None}"
            )
    for (user_id, pack), count in spent.items():
        if count > 1 and DOUBLE_TAP_SPENDS_ONCE:
            problems.append(f"user {user_id}: {count} orders spend the credits of {pack}")
