"""/broadcast over real HTTP: preview → segment → confirm → background sends through the shared
outgoing limiter, skipping users who blocked the bot, marking new 403s as blocked, a final report,
a stored log, and a stop that takes effect at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from bot.app import Application
from storage.models import AuditLog, Broadcast, BroadcastRecipient, User, utcnow
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.harness import running_app
from tests.integration.test_admin import ADMIN_ID, ask, containing, settings_for

TEXT = "Spring sale & 20% off"
SENT_TEXT = "Spring sale &amp; 20% off"  # as the bot sends it: HTML, like every text it sends


async def add_users(app: Application, fake: FakeTelegram, ids: range, **flags: bool) -> list[FakeUser]:
    users = [fake.user(telegram_id, language_code="en") for telegram_id in ids]
    async with app.sessionmaker() as session:
        session.add_all(
            User(
                telegram_id=telegram_id,
                first_name="B",
                language="en",
                created_at=utcnow(),
                last_seen_at=utcnow(),
                **flags,
            )
            for telegram_id in ids
        )
        await session.commit()
    return users


def broadcast_times(fake: FakeTelegram, after: int) -> list[tuple[float, int | None]]:
    """(arrival, chat) of the broadcast's sends: calls after index ``after`` (the preview came before)."""
    return [
        (call.time, call.chat_id)
        for call in fake.calls()[after:]
        if call.method == "sendMessage" and call.params.get("text") == SENT_TEXT and call.chat_id is not None
    ]


async def compose(admin: FakeUser, segment: str) -> None:
    await ask(admin, "/broadcast", expect="Send the broadcast text")
    await admin.send_text(TEXT)
    await admin.wait_reply(containing("Who should get it"), timeout=10)
    assert any(m.content == TEXT for m in admin.messages)  # the preview is the message itself
    await admin.click(segment)
    await admin.wait_reply(containing("Send it?"), timeout=10)


async def test_broadcast_respects_the_rate_limit_skips_blocked_users_and_reports(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    rate = 5
    settings = settings_for(fake_telegram, sqlite_url, tmp_path, TELEGRAM_GLOBAL_RATE=rate)
    async with running_app(settings) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        await ask(admin, "/help")
        reachable = await add_users(app, fake_telegram, range(800_000, 800_012))
        blocked = await add_users(app, fake_telegram, range(800_100, 800_102), is_blocked=True)
        banned = await add_users(app, fake_telegram, range(800_200, 800_201), is_banned=True)
        newly_blocked = reachable[-1]
        fake_telegram.inject("sendMessage", status=403, chat_id=newly_blocked.id, times=1)

        await compose(admin, "Everyone")
        assert "15 recipients" in admin.messages[-1].content  # admin + 12 + 2 blocked; never the banned
        mark = len(fake_telegram.calls())
        await admin.click("Send")
        report = await admin.wait_reply(containing("finished"), timeout=30)
        assert "sent 12, blocked 3, failed 0 (of 15)" in report.content

        sends = broadcast_times(fake_telegram, mark)
        chats = [chat for _, chat in sends]
        assert sorted(chats) == sorted([ADMIN_ID, *(user.id for user in reachable)])  # incl. the one 403
        assert not {user.id for user in blocked + banned} & set(chats)
        # The outgoing limiter is a bucket of ``rate`` draining at ``rate``/s: any k sends in a row
        # span at least (k - rate) / rate seconds. These are arrival times at the fake: on a loaded
        # machine one request can reach it late and the next on time (CI saw 60 ms, and 160 ms on a
        # slow hour), hence the slack; unpaced, the 15 sends would arrive within a few tens of
        # milliseconds, where these windows need up to 2 s.
        slack = 0.3
        times = sorted(moment for moment, _ in sends)
        for first in range(len(times)):
            for last in range(first + rate, len(times)):
                needed = (last - first + 1 - rate) / rate
                assert times[last] - times[first] >= needed - slack, (first, last, times)
        assert times[-1] - times[0] >= (len(times) - rate) / rate - slack

        async with app.sessionmaker() as session:
            marked = (
                await session.execute(select(User.is_blocked).where(User.telegram_id == newly_blocked.id))
            ).scalar_one()
            assert marked is True
            rows = dict(
                (
                    await session.execute(
                        select(BroadcastRecipient.status, func.count()).group_by(BroadcastRecipient.status)
                    )
                ).all()
            )
            assert rows == {"sent": 12, "blocked": 3}
            stored = (await session.execute(select(Broadcast))).scalar_one()
            assert (stored.status, stored.sent, stored.blocked, stored.failed, stored.total) == (
                "finished",
                12,
                3,
                0,
                15,
            )
            actions = set((await session.execute(select(AuditLog.action))).scalars())
            assert {"broadcast_draft", "broadcast_start"} <= actions
        await admin.click("Send")  # the confirm button again: no second broadcast
        await admin.wait_reply(containing("already started"), timeout=10)


async def test_broadcast_to_a_segment_can_be_stopped(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(fake_telegram, sqlite_url, tmp_path, TELEGRAM_GLOBAL_RATE=2)
    async with running_app(settings) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        await ask(admin, "/help")
        await add_users(app, fake_telegram, range(810_000, 810_020))
        async with app.sessionmaker() as session:  # a Russian speaker is outside the English segment
            session.add(User(telegram_id=810_999, language="ru", created_at=utcnow(), last_seen_at=utcnow()))
            await session.commit()
        fake_telegram.user(810_999)
        await compose(admin, "English language")
        assert "21 recipients" in admin.messages[-1].content
        mark = len(fake_telegram.calls())
        await admin.click("Send")
        await fake_telegram.wait_until(lambda: len(broadcast_times(fake_telegram, mark)) >= 3, timeout=10)
        await admin.click("Stop")
        stopped = await admin.wait_reply(containing("stopped"), timeout=10)
        count = len(broadcast_times(fake_telegram, mark))
        assert f"sent {count}," in stopped.content
        await asyncio.sleep(1.5)  # at 2/s, three more would have gone out by now
        assert len(broadcast_times(fake_telegram, mark)) == count < 21
        assert 810_999 not in {chat for _, chat in broadcast_times(fake_telegram, mark)}
        async with app.sessionmaker() as session:
            stored = (await session.execute(select(Broadcast))).scalar_one()
            assert stored.status == "stopped" and stored.sent == count
        await ask(admin, "/broadcast", "stop", expect="No broadcast is running")


async def test_a_running_broadcast_resumes_after_a_restart_without_resending(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(fake_telegram, sqlite_url, tmp_path)
    async with running_app(settings) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        await ask(admin, "/help")
        users = await add_users(app, fake_telegram, range(820_000, 820_004))
        async with app.sessionmaker() as session:
            # As a process that died mid-broadcast left it: running, the first user already sent to.
            first = (await session.execute(select(User).where(User.telegram_id == users[0].id))).scalar_one()
            broadcast = Broadcast(
                created_by=ADMIN_ID, text=SENT_TEXT, segment="lang_en", status="running", total=5, sent=1
            )
            session.add(broadcast)
            await session.flush()
            session.add(BroadcastRecipient(broadcast_id=broadcast.id, user_id=first.id, status="sent"))
            await session.commit()
    mark = len(fake_telegram.calls())
    async with running_app(settings):
        report = await admin.wait_reply(containing("finished"), timeout=15)
        assert "sent 5, blocked 0, failed 0 (of 5)" in report.content
        chats = sorted(chat for _, chat in broadcast_times(fake_telegram, mark))
        assert chats == sorted([ADMIN_ID, *(user.id for user in users[1:])])  # the first one is not sent twice
