"""BroadcastService on a real SQLite database (a migrated copy per test), with the in-process
RecordingBroadcastSender for the chat and RecordingNotifier for the admin's report. Pacing and
Telegram's answers run end to end in tests/integration/test_admin_broadcast.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.broadcast import Blocked, BroadcastService, Failed, RecordingBroadcastSender
from scheduler.notices import BroadcastReport
from scheduler.notify import RecordingNotifier
from storage import broadcasts as queries
from storage.broadcasts import BroadcastStatus, RecipientStatus
from storage.db import create_engine, create_sessionmaker
from storage.models import Broadcast, BroadcastRecipient, User

ADMIN_ID = 900_001


@dataclass
class Rig:
    sessionmaker: async_sessionmaker[AsyncSession]
    sender: RecordingBroadcastSender
    notifier: RecordingNotifier
    service: BroadcastService

    def another_process(self) -> BroadcastService:
        """A second service on the same database, as a restarted process builds it."""
        return BroadcastService(self.sessionmaker, sender=self.sender, notifier=self.notifier, batch_size=2)

    async def users(self, *telegram_ids: int, language: str = "en", **flags: bool) -> list[int]:
        async with self.sessionmaker() as session:
            users = [User(telegram_id=one, language=language, **flags) for one in telegram_ids]
            session.add_all(users)
            await session.commit()
            return [user.id for user in users]

    async def draft(self, text: str = "Spring <b>sale</b>", photo: str | None = None, segment: str = "all") -> int:
        async with self.sessionmaker() as session:
            draft, _ = await queries.create_draft(session, ADMIN_ID, text, photo, source_message_id=1)
            assert await queries.set_segment(session, draft.id, segment) is not None
            await session.commit()
            return draft.id

    async def broadcast(self, broadcast_id: int) -> Broadcast:
        async with self.sessionmaker() as session:
            found = await session.get(Broadcast, broadcast_id)
            assert found is not None
            return found

    async def recipients(self, broadcast_id: int) -> dict[int, tuple[str, str | None]]:
        """telegram id → (status, error) of each recipient row."""
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(User.telegram_id, BroadcastRecipient.status, BroadcastRecipient.error)
                .join(User, User.id == BroadcastRecipient.user_id)
                .where(BroadcastRecipient.broadcast_id == broadcast_id)
            )
            return {telegram_id: (status, error) for telegram_id, status, error in rows.all()}

    async def blocked(self, telegram_id: int) -> bool:
        async with self.sessionmaker() as session:
            return bool(
                (await session.execute(select(User.is_blocked).where(User.telegram_id == telegram_id))).scalar_one()
            )


@pytest_asyncio.fixture
async def rig(sqlite_url: str) -> AsyncIterator[Rig]:
    engine = create_engine(sqlite_url)
    sessionmaker = create_sessionmaker(engine)
    sender, notifier = RecordingBroadcastSender(), RecordingNotifier()
    service = BroadcastService(sessionmaker, sender=sender, notifier=notifier, batch_size=2)
    try:
        yield Rig(sessionmaker, sender, notifier, service)
    finally:
        await service.close()
        await engine.dispose()


async def test_a_broadcast_reaches_its_audience_once_records_each_outcome_and_reports(rig: Rig) -> None:
    await rig.users(ADMIN_ID, 1, 2, 3)
    await rig.users(4, is_blocked=True)  # blocked the bot before: skipped, never tried
    await rig.users(5, is_banned=True)  # outside every audience
    await rig.users(6, 7)
    rig.sender.outcomes[6] = Blocked("Forbidden: bot was blocked by the user")
    rig.sender.outcomes[7] = Failed("Bad Request: chat not found")
    broadcast_id = await rig.draft()

    assert await rig.service.start(broadcast_id) is True
    await rig.service.wait(broadcast_id)

    # Batches of two: the audience is read again after each batch, and nobody comes twice.
    assert rig.sender.sent == [(chat, "Spring <b>sale</b>", None) for chat in (ADMIN_ID, 1, 2, 3)]
    assert await rig.recipients(broadcast_id) == {
        ADMIN_ID: ("sent", None),
        1: ("sent", None),
        2: ("sent", None),
        3: ("sent", None),
        4: ("blocked", "skipped: the user has blocked the bot"),
        6: ("blocked", "Forbidden: bot was blocked by the user"),
        7: ("failed", "Bad Request: chat not found"),
    }
    assert await rig.blocked(6) is True  # this send found out
    assert await rig.blocked(7) is False  # a failed send says nothing about a block
    stored = await rig.broadcast(broadcast_id)
    assert (stored.status, stored.sent, stored.blocked, stored.failed, stored.total) == ("finished", 4, 2, 1, 7)
    assert rig.notifier.told == [(ADMIN_ID, "en", BroadcastReport(broadcast_id, 4, 2, 1, 7))]


@pytest.mark.parametrize(("text", "caption"), [("New styles", "New styles"), ("", None)])
async def test_a_photo_broadcast_goes_as_the_photo_with_its_text_as_caption(
    rig: Rig, text: str, caption: str | None
) -> None:
    await rig.users(ADMIN_ID, 1)
    broadcast_id = await rig.draft(text, photo="PHOTO")

    await rig.service.start(broadcast_id)
    await rig.service.wait(broadcast_id)

    assert rig.sender.sent == [(ADMIN_ID, caption, "PHOTO"), (1, caption, "PHOTO")]


async def test_the_report_falls_back_to_russian_for_an_admin_who_never_wrote(rig: Rig) -> None:
    await rig.users(1)
    broadcast_id = await rig.draft()

    await rig.service.start(broadcast_id)
    await rig.service.wait(broadcast_id)

    assert rig.notifier.told == [(ADMIN_ID, "ru", BroadcastReport(broadcast_id, 1, 0, 0, 1))]


async def test_only_a_draft_starts(rig: Rig) -> None:
    await rig.users(ADMIN_ID, 1)
    broadcast_id = await rig.draft()

    assert await rig.service.start(broadcast_id) is True
    assert await rig.service.start(broadcast_id) is False  # the double tap
    await rig.service.wait(broadcast_id)
    assert await rig.service.start(broadcast_id) is False  # finished
    assert await rig.service.start(broadcast_id + 1) is False  # no such broadcast

    assert rig.sender.chats == [ADMIN_ID, 1]
    assert len(rig.notifier.told) == 1


async def test_a_stop_takes_effect_before_the_next_send(rig: Rig) -> None:
    await rig.users(ADMIN_ID, 1, 2, 3)
    broadcast_id = await rig.draft()

    async def stopped_elsewhere_during_the_first_send(chat_id: int) -> None:
        if chat_id == ADMIN_ID:  # another process's admin stops it while this send is in flight
            async with rig.sessionmaker() as session:
                await queries.move(session, broadcast_id, (BroadcastStatus.RUNNING,), BroadcastStatus.STOPPED)
                await session.commit()

    rig.sender.before_send = stopped_elsewhere_during_the_first_send
    await rig.service.start(broadcast_id)
    await rig.service.wait(broadcast_id)

    # The send in flight completes; the next one, in the same batch, does not start.
    assert rig.sender.chats == [ADMIN_ID]
    stored = await rig.broadcast(broadcast_id)
    assert (stored.status, stored.sent) == ("stopped", 1)
    assert rig.notifier.told == []  # only a finished broadcast reports


def _hold_the_first_send(rig: Rig) -> tuple[asyncio.Event, asyncio.Event]:
    """Sends wait until ``release`` is set; ``in_flight`` is set once one has started."""
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def hold(chat_id: int) -> None:
        in_flight.set()
        await release.wait()

    rig.sender.before_send = hold
    return in_flight, release


async def test_stop_returns_once_the_send_in_flight_is_counted(rig: Rig) -> None:
    await rig.users(ADMIN_ID, 1, 2)
    broadcast_id = await rig.draft()
    in_flight, release = _hold_the_first_send(rig)
    await rig.service.start(broadcast_id)
    await in_flight.wait()
    stopping = asyncio.create_task(rig.service.stop())
    async with asyncio.timeout(5):
        while (await rig.broadcast(broadcast_id)).status != BroadcastStatus.STOPPED:
            await asyncio.sleep(0.01)
    assert not stopping.done()  # it waits for the send in flight
    release.set()

    assert await stopping == [broadcast_id]
    stored = await rig.broadcast(broadcast_id)
    assert (stored.status, stored.sent) == ("stopped", 1)
    assert rig.sender.chats == [ADMIN_ID]
    assert await rig.service.stop() == []  # nothing is running any more


async def test_a_stop_that_gives_up_waiting_leaves_the_send_in_flight_to_finish(rig: Rig) -> None:
    await rig.users(ADMIN_ID, 1)
    broadcast_id = await rig.draft()
    in_flight, release = _hold_the_first_send(rig)
    rig.service.stop_wait_seconds = 0.05
    await rig.service.start(broadcast_id)
    await in_flight.wait()

    assert await rig.service.stop(broadcast_id) == [broadcast_id]  # gave up on the send in flight
    release.set()
    await rig.service.wait(broadcast_id)

    assert rig.sender.chats == [ADMIN_ID]
    assert await rig.recipients(broadcast_id) == {ADMIN_ID: ("sent", None)}  # not cut off mid-send


async def test_a_restart_resumes_without_writing_to_anyone_twice(rig: Rig) -> None:
    first, second, *_ = await rig.users(1, 2, 3, 4)
    async with rig.sessionmaker() as session:
        # As a process that died mid-broadcast left it: one user sent to, one send in flight.
        broadcast = Broadcast(created_by=ADMIN_ID, text="Hi", segment="all", status="running", total=4, sent=1)
        session.add(broadcast)
        await session.flush()
        session.add(BroadcastRecipient(broadcast_id=broadcast.id, user_id=first, status=RecipientStatus.SENT))
        session.add(BroadcastRecipient(broadcast_id=broadcast.id, user_id=second, status=RecipientStatus.SENDING))
        await session.commit()
        broadcast_id = broadcast.id

    restarted = rig.another_process()
    await restarted.resume()
    await restarted.wait(broadcast_id)

    assert rig.sender.chats == [3, 4]
    # The send in flight may or may not have arrived: it is counted failed, never sent again.
    assert (await rig.recipients(broadcast_id))[2] == ("failed", "interrupted")
    stored = await rig.broadcast(broadcast_id)
    assert (stored.status, stored.sent, stored.blocked, stored.failed) == ("finished", 3, 0, 1)
    assert rig.notifier.notices == [BroadcastReport(broadcast_id, 3, 0, 1, 4)]


async def test_shutdown_or_an_unexpected_error_leaves_it_running_for_the_next_start(rig: Rig) -> None:
    await rig.users(ADMIN_ID, 1, 2)
    broadcast_id = await rig.draft()

    async def network_gone(chat_id: int) -> None:
        if chat_id == 1:
            raise ConnectionResetError("the sender could not classify this")

    rig.sender.before_send = network_gone
    await rig.service.start(broadcast_id)
    await rig.service.wait(broadcast_id)
    assert (await rig.broadcast(broadcast_id)).status == "running"

    in_flight = asyncio.Event()

    async def hang(chat_id: int) -> None:
        in_flight.set()
        await asyncio.Event().wait()

    rig.sender.before_send = hang
    resumed = rig.another_process()
    await resumed.resume()
    await in_flight.wait()
    await resumed.close()  # process shutdown, mid-send
    assert (await rig.broadcast(broadcast_id)).status == "running"
    assert rig.notifier.told == []

    rig.sender.before_send = None
    last = rig.another_process()
    await last.resume()
    await last.wait(broadcast_id)
    assert rig.sender.chats == [ADMIN_ID]
    assert await rig.recipients(broadcast_id) == {
        ADMIN_ID: ("sent", None),
        1: ("failed", "interrupted"),
        2: ("failed", "interrupted"),
    }
    stored = await rig.broadcast(broadcast_id)
    assert (stored.status, stored.sent, stored.failed) == ("finished", 1, 2)
