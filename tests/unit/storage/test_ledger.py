"""The ledger's own guard: UNIQUE (reason, reference) makes a repeated line a no-op, on SQLite and
on PostgreSQL (issue #20). Nothing else stands between a redelivered event and a second credit when
the caller does not check first, so these tests write the same line with nothing in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import ledger
from storage.db import create_engine, create_sessionmaker
from storage.models import GenerationJob, LedgerEntry, Order, Payment, User, utcnow
from storage.users import TelegramProfile, register_user
from studio.credits import (
    LedgerLine,
    grant_line,
    purchase_line,
    release_line_for_cancel,
    release_line_for_task,
    reserve_line,
)

pytestmark = pytest.mark.ledger_unbalanced(
    reason="bare ledger lines with no payment or job behind them: the subject is the UNIQUE guard itself"
)


@pytest_asyncio.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _user(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        user, _ = await register_user(session, TelegramProfile(800_001, None, "Ledger", "en"))
        await session.commit()
        return user.id


async def _lines(session: AsyncSession, line: LedgerLine) -> int:
    query = select(func.count()).where(LedgerEntry.reason == line.reason, LedgerEntry.reference == line.reference)
    return int((await session.execute(query)).scalar_one())


@pytest.mark.parametrize(
    "line",
    [purchase_line(4242, 7), reserve_line(4242, 7)],
    ids=["purchase", "reserve"],
)
async def test_the_same_ledger_line_recorded_twice_is_kept_once(
    sessionmaker: async_sessionmaker[AsyncSession], line: LedgerLine
) -> None:
    user_id = await _user(sessionmaker)
    # Two transactions, as a redelivered notification or a retried job would write them.
    recorded = []
    for _ in range(2):
        async with sessionmaker() as session:
            recorded.append(await ledger.record(session, user_id, line))
            await session.commit()

    assert recorded == [True, False]  # the second insert did nothing, and says so
    async with sessionmaker() as session:
        assert await _lines(session, line) == 1
        assert await ledger.balance(session, user_id) == line.delta


async def test_the_same_ledger_line_twice_in_one_transaction_is_kept_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await _user(sessionmaker)
    line = purchase_line(4343, 23)
    async with sessionmaker() as session:
        assert await ledger.record(session, user_id, line) is True
        assert await ledger.record(session, user_id, line) is False
        await session.commit()
    async with sessionmaker() as session:
        assert await _lines(session, line) == 1
        assert await ledger.balance(session, user_id) == 23


async def test_a_different_reference_is_a_different_line(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    # The counterpart: the guard is on (reason, reference), not on "one line per user".
    user_id = await _user(sessionmaker)
    async with sessionmaker() as session:
        assert await ledger.record(session, user_id, purchase_line(1, 7)) is True
        assert await ledger.record(session, user_id, purchase_line(2, 7)) is True
        await session.commit()
        assert await ledger.balance(session, user_id) == 14


# ---------------------------------------------------------------- what a line carries, and the sums over lines


async def _another_user(sessionmaker: async_sessionmaker[AsyncSession], telegram_id: int) -> int:
    async with sessionmaker() as session:
        user, _ = await register_user(session, TelegramProfile(telegram_id, None, "Other", "en"))
        await session.commit()
        return user.id


async def _job_of(session: AsyncSession, user_id: int, photos: int) -> tuple[int, int]:
    """An order and its job for ``user_id``: (order id, job id)."""
    order = Order(user_id=user_id, style="professional", pack="p7", photos=photos, status="paid")
    session.add(order)
    await session.flush()
    job = GenerationJob(
        user_id=user_id,
        order_id=order.id,
        chat_id=1,
        style="professional",
        priority=0,
        status="queued",
        photos_total=photos,
    )
    session.add(job)
    await session.flush()
    return order.id, job.id


async def test_a_line_is_stored_with_its_user_amount_reason_reference_note_and_links(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await _user(sessionmaker)
    before = utcnow()
    async with sessionmaker() as session:
        order_id, job_id = await _job_of(session, user_id, 7)
        payment = Payment(
            order_id=order_id,
            user_id=user_id,
            provider="stars",
            idempotence_key="ledger-links",
            amount=250,
            currency="XTR",
            status="succeeded",
        )
        session.add(payment)
        await session.flush()
        line = grant_line(9, 4, "sorry for the outage")
        assert await ledger.record(session, user_id, line, order_id=order_id, job_id=job_id, payment_id=payment.id)
        await session.commit()
        entry = (await session.execute(select(LedgerEntry))).scalar_one()

    stored = (entry.user_id, entry.delta, entry.reason, entry.reference, entry.note)
    assert stored == (user_id, 4, "grant", "grant:9", "sorry for the outage")
    assert (entry.order_id, entry.job_id, entry.payment_id) == (order_id, job_id, payment.id)
    assert entry.created_at.replace(tzinfo=None) >= before.replace(tzinfo=None, microsecond=0)


async def test_balances_and_totals_are_per_user_and_zero_without_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id, other_id = await _user(sessionmaker), await _another_user(sessionmaker, 800_002)
    nobody = await _another_user(sessionmaker, 800_003)
    async with sessionmaker() as session:
        for owner, line in [
            (user_id, purchase_line(1, 7)),
            (user_id, reserve_line(1, 7)),
            (user_id, release_line_for_task(1)),
            (other_id, purchase_line(2, 5)),
        ]:
            assert await ledger.record(session, owner, line)
        await session.commit()

        assert (await ledger.balance(session, user_id), await ledger.balance(session, other_id)) == (1, 5)
        assert await ledger.balance(session, nobody) == 0
        assert await ledger.totals_by_reason(session, user_id) == {"purchase": 7, "reserve": -7, "release": 1}
        assert await ledger.totals_by_reason(session) == {"purchase": 12, "reserve": -7, "release": 1}
        assert await ledger.totals_by_reason(session, nobody) == {}


async def test_a_job_holds_what_it_reserved_less_what_it_released(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await _user(sessionmaker)
    async with sessionmaker() as session:
        _, job_id = await _job_of(session, user_id, 7)
        _, other_job = await _job_of(session, user_id, 3)
        _, untouched = await _job_of(session, user_id, 2)
        for job, line in [
            (job_id, reserve_line(job_id, 7)),
            (job_id, release_line_for_task(1)),
            (job_id, release_line_for_task(2)),
            (job_id, grant_line(1, 4, "a grant linked to the job is no release")),
            (other_job, reserve_line(other_job, 3)),
            (other_job, release_line_for_cancel(other_job, 3)),
        ]:
            assert await ledger.record(session, user_id, line, job_id=job)
        await session.commit()

        assert await ledger.released_for_job(session, job_id) == 2
        assert await ledger.still_reserved(session, job_id) == 5
        assert await ledger.still_reserved(session, other_job) == 0
        assert (await ledger.released_for_job(session, untouched), await ledger.still_reserved(session, untouched)) == (
            0,
            0,
        )


async def test_taking_the_users_lock_changes_no_row(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    user_id, other_id = await _user(sessionmaker), await _another_user(sessionmaker, 800_002)
    async with sessionmaker() as session:
        rows_before = (await session.execute(select(User.id, User.telegram_id).order_by(User.id))).all()
        await ledger.lock_user(session, user_id)
        assert await ledger.record(session, user_id, purchase_line(7, 3))  # the lock is the debit's first step
        await session.commit()
        rows_after = (await session.execute(select(User.id, User.telegram_id).order_by(User.id))).all()

    assert rows_after == rows_before
    assert {row.id for row in rows_after} == {user_id, other_id}


async def test_the_users_lock_holds_off_another_transaction_from_that_user_only(postgres_url: str) -> None:
    """On PostgreSQL the lock is the user's row (on SQLite any write locks the whole database)."""
    engine = create_engine(postgres_url)
    try:
        sessions = create_sessionmaker(engine)
        user_id, other_id = await _user(sessions), await _another_user(sessions, 800_002)
        async with sessions() as holder, sessions() as contender:
            await ledger.lock_user(holder, user_id)
            with pytest.raises(DBAPIError, match="lock"):
                await contender.execute(select(User.id).where(User.id == user_id).with_for_update(nowait=True))
            await contender.rollback()
            others = select(User.id).where(User.id == other_id).with_for_update(nowait=True)
            assert (await contender.execute(others)).scalar_one() == other_id
            await contender.rollback()
            await holder.rollback()
    finally:
        await engine.dispose()
