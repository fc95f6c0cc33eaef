"""The money invariants (tests/ledger_check.py) after every step of random sequences of everything
that moves money or credits, through the real services and storage on a real database.

A hypothesis state machine drives orders, card payments (the real YooKassa client against the fake
YooKassa: paid, cancelled, notifications duplicated, concurrent, lost and reconciled), Telegram Stars
payments (repeated, concurrent, crossed with a card payment of the same order), the free trial,
admin grants, the engine's fan-out, portraits and partial or total failures, delivery, cancels,
double taps on spending returned credits, refunds (Stars through the fake Telegram, card through
the fake YooKassa) and retention. After every step every invariant is checked, and money a provider
took must be recorded as a payment.

Rules that would only rediscover a known, not yet merged defect are gated by the flags in
tests/ledger_check.py; everything else must hold. One database per test run, emptied between
examples (a database per example would cost more than the examples).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from providers.stars import StarsPayments
from providers.yookassa import YooKassaClient
from scheduler.credits import CreditService, CreditsUnavailable
from scheduler.engine import EngineConfig, GenerationEngine
from scheduler.housekeeping import Housekeeping
from scheduler.notify import RecordingNotifier
from scheduler.payments import OrderNotPayable, PaymentService, PaymentUnavailable
from scheduler.signals import WorkSignals
from storage import avatars, deliveries, jobs, ledger, queue
from storage import orders as order_queries
from storage.db import create_engine, create_sessionmaker
from storage.files import LocalFileStore
from storage.migrate import upgrade_async
from storage.models import Base, GenerationJob, GenerationTask, LedgerEntry, Order, Payment, User, utcnow
from storage.users import TelegramProfile, register_user
from studio.catalogue import Catalogue, load_catalogue
from studio.credits import grant_line
from studio.generation import settle_job
from studio.policy import FallbackPolicy
from studio.states import JobStatus, LedgerReason, PaymentProviderName, PaymentStatus, TaskStatus
from tests import ledger_check
from tests.conftest import TEST_DATABASE_URL
from tests.databases import create_database, drop_database
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa

T = TypeVar("T")
WORKER = "ledger-machine"
PICK = st.integers(min_value=0, max_value=10_000)
# Bounded for make test: about 15 s on SQLite on an idle machine, under a minute on a busy one.
# LEDGER_MACHINE_EXAMPLES=500 LEDGER_MACHINE_RANDOM=1 explores further (new random walks each run).
MACHINE_SETTINGS = settings(
    max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "30")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=os.environ.get("LEDGER_MACHINE_RANDOM") is None,
)


class World:
    """What outlives one example: the event loop, the database, the fakes and the services."""

    def __init__(self, runner: asyncio.Runner, database_url: str, files_dir: Path) -> None:
        self.runner = runner
        self.database_url = database_url
        self.files_dir = files_dir
        self.engine: AsyncEngine
        self.sessionmaker: async_sessionmaker[AsyncSession]
        self.kassa: FakeYooKassa
        self.telegram: FakeTelegram
        self.bot: Bot
        self.catalogue: Catalogue = load_catalogue()
        self.charges = itertools.count(1)  # Stars charge ids stay unique across examples, like Telegram's

    async def start(self) -> None:
        await upgrade_async(self.database_url)
        self.engine = create_engine(self.database_url)
        self.sessionmaker = create_sessionmaker(self.engine)
        self.telegram = await FakeTelegram().__aenter__()
        self.bot = Bot(
            token=self.telegram.token, session=AiohttpSession(api=TelegramAPIServer.from_base(self.telegram.base_url))
        )
        self.files = LocalFileStore(self.files_dir)
        self.signals = WorkSignals()
        self.notifier = RecordingNotifier()
        self.stars = StarsPayments(self.bot)
        self.generation = GenerationEngine(
            self.sessionmaker,
            files=self.files,
            catalogue=self.catalogue,
            providers=[],
            policy=FallbackPolicy(),
            signals=self.signals,
            notifier=self.notifier,
            config=EngineConfig(worker_id=WORKER),
        )
        self.housekeeping = Housekeeping(
            self.sessionmaker, self.files, reference_retention=timedelta(days=30), result_retention=timedelta(days=30)
        )

    async def fresh(self) -> None:
        """An empty database and a YooKassa that never saw its ids: SQLite hands out row ids (and so
        the refund Idempotence-Keys derived from payment ids) again once the rows are gone."""
        async with self.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(table.delete())
        await self.close_kassa()
        self.kassa = await FakeYooKassa().start()
        self.yookassa = YooKassaClient(self.kassa.shop_id, self.kassa.secret_key, self.kassa.api_url)
        self.payments = PaymentService(
            self.sessionmaker,
            catalogue=self.catalogue,
            notifier=self.notifier,
            signals=self.signals,
            yookassa=self.yookassa,
            return_url="https://t.me/pinglass_test_bot",
            poll_interval_seconds=0,
        )
        self.credits = CreditService(
            self.sessionmaker, catalogue=self.catalogue, notifier=self.notifier, signals=self.signals
        )

    async def close_kassa(self) -> None:
        if hasattr(self, "kassa"):
            await self.yookassa.aclose()
            await self.kassa.close()

    async def stop(self) -> None:
        await self.bot.session.close()
        await self.telegram.__aexit__(None, None, None)
        await self.close_kassa()
        await self.engine.dispose()


class MoneyMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.users: list[tuple[int, FakeUser]] = []  # (users.id, their Telegram side)
        self.orders: list[int] = []
        self.card_payments: list[str] = []  # YooKassa payment ids the app created
        self.settled_card_payments: set[str] = set()  # told to the app (notification or poll) since paid
        self.stars_charges: dict[str, int] = {}  # charge id → order id, paid at Telegram
        self.grants = 0

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.world.runner.run(coroutine)  # type: ignore[arg-type]

    @staticmethod
    def pick(items: list[T], index: int) -> T:
        return items[index % len(items)]

    async def rows(self, model: Any, *conditions: Any) -> list[Any]:
        async with self.world.sessionmaker() as session:
            return list((await session.execute(select(model).where(*conditions).order_by(model.id))).scalars())

    async def user(self, user_id: int) -> User:
        async with self.world.sessionmaker() as session:
            user = await session.get(User, user_id)
            assert user is not None
            return user

    # ------------------------------------------------------------ orders and free credits

    @initialize()
    def empty_database(self) -> None:
        self.run(self.world.fresh())

    @rule(
        pack=st.sampled_from(["p7", "p7", "p15", "trial"]),
        new_user=st.booleans(),
        who=PICK,
        pay=st.sampled_from(["stars", "card", "later"]),
    )
    def order(self, pack: str, new_user: bool, who: int, pay: str) -> None:
        """A new order (a pack, or the trial started at once), paid right away or left for later."""

        async def go() -> None:
            world = self.world
            if new_user or not self.users:
                fake = world.telegram.user(language_code="en")
                async with world.sessionmaker() as session:
                    user, _ = await register_user(session, TelegramProfile(fake.id, None, "Money", "en"))
                    await session.commit()
                self.users.append((user.id, fake))
            user_id, _fake = self.users[-1] if new_user else self.pick(self.users, who)
            async with world.sessionmaker() as session:
                avatar = await avatars.create_avatar(session, user_id)
                await avatars.mark_ready(session, avatar.id)
                order = await order_queries.create_order(
                    session, user_id=user_id, avatar_id=avatar.id, style="professional", pack=world.catalogue.pack(pack)
                )
                await session.commit()
            self.orders.append(order.id)
            if pack == "trial":
                try:
                    await world.payments.start_free(order.id, await self.user(user_id))
                except OrderNotPayable:
                    pass  # one trial per user
            elif pay == "stars":
                await self.pay_stars(order.id, again=False, repeats=1, together=False)
            elif pay == "card":
                await self.open_card(order.id)
                if self.card_payments:
                    await self.pay_card(self.card_payments[-1], notices=1, together=False)

        self.run(go())

    @precondition(lambda self: self.users)
    @rule(who=PICK, photos=st.integers(1, 5))
    def grant(self, who: int, photos: int) -> None:
        async def go() -> None:
            user_id, _ = self.pick(self.users, who)
            self.grants += 1
            async with self.world.sessionmaker() as session:
                await ledger.record(session, user_id, grant_line(f"machine-{self.grants}", photos, "goodwill"))
                await session.commit()

        self.run(go())

    @precondition(lambda self: self.orders)
    @rule(which=PICK)
    def withdraw_order(self, which: int) -> None:
        async def go() -> None:
            async with self.world.sessionmaker() as session:
                await order_queries.cancel_unpaid_order(session, self.pick(self.orders, which))
                await session.commit()

        self.run(go())

    # ------------------------------------------------------------ card payments

    @precondition(lambda self: self.orders)
    @rule(which=PICK)
    def open_card_payment(self, which: int) -> None:
        self.run(self.open_card(self.pick(self.orders, which)))

    async def open_card(self, order_id: int) -> None:
        """The user taps "By card": the app creates (or reuses) the YooKassa payment."""
        async with self.world.sessionmaker() as session:
            order = await session.get(Order, order_id)
            assert order is not None
        try:
            await self.world.payments.start_yookassa(order_id, await self.user(order.user_id))
        except (OrderNotPayable, PaymentUnavailable):
            return
        for payment in await self.rows(Payment, Payment.order_id == order_id):
            if payment.provider_payment_id and payment.provider == PaymentProviderName.YOOKASSA:
                if payment.provider_payment_id not in self.card_payments:
                    self.card_payments.append(payment.provider_payment_id)

    @precondition(lambda self: self.card_payments)
    @rule(which=PICK, notices=st.integers(0, 3), together=st.booleans())
    def card_paid(self, which: int, notices: int, together: bool) -> None:
        """The user pays; the notification comes ``notices`` times (0: lost), maybe all at once."""
        self.run(self.pay_card(self.pick(self.card_payments, which), notices, together))

    async def pay_card(self, payment_id: str, notices: int, together: bool) -> None:
        if self.world.kassa.payments[payment_id]["status"] != "pending":
            return
        await self.world.kassa.pay(payment_id)
        self.settled_card_payments.discard(payment_id)
        await self.notify(payment_id, notices, together)

    @precondition(lambda self: self.card_payments)
    @rule(which=PICK, notices=st.integers(0, 2))
    def card_cancelled(self, which: int, notices: int) -> None:
        payment_id = self.pick(self.card_payments, which)

        async def go() -> None:
            if self.world.kassa.payments[payment_id]["status"] != "pending":
                return
            await self.world.kassa.cancel(payment_id)
            await self.notify(payment_id, notices, False)

        self.run(go())

    async def notify(self, payment_id: str, notices: int, together: bool) -> None:
        """What the app's notification endpoint does for each (re-fetch and apply), ``notices`` times."""
        if together:
            await asyncio.gather(*(self.world.payments.sync(payment_id) for _ in range(notices)))
        else:
            for _ in range(notices):
                await self.world.payments.sync(payment_id)
        if notices:
            self.settled_card_payments.add(payment_id)

    @rule()
    def reconcile(self) -> None:
        self.run(self.world.payments.reconcile())
        self.settled_card_payments.update(self.card_payments)

    # ------------------------------------------------------------ Telegram Stars

    @precondition(lambda self: self.orders)
    @rule(which=PICK, repeats=st.integers(1, 3), together=st.booleans(), again=st.booleans())
    def stars_paid(self, which: int, repeats: int, together: bool, again: bool) -> None:
        """A successful_payment for the order (a new charge, or one already seen delivered again)."""
        self.run(self.pay_stars(self.pick(self.orders, which), again=again, repeats=repeats, together=together))

    async def pay_stars(self, order_id: int, *, again: bool, repeats: int, together: bool) -> None:
        world = self.world
        async with world.sessionmaker() as session:
            order = await session.get(Order, order_id)
            assert order is not None
            user = await session.get(User, order.user_id)
            assert user is not None
        if order.price_stars <= 0:
            return  # free orders have no invoice
        seen = [charge for charge, of in self.stars_charges.items() if of == order_id]
        if again and seen:
            charge = seen[-1]
        else:
            charge = f"stxMACHINE{next(world.charges)}"
            fake = next(fake for user_id, fake in self.users if user_id == order.user_id)
            await fake.successful_payment(f"order:{order_id}", "XTR", order.price_stars, charge)
            self.stars_charges[charge] = order_id

        def pay() -> Awaitable[Any]:
            return world.payments.stars_paid(order_id, user.telegram_id, charge, "XTR", order.price_stars)

        if together:
            await asyncio.gather(*(pay() for _ in range(repeats)))
        else:
            for _ in range(repeats):
                await pay()

    # ------------------------------------------------------------ generation

    @rule(outcomes=st.lists(st.sampled_from(["portrait", "skip", "submit", "wait"]), min_size=1, max_size=12))
    def generate(self, outcomes: list[str]) -> None:
        """Due tasks go to the provider: a portrait at once, failed for good (every provider spent),
        in flight, or left for later; then each touched job is settled as the engine does."""

        async def go() -> None:
            world = self.world
            await world.generation.dispatch_jobs()  # queued jobs fan out first, as the engine's loop does
            async with world.sessionmaker() as session:
                claimed = await queue.claim_pending_tasks(session, WORKER, 100, timedelta(minutes=5))
                await session.commit()
            touched: set[int] = set()
            for index, task_id in enumerate(claimed):
                outcome = outcomes[index % len(outcomes)]
                async with world.sessionmaker() as session:
                    task = await session.get(GenerationTask, task_id)
                    assert task is not None
                    touched.add(task.job_id)
                    if outcome == "wait":
                        await queue.release_claim(session, task_id, WORKER)
                    elif outcome == "skip":
                        await queue.skip_task(
                            session, task_id, from_status=TaskStatus.PENDING, error="exhausted", worker=WORKER
                        )
                    else:
                        await queue.mark_submitted(
                            session,
                            task_id,
                            WORKER,
                            provider="kie",
                            provider_index=0,
                            provider_task_id=f"machine-{task_id}",
                            next_poll_at=utcnow() + timedelta(hours=1),
                        )
                        if outcome == "portrait":
                            await self.portrait(session, f"machine-{task_id}")
                    await session.commit()
            for job_id in touched:
                await world.generation.hand_over_or_fail(job_id)

        self.run(go())

    @rule(outcomes=st.lists(st.sampled_from(["portrait", "skip"]), min_size=1, max_size=6))
    def provider_reports(self, outcomes: list[str]) -> None:
        """Tasks in flight end (late ones, of a cancelled job, find nothing to change)."""

        async def go() -> None:
            world = self.world
            in_flight = await self.rows(GenerationTask, GenerationTask.provider_task_id.is_not(None))
            touched: set[int] = set()
            for index, task in enumerate(in_flight):
                outcome = outcomes[index % len(outcomes)]
                async with world.sessionmaker() as session:
                    if outcome == "portrait":
                        await self.portrait(session, task.provider_task_id)
                    else:
                        await queue.skip_task(session, task.id, from_status=TaskStatus.SUBMITTED, error="failed")
                    await session.commit()
                touched.add(task.job_id)
            for job_id in touched:
                await world.generation.hand_over_or_fail(job_id)

        self.run(go())

    @staticmethod
    async def portrait(session: AsyncSession, provider_task_id: str) -> None:
        task = await queue.mark_provider_succeeded(session, "kie", provider_task_id, "https://kie.test/result.png")
        if task is not None:
            key = f"results/{task.job_id}/{task.id}"
            await queue.mark_stored(
                session, task.id, result_key=f"{key}.png", thumb_key=f"{key}.jpg", stored_at=utcnow()
            )

    @rule()
    def deliver(self) -> None:
        """Stored portraits reach the chat and finished jobs close, as the delivery service records them."""

        async def go() -> None:
            for job in await self.rows(GenerationJob, GenerationJob.status == JobStatus.DELIVERING):
                async with self.world.sessionmaker() as session:
                    stored = [
                        t.id for t in await deliveries.tasks_in_order(session, job.id) if t.status == TaskStatus.STORED
                    ]
                    if stored:
                        chunk = await deliveries.open_chunk(session, job.id, stored)
                        await deliveries.confirm_chunk(session, chunk.id, dict.fromkeys(stored), [], complete=True)
                    counts = await queue.task_counts(session, job.id)
                    outcome = settle_job(
                        job.photos_total, counts.get(TaskStatus.DELIVERED, 0), counts.get(TaskStatus.SKIPPED, 0)
                    )
                    if outcome is not None:
                        now = utcnow()
                        await queue.move_job(
                            session, job.id, JobStatus.DELIVERING, outcome.status, finished_at=now, delivered_at=now
                        )
                    await session.commit()

        self.run(go())

    # ------------------------------------------------------------ the user's and the admin's actions

    @rule(which=PICK, count=st.integers(1, 3))
    def fail_some(self, which: int, count: int) -> None:
        """Some not yet generated photos of a running pack fail for good (each skipped, its credit back)."""

        async def go() -> None:
            running = await self.rows(GenerationJob, GenerationJob.status == JobStatus.PROCESSING)
            if not running:
                return
            job = self.pick(running, which)
            unfinished = await self.rows(
                GenerationTask,
                GenerationTask.job_id == job.id,
                GenerationTask.status.in_([TaskStatus.PENDING, TaskStatus.SUBMITTED]),
            )
            async with self.world.sessionmaker() as session:
                for task in unfinished[:count]:
                    await queue.skip_task(session, task.id, from_status=TaskStatus(task.status), error="exhausted")
                await session.commit()
            await self.world.generation.hand_over_or_fail(job.id)

        self.run(go())

    @rule(which=PICK)
    def cancel(self, which: int) -> None:
        async def go() -> None:
            # A running pack first: cancelling one is where credits have already moved.
            candidates = await self.rows(GenerationJob, GenerationJob.status == JobStatus.PROCESSING)
            candidates = candidates or await self.rows(GenerationJob, GenerationJob.status == JobStatus.QUEUED)
            if not candidates:
                return
            job = self.pick(candidates, which)
            if not ledger_check.CANCEL_AFTER_SKIPS_RELEASES_ONLY_THE_REST:
                skipped = await self.rows(
                    GenerationTask, GenerationTask.job_id == job.id, GenerationTask.status == TaskStatus.SKIPPED
                )
                if skipped:
                    return
            async with self.world.sessionmaker() as session:
                await jobs.cancel_before_results(session, job.id, job.user_id)
                await session.commit()

        self.run(go())

    @rule(which=PICK, double=st.booleans())
    def spend_returned_credits(self, which: int, double: bool) -> None:
        """ "Use my N credits" after a partial pack, tapped once or twice."""

        async def go() -> None:
            candidates = await self.rows(GenerationJob, GenerationJob.photos_failed > 0)
            if not candidates:
                return
            job = self.pick(candidates, which)
            user = await self.user(job.user_id)
            spend = self.world.credits.spend_returned
            if double and ledger_check.DOUBLE_TAP_SPENDS_ONCE:
                results = await asyncio.gather(spend(job.id, user), spend(job.id, user), return_exceptions=True)
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(result, CreditsUnavailable):
                        raise result
                return
            for _tap in range(2 if double else 1):
                try:
                    await spend(job.id, user)
                except CreditsUnavailable:
                    pass

        self.run(go())

    @rule(which=PICK, photos=st.none() | st.integers(1, 7))
    def refund(self, which: int, photos: int | None) -> None:
        """An admin's /refund of a kept payment: at the provider, then the credits taken back."""

        async def go() -> None:
            world = self.world
            kept = await self.rows(Payment, Payment.status == PaymentStatus.SUCCEEDED)
            if not kept:
                return
            payment = self.pick(kept, which)
            async with world.sessionmaker() as session:
                job = (
                    await session.execute(select(GenerationJob).where(GenerationJob.order_id == payment.order_id))
                ).scalar_one_or_none()
                order = await session.get(Order, payment.order_id)
                assert order is not None
            queued_job_bought_by_it = (
                job is not None and job.status == JobStatus.QUEUED and not await self.crossed(payment)
            )
            if payment.provider == PaymentProviderName.STARS:
                await world.payments.refund_stars(payment.id, world.stars, photos)
            else:
                await world.payments.refund_yookassa(payment.id, photos)
            if queued_job_bought_by_it and ledger_check.QUEUED_REFUND_TAKES_CREDITS_BACK:
                asked = order.photos if photos is None else min(photos, order.photos)
                async with world.sessionmaker() as session:
                    taken = -(
                        await session.execute(
                            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                                LedgerEntry.payment_id == payment.id, LedgerEntry.reason == LedgerReason.REFUND
                            )
                        )
                    ).scalar_one()
                assert taken == asked, f"refund of payment {payment.id} (job queued) took {taken} of {asked} credits"

        self.run(go())

    async def crossed(self, payment: Payment) -> bool:
        """Whether another payment of the same order came first (that one bought the job)."""
        others = await self.rows(
            Payment,
            Payment.order_id == payment.order_id,
            Payment.id != payment.id,
            Payment.status.in_([PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED]),
        )
        return any(other.updated_at <= payment.updated_at for other in others)

    @rule(days=st.integers(0, 60))
    def retention(self, days: int) -> None:
        self.run(self.world.housekeeping.run(utcnow() + timedelta(days=days)))

    # ------------------------------------------------------------ after every step

    @invariant()
    def money_invariants_hold(self) -> None:
        self.run(ledger_check.assert_money_invariants(self.world.sessionmaker))

    @invariant()
    def money_taken_is_recorded(self) -> None:
        """Every card payment the app was told about and every Stars charge is a kept or refunded payment."""

        async def go() -> None:
            recorded = {
                (payment.provider, payment.provider_payment_id): payment.status for payment in await self.rows(Payment)
            }
            taken = {PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED}
            kassa = self.world.kassa.payments
            for payment_id in self.settled_card_payments:
                if kassa[payment_id]["status"] == "succeeded":
                    status = recorded.get((PaymentProviderName.YOOKASSA, payment_id))
                    assert status in taken, f"card payment {payment_id} succeeded at YooKassa, ours is {status}"
            for charge in self.stars_charges:
                status = recorded.get((PaymentProviderName.STARS, charge))
                assert status in taken, f"Stars charge {charge} paid at Telegram, ours is {status}"

        self.run(go())


def databases() -> Iterator[str]:
    yield "sqlite"
    yield "postgresql"


@pytest.mark.parametrize("database_kind", list(databases()))
def test_money_invariants_hold_after_every_step(database_kind: str, tmp_path: Path) -> None:
    if database_kind == "postgresql" and not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (set by .ci/run)")
    with asyncio.Runner() as runner:
        if database_kind == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'machine.db'}"
        else:
            url = runner.run(create_database(TEST_DATABASE_URL))
        world = World(runner, url, tmp_path / "files")
        try:
            runner.run(world.start())
            MoneyMachine.world = world
            # PostgreSQL's round trips cost about twice SQLite's: half the examples keep it in budget.
            budget = (
                MACHINE_SETTINGS
                if database_kind == "sqlite"
                else settings(MACHINE_SETTINGS, max_examples=max(1, MACHINE_SETTINGS.max_examples // 2))
            )
            run_state_machine_as_test(MoneyMachine, settings=budget)
        finally:
            runner.run(world.stop())
            if database_kind == "postgresql":
                runner.run(drop_database(TEST_DATABASE_URL, url))


# Fixed walks to each known defect, run with its flag on: they prove the machine's rules reach the
# defect and the invariants catch it. While the fix is not merged the walk must fail; once it is merged
# the walk passes, and this test then asks for the flag to be flipped (and keeps passing after that).
KNOWN_DEFECT_WALKS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "CROSSED_RAILS_REFUNDED": [
        ("order", {"pack": "p7", "new_user": True, "who": 0, "pay": "card"}),
        ("stars_paid", {"which": 0, "repeats": 1, "together": False, "again": False}),
    ],
    "CANCEL_AFTER_SKIPS_RELEASES_ONLY_THE_REST": [
        ("order", {"pack": "p7", "new_user": True, "who": 0, "pay": "stars"}),
        ("generate", {"outcomes": ["wait"]}),
        ("fail_some", {"which": 0, "count": 2}),
        ("cancel", {"which": 0}),
    ],
    "DOUBLE_TAP_SPENDS_ONCE": [
        ("order", {"pack": "p7", "new_user": True, "who": 0, "pay": "stars"}),
        ("grant", {"who": 0, "photos": 5}),
        ("generate", {"outcomes": ["portrait", "skip"]}),
        ("deliver", {}),
        ("spend_returned_credits", {"which": 0, "double": True}),
    ],
    "QUEUED_REFUND_TAKES_CREDITS_BACK": [
        ("order", {"pack": "p7", "new_user": True, "who": 0, "pay": "stars"}),
        ("refund", {"which": 0, "photos": None}),
    ],
}


@pytest.mark.parametrize("flag", sorted(KNOWN_DEFECT_WALKS))
def test_each_known_defect_is_caught_by_the_machine(flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = getattr(ledger_check, flag)
    monkeypatch.setattr(ledger_check, flag, True)
    with asyncio.Runner() as runner:
        world = World(runner, f"sqlite+aiosqlite:///{tmp_path / 'walk.db'}", tmp_path / "files")
        runner.run(world.start())
        try:
            MoneyMachine.world = world
            machine = MoneyMachine()
            machine.empty_database()
            try:
                for step, arguments in KNOWN_DEFECT_WALKS[flag]:
                    getattr(machine, step)(**arguments)
                    machine.money_invariants_hold()
                    machine.money_taken_is_recorded()
            except Exception as caught:
                if fixed:
                    raise
                print(f"{flag}: the known defect, caught: {caught}")
                return
        finally:
            runner.run(world.stop())
    assert fixed, f"the walk to the defect behind {flag} passes now: set {flag} = True in tests/ledger_check.py"
