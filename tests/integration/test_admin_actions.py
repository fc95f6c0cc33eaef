"""Admin actions that move work and money, over real HTTP: retry of skipped photos through the real
engine and fake Kie, resend, provider pause/primary (persisted, honoured by the engine, surviving a
restart), and refunds at YooKassa and in Stars that move the ledger exactly once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.app import Application
from storage import jobs as job_queries
from storage import ledger
from storage.models import GenerationJob, GenerationTask, LedgerEntry, Payment, ProviderOverride, User
from studio.states import JobStatus, PaymentStatus, TaskStatus
from tests.engine_support import FAST_POLICY, job_row, provider_settings, seed_paid_job, seed_unpaid_order
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.replicate import FakeReplicate
from tests.fakes.telegram import FakeTelegram
from tests.harness import running_app
from tests.integration.test_admin import ADMIN_ID, ask, containing, settings_for
from tests.integration.test_payments import payment_app

ONE_ATTEMPT_POLICY: dict[str, Any] = {
    "providers": [FAST_POLICY["providers"][0] | {"max_attempts": 1, "backoff_seconds": [0.05]}]
}


async def until_status(app: Application, job_id: int, statuses: tuple[str, ...], timeout: float = 60) -> GenerationJob:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while (job := await job_row(app.sessionmaker, job_id)).status not in statuses:
            await asyncio.sleep(0.1)
    return job


def photos_sent(fake: FakeTelegram, chat_id: int) -> int:
    total = 0
    for call in fake.calls(chat_id=chat_id):
        if call.response_ok and call.method == "sendMediaGroup":
            total += len(call.params["media"])
        elif call.response_ok and call.method == "sendPhoto":
            total += 1
    return total


async def test_retry_failed_photos_through_the_engine_then_resend(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.1)) as kie:
        kie.queue_outcomes(Outcome("fail"), Outcome("fail"))
        settings = settings_for(
            fake_telegram,
            sqlite_url,
            tmp_path,
            webhook=True,
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1, FALLBACK_POLICY=json.dumps(ONE_ATTEMPT_POLICY)),
        )
        async with running_app(settings) as app:
            admin = fake_telegram.user(ADMIN_ID, language_code="en")
            customer = fake_telegram.user(600_100, language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=customer.id, pack="p7")
            app.signals.job_queued()
            job = await until_status(app, job_id, (JobStatus.PARTIAL, JobStatus.COMPLETED, JobStatus.FAILED))
            assert job.status == JobStatus.PARTIAL and job.photos_failed == 2
            await customer.wait_reply(containing("could not be made"), timeout=10)
            assert photos_sent(fake_telegram, customer.id) == 5

            await ask(admin, "/job", str(job_id), expect="partial")
            await admin.click("Retry failed photos")
            await admin.wait_reply(containing("2 photos queued again"), timeout=10)
            job = await until_status(app, job_id, (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED))
            assert job.status == JobStatus.COMPLETED and job.photos_failed == 0
            async with app.sessionmaker() as session:
                statuses = (
                    await session.execute(select(GenerationTask.status).where(GenerationTask.job_id == job_id))
                ).scalars()
                assert set(statuses) == {TaskStatus.DELIVERED}
                # The two credits returned for the failed photos stay with the user; nothing moved twice.
                assert await ledger.balance(session, job.user_id) == 2
                releases = (await session.execute(select(LedgerEntry).where(LedgerEntry.reason == "release"))).scalars()
                assert sorted(entry.delta for entry in releases) == [1, 1]
            await asyncio.sleep(0.3)
            assert photos_sent(fake_telegram, customer.id) == 7
            await ask(admin, "/retry", str(job_id), expect="nothing to retry")

            await admin.click("Resend to user")
            await admin.wait_reply(containing(f"Job #{job_id}: 7 photos resent"), timeout=10)
            assert photos_sent(fake_telegram, customer.id) == 14


async def test_provider_pause_and_primary_steer_the_engine_and_persist(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with (
        FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.1)) as kie,
        FakeReplicate(latency=(0.02, 0.1)) as replicate,
    ):
        settings = settings_for(
            fake_telegram,
            database_url,
            tmp_path,
            webhook=True,
            **provider_settings(kie, replicate, POLL_INTERVAL_SECONDS=1),
        )
        async with running_app(settings) as app:
            admin = fake_telegram.user(ADMIN_ID, language_code="en")
            shown = await ask(admin, "/provider", expect="Providers")
            assert "⭐ kie: primary" in shown.content and "• replicate: fallback" in shown.content
            assert "breaker closed" in shown.content
            await admin.click("Pause kie")
            await admin.wait_reply(containing("⏸ kie: primary, paused"), timeout=10)
            assert app.engine_service.paused == {"kie"}

            customer = fake_telegram.user(600_200, language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=customer.id, pack="p7")
            app.signals.job_queued()
            job = await until_status(app, job_id, (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED))
            assert job.status == JobStatus.COMPLETED
            assert not kie.creates and len(replicate.creates) == 7  # nothing went to the paused provider

            await ask(admin, "/provider", "primary replicate", expect="⭐ replicate: primary")
            await ask(admin, "/provider", "resume kie", expect="• kie: fallback")
            await ask(admin, "/provider", "pause nosuch", expect="No provider named")
            assert [provider.name for provider in app.engine_service.providers] == ["replicate", "kie"]
            assert app.engine_service.paused == set()
        async with running_app(settings) as restarted:  # persisted: a new process starts with the switches
            assert [provider.name for provider in restarted.engine_service.providers] == ["replicate", "kie"]
            async with restarted.sessionmaker() as session:
                rows = {row.name: row for row in (await session.execute(select(ProviderOverride))).scalars()}
            assert rows["replicate"].is_primary and not rows["kie"].is_primary and not rows["kie"].paused
            assert rows["kie"].updated_by == ADMIN_ID


async def test_refunds_move_money_and_the_ledger_once(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, ADMIN_IDS=str(ADMIN_ID)) as (app, kassa):
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        customer = fake_telegram.user(600_300, language_code="en")
        # YooKassa: a real payment through the fake, confirmed by its notification.
        order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=customer.id)
        async with app.sessionmaker() as session:
            user_row = (await session.execute(select(User).where(User.telegram_id == customer.id))).scalar_one()
        link = await app.payments.start_yookassa(order_id, user_row)
        provider_id = (await _payment(app, link.payment_id)).provider_payment_id
        assert provider_id is not None
        await kassa.pay(provider_id)
        await customer.wait_reply(containing("Payment received"), timeout=10)
        job = await _job_of(app, order_id)
        await ask(admin, "/cancel", str(job.id), expect="cancelled")  # its 7 credits are free again

        # Two /refund at once and one more afterwards: one refund at YooKassa, one ledger line.
        await asyncio.gather(
            admin.send_command("/refund", str(link.payment_id)), admin.send_command("/refund", str(link.payment_id))
        )
        await fake_telegram.wait_until(
            lambda: sum("Payment #" in m.content for m in fake_telegram.sent_messages(ADMIN_ID)) >= 2, timeout=10
        )
        await ask(admin, "/refund", str(link.payment_id), expect="already refunded")
        assert len(kassa.refunds) == 1
        refund = next(iter(kassa.refunds.values()))
        assert refund["amount"]["value"] == "490.00" and refund["payment_id"] == provider_id
        assert any(r.idempotence_key == f"pg-refund-{link.payment_id}" for r in kassa.requests_to("POST /refunds"))
        assert any(
            "refunded (490 ₽); credits taken back: 7" in m.content for m in fake_telegram.sent_messages(ADMIN_ID)
        )

        # Stars: refunded at Telegram once, however often asked.
        stars_order = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=customer.id)
        await customer.successful_payment(f"order:{stars_order}", "XTR", 250, telegram_payment_charge_id="stxADMIN")
        await customer.wait_reply(containing("Payment received"), timeout=10)
        stars_job = await _job_of(app, stars_order)
        async with app.sessionmaker() as session:
            assert await job_queries.cancel_queued_job(session, stars_job.id)
            await session.commit()
            stars_payment = (
                await session.execute(select(Payment).where(Payment.provider_payment_id == "stxADMIN"))
            ).scalar_one()
        await ask(admin, "/refund", f"{stars_payment.id} 3", expect="credits taken back: 3")
        await ask(admin, "/refund", str(stars_payment.id), expect="already refunded")
        assert fake_telegram.is_refunded("stxADMIN")
        assert len(fake_telegram.calls("refundStarPayment")) == 1
        await ask(admin, "/refund", "999999", expect="not found")

        async with app.sessionmaker() as session:
            refunds = (await session.execute(select(LedgerEntry).where(LedgerEntry.reason == "refund"))).scalars().all()
            assert sorted(entry.delta for entry in refunds) == [-7, -3]
            for payment_id in (link.payment_id, stars_payment.id):
                assert (await session.get(Payment, payment_id)).status == PaymentStatus.REFUNDED  # type: ignore[union-attr]
            assert await ledger.balance(session, user_row.id) == 4
    # Leaving ``payment_app`` re-derives the whole ledger from payments and jobs (assert_ledger_balanced).


async def _payment(app: Application, payment_id: int) -> Payment:
    async with app.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment


async def _job_of(app: Application, order_id: int) -> GenerationJob:
    async with asyncio.timeout(10):
        while True:
            async with app.sessionmaker() as session:
                job = (
                    await session.execute(select(GenerationJob).where(GenerationJob.order_id == order_id))
                ).scalar_one_or_none()
            if job is not None:
                return job
            await asyncio.sleep(0.05)
