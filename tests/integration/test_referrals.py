"""Referrals: /invite's link, the inviter remembered on a new user's first /start (never themselves),
and the bonus paid once, by delivery, for the invited user's first delivered paid pack; never for a
trial, for credits or for a refunded payment; a refund after the payout does not take it back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Application
from providers.stars import StarsPayments
from storage import gifts, ledger
from storage import payments as payment_queries
from storage.files import LocalFileStore
from storage.models import Event, GenerationJob, Payment, User
from storage.users import TelegramProfile, register_user
from studio.catalogue import load_catalogue
from studio.states import JobStatus, LedgerReason
from tests.engine_support import FAST_POLICY, job_row, provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.harness import app_settings, running_app

ONE_ATTEMPT_POLICY: dict[str, Any] = {"providers": [FAST_POLICY["providers"][0] | {"max_attempts": 1}]}


async def _user(sessionmaker: async_sessionmaker[AsyncSession], telegram_id: int) -> User:
    async with sessionmaker() as session:
        return (await session.execute(select(User).where(User.telegram_id == telegram_id))).scalar_one()


async def _balance(app: Application, user_id: int) -> int:
    async with app.sessionmaker() as session:
        return await ledger.balance(session, user_id)


async def _job_and_payment(session: AsyncSession, job_id: int) -> tuple[GenerationJob, Payment]:
    job = await session.get(GenerationJob, job_id)
    assert job is not None
    payment = (await session.execute(select(Payment).where(Payment.order_id == job.order_id))).scalar_one()
    return job, payment


async def test_the_bonus_guards_paid_delivered_once_never_trial_self_or_refunded(
    sqlite_sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Each guard of the payout, directly, in the transaction delivery runs it in."""
    sessionmaker, files, catalogue = sqlite_sessionmaker, LocalFileStore(tmp_path), load_catalogue()
    async with sessionmaker() as session:
        inviter, _ = await register_user(session, TelegramProfile(100, None, "Ann", "en"))
        for telegram_id in (200, 300, 400):
            await register_user(session, TelegramProfile(telegram_id, None, "Friend", "en"))
        await session.commit()
    paid = await seed_paid_job(sessionmaker, files, catalogue, telegram_id=200, pack="p7")
    trial = await seed_paid_job(sessionmaker, files, catalogue, telegram_id=300, pack="trial")
    refunded = await seed_paid_job(sessionmaker, files, catalogue, telegram_id=400, pack="p7")
    async with sessionmaker() as session:
        assert not await gifts.set_referrer(session, inviter.id, 100)  # never oneself
        assert not await gifts.set_referrer(session, inviter.id, 999)  # nobody we know
        for telegram_id in (200, 300, 400):
            assert await gifts.set_referrer(session, (await _user(sessionmaker, telegram_id)).id, 100)
        assert not await gifts.set_referrer(session, (await _user(sessionmaker, 200)).id, 300)  # once
        await session.commit()

        job, _payment = await _job_and_payment(session, paid)
        assert await gifts.pay_referral(session, job, JobStatus.FAILED, 3) is None  # nothing delivered
        payout = await gifts.pay_referral(session, job, JobStatus.PARTIAL, 3)
        assert payout is not None and payout.inviter_chat_id == 100 and payout.photos == 3
        assert await gifts.pay_referral(session, job, JobStatus.COMPLETED, 3) is None  # once per invitee
        trial_job = await session.get(GenerationJob, trial)
        assert trial_job is not None
        assert await gifts.pay_referral(session, trial_job, JobStatus.COMPLETED, 3) is None  # no payment
        job, payment = await _job_and_payment(session, refunded)
        await payment_queries.record_refund(session, payment, 7, "stars:test")
        assert await gifts.pay_referral(session, job, JobStatus.COMPLETED, 3) is None  # refunded
        await session.commit()
        assert await ledger.balance(session, inviter.id) == 3


async def _wait_finished(app: Application, job_id: int) -> GenerationJob:
    async with asyncio.timeout(60):
        while (job := await job_row(app.sessionmaker, job_id)).status not in (
            JobStatus.COMPLETED,
            JobStatus.PARTIAL,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        ):
            await asyncio.sleep(0.1)
    return job


async def _start(user: FakeUser, args: str | None = None) -> None:
    await user.send_command("start", args)
    await user.wait_reply(lambda m: "New photo session" in str(m.buttons))


async def test_an_inviter_is_paid_once_when_the_invited_users_first_paid_pack_is_delivered(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    inviter = fake_telegram.user(language_code="en")
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.05)) as kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            ADMIN_IDS=str(inviter.id),
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1, FALLBACK_POLICY=json.dumps(ONE_ATTEMPT_POLICY)),
        )
        async with running_app(settings) as app:
            await _start(inviter)
            await inviter.send_command("invite")
            invite = await inviter.wait_reply(lambda m: "Your link for friends" in m.content)
            assert f"?start=ref_{inviter.id}" in invite.content and "you get 3 credits" in invite.content
            invitee, selfish = fake_telegram.user(language_code="en"), fake_telegram.user(language_code="en")
            await _start(invitee, f"ref_{inviter.id}")
            await _start(selfish, f"ref_{selfish.id}")
            await _start(inviter, f"ref_{invitee.id}")  # a known user: where they came from stays
            inviter_row = await _user(app.sessionmaker, inviter.id)
            assert (await _user(app.sessionmaker, invitee.id)).referrer_id == inviter_row.id
            assert (await _user(app.sessionmaker, selfish.id)).referrer_id is None
            assert inviter_row.referrer_id is None

            first = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=invitee.id, pack="p7")
            app.signals.job_queued()
            assert (await _wait_finished(app, first)).status == JobStatus.COMPLETED
            await inviter.wait_reply(lambda m: "+3 credits for you" in m.content, timeout=10)
            second = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=invitee.id, pack="p7")
            app.signals.job_queued()
            assert (await _wait_finished(app, second)).status == JobStatus.COMPLETED

            # A refund after the payout takes nothing back from the inviter (the pack was delivered).
            async with app.sessionmaker() as session:
                _job, payment = await _job_and_payment(session, first)
            # The seeded payment's charge, as Telegram knows it (the seed applied it without an update).
            invitee.charge(f"order:{payment.order_id}", "XTR", payment.amount, payment.provider_payment_id)
            await app.payments.refund_stars(payment.id, StarsPayments(app.bot))
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, inviter_row.id) == 3
                lines = await session.execute(select(func.count()).where(Event.name == "referral_paid"))
                assert lines.scalar_one() == 1
                assert (await ledger.totals_by_reason(session, inviter_row.id)) == {LedgerReason.REFERRAL: 3}

            # Another invited user's first payment is refunded at once: no bonus for it; their next,
            # genuinely paid pack is the one that counts.
            other = fake_telegram.user(language_code="en")
            await _start(other, f"ref_{inviter.id}")
            refunded = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=other.id, pack="p7")
            async with app.sessionmaker() as session:
                _job, payment = await _job_and_payment(session, refunded)
            other.charge(f"order:{payment.order_id}", "XTR", payment.amount, payment.provider_payment_id)
            await app.payments.refund_stars(payment.id, StarsPayments(app.bot))
            app.signals.job_queued()
            assert (await _wait_finished(app, refunded)).status != JobStatus.COMPLETED
            assert await _balance(app, inviter_row.id) == 3
            genuine = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=other.id, pack="p7")
            app.signals.job_queued()
            assert (await _wait_finished(app, genuine)).status == JobStatus.COMPLETED
            await inviter.wait_reply(lambda m: "+3 credits for you" in m.content and m.message_id > invite.message_id)
            assert await _balance(app, inviter_row.id) == 6

            await inviter.send_command("stats")
            await inviter.wait_reply(lambda m: "referral bonuses: 2" in m.content)
