"""What admin commands do, apart from talking: each action changes state through the same storage
functions and services the rest of PinGlass uses, and writes an audit line (who, what, when); each
look (stats, queue, a job, a user) is read here too, so the handlers only parse and answer.

Built once in the composition root and handed to the admin handlers as ``admin``. It never talks to
Telegram: broadcasts are sent by a ``BroadcastRunner`` (scheduler.broadcast.BroadcastService).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.stars import StarsPayments
from scheduler.delivery import DeliveryService
from scheduler.engine import GenerationEngine
from scheduler.payments import OrderNotPayable, PaymentService
from scheduler.provider_health import ProbeReport, ProviderHealthMonitor
from storage import admin as queries
from storage import broadcasts as broadcast_queries
from storage import jobs as job_queries
from storage import ledger
from storage import queue as queue_queries
from storage.admin import JobDetail as JobDetail  # the answers of job(), queue() and user()
from storage.admin import QueueSnapshot as QueueSnapshot
from storage.admin import UserDetail as UserDetail
from storage.models import Broadcast, GenerationJob, GenerationTask, LedgerEntry, Order, Payment, User, utcnow
from storage.stats import PERIODS, Stats, compute_stats, percentile, period_start
from studio.costs import Margin, margin
from studio.credits import Currency, grant_line
from studio.policy import BreakerState
from studio.states import (
    PORTRAIT_TASK_STATUSES,
    JobStatus,
    LedgerReason,
    PaymentProviderName,
    PaymentStatus,
    TaskStatus,
)

# The periods /stats knows, in the order its usage names them.
STATS_PERIODS = tuple(PERIODS)


class BroadcastRunner(Protocol):
    """Sends broadcasts in the background: scheduler.broadcast.BroadcastService, a stand-in in tests."""

    async def start(self, broadcast_id: int) -> bool:
        """draft → running, and send; False when it was not a draft."""
        ...

    async def stop(self, broadcast_id: int | None = None) -> list[int]:
        """running → stopped (this one, or every running one); the ids stopped."""
        ...


@dataclass(frozen=True, slots=True)
class StatsReport:
    stats: Stats
    first_p50: float | None
    first_p95: float | None
    pack_p50: float | None
    pack_p95: float | None
    margin: Margin | None = None  # revenue minus refunds and provider cost, in USD


@dataclass(frozen=True, slots=True)
class BroadcastCounts:
    broadcast_id: int
    sent: int
    blocked: int
    failed: int


class RefundResult(StrEnum):
    REFUNDED = "refunded"
    REPEATED = "repeated"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    result: RefundResult
    amount: int = 0
    currency: str = ""
    photos: int = 0  # credits taken back by this call
    status: str = ""
    spent: int = 0  # credits the refund paid for that were already portraits (or spent): not taken back


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    cancelled: bool  # the whole job, credits returned
    stopped: int  # or: this many not-yet-generated photos skipped (credits returned each)
    status: str


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    name: str
    primary: bool
    paused: bool
    breaker: str
    tried: int
    succeeded: int
    latency_p50: float | None
    probe: ProbeReport | None = None  # the last balance/model probe; None: not probed (yet, or at all)


class AdminService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        payments: PaymentService,
        engine: GenerationEngine,
        delivery: DeliveryService,
        stars: StarsPayments | None,
        broadcasts: BroadcastRunner,
        usd_rates: Mapping[Currency, Decimal] | None = None,
        probes: ProviderHealthMonitor | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        # Revenue currency units per USD (RUB_PER_USD, STARS_PER_USD): provider prices are in USD.
        self.usd_rates: Mapping[Currency, Decimal] = dict(usd_rates or {})
        self.probes = probes
        self.payments = payments
        self.engine = engine
        self.delivery = delivery
        self.stars = stars
        self.broadcasts = broadcasts

    async def audit(self, admin_id: int, action: str, target: str | None = None, **details: object) -> None:
        async with self.sessionmaker() as session:
            await queries.audit(session, admin_id, action, target, **details)
            await session.commit()

    # ------------------------------------------------------------ looking

    async def stats(self, admin_id: int, period: str, now: datetime | None = None) -> StatsReport:
        """/stats: the figures since the start of ``period`` (one of ``STATS_PERIODS``)."""
        await self.audit(admin_id, "stats", period)  # first: the request is the action
        now = now or datetime.now(UTC)
        async with self.sessionmaker() as session:
            stats = await compute_stats(session, period_start(period, now), now)
        return StatsReport(
            stats=stats,
            first_p50=percentile(stats.first_image_seconds, 0.5),
            first_p95=percentile(stats.first_image_seconds, 0.95),
            pack_p50=percentile(stats.full_pack_seconds, 0.5),
            pack_p95=percentile(stats.full_pack_seconds, 0.95),
            margin=margin(stats.revenue, stats.refunded, stats.cost_micros, self.usd_rates),
        )

    async def queue(self, admin_id: int) -> QueueSnapshot:
        await self.audit(admin_id, "queue")
        async with self.sessionmaker() as session:
            return await queries.queue_snapshot(session)

    async def job(self, admin_id: int, job_id: int) -> JobDetail | None:
        """/job: the job with its user, order and tasks; None when there is no such job."""
        await self.audit(admin_id, "job", f"job:{job_id}")
        async with self.sessionmaker() as session:
            return await queries.job_detail(session, job_id)

    async def find_user(self, reference: str) -> User | None:
        """A user by Telegram id or @username."""
        async with self.sessionmaker() as session:
            return await queries.find_user(session, reference)

    async def get_user(self, user_id: int) -> User | None:
        async with self.sessionmaker() as session:
            return await session.get(User, user_id)

    async def user(self, admin_id: int, reference: str) -> UserDetail | None:
        """/user: balance, ledger, orders, payments and jobs; None (and no audit) for an unknown user."""
        async with self.sessionmaker() as session:
            target = await queries.find_user(session, reference)
            if target is None:
                return None
            await queries.audit(session, admin_id, "user", f"user:{target.id}")
            detail = await queries.user_detail(session, target)
            await session.commit()
        return detail

    # ------------------------------------------------------------ credits and money

    async def grant(self, admin_id: int, user_id: int, photos: int, reason: str | None, key: str) -> tuple[bool, int]:
        """Grant credits once per ``key`` (the admin's message or button), so a redelivered update or
        a double tap cannot grant twice. Returns (granted now, balance)."""
        async with self.sessionmaker() as session:
            line = grant_line(key, photos, (reason or f"admin {admin_id}")[:255])
            granted = await ledger.record(session, user_id, line)
            await queries.audit(
                session, admin_id, "grant", f"user:{user_id}", photos=photos, reason=reason, new=granted
            )
            balance = await ledger.balance(session, user_id)
            await session.commit()
        return granted, balance

    async def refund(self, admin_id: int, payment_id: int, photos: int | None) -> RefundOutcome:
        """Money back at the provider and the credits taken back, once, however often it is asked."""
        async with self.sessionmaker() as session:
            payment = await session.get(Payment, payment_id)
            if payment is None or payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
                raise OrderNotPayable(str(payment_id))
            already, provider = payment.status == PaymentStatus.REFUNDED, payment.provider
            amount, currency = payment.amount, payment.currency
        outcome: RefundOutcome
        if already:
            outcome = RefundOutcome(RefundResult.REPEATED, amount, currency)
        elif provider == PaymentProviderName.STARS:
            if self.stars is None:
                raise OrderNotPayable(str(payment_id))
            taken = await self.payments.refund_stars(payment_id, self.stars, photos)
            credits = await self._refunded_credits(payment_id) if taken else 0
            outcome = RefundOutcome(RefundResult.REFUNDED, amount, currency, credits)
        else:
            taken, refund = await self.payments.refund_yookassa(payment_id, photos)
            if refund.status != "succeeded":
                outcome = RefundOutcome(RefundResult.PENDING, refund.amount_kopecks, currency, status=refund.status)
            else:
                credits = await self._refunded_credits(payment_id) if taken else 0
                outcome = RefundOutcome(RefundResult.REFUNDED, refund.amount_kopecks, currency, credits)
        if outcome.result == RefundResult.REFUNDED:
            outcome = await self._after_refund(payment_id, photos, outcome)
        await self.audit(
            admin_id,
            "refund",
            f"payment:{payment_id}",
            result=str(outcome.result),
            amount=outcome.amount,
            currency=outcome.currency,
            credits=outcome.photos,
        )
        return outcome

    async def _after_refund(self, payment_id: int, photos: int | None, outcome: RefundOutcome) -> RefundOutcome:
        """Settle the job the refund stopped, and say how many credits it could not take back."""
        async with self.sessionmaker() as session:
            order = await session.scalar(
                select(Order).join(Payment, Payment.order_id == Order.id).where(Payment.id == payment_id)
            )
            assert order is not None
            job_id = await session.scalar(select(GenerationJob.id).where(GenerationJob.order_id == order.id))
        if job_id is not None:
            await self.engine.hand_over_or_fail(job_id)  # a running job whose rest was stopped goes to delivery now
        wanted = order.photos if photos is None else min(photos, order.photos)
        return replace(outcome, spent=max(0, wanted - outcome.photos))

    async def _refunded_credits(self, payment_id: int) -> int:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(LedgerEntry.delta).where(
                    LedgerEntry.payment_id == payment_id, LedgerEntry.reason == LedgerReason.REFUND
                )
            )
            return -sum(rows.scalars())

    # ------------------------------------------------------------ jobs

    async def retry(self, admin_id: int, job_id: int) -> int:
        async with self.sessionmaker() as session:
            count = await queries.reopen_skipped_tasks(session, job_id)
            await queries.audit(session, admin_id, "retry", f"job:{job_id}", photos=count)
            await session.commit()
        if count:
            self.engine.signals.task_pending()
        return count

    async def cancel(self, admin_id: int, job_id: int) -> CancelOutcome:
        """The whole job while nothing is generated yet; otherwise stop what no provider has started."""
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            if job is None:
                raise LookupError(job_id)
            status = job.status
            cancelled = await job_queries.cancel_before_results(session, job_id)
            stopped = 0
            if not cancelled and status == JobStatus.PROCESSING:
                for task_id in await queries.pending_task_ids(session, job_id):
                    stopped += await queue_queries.skip_task(
                        session, task_id, from_status=TaskStatus.PENDING, error=f"cancelled by admin {admin_id}"
                    )
            await queries.audit(session, admin_id, "cancel", f"job:{job_id}", cancelled=cancelled, stopped=stopped)
            await session.commit()
        if stopped:
            await self.engine.hand_over_or_fail(job_id)
        return CancelOutcome(cancelled=cancelled, stopped=stopped, status=status)

    async def resend(self, admin_id: int, job_id: int) -> int:
        count = await self.delivery.resend(job_id)
        await self.audit(admin_id, "resend", f"job:{job_id}", photos=count)
        return count

    # ------------------------------------------------------------ users

    async def set_banned(self, admin_id: int, user_id: int, banned: bool) -> bool:
        async with self.sessionmaker() as session:
            changed = await queries.set_banned(session, user_id, banned, admin_id)
            await queries.audit(session, admin_id, "ban" if banned else "unban", f"user:{user_id}", changed=changed)
            await session.commit()
        return changed

    # ------------------------------------------------------------ broadcasts

    async def draft_broadcast(self, admin_id: int, text: str, photo_file_id: str | None, source_message_id: int) -> int:
        """The draft made from the admin's message: the same message delivered again finds it (and is
        audited once)."""
        async with self.sessionmaker() as session:
            draft, created = await broadcast_queries.create_draft(
                session, admin_id, text, photo_file_id, source_message_id=source_message_id
            )
            if created:
                await queries.audit(
                    session, admin_id, "broadcast_draft", f"broadcast:{draft.id}", photo=bool(photo_file_id)
                )
            await session.commit()
            return draft.id

    async def choose_segment(self, broadcast_id: int, segment: str) -> int | None:
        """The draft's audience; its size, or None when it is no longer a draft."""
        async with self.sessionmaker() as session:
            total = await broadcast_queries.set_segment(session, broadcast_id, segment)
            await session.commit()
        return total

    async def discard_broadcast(self, broadcast_id: int) -> bool:
        async with self.sessionmaker() as session:
            moved = await broadcast_queries.move(
                session,
                broadcast_id,
                (broadcast_queries.BroadcastStatus.DRAFT,),
                broadcast_queries.BroadcastStatus.CANCELLED,
            )
            await session.commit()
        return moved

    async def start_broadcast(self, admin_id: int, broadcast_id: int) -> bool:
        """Send the draft; False when it is no longer a draft (a double tap)."""
        if not await self.broadcasts.start(broadcast_id):
            return False
        await self.audit(admin_id, "broadcast_start", f"broadcast:{broadcast_id}")
        return True

    async def stop_broadcasts(self, admin_id: int, broadcast_id: int | None = None) -> list[BroadcastCounts]:
        """Stop this broadcast, or every running one; the counts of each one stopped."""
        stopped = await self.broadcasts.stop(broadcast_id)
        counts = []
        async with self.sessionmaker() as session:
            for one in stopped:
                broadcast = await session.get(Broadcast, one, populate_existing=True)
                assert broadcast is not None
                await queries.audit(session, admin_id, "broadcast_stop", f"broadcast:{one}", sent=broadcast.sent)
                counts.append(BroadcastCounts(one, broadcast.sent, broadcast.blocked, broadcast.failed))
            await session.commit()
        return counts

    # ------------------------------------------------------------ providers

    def provider_names(self) -> list[str]:
        return [provider.name for provider in self.engine.providers]

    async def set_paused(self, admin_id: int, name: str, paused: bool) -> None:
        async with self.sessionmaker() as session:
            await queries.set_paused(session, name, paused, admin_id)
            await queries.audit(session, admin_id, "pause" if paused else "resume", f"provider:{name}")
            await session.commit()
        await self.engine.refresh_overrides()  # this process at once; the others at their next recover round
        if not paused:
            self.engine.signals.task_pending()

    async def set_primary(self, admin_id: int, name: str) -> None:
        async with self.sessionmaker() as session:
            await queries.set_primary(session, name, admin_id)
            await queries.audit(session, admin_id, "primary", f"provider:{name}")
            await session.commit()
        await self.engine.refresh_overrides()

    async def provider_health(self, window: timedelta = timedelta(hours=1)) -> list[ProviderHealth]:
        """Per provider, over the last hour: tasks submitted, how many came back, median latency."""
        now = utcnow()
        since = now - window
        breakers = self.engine.breaker_states()
        async with self.sessionmaker() as session:
            # Jobs younger than a day bound the scan through their created_at index.
            rows = await session.execute(
                select(
                    GenerationTask.provider,
                    GenerationTask.status,
                    GenerationTask.submitted_at,
                    GenerationTask.provider_done_at,
                )
                .join(GenerationJob, GenerationJob.id == GenerationTask.job_id)
                .where(and_(GenerationJob.created_at >= now - timedelta(days=1), GenerationTask.submitted_at >= since))
            )
            samples = rows.all()
        health = []
        for index, name in enumerate(self.provider_names()):
            mine = [row for row in samples if row[0] == name]
            latencies = [
                (finished - submitted).total_seconds() for _, _, submitted, finished in mine if finished and submitted
            ]
            health.append(
                ProviderHealth(
                    name=name,
                    primary=index == 0,
                    paused=name in self.engine.paused,
                    breaker=breakers.get(name, BreakerState.CLOSED.value),
                    tried=len(mine),
                    succeeded=sum(1 for row in mine if row[1] in PORTRAIT_TASK_STATUSES),
                    latency_p50=percentile(latencies, 0.5),
                    probe=self.probes.reports.get(name) if self.probes is not None else None,
                )
            )
        return health
