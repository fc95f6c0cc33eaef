"""Gentle reminders over real HTTP (the app's own pass, the fake Telegram), time moved by the pass's
``now`` instead of waited for: exactly the expected reminders go out, with their buttons; none at
night (it waits for the morning), none twice, none to a user who blocked the bot (found out at send
time: marked blocked) or turned reminders off in /settings; /stats counts what was sent."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from bot.app import Application
from bot.callbacks import AgainCb, OrderAction, OrderCb, ResultsAction, ResultsCb
from scheduler.reminders import ReminderReport
from storage import ledger
from storage.models import Avatar, LedgerEntry, Order, Reminder, User, utcnow
from studio.credits import grant_line
from studio.reminders import ReminderCause
from studio.states import AvatarStatus
from tests.engine_support import seed_unpaid_order
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.harness import app_settings, callback_answer, running_app
from tests.integration.test_retention import seed_user

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


async def _unpaid_order(app: Application, user: FakeUser, language: str, created_at: datetime) -> int:
    order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
    async with app.sessionmaker() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(created_at=created_at))
        await session.execute(update(User).where(User.telegram_id == user.id).values(language=language))
        await session.commit()
    return order_id


async def _idle_credits(app: Application, user: FakeUser, credits: int, granted_at: datetime, **flags: bool) -> int:
    """A user with ``credits`` granted at ``granted_at`` and a ready photo set; returns the set's id."""
    async with app.sessionmaker() as session:
        row = User(telegram_id=user.id, language="en", **flags)
        session.add(row)
        await session.flush()
        avatar = Avatar(user_id=row.id, status=AvatarStatus.READY, created_at=granted_at, ready_at=granted_at)
        session.add(avatar)
        await ledger.record(session, row.id, grant_line(f"reminder-test-{user.id}", credits, "test"))
        await session.execute(update(LedgerEntry).where(LedgerEntry.user_id == row.id).values(created_at=granted_at))
        await session.flush()
        await session.commit()
        return avatar.id


def _reminders(user: FakeUser) -> list[str]:
    return [m.content for m in user.messages if m.from_bot and "/settings" in m.content]


def _callbacks(user: FakeUser) -> list[str]:
    return [b["callback_data"] for m in user.messages if m.from_bot and "/settings" in m.content for b in m.buttons]


def _buttons(user: FakeUser, message_id: int) -> list[str]:
    return [b["text"] for m in user.messages if m.message_id == message_id for b in m.buttons]


def _sent(report: ReminderReport) -> dict[str, int]:
    return dict(report.sent)


async def test_reminders_go_once_by_day_to_reachable_users_only(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, database_url, tmp_path / "files", webhook=True)
    async with running_app(settings) as app:
        # 10:00 UTC of a real day: 13:00 in Moscow, day for every language.
        noon = utcnow().replace(hour=10, minute=0, second=0, microsecond=0)
        payer = fake_telegram.user(language_code="ru")
        order_id = await _unpaid_order(app, payer, "ru", noon - timedelta(minutes=30))
        quiet_payer = fake_telegram.user(language_code="en")  # turns reminders off below
        await _unpaid_order(app, quiet_payer, "en", noon - 2 * HOUR)
        night_owl = fake_telegram.user(language_code="ru")  # orders at 22:00 in Moscow
        await _unpaid_order(app, night_owl, "ru", noon + 9 * HOUR)
        idle = fake_telegram.user(language_code="en")
        avatar_id = await _idle_credits(app, idle, 5, noon - 4 * DAY)
        blocked = fake_telegram.user(language_code="en")  # known to have blocked the bot
        await _idle_credits(app, blocked, 5, noon - 4 * DAY, is_blocked=True)
        leaver = fake_telegram.user(language_code="en")  # blocked the bot since; Telegram says so at send
        await _idle_credits(app, leaver, 5, noon - 4 * DAY)
        await leaver.block_bot()
        keeper = fake_telegram.user(language_code="ru")  # portraits made 84 of 90 days ago
        async with app.sessionmaker() as session:
            kept = await seed_user(
                session, app.files, telegram_id=keeper.id, avatar_created=noon - 85 * DAY,
                job_finished=noon - 84 * DAY, stored_at=noon - 84 * DAY,
            )  # fmt: skip
            await session.execute(update(User).where(User.telegram_id == keeper.id).values(language="ru"))
            # 80 days: not yet a week from deletion; 91 days: housekeeping deletes them within the hour.
            early, late = fake_telegram.user(), fake_telegram.user()
            for early_or_late, age in ((early, 80), (late, 91)):
                await seed_user(
                    session, app.files, telegram_id=early_or_late.id, avatar_created=noon - 92 * DAY,
                    job_finished=noon - age * DAY, stored_at=noon - age * DAY,
                )  # fmt: skip
            await session.commit()

        # /settings: the switch reads "on"; one tap turns it off, and a second tap of the same old
        # button sets "off" again rather than flipping it back.
        await quiet_payer.send_command("/settings")
        menu = await quiet_payer.wait_reply(lambda m: bool(m.buttons), timeout=10)
        assert [b["text"] for b in menu.buttons] == ["🔔 Reminders: on"]
        (switch,) = [b["callback_data"] for b in menu.buttons]
        for _ in range(2):
            answer = await callback_answer(fake_telegram, await quiet_payer.press_button(menu.message_id, switch))
            assert answer["text"] == "Reminders are off."
        await fake_telegram.wait_until(lambda: _buttons(quiet_payer, menu.message_id) == ["🔕 Reminders: off"])

        # Noon: the credits and the originals are due; the order of 30 minutes ago is not yet.
        first = await app.reminders.run(noon)
        assert _sent(first) == {ReminderCause.IDLE_CREDITS: 1, ReminderCause.ORIGINALS_EXPIRING: 1}
        assert first.blocked == 1 and first.failed == 0
        (credits,) = _reminders(idle)
        assert "5 credits on your balance" in credits
        assert _callbacks(idle) == [AgainCb(avatar_id=avatar_id).pack()]
        (originals,) = _reminders(keeper)
        assert "через 6 дней" in originals
        assert kept.job_id is not None
        assert _callbacks(keeper) == [ResultsCb(job_id=kept.job_id, action=ResultsAction.ORIGINALS).pack()]
        assert _reminders(blocked) == _reminders(leaver) == _reminders(quiet_payer) == _reminders(payer) == []
        assert _reminders(early) == _reminders(late) == []
        async with app.sessionmaker() as session:
            leaver_row = (await session.execute(select(User).where(User.telegram_id == leaver.id))).scalar_one()
            assert leaver_row.is_blocked, "a refusal because of a block marks the user blocked"

        # An hour later the order is due; nothing else goes a second time.
        second = await app.reminders.run(noon + HOUR)
        assert _sent(second) == {ReminderCause.UNPAID_ORDER: 1} and second.blocked == 0
        (pay,) = _reminders(payer)
        assert "Ваш заказ на 7 портретов ждёт оплаты" in pay
        assert _callbacks(payer) == [OrderCb(order_id=order_id, action=OrderAction.PAY).pack()]
        # The button is the order summary's own: it goes on to the payment (Stars: the invoice).
        await payer.click("Оплатить")
        invoice = await payer.wait_reply(lambda m: m.kind == "invoice", timeout=10)
        assert invoice.invoice_payload
        third = await app.reminders.run(noon + 2 * HOUR)
        assert _sent(third) == {} and third.blocked == 0
        assert len(_reminders(idle)) == len(_reminders(keeper)) == len(_reminders(payer)) == 1

        # 23:05 in Moscow: the night owl's order is due, but it is night there; it waits, not dropped.
        night = await app.reminders.run(noon + 10 * HOUR + timedelta(minutes=5))
        assert _sent(night) == {} and night.waiting == 1
        assert _reminders(night_owl) == []
        # 09:00 in Moscow; two processes run the pass at once: the claim lets exactly one of them send.
        passes = await asyncio.gather(*(app.reminders.run(noon + 20 * HOUR) for _ in range(2)))
        assert sum((report.sent for report in passes), Counter()) == {ReminderCause.UNPAID_ORDER: 1}
        # It is night for English at 06:00 UTC: a claimed reminder listed as due again would wait here.
        assert [report.waiting for report in passes] == [0, 0]
        assert len(_reminders(night_owl)) == 1
        assert _reminders(quiet_payer) == [], "reminders turned off in /settings stay off"

        async with app.sessionmaker() as session:
            rows = (await session.execute(select(Reminder.cause, Reminder.status))).all()
        assert sorted(rows) == sorted(
            [
                (ReminderCause.IDLE_CREDITS, "sent"),
                (ReminderCause.IDLE_CREDITS, "blocked"),
                (ReminderCause.ORIGINALS_EXPIRING, "sent"),
                (ReminderCause.UNPAID_ORDER, "sent"),
                (ReminderCause.UNPAID_ORDER, "sent"),
            ]
        )
        stats = await app.admin.stats(0, "today")
        assert stats.stats.reminders_by_cause == {"idle_credits": 1, "originals_expiring": 1, "unpaid_order": 2}
