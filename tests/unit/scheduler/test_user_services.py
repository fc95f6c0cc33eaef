"""What the /start, payment and results handlers ask of the scheduler, on a real SQLite database (migrated
once per session, copied per test): AccountService, ResultsService, PaymentService.payable_order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.accounts import AccountService
from scheduler.notify import RecordingNotifier
from scheduler.payments import PaymentService
from scheduler.results import CancelResult, ResultsService
from scheduler.signals import WorkSignals
from storage import ledger
from storage.files import LocalFileStore
from storage.models import Avatar, Event, GenerationJob, Order, ReferencePhoto, User
from studio.catalogue import Catalogue, load_catalogue
from studio.states import AvatarStatus, JobStatus, OrderStatus
from tests.engine_support import seed_paid_job, seed_unpaid_order


class Rig:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], files: LocalFileStore) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.catalogue: Catalogue = load_catalogue()
        self.accounts = AccountService(sessionmaker)
        self.results = ResultsService(sessionmaker, files=files)

    def payments(self) -> PaymentService:
        return PaymentService(
            self.sessionmaker,
            catalogue=self.catalogue,
            notifier=RecordingNotifier(),
            signals=WorkSignals(),
            yookassa=None,
            return_url="https://t.me/",
        )

    async def user(self, telegram_id: int) -> User:
        async with self.sessionmaker() as session:
            found = (await session.execute(select(User).where(User.telegram_id == telegram_id))).scalar_one()
            return found

    async def new_user(self, telegram_id: int = 600_001) -> User:
        async with self.sessionmaker() as session:
            user = User(telegram_id=telegram_id, first_name="Anna", language="en")
            session.add(user)
            await session.commit()
            return user

    async def paid_job(self, telegram_id: int = 600_002) -> int:
        return await seed_paid_job(self.sessionmaker, self.files, self.catalogue, telegram_id=telegram_id, pack="p7")

    async def unpaid_order(self, telegram_id: int = 600_003) -> int:
        return await seed_unpaid_order(self.sessionmaker, self.files, self.catalogue, telegram_id=telegram_id)

    async def job(self, job_id: int) -> GenerationJob:
        async with self.sessionmaker() as session:
            job = await session.get(GenerationJob, job_id)
            assert job is not None
            return job

    async def balance(self, user_id: int) -> int:
        async with self.sessionmaker() as session:
            return await ledger.balance(session, user_id)


@pytest_asyncio.fixture
async def rig(sqlite_sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> AsyncIterator[Rig]:
    yield Rig(sqlite_sessionmaker, LocalFileStore(tmp_path / "files"))


# ---------------------------------------------------------------- /start


async def test_start_keeps_the_first_source_and_counts_a_new_user_once(rig: Rig) -> None:
    user = await rig.new_user()

    assert await rig.accounts.started(user.id, source="spring", first_time=True) is False
    assert await rig.accounts.started(user.id, source="autumn", first_time=False) is False
    assert await rig.accounts.started(user.id, source=None, first_time=False) is False

    stored = await rig.user(user.telegram_id)
    assert stored.source == "spring"
    async with rig.sessionmaker() as session:
        events = (await session.execute(select(Event.name, Event.properties).where(Event.user_id == user.id))).all()
    assert [(name, properties) for name, properties in events] == [("user_started", {"source": "spring"})]


async def test_start_tells_whether_a_photo_set_can_be_reused(rig: Rig) -> None:
    await rig.unpaid_order(telegram_id=600_010)  # a user with a ready photo set
    user = await rig.user(600_010)

    assert await rig.accounts.started(user.id, source=None, first_time=False) is True
    async with rig.sessionmaker() as session:
        await session.execute(update(Avatar).where(Avatar.user_id == user.id).values(status=AvatarStatus.DELETED))
        await session.commit()
    assert await rig.accounts.started(user.id, source=None, first_time=False) is False


async def test_set_email_is_stored_and_shown_on_the_callers_row(rig: Rig) -> None:
    user = await rig.new_user()

    await rig.accounts.set_email(user, "anna@example.com")

    assert user.email == "anna@example.com"
    assert (await rig.user(user.telegram_id)).email == "anna@example.com"


# ---------------------------------------------------------------- cancelling a queued pack


async def test_cancel_a_queued_pack_returns_its_credits_once(rig: Rig) -> None:
    job_id = await rig.paid_job()
    owner = (await rig.job(job_id)).user_id
    before = await rig.balance(owner)

    first = await rig.results.cancel(job_id, owner)
    again = await rig.results.cancel(job_id, owner)

    assert (first.result, first.returned) == (CancelResult.CANCELLED, 7)
    assert again.result == CancelResult.ALREADY
    assert (await rig.job(job_id)).status == JobStatus.CANCELLED
    assert await rig.balance(owner) == before + 7


async def test_cancel_someone_elses_or_no_pack(rig: Rig) -> None:
    job_id = await rig.paid_job()
    stranger = await rig.new_user(600_099)

    assert (await rig.results.cancel(job_id, stranger.id)).result == CancelResult.UNKNOWN
    assert (await rig.results.cancel(999_999, stranger.id)).result == CancelResult.UNKNOWN
    assert (await rig.job(job_id)).status == JobStatus.QUEUED


@pytest.mark.ledger_unbalanced(reason="the job is set completed directly, with no portraits behind its credits")
async def test_cancel_after_the_portraits_is_too_late(rig: Rig) -> None:
    job_id = await rig.paid_job()
    owner = (await rig.job(job_id)).user_id
    async with rig.sessionmaker() as session:
        await session.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(status="completed"))
        await session.commit()

    assert (await rig.results.cancel(job_id, owner)).result == CancelResult.TOO_LATE


async def test_owned_job_is_only_the_owners(rig: Rig) -> None:
    job_id = await rig.paid_job()
    owner = (await rig.job(job_id)).user_id

    found = await rig.results.owned_job(job_id, owner)
    assert found is not None and found.id == job_id
    assert await rig.results.owned_job(job_id, owner + 1) is None
    assert await rig.results.owned_job(999_999, owner) is None


# ---------------------------------------------------------------- /forget


async def test_forget_deletes_rows_then_files_and_withdraws_unpaid_orders(rig: Rig) -> None:
    order_id = await rig.unpaid_order()
    user = await rig.user(600_003)
    keys = await rig.files.list_keys(f"refs/{user.id}/")
    assert len(keys) == 5

    forgotten = await rig.results.forget(user.id)

    assert (forgotten.busy, forgotten.orders_cancelled, forgotten.files) == (False, 1, 5)
    assert await rig.files.list_keys(f"refs/{user.id}/") == []
    async with rig.sessionmaker() as session:
        order = await session.get(Order, order_id)
        photos = await session.scalar(select(func.count()).select_from(ReferencePhoto))
    assert order is not None and order.status == OrderStatus.CANCELLED
    assert photos == 0


async def test_forget_waits_while_a_pack_is_made(rig: Rig) -> None:
    job_id = await rig.paid_job()
    owner = (await rig.job(job_id)).user_id

    forgotten = await rig.results.forget(owner)

    assert forgotten.busy
    assert len(await rig.files.list_keys(f"refs/{owner}/")) == 5


# ---------------------------------------------------------------- the order Pay acts on


async def test_payable_order_is_the_users_order_waiting_for_payment(rig: Rig) -> None:
    order_id = await rig.unpaid_order()
    user = await rig.user(600_003)
    payments = rig.payments()

    order = await payments.payable_order(order_id, user.id)
    assert order is not None and order.id == order_id
    assert await payments.payable_order(order_id, user.id + 1) is None
    async with rig.sessionmaker() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(status=OrderStatus.CANCELLED))
        await session.commit()
    assert await payments.payable_order(order_id, user.id) is None
