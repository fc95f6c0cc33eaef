"""The ledger's own guard: UNIQUE (reason, reference) makes a repeated line a no-op, on SQLite and
on PostgreSQL (issue #20). Nothing else stands between a redelivered event and a second credit when
the caller does not check first, so these tests write the same line with nothing in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import ledger
from storage.db import create_engine, create_sessionmaker
from storage.models import LedgerEntry
from storage.users import TelegramProfile, register_user
from studio.credits import LedgerLine, purchase_line, reserve_line

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
