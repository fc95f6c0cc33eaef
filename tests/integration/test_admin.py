"""Issue 7, admin commands, end to end: the real application polls the fake Bot API; an admin (in
ADMIN_IDS) and ordinary users talk to it; answers are checked against data seeded in the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import Application
from bot.callbacks import AdminUserAction, AdminUserCb
from storage import ledger
from storage.models import (
    AuditLog,
    Event,
    GenerationJob,
    GenerationTask,
    LedgerEntry,
    Order,
    Payment,
    User,
    UserBan,
)
from studio.generation import claim_key
from studio.states import JobStatus, PaymentStatus, TaskStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.harness import app_settings, running_app

ADMIN_ID = 900_001
REPLY = 10.0


def settings_for(fake: FakeTelegram, database_url: str, tmp_path: Path, **overrides: Any) -> Any:
    return app_settings(fake, database_url, tmp_path / "files", ADMIN_IDS=str(ADMIN_ID), **overrides)


def containing(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: fragment in message.content


async def ask(user: FakeUser, command: str, args: str | None = None, expect: str | None = None) -> ChatMessage:
    await user.send_command(command, args)
    return await user.wait_reply(containing(expect) if expect else None, timeout=REPLY)


async def audit_count(app: Application) -> int:
    async with app.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(AuditLog))).scalar_one())


# ---------------------------------------------------------------- non-admins


async def test_admin_commands_do_not_exist_for_non_admins(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with running_app(settings_for(fake_telegram, sqlite_url, tmp_path)) as app:
        stranger = fake_telegram.user(500_001, language_code="en", username="stranger")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=500_002)
        unknown = (await ask(stranger, "/nosuchcommand")).content
        assert "didn't get that" in unknown
        commands = [
            ("/stats", None),
            ("/stats", "7d"),
            ("/queue", None),
            ("/job", str(job_id)),
            ("/user", "500002"),
            ("/grant", "500001 50"),
            ("/refund", "1"),
            ("/retry", str(job_id)),
            ("/ban", "500002"),
            ("/unban", "500002"),
            ("/provider", None),
            ("/provider", "pause kie"),
            ("/broadcast", None),
            ("/broadcast", "stop"),
            ("/admin", None),
        ]
        for command, args in commands:
            reply = await ask(stranger, command, args)
            assert reply.content == unknown, (command, args, reply.content)
            assert reply.reply_markup is None
        # A forged admin button is a stale button like any other, and grants nothing.
        await stranger.press_button(1, AdminUserCb(action=AdminUserAction.GRANT, user_id=1, photos=10).pack())
        await stranger.wait_reply(timeout=REPLY)
        async with app.sessionmaker() as session:
            me = (await session.execute(select(User).where(User.telegram_id == stranger.id))).scalar_one()
            assert await ledger.balance(session, me.id) == 0
            job = await session.get(GenerationJob, job_id)
            assert job is not None and job.status == JobStatus.QUEUED
        assert await audit_count(app) == 0


# ---------------------------------------------------------------- /stats


async def seed_stats_data(app: Application) -> None:
    """Known figures: inside the last 7 days unless named old (40 days ago)."""
    now = datetime.now(UTC)
    day, old = now - timedelta(days=1), now - timedelta(days=40)
    async with app.sessionmaker() as session:
        users = [
            User(telegram_id=700_000 + index, first_name=f"U{index}", language="en", created_at=when, last_seen_at=when)
            for index, when in enumerate([day, day, day, old])
        ]
        session.add_all(users)
        await session.flush()
        u1, u2, u3, u_old = users

        def order(user: User, currency: str, amount: int, paid_at: datetime) -> Order:
            return Order(
                user_id=user.id,
                style="professional",
                pack="p7",
                photos=7,
                currency=currency,
                amount=amount,
                status="paid",
                created_at=paid_at,
                paid_at=paid_at,
            )

        o1, o2, o_old = (
            order(u1, "RUB", 49_000, day),
            order(u2, "XTR", 250, now - timedelta(days=2)),
            order(u_old, "RUB", 99_000, old),
        )
        session.add_all([o1, o2, o_old])
        await session.flush()
        session.add_all(
            [
                Payment(
                    order_id=o1.id,
                    user_id=u1.id,
                    provider="yookassa",
                    provider_payment_id="pay-1",
                    idempotence_key="k1",
                    amount=49_000,
                    currency="RUB",
                    status=PaymentStatus.SUCCEEDED,
                    created_at=day,
                    updated_at=day,
                ),
                Payment(
                    order_id=o2.id,
                    user_id=u2.id,
                    provider="stars",
                    provider_payment_id="stx-2",
                    idempotence_key="k2",
                    amount=250,
                    currency="XTR",
                    status=PaymentStatus.REFUNDED,
                    created_at=day,
                    updated_at=day,
                ),
            ]
        )

        def job(user: User, status: str, created: datetime, first: float | None, done: float | None) -> GenerationJob:
            return GenerationJob(
                user_id=user.id,
                chat_id=user.telegram_id,
                style="professional",
                priority=100,
                status=status,
                photos_total=3,
                created_at=created,
                started_at=created,
                first_image_at=created + timedelta(seconds=first) if first is not None else None,
                finished_at=created + timedelta(seconds=done) if done is not None else None,
            )

        j1 = job(u1, JobStatus.COMPLETED, day, 60, 600)
        j2 = job(u2, JobStatus.PARTIAL, now - timedelta(days=2), 120, 900)
        j3 = job(u3, JobStatus.QUEUED, now - timedelta(hours=1), None, None)
        j_old = job(u_old, JobStatus.COMPLETED, old, 5, 50)
        session.add_all([j1, j2, j3, j_old])
        await session.flush()

        def task(
            job_row: GenerationJob,
            position: int,
            status: str,
            provider: str,
            *,
            index: int = 0,
            attempts: int = 1,
            score: float | None = None,
            redos: int = 0,
            cost: int = 0,
        ) -> GenerationTask:
            return GenerationTask(
                job_id=job_row.id,
                position=position,
                prompt_index=position,
                seed=position,
                claim_key=claim_key(job_row.priority, job_row.created_at, job_row.id, position),
                provider=provider,
                provider_index=index,
                status=status,
                attempts=attempts,
                identity_score=score,
                identity_redos=redos,
                cost_micros=cost,
            )

        session.add_all(
            [
                task(j1, 0, TaskStatus.DELIVERED, "kie", score=0.8, redos=1, cost=40_000),
                task(j1, 1, TaskStatus.DELIVERED, "kie", score=0.6, cost=40_000),
                task(j1, 2, TaskStatus.DELIVERED, "kie", attempts=2, cost=80_000),
                task(j2, 0, TaskStatus.DELIVERED, "replicate", index=1, cost=150_000),
                task(j2, 1, TaskStatus.DELIVERED, "replicate", index=1, cost=150_000),
                task(j2, 2, TaskStatus.SKIPPED, "kie", cost=40_000),
                *(task(j_old, p, TaskStatus.DELIVERED, "kie", score=0.1, cost=30_000) for p in range(3)),
            ]
        )
        session.add_all(
            [
                LedgerEntry(user_id=u3.id, delta=5, reason="grant", reference="grant:s1", created_at=day),
                LedgerEntry(user_id=u2.id, delta=1, reason="release", reference="task:s1", created_at=day),
                LedgerEntry(user_id=u2.id, delta=-3, reason="refund", reference="refund:s1", created_at=day),
                LedgerEntry(user_id=u_old.id, delta=100, reason="grant", reference="grant:old", created_at=old),
            ]
        )

        def event(name: str, when: datetime = day, **properties: Any) -> Event:
            return Event(name=name, properties=properties, created_at=when)

        session.add_all(
            [
                event("photo_rejected", reason="blurry"),
                event("photo_rejected", reason="blurry"),
                event("photo_rejected", reason="no_face"),
                event("photo_rejected", old, reason="blurry"),
                event("generation_started", provider="kie", model="m"),
                event("generation_started", provider="replicate", model="m"),
                event("generation_failed", error_type="timeout"),
                event("generation_completed", duration_ms=1000, cost=0.04),  # cost: the tasks' figures count
                event("generation_completed", duration_ms=1000),
                event("reminder_sent", cause="unpaid_order"),
                event("reminder_sent", cause="unpaid_order"),
                event("reminder_sent", cause="idle_credits"),
                event("reminder_sent", old, cause="idle_credits"),
            ]
        )
        await session.commit()


@pytest.mark.ledger_unbalanced(reason="the seeded ledger lines are figures for /stats, not money any flow could move")
async def test_stats_reports_the_seeded_figures(fake_telegram: FakeTelegram, database_url: str, tmp_path: Path) -> None:
    async with running_app(settings_for(fake_telegram, database_url, tmp_path, RUB_PER_USD="100")) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        await ask(admin, "/help")  # registers the admin: one more new user
        await seed_stats_data(app)
        text = (await ask(admin, "/stats", "7d", expect="Stats: 7d")).content
        expected = [
            "New users: 4",
            "Paid orders: 2; revenue: 490 ₽, 250 ⭐; refunds: 250 ⭐",
            "Jobs: completed 1, partial 1, queued 1",
            "Photos: done 5, skipped 1, success 83.3%",
            "Time to first image p50/p95: 1m 00s / 2m 00s",
            "Time to full pack p50/p95: 10m 00s / 15m 00s",
            # Revenue (490 ₽ at 100 ₽/USD; the Stars were refunded) is shared out by portraits delivered.
            "kie — 3 done (60.0%), failures 25.0%, retried 1, fell back 0, cost $0.20 ($0.0667 per portrait), "
            "revenue minus cost $2.74",
            "replicate — 2 done (40.0%), failures 0.0%, retried 0, fell back 2, cost $0.30 ($0.15 per portrait), "
            "revenue minus cost $1.66",
            "Jobs started by provider: kie 1, replicate 1",
            "Failures by type: timeout 1",
            "Rejected selfies: blurry 2, no_face 1",
            "Credits: granted 5, returned 1, taken by refunds 3",
            "Provider cost: $0.50; per delivered portrait: $0.10",  # the skipped portrait's create counts
            "Revenue minus refunds and provider cost: $4.40",
            "Identity score, average: 0.700; portraits redone: 20.0%",
            "Reminders sent: unpaid_order 2, idle_credits 1",
        ]
        for line in expected:
            assert line in text, (line, text)
        wider = (await ask(admin, "/stats", "30d", expect="Stats: 30d")).content
        assert "New users: 4" in wider and "Photos: done 5" in wider  # the 40-day-old data stays out
        await ask(admin, "/stats", "1y", expect="Usage: /stats")
        async with app.sessionmaker() as session:
            actions = list((await session.execute(select(AuditLog.action, AuditLog.target))).all())
        assert ("stats", "7d") in actions and ("stats", "30d") in actions


# ---------------------------------------------------------------- /queue /job /user /grant /cancel /ban


async def test_queue_job_user_grant_and_cancel(fake_telegram: FakeTelegram, database_url: str, tmp_path: Path) -> None:
    async with running_app(settings_for(fake_telegram, database_url, tmp_path)) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        customer = fake_telegram.user(600_001, language_code="en", username="Customer_One")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=customer.id)
        await ask(customer, "/help")  # stores the username (the seed knows none)

        queue = (await ask(admin, "/queue", expect="Queue")).content
        assert "queued/p100 1" in queue and "Oldest waiting:" in queue

        job_text = await ask(admin, "/job", str(job_id), expect=f"Job #{job_id}")
        assert "queued" in job_text.content and "photos 0/23" in job_text.content
        assert {button["text"] for button in job_text.buttons} == {
            "🔁 Retry failed photos",
            "✖️ Cancel",
            "📤 Resend to user",
        }
        await ask(admin, "/job", "999999", expect="Job #999999 not found")

        profile = await ask(admin, "/user", "@customer_one", expect="Balance: 0")
        assert f"tg {customer.id}" in profile.content and "+23 purchase" in profile.content
        assert "-23 reserve" in profile.content

        # The same button twice, and a redelivered /grant update: each grant happens once.
        await admin.click("Grant 5 photos")
        await admin.wait_reply(containing("Granted 5 photos"), timeout=REPLY)
        await admin.click("Grant 5 photos")
        await admin.wait_reply(containing("already made"), timeout=REPLY)
        update = await admin.send_command("/grant", f"{customer.id} 3 goodwill")
        await admin.wait_reply(containing("Balance: 8"), timeout=REPLY)
        await fake_telegram._deliver("message", update["message"])
        await admin.wait_reply(containing("already made"), timeout=REPLY)
        await ask(admin, "/grant", f"{customer.id} 0", expect="Usage: /grant")
        await ask(admin, "/grant", "@nobody 3", expect="User @nobody not found")

        await ask(admin, "/cancel", str(job_id), expect=f"Job #{job_id} cancelled")
        await ask(admin, "/cancel", str(job_id), expect="cannot be cancelled")
        async with app.sessionmaker() as session:
            user_row = (await session.execute(select(User).where(User.telegram_id == customer.id))).scalar_one()
            assert await ledger.balance(session, user_row.id) == 8 + 23
            grants = (await session.execute(select(LedgerEntry).where(LedgerEntry.reason == "grant"))).scalars().all()
            assert sorted(entry.delta for entry in grants) == [3, 5]
            actions = [row.action for row in (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars()]
            admins = set((await session.execute(select(AuditLog.admin_telegram_id))).scalars())
        assert actions.count("grant") == 4 and actions.count("cancel") == 2
        assert {"queue", "job", "user"} <= set(actions) and admins == {ADMIN_ID}
        # An admin is a user too: a bare /cancel is the ordinary command.
        assert "Usage" not in (await ask(admin, "/cancel")).content


async def test_ban_gets_one_polite_message_and_nothing_else(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with running_app(settings_for(fake_telegram, sqlite_url, tmp_path)) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        user = fake_telegram.user(600_010, language_code="en", username="rowdy")
        await ask(user, "/help")
        await ask(admin, "/ban", "@rowdy", expect="is banned")
        await ask(admin, "/ban", "600010", expect="already is in that state")
        notice = await ask(user, "/start")
        assert "access to the service is restricted" in notice.content
        before = len(fake_telegram.sent_messages(user.id))
        await user.send_command("/start")
        await user.send_text("hello?")
        query_id = await user.press_button(notice.message_id, "m:new")

        def answers() -> list[Any]:
            return [
                call
                for call in fake_telegram.calls("answerCallbackQuery")
                if str(call.params.get("callback_query_id")) == query_id
            ]

        await fake_telegram.wait_until(lambda: bool(answers()), timeout=REPLY)
        assert not answers()[0].params.get("text")  # the spinner stops; no words, no alert
        await asyncio.sleep(0.5)
        assert len(fake_telegram.sent_messages(user.id)) == before
        async with app.sessionmaker() as session:
            row = (await session.execute(select(User).where(User.telegram_id == user.id))).scalar_one()
            ban = await session.get(UserBan, row.id)
            assert ban is not None and ban.banned_by == ADMIN_ID and ban.notified_at is not None
        await ask(admin, "/unban", "@rowdy", expect="is unbanned")
        assert "How it works" in (await ask(user, "/help")).content


async def test_stats_shows_what_a_pack_cost_at_known_prices(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """A real pack through the engine and fake Kie at $0.05 an image, paid 250 Stars at 50 Stars/USD."""
    kie = FakeKie(create_limit=20, create_window_seconds=1.0, latency=(0.02, 0.05))
    await kie.start()
    try:
        settings = settings_for(
            fake_telegram,
            sqlite_url,
            tmp_path,
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1, KIE_PRICE_PER_IMAGE="0.05", STARS_PER_USD="50"),
        )
        async with running_app(settings) as app:
            job_id = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()

            async def delivered() -> bool:
                return (await job_row(app.sessionmaker, job_id)).status == JobStatus.COMPLETED

            async with asyncio.timeout(60):
                while not await delivered():
                    await asyncio.sleep(0.05)
            admin = fake_telegram.user(ADMIN_ID, language_code="en")
            text = (await ask(admin, "/stats", "7d", expect="Stats: 7d")).content
            async with app.sessionmaker() as session:
                [pack] = (await session.execute(select(Event).where(Event.name == "pack_completed"))).scalars()
                costs = (await session.execute(select(GenerationTask.cost_micros, GenerationTask.model))).all()
    finally:
        await kie.close()
    assert sorted(costs) == [(50_000, "nano-banana-2")] * 7  # one create each, at the configured price
    assert pack.properties["cost"] == 0.35
    for line in [
        "Paid orders: 1; revenue: 250 ⭐; refunds: 0",
        "kie — 7 done (100.0%), failures 0.0%, retried 0, fell back 0, cost $0.35 ($0.05 per portrait), "
        "revenue minus cost $4.65",
        "Provider cost: $0.35; per delivered portrait: $0.05",
        "Revenue minus refunds and provider cost: $4.65",  # 250 ⭐ / 50 = $5.00, minus 7 × $0.05
    ]:
        assert line in text, (line, text)
