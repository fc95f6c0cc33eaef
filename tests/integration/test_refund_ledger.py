"""/refund keeps the books, over real HTTP through the admin's command: a refund of a queued job
cancels it and takes its credits back (money back never comes with the pack too); a refund of a
delivered pack takes back what the balance holds and says how much was already portraits."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from bot.app import Application
from storage import ledger
from storage.models import GenerationJob, GenerationTask, LedgerEntry, Payment, User, utcnow
from studio.credits import grant_line
from studio.generation import claim_key
from studio.states import JobStatus, LedgerReason, PaymentStatus, TaskStatus
from tests.engine_support import seed_unpaid_order
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.integration.test_admin import ADMIN_ID, ask, containing
from tests.integration.test_admin_actions import _job_of
from tests.integration.test_payments import payment_app


async def _paid_in_stars(app: Application, customer: FakeUser, charge_id: str) -> tuple[Payment, GenerationJob]:
    order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=customer.id)
    await customer.successful_payment(f"order:{order_id}", "XTR", 250, telegram_payment_charge_id=charge_id)
    await customer.wait_reply(containing("Payment received"), timeout=10)
    job = await _job_of(app, order_id)
    async with app.sessionmaker() as session:
        payment = (await session.execute(select(Payment).where(Payment.provider_payment_id == charge_id))).scalar_one()
    return payment, job


async def _ledger_of(app: Application, user_id: int) -> dict[str, list[int]]:
    async with app.sessionmaker() as session:
        rows = await session.execute(
            select(LedgerEntry.reason, LedgerEntry.delta).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
        )
        lines: dict[str, list[int]] = {}
        for reason, delta in rows.all():
            lines.setdefault(reason, []).append(delta)
        return lines


async def test_a_refund_of_a_queued_job_cancels_it_and_takes_the_credits_back(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    # No image provider is configured, so the paid job waits in the queue.
    async with payment_app(fake_telegram, database_url, tmp_path, ADMIN_IDS=str(ADMIN_ID)) as (app, _kassa):
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        customer = fake_telegram.user(600_500, language_code="en")
        payment, job = await _paid_in_stars(app, customer, "stxQUEUED")
        assert job.status == JobStatus.QUEUED

        reply = await ask(admin, "/refund", str(payment.id), expect="refunded")
        assert "credits taken back: 7" in reply.content and "cannot be taken back" not in reply.content
        assert fake_telegram.is_refunded("stxQUEUED")
        async with app.sessionmaker() as session:
            refreshed = await session.get(GenerationJob, job.id, populate_existing=True)
            assert refreshed is not None and refreshed.status == JobStatus.CANCELLED
            assert (await session.get(Payment, payment.id)).status == PaymentStatus.REFUNDED  # type: ignore[union-attr]
            assert await ledger.balance(session, job.user_id) == 0
        lines = await _ledger_of(app, job.user_id)
        assert lines == {
            LedgerReason.PURCHASE: [7],
            LedgerReason.RESERVE: [-7],
            LedgerReason.RELEASE: [7],
            LedgerReason.REFUND: [-7],
        }


async def test_a_refund_of_a_delivered_pack_takes_back_what_the_balance_holds_and_says_so(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, ADMIN_IDS=str(ADMIN_ID)) as (app, _kassa):
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        customer = fake_telegram.user(600_501, language_code="en")
        payment, job = await _paid_in_stars(app, customer, "stxDELIVERED")
        async with app.sessionmaker() as session:
            # The pack was made and delivered (what the engine and delivery would record), and the
            # user holds 2 credits from elsewhere.
            await session.execute(
                update(GenerationJob)
                .where(GenerationJob.id == job.id)
                .values(status=JobStatus.COMPLETED, photos_completed=7)
            )
            session.add_all(
                GenerationTask(
                    job_id=job.id,
                    position=p,
                    prompt_index=p,
                    seed=p,
                    claim_key=claim_key(job.priority, job.created_at, job.id, p),
                    status=TaskStatus.DELIVERED,
                    delivered_at=utcnow(),
                )
                for p in range(7)
            )
            user = await session.get(User, job.user_id)
            assert user is not None
            await ledger.record(session, user.id, grant_line("elsewhere", 2, None))
            await session.commit()

        reply = await ask(admin, "/refund", str(payment.id), expect="refunded")
        assert "credits taken back: 2" in reply.content
        assert "5 more were already turned into portraits" in reply.content
        async with app.sessionmaker() as session:
            assert await ledger.balance(session, job.user_id) == 0
            done = await session.get(GenerationJob, job.id, populate_existing=True)
            assert done is not None and done.status == JobStatus.COMPLETED
        assert (await _ledger_of(app, job.user_id))[LedgerReason.REFUND] == [-2]
