"""Payment guards, each through the real PaymentService path with in-process stand-ins for YooKassa
and Telegram Stars, on a migrated SQLite copy and on PostgreSQL when TEST_DATABASE_URL is set (issue
#20: every guard has a test that fails without it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.payments import PaymentInfo, RefundInfo
from providers.stars import StarsPayments
from providers.yookassa import YooKassaClient
from scheduler.notify import RecordingNotifier
from scheduler.payments import PaymentService
from scheduler.signals import WorkSignals
from storage import ledger
from storage.db import create_engine, create_sessionmaker
from storage.events import EventName
from storage.files import LocalFileStore
from storage.models import Event, GenerationJob, LedgerEntry, Order, Payment, Refund, User
from storage.payments import ReturnReason
from studio.catalogue import Catalogue, load_catalogue
from studio.credits import Currency, price_for
from studio.states import LedgerReason, OrderStatus, PaymentStatus
from tests.engine_support import seed_unpaid_order


class FakeYooKassa:
    """The calls PaymentService makes, answered from a dict of what "YooKassa" says each payment is."""

    def __init__(self) -> None:
        self.payments: dict[str, PaymentInfo] = {}
        self.refunds: list[tuple[str, int]] = []  # (payment id, kopecks) asked to be returned

    async def create_payment(self, *, amount_kopecks: int, idempotence_key: str, **_: object) -> PaymentInfo:
        info = PaymentInfo(
            id=f"yk-{idempotence_key}",
            status="pending",
            paid=False,
            amount_kopecks=amount_kopecks,
            currency="RUB",
            confirmation_url="https://yookassa.example/confirm",
        )
        self.payments[info.id] = info
        return info

    async def get_payment(self, payment_id: str) -> PaymentInfo:
        return self.payments[payment_id]

    def succeed(self, payment_id: str, *, amount_kopecks: int | None = None, currency: str = "RUB") -> None:
        sold = self.payments[payment_id]
        self.payments[payment_id] = PaymentInfo(
            id=payment_id,
            status="succeeded",
            paid=True,
            amount_kopecks=sold.amount_kopecks if amount_kopecks is None else amount_kopecks,
            currency=currency,
        )

    async def create_refund(self, *, payment_id: str, amount_kopecks: int, **_: object) -> RefundInfo:
        self.refunds.append((payment_id, amount_kopecks))
        return RefundInfo(f"rf-{len(self.refunds)}", payment_id, "succeeded", amount_kopecks)

    async def get_refund(self, refund_id: str) -> RefundInfo:
        raise AssertionError(f"not expected: get_refund({refund_id})")


class FakeStars:
    def __init__(self) -> None:
        self.refunds: list[tuple[int, str]] = []  # (telegram id, charge id)

    async def refund(self, user_telegram_id: int, charge_id: str) -> bool:
        self.refunds.append((user_telegram_id, charge_id))
        return True


class Rig:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], files: LocalFileStore) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.catalogue: Catalogue = load_catalogue()
        self.yookassa = FakeYooKassa()
        self.stars = FakeStars()
        self.service = PaymentService(
            sessionmaker,
            catalogue=self.catalogue,
            notifier=RecordingNotifier(),
            signals=WorkSignals(),
            yookassa=cast(YooKassaClient, self.yookassa),
            stars=cast(StarsPayments, self.stars),
            return_url="https://t.me/",
        )

    async def order(self, telegram_id: int) -> tuple[int, User]:
        order_id = await seed_unpaid_order(self.sessionmaker, self.files, self.catalogue, telegram_id=telegram_id)
        async with self.sessionmaker() as session:
            user = (await session.execute(select(User).where(User.telegram_id == telegram_id))).scalar_one()
        return order_id, user

    async def yookassa_payment(self, telegram_id: int) -> tuple[int, str]:
        """An order with a pending YooKassa payment made the way the Pay button makes it."""
        order_id, user = await self.order(telegram_id)
        await self.service.start_yookassa(order_id, user)
        (provider_id,) = self.yookassa.payments
        return order_id, provider_id

    async def price(self, order_id: int, currency: Currency) -> int:
        async with self.sessionmaker() as session:
            order = await session.get(Order, order_id)
            assert order is not None
            return price_for(self.catalogue.pack(order.pack), currency)

    async def facts(self, order_id: int) -> dict[str, object]:
        """What the order got: its status, jobs, credits, purchase lines, refunds and success events."""
        async with self.sessionmaker() as session:
            order = await session.get(Order, order_id)
            assert order is not None
            payments = select(Payment.id).where(Payment.order_id == order_id)
            refunds = (await session.execute(select(Refund).where(Refund.payment_id.in_(payments)))).scalars().all()
            return {
                "status": order.status,
                "jobs": await self._count(session, select(GenerationJob).where(GenerationJob.order_id == order_id)),
                "balance": await ledger.balance(session, order.user_id),
                "purchases": await self._count(
                    session,
                    select(LedgerEntry).where(
                        LedgerEntry.order_id == order_id, LedgerEntry.reason == LedgerReason.PURCHASE
                    ),
                ),
                "refunds": [(refund.reason, refund.amount) for refund in refunds],
                "succeeded_events": await self._count(
                    session,
                    select(Event).where(Event.name == EventName.PAYMENT_SUCCEEDED, Event.user_id == order.user_id),
                ),
            }

    @staticmethod
    async def _count(session: AsyncSession, query: Select[Any]) -> int:
        subquery = query.subquery()
        return int((await session.execute(select(func.count()).select_from(subquery))).scalar_one())


@pytest_asyncio.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    engine = create_engine(database_url)
    try:
        yield Rig(create_sessionmaker(engine), LocalFileStore(tmp_path / "files"))
    finally:
        await engine.dispose()


NOTHING_BOUGHT = {"status": OrderStatus.AWAITING_PAYMENT, "jobs": 0, "balance": 0}


def _bought_nothing(facts: dict[str, object]) -> dict[str, object]:
    return {key: facts[key] for key in NOTHING_BOUGHT}


# ---------------------------------------------------------------- _succeed: never credit what we did not sell


async def test_yookassa_success_with_a_wrong_amount_credits_nothing_and_returns_the_money(rig: Rig) -> None:
    order_id, provider_id = await rig.yookassa_payment(700_001)
    price = await rig.price(order_id, Currency.RUB)
    rig.yookassa.succeed(provider_id, amount_kopecks=price - 100)  # one rouble short of the price

    result = await rig.service.sync(provider_id)

    assert result is not None and result.returned == ReturnReason.AMOUNT and not result.credited
    facts = await rig.facts(order_id)
    # The order stays unpaid, no pack is queued, and the purchase line is cancelled by a refund line.
    assert _bought_nothing(facts) == NOTHING_BOUGHT
    assert facts["refunds"] == [(ReturnReason.AMOUNT, price - 100)]
    assert rig.yookassa.refunds == [(provider_id, price - 100)]  # what was paid goes back, whatever it was


async def test_yookassa_success_in_a_wrong_currency_credits_nothing_and_returns_the_money(rig: Rig) -> None:
    order_id, provider_id = await rig.yookassa_payment(700_002)
    price = await rig.price(order_id, Currency.RUB)
    rig.yookassa.succeed(provider_id, amount_kopecks=price, currency="USD")  # the right number, not roubles

    result = await rig.service.sync(provider_id)

    assert result is not None and result.returned == ReturnReason.AMOUNT and not result.credited
    facts = await rig.facts(order_id)
    assert _bought_nothing(facts) == NOTHING_BOUGHT
    assert facts["refunds"] == [(ReturnReason.AMOUNT, price)]
    assert rig.yookassa.refunds == [(provider_id, price)]


async def test_stars_payment_of_a_wrong_amount_credits_nothing_and_returns_the_stars(rig: Rig) -> None:
    order_id, user = await rig.order(700_003)
    price = await rig.price(order_id, Currency.STARS)
    # Pre-checkout saw the right price; the successful_payment that follows says one Star less.
    assert await rig.service.stars_precheckout(order_id, user.telegram_id, Currency.STARS, price) is None

    result = await rig.service.stars_paid(order_id, user.telegram_id, "charge-short", Currency.STARS, price - 1)

    assert result is not None and result.returned == ReturnReason.AMOUNT and not result.credited
    facts = await rig.facts(order_id)
    assert _bought_nothing(facts) == NOTHING_BOUGHT
    assert facts["refunds"] == [(ReturnReason.AMOUNT, price - 1)]
    assert rig.stars.refunds == [(user.telegram_id, "charge-short")]


# ---------------------------------------------------------------- the conditional pending -> succeeded UPDATE


async def test_the_same_success_applied_twice_credits_once_and_returns_nothing(rig: Rig) -> None:
    order_id, provider_id = await rig.yookassa_payment(700_004)
    rig.yookassa.succeed(provider_id)

    first = await rig.service.sync(provider_id)
    second = await rig.service.sync(provider_id)  # a repeated notification, or the poll after it

    assert first is not None and first.changed and first.credited and first.job is not None
    assert second is not None and not second.changed and not second.credited and second.job is None
    facts = await rig.facts(order_id)
    # Without the "only from pending" condition the repeat would find the order already paid and
    # book a return of the payment that bought it: a refund, and the credits taken back.
    assert facts["status"] == OrderStatus.PAID
    assert facts["jobs"] == 1 and facts["purchases"] == 1 and facts["refunds"] == []
    assert facts["succeeded_events"] == 1
    assert rig.yookassa.refunds == []


async def test_a_repeated_stars_successful_payment_credits_once_and_returns_nothing(rig: Rig) -> None:
    order_id, user = await rig.order(700_005)
    price = await rig.price(order_id, Currency.STARS)

    for _ in range(2):  # Telegram redelivers the update
        await rig.service.stars_paid(order_id, user.telegram_id, "charge-twice", Currency.STARS, price)

    facts = await rig.facts(order_id)
    assert facts["status"] == OrderStatus.PAID
    assert facts["jobs"] == 1 and facts["purchases"] == 1 and facts["refunds"] == []
    assert facts["succeeded_events"] == 1
    assert rig.stars.refunds == []


# ---------------------------------------------------------------- pre-checkout asks about a pending card payment


async def test_a_slow_card_check_at_pre_checkout_accepts_on_time_and_still_settles_the_card_payment(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telegram waits 10 s for the pre-checkout answer: a slow YooKassa must not hold it, and the check
    that outlives the wait is not cut off (it may be inside its commit) but settles the card payment."""
    order_id, provider_id = await rig.yookassa_payment(700_010)
    price = await rig.price(order_id, Currency.STARS)
    rig.yookassa.succeed(provider_id)
    answer = asyncio.Event()
    asked = rig.yookassa.get_payment

    async def slow_get_payment(payment_id: str) -> PaymentInfo:
        await answer.wait()
        return await asked(payment_id)

    monkeypatch.setattr(rig.yookassa, "get_payment", slow_get_payment)
    monkeypatch.setattr("scheduler.payments.PRECHECKOUT_SYNC_SECONDS", 0.05)

    assert await rig.service.stars_precheckout(order_id, 700_010, Currency.STARS, price) is None
    assert await _card_payment_status(rig, provider_id) == PaymentStatus.PENDING
    answer.set()
    async with asyncio.timeout(5):
        while await _card_payment_status(rig, provider_id) != PaymentStatus.SUCCEEDED:
            await asyncio.sleep(0.01)
    assert (await rig.facts(order_id))["purchases"] == 1


async def _card_payment_status(rig: Rig, provider_id: str) -> str:
    async with rig.sessionmaker() as session:
        query = select(Payment.status).where(Payment.provider_payment_id == provider_id)
        return str((await session.execute(query)).scalar_one())
