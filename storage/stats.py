"""The figures behind /stats, computed from the tables first and from ``events`` for what only
events know (why photos were rejected, why tasks failed, which provider started a job). Provider
cost comes from the tasks (each create adds its price, migration 0009), so skipped portraits count.

Every query is bounded by a time window through an index (migration 0003 adds the ones the tables
lacked), so a 30-day report stays fast on a million events; ``bench/bench_stats.py`` measures it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.favourites import favourites_by_style
from storage.models import Event, GenerationJob, GenerationTask, LedgerEntry, Order, Payment, User
from storage.redos import GUARANTEE_CREDIT_PREFIX
from studio.states import LedgerReason, PaymentStatus, TaskStatus

PERIODS = {"today": None, "7d": timedelta(days=7), "30d": timedelta(days=30)}
DONE_TASKS = (TaskStatus.STORED, TaskStatus.DELIVERED)


def period_start(period: str, now: datetime) -> datetime:
    """ "today" starts at UTC midnight; "7d"/"30d" are rolling windows."""
    span = PERIODS[period]
    if span is None:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now - span


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (p50 = median); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


@dataclass
class ProviderFigures:
    done: int = 0
    skipped: int = 0
    retried: int = 0  # finished on this provider after more than one attempt
    fell_back: int = 0  # finished here after an earlier provider gave up
    # What its tasks' creates cost, in millionths of a USD (a task's creates are counted under the
    # provider that holds it last: a fallen-back portrait's earlier creates included).
    cost_micros: int = 0

    @property
    def failure_rate(self) -> float | None:
        finished = self.done + self.skipped
        return self.skipped / finished if finished else None


@dataclass
class Stats:
    since: datetime
    until: datetime
    new_users: int = 0
    paid_orders: int = 0
    revenue: dict[str, int] = field(default_factory=dict)  # currency → minor units
    refunded: dict[str, int] = field(default_factory=dict)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    photos_done: int = 0
    photos_skipped: int = 0
    first_image_seconds: list[float] = field(default_factory=list)
    full_pack_seconds: list[float] = field(default_factory=list)
    providers: dict[str, ProviderFigures] = field(default_factory=dict)
    jobs_started_by_provider: dict[str, int] = field(default_factory=dict)
    failures_by_type: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    credits_granted: int = 0
    credits_returned: int = 0
    credits_refunded: int = 0
    cost_micros: int = 0  # every create of the window's jobs, millionths of a USD (studio/costs.py)
    identity_scored: int = 0
    identity_score_sum: float = 0.0
    portraits: int = 0
    portraits_redone: int = 0
    favourites_added: int = 0  # favourite_added events: portraits marked by a positive reaction
    favourites_by_style: dict[str, int] = field(default_factory=dict)  # marked in the window, still kept
    reminders_by_cause: dict[str, int] = field(default_factory=dict)
    redos_by_kind: dict[str, int] = field(default_factory=dict)  # portrait_redone: free, paid, guarantee
    guarantee_credits: int = 0  # credited back by the likeness guarantee (not in credits_granted)
    # Events of the window: gifts paid and opened, promo codes and referral bonuses credited.
    gifts_bought: int = 0
    gifts_redeemed: int = 0
    promos_redeemed: int = 0
    referrals_paid: int = 0

    @property
    def success_rate(self) -> float | None:
        finished = self.photos_done + self.photos_skipped
        return self.photos_done / finished if finished else None

    @property
    def cost_per_portrait_micros(self) -> int | None:
        """Provider cost per delivered (or stored) portrait, skipped portraits' creates included."""
        return round(self.cost_micros / self.photos_done) if self.photos_done else None

    @property
    def identity_average(self) -> float | None:
        return self.identity_score_sum / self.identity_scored if self.identity_scored else None

    @property
    def redo_share(self) -> float | None:
        return self.portraits_redone / self.portraits if self.portraits else None


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):  # raw SQLite values bypass the column type in some aggregates
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def compute_stats(session: AsyncSession, since: datetime, until: datetime | None = None) -> Stats:
    until = until or datetime.now(UTC)
    stats = Stats(since=since, until=until)
    await _people_and_money(session, stats)
    await _jobs_and_tasks(session, stats)
    await _ledger(session, stats)
    await _events(session, stats)
    return stats


async def _people_and_money(session: AsyncSession, stats: Stats) -> None:
    window_users = and_(User.created_at >= stats.since, User.created_at < stats.until)
    stats.new_users = int((await session.execute(select(func.count()).where(window_users))).scalar_one())
    paid = and_(Order.paid_at >= stats.since, Order.paid_at < stats.until, Order.currency.is_not(None))
    rows = await session.execute(
        select(Order.currency, func.count(), func.coalesce(func.sum(Order.amount), 0))
        .where(paid)
        .group_by(Order.currency)
    )
    for currency, count, amount in rows.all():
        stats.paid_orders += int(count)
        stats.revenue[str(currency)] = int(amount or 0)
    # Refunded payments are few; their last update is the refund.
    refunds = await session.execute(
        select(Payment.currency, func.coalesce(func.sum(Payment.amount), 0))
        .where(
            Payment.status == PaymentStatus.REFUNDED,
            Payment.updated_at >= stats.since,
            Payment.updated_at < stats.until,
        )
        .group_by(Payment.currency)
    )
    stats.refunded = {str(currency): int(amount) for currency, amount in refunds.all()}


async def _jobs_and_tasks(session: AsyncSession, stats: Stats) -> None:
    window = and_(GenerationJob.created_at >= stats.since, GenerationJob.created_at < stats.until)
    by_status = await session.execute(
        select(GenerationJob.status, func.count()).where(window).group_by(GenerationJob.status)
    )
    stats.jobs_by_status = {str(status): int(count) for status, count in by_status.all()}

    timings = await session.execute(
        select(GenerationJob.created_at, GenerationJob.first_image_at, GenerationJob.finished_at).where(
            window, GenerationJob.first_image_at.is_not(None)
        )
    )
    for created, first_image, finished in timings.all():
        if first_image is None:  # excluded by the query; says so to the type checker
            continue
        stats.first_image_seconds.append((first_image - created).total_seconds())
        if finished is not None:
            stats.full_pack_seconds.append((finished - created).total_seconds())

    done = GenerationTask.status.in_(DONE_TASKS)
    one = case((done, 1), else_=0)
    rows = await session.execute(
        select(
            GenerationTask.provider,
            GenerationTask.status,
            func.count(),
            func.sum(case((and_(done, GenerationTask.attempts > 1), 1), else_=0)),
            func.sum(case((and_(done, GenerationTask.provider_index > 0), 1), else_=0)),
            func.count(GenerationTask.identity_score),
            func.sum(GenerationTask.identity_score),
            func.sum(case((and_(done, GenerationTask.identity_redos > 0), 1), else_=0)),
            func.sum(one),
            func.coalesce(func.sum(GenerationTask.cost_micros), 0),
        )
        .join(GenerationJob, GenerationJob.id == GenerationTask.job_id)
        .where(window)
        .group_by(GenerationTask.provider, GenerationTask.status)
    )
    for provider, status, count, retried, fell_back, scored, score_sum, redone, portraits, cost in rows.all():
        figures = stats.providers.setdefault(provider or "-", ProviderFigures())
        count = int(count)
        figures.cost_micros += int(cost)
        stats.cost_micros += int(cost)
        if status in DONE_TASKS:
            stats.photos_done += count
            figures.done += count
        elif status == TaskStatus.SKIPPED:
            stats.photos_skipped += count
            figures.skipped += count
        figures.retried += int(retried or 0)
        figures.fell_back += int(fell_back or 0)
        stats.identity_scored += int(scored or 0)
        stats.identity_score_sum += float(score_sum or 0.0)
        stats.portraits_redone += int(redone or 0)
        stats.portraits += int(portraits or 0)
    unassigned = stats.providers.get("-")
    if unassigned is not None and not (unassigned.done or unassigned.skipped or unassigned.cost_micros):
        del stats.providers["-"]  # tasks no provider has taken yet


async def _ledger(session: AsyncSession, stats: Stats) -> None:
    rows = await session.execute(
        select(LedgerEntry.reason, func.coalesce(func.sum(LedgerEntry.delta), 0))
        .where(
            LedgerEntry.reason.in_([LedgerReason.GRANT, LedgerReason.RELEASE, LedgerReason.REFUND]),
            LedgerEntry.created_at >= stats.since,
            LedgerEntry.created_at < stats.until,
        )
        .group_by(LedgerEntry.reason)
    )
    totals = {str(reason): abs(int(total)) for reason, total in rows.all()}
    guarantee = await session.execute(
        select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
            LedgerEntry.reason == LedgerReason.GRANT,
            LedgerEntry.reference.startswith(GUARANTEE_CREDIT_PREFIX),
            LedgerEntry.created_at >= stats.since,
            LedgerEntry.created_at < stats.until,
        )
    )
    stats.guarantee_credits = int(guarantee.scalar_one())
    stats.credits_granted = totals.get(LedgerReason.GRANT, 0) - stats.guarantee_credits
    stats.credits_returned = totals.get(LedgerReason.RELEASE, 0)
    stats.credits_refunded = totals.get(LedgerReason.REFUND, 0)


async def _events(session: AsyncSession, stats: Stats) -> None:
    def window(name: str) -> ColumnElement[bool]:
        return and_(Event.name == name, Event.created_at >= stats.since, Event.created_at < stats.until)

    async def grouped(name: str, key: str) -> dict[str, int]:
        value = Event.properties[key].as_string()
        rows = await session.execute(select(value, func.count()).where(window(name)).group_by(value))
        return {str(label or "unknown"): int(count) for label, count in rows.all()}

    stats.jobs_started_by_provider = await grouped("generation_started", "provider")
    stats.failures_by_type = await grouped("generation_failed", "error_type")
    stats.rejected_by_reason = await grouped("photo_rejected", "reason")
    stats.favourites_added = sum((await grouped("favourite_added", "style")).values())
    stats.favourites_by_style = await favourites_by_style(session, stats.since, stats.until)
    stats.reminders_by_cause = await grouped("reminder_sent", "cause")
    stats.redos_by_kind = await grouped("portrait_redone", "kind")

    names = ("gift_bought", "gift_redeemed", "promo_redeemed", "referral_paid")
    rows = await session.execute(
        select(Event.name, func.count())
        .where(Event.name.in_(names), Event.created_at >= stats.since, Event.created_at < stats.until)
        .group_by(Event.name)
    )
    counted = {str(name): int(total) for name, total in rows.all()}
    stats.gifts_bought, stats.gifts_redeemed, stats.promos_redeemed, stats.referrals_paid = (
        counted.get(name, 0) for name in names
    )
