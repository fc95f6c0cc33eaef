"""ReminderService on a real SQLite database with the in-process RecordingReminderSender: what each
Telegram answer leaves behind. The whole flow over the fake Telegram is tests/integration/test_reminders.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.broadcast import Failed
from scheduler.notices import CreditsReminder, PaymentReminder
from scheduler.reminders import RecordingReminderSender, ReminderService
from storage import ledger
from storage.db import create_engine, create_sessionmaker
from storage.models import Event, GenerationJob, LedgerEntry, Order, Reminder, User, utcnow
from studio.credits import grant_line, reserve_line
from studio.reminders import ReminderCause
from studio.states import JobStatus, OrderStatus

DAY = timedelta(days=1)


@pytest_asyncio.fixture
async def sessionmaker(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(sqlite_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _with_credits(sessionmaker: async_sessionmaker[AsyncSession], telegram_id: int, credits: int) -> None:
    async with sessionmaker() as session:
        user = User(telegram_id=telegram_id, language="en")
        session.add(user)
        await session.flush()
        await ledger.record(session, user.id, grant_line(f"unit-{telegram_id}", credits, None))
        await session.execute(
            update(LedgerEntry).where(LedgerEntry.user_id == user.id).values(created_at=utcnow() - 4 * DAY)
        )
        await session.commit()


async def test_a_refused_reminder_is_not_retried_and_a_sent_one_is_counted_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _with_credits(sessionmaker, 1, 3)
    await _with_credits(sessionmaker, 2, 4)
    sender = RecordingReminderSender()
    sender.outcomes[2] = Failed("Bad Request: chat not found")
    service = ReminderService(sessionmaker, sender=sender, result_retention=90 * DAY)
    midday = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)

    first = await service.run(midday)
    assert dict(first.sent) == {ReminderCause.IDLE_CREDITS: 1} and first.failed == 1
    assert sender.sent == [(1, "en", CreditsReminder(credits=3, avatar_id=None))]
    # The failed one is not tried again: a lost reminder is better than a doubled one.
    again = await service.run(midday + timedelta(hours=1))
    assert not again.sent and again.failed == 0 and len(sender.sent) == 1
    async with sessionmaker() as session:
        statuses = dict((await session.execute(select(Reminder.reference, Reminder.status))).all())
        events = (await session.execute(select(func.count()).where(Event.name == "reminder_sent"))).scalar_one()
        blocked = list((await session.execute(select(User.is_blocked))).scalars())
    assert sorted(statuses.values()) == ["failed", "sent"]
    assert events == 1
    assert blocked == [False, False], "a failure that is not a block leaves the user reachable"


async def test_only_the_latest_order_of_the_last_day_is_reminded_of(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    midday = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    async with sessionmaker() as session:
        chooser, forgotten = User(telegram_id=1, language="en"), User(telegram_id=2, language="en")
        session.add_all([chooser, forgotten])
        await session.flush()

        def order(user: User, age: timedelta, photos: int) -> Order:
            return Order(
                user_id=user.id, style="professional", pack=f"p{photos}", photos=photos,
                status=OrderStatus.AWAITING_PAYMENT, created_at=midday - age,
            )  # fmt: skip

        replaced, chosen = order(chooser, 3 * timedelta(hours=1), 7), order(chooser, 2 * timedelta(hours=1), 23)
        session.add_all([replaced, chosen, order(forgotten, 2 * DAY, 7)])
        await session.commit()
        chosen_id = chosen.id
    sender = RecordingReminderSender()
    service = ReminderService(sessionmaker, sender=sender, result_retention=90 * DAY)

    report = await service.run(midday)

    # The chooser changed their mind once: only the order they chose last; yesterday's is left alone.
    assert dict(report.sent) == {ReminderCause.UNPAID_ORDER: 1}
    assert sender.sent == [(1, "en", PaymentReminder(order_id=chosen_id, photos=23))]


async def test_credits_are_idle_only_after_three_days_without_a_pack_or_a_move(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _with_credits(sessionmaker, 1, 3)  # granted 4 days ago: idle
    await _with_credits(sessionmaker, 2, 3)  # granted 4 days ago, and a pack of 1 still in the queue since
    await _with_credits(sessionmaker, 3, 3)  # granted 4 days ago, and more credits came today
    async with sessionmaker() as session:
        ids = dict((await session.execute(select(User.telegram_id, User.id))).all())
        long_ago = utcnow() - 4 * DAY
        job = GenerationJob(
            user_id=ids[2], chat_id=2, style="professional", priority=100, status=JobStatus.QUEUED,
            photos_total=1, created_at=long_ago,
        )  # fmt: skip
        session.add(job)
        await session.flush()
        await ledger.record(session, ids[2], reserve_line(job.id, 1), job_id=job.id)
        await session.execute(update(LedgerEntry).where(LedgerEntry.user_id == ids[2]).values(created_at=long_ago))
        await ledger.record(session, ids[3], grant_line("unit-3-again", 2, None))
        await session.commit()
    sender = RecordingReminderSender()
    service = ReminderService(sessionmaker, sender=sender, result_retention=90 * DAY)

    await service.run(utcnow().replace(hour=12, minute=0, second=0, microsecond=0))

    assert [chat for chat, _, _ in sender.sent] == [1]


async def test_a_user_hears_one_reminder_a_day_the_most_pressing_first(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    midday = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    await _with_credits(sessionmaker, 1, 3)
    async with sessionmaker() as session:
        user_id = (await session.execute(select(User.id))).scalar_one()
        waiting = Order(
            user_id=user_id, style="professional", pack="p7", photos=7, status=OrderStatus.AWAITING_PAYMENT,
            created_at=midday - 2 * timedelta(hours=1),
        )  # fmt: skip
        session.add(waiting)
        await session.commit()
        order_id = waiting.id
    sender = RecordingReminderSender()
    service = ReminderService(sessionmaker, sender=sender, result_retention=90 * DAY)

    first = await service.run(midday)
    assert sender.sent == [(1, "en", PaymentReminder(order_id=order_id, photos=7))] and first.spaced == 1
    later = await service.run(midday + 6 * timedelta(hours=1))
    assert not later.sent and later.spaced == 1 and len(sender.sent) == 1
    # A day on, the credits' turn.
    await service.run(midday + DAY)
    assert sender.sent[1:] == [(1, "en", CreditsReminder(credits=3, avatar_id=None))]
