"""Credits on a balance are always spendable, and the ledger keeps its own books — over real HTTP,
through the bot's own buttons: a whole-pack failure and a cancel each end with a button that starts a
new pack from the returned credits (no payment), a double tap makes one pack, a cancel after skipped
portraits releases only what is still reserved, the pack picker spends a balance that covers a pack,
and missing selfies fail the job once without touching a provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import Application
from bot.callbacks import ResultsCb
from scheduler.credits import CreditService, CreditsUnavailable, job_spend_key
from storage import ledger
from storage import orders as order_queries
from storage.models import GenerationJob, LedgerEntry, Order, Payment, ReferencePhoto, User
from studio.credits import grant_line
from studio.states import JobStatus, LedgerReason, TaskStatus
from tests.engine_support import (
    job_row,
    seed_paid_job,
    seed_unpaid_order,
    task_statuses,
)
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.harness import app_settings, callback_answer, running_app
from tests.integration.test_after_pack import _settings, _until


async def _jobs_of(app: Application, user_id: int) -> list[GenerationJob]:
    async with app.sessionmaker() as session:
        rows = await session.execute(
            select(GenerationJob).where(GenerationJob.user_id == user_id).order_by(GenerationJob.id)
        )
        return list(rows.scalars())


async def _released(app: Application, job_id: int) -> int:
    async with app.sessionmaker() as session:
        total = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.job_id == job_id, LedgerEntry.reason == LedgerReason.RELEASE
            )
        )
        return int(total or 0)


async def _balance(app: Application, user_id: int) -> int:
    async with app.sessionmaker() as session:
        return await ledger.balance(session, user_id)


async def _new_pack_arrives_without_payment(
    app: Application, fake: FakeTelegram, user: FakeUser, source: GenerationJob, photos: int
) -> None:
    """The button under the source job's message queues a pack from its credits, and that pack arrives."""
    async with app.sessionmaker() as session:
        payments_before = await session.scalar(select(func.count()).select_from(Payment))
    await user.click(f"Use {photos} credits")
    await user.wait_reply(lambda m: f"{photos} portraits are queued" in m.content, timeout=15)
    again = [job for job in await _jobs_of(app, source.user_id) if job.id != source.id]
    assert len(again) == 1
    assert (again[0].photos_total, again[0].style, again[0].avatar_id) == (photos, source.style, source.avatar_id)
    finished = await _until(app, again[0].id, (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED))
    assert finished.status == JobStatus.COMPLETED
    await user.wait_reply(lambda m: f"All {photos} portraits are here" in m.content, timeout=15)
    async with app.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == payments_before
    assert not fake.calls("sendInvoice")
    assert await _balance(app, source.user_id) == 0


async def test_a_failed_pack_ends_with_a_button_that_starts_a_new_pack_from_its_credits(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        kie.queue_outcomes(*[Outcome("fail")] * 7)  # every portrait of the first pack fails
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            failed = await _until(app, job_id, (JobStatus.FAILED, JobStatus.PARTIAL, JobStatus.COMPLETED))
            assert failed.status == JobStatus.FAILED
            notice = await user.wait_reply(lambda m: "could not make your portraits" in m.content, timeout=15)
            assert "7 credits are back" in notice.content
            assert [b["text"] for b in notice.buttons] == ["🎁 Use 7 credits"]
            assert await _balance(app, failed.user_id) == 7
            await _new_pack_arrives_without_payment(app, fake_telegram, user, failed, 7)


async def test_a_cancel_ends_with_a_button_that_starts_a_new_pack_from_its_credits(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        kie.queue_outcomes(*[Outcome(latency=30.0)] * 7)  # the first pack is slow: cancelled before any portrait
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            await user.wait_reply(lambda m: "Generating your portraits" in m.content, timeout=15)
            await kie.wait_for_task_count(7, within_seconds=15)
            await user.click("Cancel")
            notice = await user.wait_reply(lambda m: "order is cancelled" in m.content, timeout=15)
            assert "7 credits are back" in notice.content
            assert [b["text"] for b in notice.buttons] == ["🎁 Use 7 credits"]
            cancelled = await job_row(app.sessionmaker, job_id)
            assert cancelled.status == JobStatus.CANCELLED
            await _new_pack_arrives_without_payment(app, fake_telegram, user, cancelled, 7)


async def test_cancel_after_skipped_portraits_releases_only_what_is_still_reserved(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        kie.queue_outcomes(Outcome("fail", latency=0.05), Outcome("fail", latency=0.05), *[Outcome(latency=30.0)] * 5)
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            async with asyncio.timeout(20):
                while (await job_row(app.sessionmaker, job_id)).photos_failed < 2:
                    await asyncio.sleep(0.1)
            assert await _released(app, job_id) == 2  # the two skipped portraits, one credit each
            await user.wait_reply(lambda m: "Cancel" in str(m.buttons), timeout=15)
            await user.click("Cancel")
            notice = await user.wait_reply(lambda m: "order is cancelled" in m.content, timeout=15)
            job = await job_row(app.sessionmaker, job_id)
            assert job.status == JobStatus.CANCELLED
            assert await task_statuses(app.sessionmaker, job_id) == {TaskStatus.SKIPPED: 7}
            # Paid 7, reserved 7: released 7 in all (2 skipped + 5 by the cancel), never 9.
            assert await _released(app, job_id) == 7
            assert await _balance(app, job.user_id) == 7
            assert "7 credits are back" in notice.content


async def test_a_double_tap_on_use_credits_makes_one_pack(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        kie.queue_outcomes(*[Outcome("fail")] * 7)
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            notice = await user.wait_reply(lambda m: "Use 7 credits" in str(m.buttons), timeout=30)
            data = ResultsCb(job_id=job_id, action="credits").pack()
            first, second = await asyncio.gather(
                user.press_button(notice.message_id, data), user.press_button(notice.message_id, data)
            )
            answers = [await callback_answer(fake_telegram, query_id) for query_id in (first, second)]
            assert sum("already been used" in str(answer.get("text")) for answer in answers) == 1
            jobs = await _jobs_of(app, (await job_row(app.sessionmaker, job_id)).user_id)
            assert len(jobs) == 2  # the failed pack and exactly one new one
            async with app.sessionmaker() as session:
                spends = await session.scalar(
                    select(func.count()).select_from(Order).where(Order.spend_key == job_spend_key(job_id))
                )
                assert spends == 1
                assert await ledger.balance(session, jobs[0].user_id) == 0


async def _user_with_balance(app: Application, fake: FakeTelegram) -> tuple[FakeUser, User, int]:
    """A user with a ready photo set and 7 credits on the balance (an admin's grant)."""
    tg_user = fake.user(language_code="en")
    order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=tg_user.id)
    async with app.sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None and order.avatar_id is not None
        user = await session.get(User, order.user_id)
        assert user is not None
        await ledger.record(session, user.id, grant_line(f"test-{user.id}", 7, None))
        await session.commit()
    return tg_user, user, order.avatar_id


async def test_concurrent_spends_never_overdraw(fake_telegram: FakeTelegram, database_url: str, tmp_path: Path) -> None:
    """Seven credits, ten spends of seven at once from different sources: one pack, balance 0, never below."""
    settings = app_settings(fake_telegram, database_url, tmp_path / "files")
    async with running_app(settings) as app:
        _tg_user, user, avatar_id = await _user_with_balance(app, fake_telegram)
        service: CreditService = app.credits
        outcomes = await asyncio.gather(
            *(
                service.spend(user, avatar_id=avatar_id, style="professional", photos=7, spend_key=f"picker:{n}")
                for n in range(10)
            ),
            return_exceptions=True,
        )
        spent = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        refused = [outcome for outcome in outcomes if isinstance(outcome, CreditsUnavailable)]
        assert len(spent) == 1 and len(refused) == 9, outcomes
        assert {refusal.reason for refusal in refused} == {"not_enough"}
        # The same source twice at once: one order, the other "used".
        async with app.sessionmaker() as session:
            await ledger.record(session, user.id, grant_line("test-topup", 14, None))
            await session.commit()
        twice = await asyncio.gather(
            *(
                service.spend(user, avatar_id=avatar_id, style="professional", photos=7, spend_key="picker:same")
                for _ in range(2)
            ),
            return_exceptions=True,
        )
        assert sorted(type(outcome).__name__ for outcome in twice) == ["CreditsUnavailable", "Spent"]
        assert [o.reason for o in twice if isinstance(o, CreditsUnavailable)] == ["used"]
        async with app.sessionmaker() as session:
            assert await ledger.balance(session, user.id) == 7
            orders = await session.scalar(
                select(func.count()).select_from(Order).where(Order.pack == order_queries.CREDITS_PACK)
            )
            assert orders == 2
            debits = await session.execute(select(LedgerEntry.delta).where(LedgerEntry.reason == LedgerReason.RESERVE))
            assert sorted(debits.scalars()) == [-7, -7]  # one pack per seven credits, never more


async def test_the_pack_picker_spends_a_balance_that_covers_a_pack(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            tg_user, user, _avatar_id = await _user_with_balance(app, fake_telegram)
            await tg_user.send_command("/start")
            await tg_user.wait_reply(lambda m: "Use my previous photos" in str(m.buttons))
            await tg_user.click("Use my previous photos")
            await tg_user.wait_reply(lambda m: any("Professional" in b["text"] for b in m.buttons))
            await tg_user.click("Professional")
            picker = await tg_user.wait_reply(lambda m: "How many portraits" in m.content)
            assert "You have 7 credits" in picker.content
            labels = [b["text"] for b in picker.buttons]
            assert "7 photos — use 7 credits, no payment" in labels
            assert not any("use 15" in label or "use 23" in label for label in labels)  # not covered: paid
            await tg_user.click("use 7 credits")
            await tg_user.wait_reply(lambda m: "7 portraits are queued" in m.content, timeout=15)
            jobs = await _jobs_of(app, user.id)
            assert len(jobs) == 1
            done = await _until(app, jobs[-1].id, (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED))
            assert done.status == JobStatus.COMPLETED
            assert await _balance(app, user.id) == 0
            assert not fake_telegram.calls("sendInvoice")


@pytest.mark.parametrize("gone", ["rows", "files"])
async def test_missing_selfies_fail_the_job_once_and_never_touch_a_provider(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, gone: str
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        async with running_app(_settings(fake_telegram, sqlite_url, tmp_path, kie)) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p23")
            async with app.sessionmaker() as session:
                job = await session.get(GenerationJob, job_id)
                assert job is not None
                photos = (
                    await session.execute(select(ReferencePhoto).where(ReferencePhoto.avatar_id == job.avatar_id))
                ).scalars()
                for photo in list(photos):
                    await app.files.delete(photo.storage_key)
                    if gone == "rows":
                        await session.delete(photo)
                await session.commit()
            app.signals.job_queued()
            failed = await _until(app, job_id, (JobStatus.FAILED, JobStatus.COMPLETED, JobStatus.PARTIAL))
            assert failed.status == JobStatus.FAILED
            notice = await user.wait_reply(lambda m: "selfies are no longer stored" in m.content, timeout=15)
            assert "23 credits are back" in notice.content
            await asyncio.sleep(2.0)  # every task's submit has run by now; none may tell or credit again
            told = [m for m in fake_telegram.sent_messages(user.id) if "selfies are no longer stored" in m.content]
            assert len(told) == 1
            assert await _released(app, job_id) == 23 and await _balance(app, failed.user_id) == 23
            assert not kie.tasks and not kie.uploads  # no provider call at all
            assert set(app.engine_service.breaker_states().values()) == {"closed"}
            async with app.sessionmaker() as session:
                attempts = await session.execute(
                    select(func.max(func.coalesce(GenerationJob.photos_failed, 0))).where(GenerationJob.id == job_id)
                )
                assert attempts.scalar_one() == 0  # no portrait counted as a provider's failure
            async with httpx.AsyncClient() as client:
                health = await client.get(f"http://127.0.0.1:{app.settings.WEB_PORT}/healthz")
            assert health.status_code == 200, health.text
