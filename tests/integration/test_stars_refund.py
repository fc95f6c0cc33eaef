"""Stars refunds: refundStarPayment at Telegram and the ledger entry, exactly once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from providers.stars import StarsPayments
from storage import jobs, ledger
from storage.models import GenerationJob, LedgerEntry, Payment
from studio.states import PaymentStatus
from tests.engine_support import seed_unpaid_order
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app


async def test_stars_payment_refund_moves_money_and_credits_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files")
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
        await user.successful_payment(f"order:{order_id}", "XTR", 250, telegram_payment_charge_id="stxREFUND")
        await fake_telegram.wait_until(lambda: any("Payment received" in m.content for m in user.messages), timeout=10)
        async with app.sessionmaker() as session:
            payment = (
                await session.execute(select(Payment).where(Payment.provider_payment_id == "stxREFUND"))
            ).scalar_one()
            job = (await session.execute(select(GenerationJob).where(GenerationJob.order_id == order_id))).scalar_one()
            # Refund before generation: the queued job is cancelled first, so its 7 credits are free.
            assert await jobs.cancel_queued_job(session, job.id)
            await session.commit()
            assert await ledger.balance(session, payment.user_id) == 7

        stars = StarsPayments(app.bot)
        assert await app.payments.refund_stars(payment.id, stars) is True
        assert fake_telegram.is_refunded("stxREFUND")
        assert await app.payments.refund_stars(payment.id, stars) is False  # repeated: nothing moves twice
        async with app.sessionmaker() as session:
            refunds = (await session.execute(select(LedgerEntry).where(LedgerEntry.reason == "refund"))).scalars().all()
            refreshed = await session.get(Payment, payment.id)
            assert refreshed is not None and refreshed.status == PaymentStatus.REFUNDED
            assert [entry.delta for entry in refunds] == [-7]
            assert await ledger.balance(session, payment.user_id) == 0
