"""Admin queries: the audit log, bans (with the one notice a banned user gets), provider switches,
and the lookups behind /job, /user and /queue. Statistics live in ``storage.stats``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import queue, transitions
from storage.models import (
    AuditLog,
    GenerationJob,
    GenerationTask,
    LedgerEntry,
    Order,
    Payment,
    ProviderOverride,
    User,
    UserBan,
    utcnow,
)
from storage.sql import insert_for, rows_changed
from studio.states import JobStatus, TaskStatus

# ---------------------------------------------------------------- audit log


async def audit(
    session: AsyncSession, admin_telegram_id: int, action: str, target: str | None = None, **details: Any
) -> None:
    """Record an admin action in the caller's transaction, so the log and the change commit together."""
    session.add(
        AuditLog(
            admin_telegram_id=admin_telegram_id,
            action=action[:32],
            target=None if target is None else target[:128],
            details=details,
            created_at=utcnow(),
        )
    )
    await session.flush()


# ---------------------------------------------------------------- users and bans


async def find_user(session: AsyncSession, reference: str) -> User | None:
    """A user by Telegram id or @username (case-insensitive)."""
    reference = reference.strip()
    if reference.lstrip("-").isdigit():
        query = select(User).where(User.telegram_id == int(reference))
    else:
        name = reference.removeprefix("@").lower()
        if not name:
            return None
        query = select(User).where(func.lower(User.username) == name).order_by(User.id.desc()).limit(1)
    return (await session.execute(query)).scalars().first()


async def set_banned(session: AsyncSession, user_id: int, banned: bool, admin_telegram_id: int) -> bool:
    """Ban or unban; False when the user already was in that state. A new ban gets a new notice."""
    result = await session.execute(
        update(User).where(User.id == user_id, User.is_banned.is_(not banned)).values(is_banned=banned)
    )
    changed = bool(rows_changed(result))
    if not changed:
        return False
    await session.execute(delete(UserBan).where(UserBan.user_id == user_id))
    if banned:
        session.add(UserBan(user_id=user_id, banned_by=admin_telegram_id, banned_at=utcnow()))
        await session.flush()
    return True


async def claim_ban_notice(session: AsyncSession, user_id: int) -> bool:
    """True exactly once per ban: the caller then sends the one polite message.

    The conditional UPDATE makes two concurrent updates of the same banned user agree on who tells.
    A ban set outside /ban (directly in the database) has no row yet: it gets one first.
    """
    await session.execute(
        insert_for(session, UserBan)
        .values(user_id=user_id, banned_at=utcnow())
        .on_conflict_do_nothing(index_elements=[UserBan.user_id])
    )
    result = await session.execute(
        update(UserBan).where(UserBan.user_id == user_id, UserBan.notified_at.is_(None)).values(notified_at=utcnow())
    )
    return bool(rows_changed(result))


# ---------------------------------------------------------------- provider switches


async def provider_switches(session: AsyncSession) -> tuple[set[str], str | None]:
    """(paused provider names, the primary chosen by an admin or None for the configured order)."""
    rows = list((await session.execute(select(ProviderOverride))).scalars())
    paused = {row.name for row in rows if row.paused}
    primary = next((row.name for row in rows if row.is_primary), None)
    return paused, primary


async def _ensure_override(session: AsyncSession, name: str, admin_telegram_id: int) -> None:
    await session.execute(
        insert_for(session, ProviderOverride)
        .values(name=name, paused=False, is_primary=False, updated_by=admin_telegram_id, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=[ProviderOverride.name])
    )


async def set_paused(session: AsyncSession, name: str, paused: bool, admin_telegram_id: int) -> bool:
    await _ensure_override(session, name, admin_telegram_id)
    result = await session.execute(
        update(ProviderOverride)
        .where(ProviderOverride.name == name, ProviderOverride.paused.is_(not paused))
        .values(paused=paused, updated_by=admin_telegram_id, updated_at=utcnow())
    )
    return bool(rows_changed(result))


async def set_primary(session: AsyncSession, name: str, admin_telegram_id: int) -> None:
    await _ensure_override(session, name, admin_telegram_id)
    await session.execute(
        update(ProviderOverride)
        .where(ProviderOverride.name != name, ProviderOverride.is_primary.is_(True))
        .values(is_primary=False, updated_by=admin_telegram_id, updated_at=utcnow())
    )
    await session.execute(
        update(ProviderOverride)
        .where(ProviderOverride.name == name)
        .values(is_primary=True, updated_by=admin_telegram_id, updated_at=utcnow())
    )


# ---------------------------------------------------------------- one job, one user


@dataclass
class JobDetail:
    job: GenerationJob
    user: User
    order: Order | None
    tasks: list[GenerationTask]


async def job_detail(session: AsyncSession, job_id: int) -> JobDetail | None:
    job = await session.get(GenerationJob, job_id)
    if job is None:
        return None
    user = await session.get(User, job.user_id)
    assert user is not None
    order = await session.get(Order, job.order_id) if job.order_id else None
    tasks = (
        await session.execute(
            select(GenerationTask).where(GenerationTask.job_id == job_id).order_by(GenerationTask.position)
        )
    ).scalars()
    return JobDetail(job=job, user=user, order=order, tasks=list(tasks))


@dataclass
class UserDetail:
    user: User
    balance: int
    ledger: list[LedgerEntry]
    orders: list[Order]
    payments: list[Payment]
    jobs: list[GenerationJob]
    ban: UserBan | None = None


async def user_detail(session: AsyncSession, user: User, limit: int = 8) -> UserDetail:
    def latest(model: Any) -> Any:
        return select(model).where(model.user_id == user.id).order_by(model.id.desc()).limit(limit)

    balance = await session.execute(
        select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(LedgerEntry.user_id == user.id)
    )
    return UserDetail(
        user=user,
        balance=int(balance.scalar_one()),
        ledger=list((await session.execute(latest(LedgerEntry))).scalars()),
        orders=list((await session.execute(latest(Order))).scalars()),
        payments=list((await session.execute(latest(Payment))).scalars()),
        jobs=list((await session.execute(latest(GenerationJob))).scalars()),
        ban=await session.get(UserBan, user.id),
    )


# ---------------------------------------------------------------- the queue


@dataclass
class QueueSnapshot:
    jobs: dict[tuple[str, int], int] = field(default_factory=dict)  # (status, priority) → jobs
    oldest_queued_at: datetime | None = None
    tasks: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, provider or "-") → tasks


async def queue_snapshot(session: AsyncSession) -> QueueSnapshot:
    active = [JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.DELIVERING]
    snapshot = QueueSnapshot()
    rows = await session.execute(
        select(GenerationJob.status, GenerationJob.priority, func.count())
        .where(GenerationJob.status.in_(active))
        .group_by(GenerationJob.status, GenerationJob.priority)
    )
    snapshot.jobs = {(status, priority): int(count) for status, priority, count in rows.all()}
    snapshot.oldest_queued_at = (
        await session.execute(
            select(func.min(GenerationJob.created_at)).where(GenerationJob.status == JobStatus.QUEUED)
        )
    ).scalar_one()
    if snapshot.oldest_queued_at is not None and snapshot.oldest_queued_at.tzinfo is None:
        # min() bypasses the column type on SQLite; the stored value is UTC.
        snapshot.oldest_queued_at = _as_utc(snapshot.oldest_queued_at)
    open_statuses = [TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED]
    rows = await session.execute(
        select(GenerationTask.status, GenerationTask.provider, func.count())
        .where(GenerationTask.status.in_(open_statuses))
        .group_by(GenerationTask.status, GenerationTask.provider)
    )
    snapshot.tasks = {(str(status), str(provider or "-")): int(count) for status, provider, count in rows.all()}
    return snapshot


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    moment: datetime = value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------- retry and cancel


async def reopen_skipped_tasks(session: AsyncSession, job_id: int) -> int:
    """An admin's retry: the job's skipped photos go back to the queue, each from the first provider.

    The job leaves its final state (partial/failed) for processing again, by the admin-only edges of
    the state tables. The credits already returned for these photos stay with the user (the retry is
    on the house); if a photo fails again, its release line collides with the first and nothing
    moves twice.
    """
    if not await transitions.reopen_job(session, job_id, finished_at=None, delivered_at=None):
        return 0
    count = await transitions.reopen_skipped_tasks(
        session,
        job_id,
        provider_index=0,
        attempts=0,
        next_poll_at=None,
        provider_task_id=None,
        result_url=None,
        claimed_by=None,
        lease_expires_at=None,
        error=None,
    )
    # A grid panel retried without its grid's slot-0 task is made alone, as an ordinary portrait.
    await queue.detach_lone_panels(session, job_id)
    remaining = case((GenerationJob.photos_failed > count, GenerationJob.photos_failed - count), else_=0)
    await session.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(photos_failed=remaining))
    return count


async def pending_task_ids(session: AsyncSession, job_id: int) -> Sequence[int]:
    """Tasks of the job that no provider has taken yet (an admin's cancel skips them)."""
    rows = await session.execute(
        select(GenerationTask.id).where(GenerationTask.job_id == job_id, GenerationTask.status == TaskStatus.PENDING)
    )
    return list(rows.scalars())
