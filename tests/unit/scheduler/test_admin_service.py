"""AdminService's looks (stats, queue, a job, a user) and broadcast steps, on a real SQLite database;
the broadcast runner is a recording stand-in (BroadcastService has tests of its own). Its money and job
actions (grant, refund, retry, cancel, resend, bans, provider switches) run end to end in
tests/integration/test_admin*.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest_asyncio
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.admin import STATS_PERIODS, AdminService
from storage.broadcasts import BroadcastStatus
from storage.db import create_engine, create_sessionmaker
from storage.files import LocalFileStore
from storage.models import AuditLog, Broadcast, User
from studio.catalogue import load_catalogue
from tests.engine_support import seed_paid_job

ADMIN_ID = 900_001


@dataclass
class Runner:
    """The BroadcastRunner port: records what it was asked; ``stops`` are the ids a stop finds running."""

    started: list[int] = field(default_factory=list)
    refuse: set[int] = field(default_factory=set)
    stops: list[int] = field(default_factory=list)
    stop_calls: list[int | None] = field(default_factory=list)

    async def start(self, broadcast_id: int) -> bool:
        if broadcast_id in self.refuse:
            return False
        self.started.append(broadcast_id)
        return True

    async def stop(self, broadcast_id: int | None = None) -> list[int]:
        self.stop_calls.append(broadcast_id)
        return list(self.stops)


@dataclass
class Rig:
    admin: AdminService
    sessionmaker: async_sessionmaker[AsyncSession]
    runner: Runner
    files: LocalFileStore

    async def audit(self) -> list[tuple[str, str | None]]:
        async with self.sessionmaker() as session:
            rows = await session.execute(select(AuditLog.action, AuditLog.target).order_by(AuditLog.id))
            return [(action, target) for action, target in rows.all()]

    async def paid_job(self, telegram_id: int = 600_002) -> int:
        return await seed_paid_job(self.sessionmaker, self.files, load_catalogue(), telegram_id=telegram_id, pack="p7")


@pytest_asyncio.fixture
async def rig(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    engine = create_engine(sqlite_url)
    sessionmaker = create_sessionmaker(engine)
    runner = Runner()
    unused = cast(Any, None)  # payments, generation and delivery: not reached by these calls
    admin = AdminService(sessionmaker, payments=unused, engine=unused, delivery=unused, stars=None, broadcasts=runner)
    try:
        yield Rig(admin, sessionmaker, runner, LocalFileStore(tmp_path / "files"))
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- looks


async def test_stats_audits_the_request_and_reports_the_period(rig: Rig) -> None:
    await rig.paid_job()

    report = await rig.admin.stats(ADMIN_ID, "7d")

    assert STATS_PERIODS == ("today", "7d", "30d")
    assert report.stats.paid_orders == 1 and report.stats.new_users == 1
    assert report.first_p50 is None and report.pack_p95 is None  # nothing delivered yet
    assert await rig.audit() == [("stats", "7d")]


async def test_queue_shows_the_waiting_job(rig: Rig) -> None:
    await rig.paid_job()

    snapshot = await rig.admin.queue(ADMIN_ID)

    assert sum(snapshot.jobs.values()) == 1 and snapshot.oldest_queued_at is not None
    assert await rig.audit() == [("queue", None)]


async def test_job_is_audited_even_when_there_is_no_such_job(rig: Rig) -> None:
    job_id = await rig.paid_job()

    detail = await rig.admin.job(ADMIN_ID, job_id)
    missing = await rig.admin.job(ADMIN_ID, 999_999)

    assert detail is not None and detail.job.id == job_id and detail.tasks == []  # tasks come at dispatch
    assert detail.user.telegram_id == 600_002 and detail.order is not None
    assert missing is None
    assert await rig.audit() == [("job", f"job:{job_id}"), ("job", "job:999999")]


async def test_user_by_telegram_id_or_username(rig: Rig) -> None:
    await rig.paid_job()
    async with rig.sessionmaker() as session:
        await session.execute(update(User).values(username="Anna_K"))
        await session.commit()

    by_id = await rig.admin.user(ADMIN_ID, "600002")
    by_name = await rig.admin.user(ADMIN_ID, "@anna_k")
    nobody = await rig.admin.user(ADMIN_ID, "@nobody")

    assert by_id is not None and by_name is not None and by_id.user.id == by_name.user.id
    assert by_id.balance == 0 and len(by_id.orders) == 1 and len(by_id.jobs) == 1
    assert nobody is None
    assert await rig.audit() == [("user", f"user:{by_id.user.id}")] * 2  # nobody found: nothing to audit
    found = await rig.admin.find_user("600002")
    assert found is not None and (await rig.admin.get_user(found.id)) is not None
    assert await rig.admin.find_user("@") is None and await rig.admin.get_user(999_999) is None


# ---------------------------------------------------------------- broadcasts


async def test_a_draft_is_made_once_per_admin_message(rig: Rig) -> None:
    first = await rig.admin.draft_broadcast(ADMIN_ID, "Hello", None, source_message_id=41)
    again = await rig.admin.draft_broadcast(ADMIN_ID, "Hello", None, source_message_id=41)
    other = await rig.admin.draft_broadcast(ADMIN_ID, "", "PHOTO", source_message_id=42)

    assert first == again != other
    assert await rig.audit() == [("broadcast_draft", f"broadcast:{first}"), ("broadcast_draft", f"broadcast:{other}")]


async def test_segment_then_discard_only_while_a_draft(rig: Rig) -> None:
    await rig.paid_job()  # one user who paid
    draft = await rig.admin.draft_broadcast(ADMIN_ID, "Hello", None, source_message_id=41)

    assert await rig.admin.choose_segment(draft, "paid") == 1
    assert await rig.admin.choose_segment(draft, "never_paid") == 0
    assert await rig.admin.discard_broadcast(draft) is True
    assert await rig.admin.discard_broadcast(draft) is False
    assert await rig.admin.choose_segment(draft, "all") is None


async def test_start_is_audited_only_when_the_runner_started_it(rig: Rig) -> None:
    draft = await rig.admin.draft_broadcast(ADMIN_ID, "Hello", None, source_message_id=41)
    rig.runner.refuse = {999}

    assert await rig.admin.start_broadcast(ADMIN_ID, draft) is True
    assert await rig.admin.start_broadcast(ADMIN_ID, 999) is False

    assert rig.runner.started == [draft]
    assert (await rig.audit())[-1] == ("broadcast_start", f"broadcast:{draft}")
    assert len(await rig.audit()) == 2


async def test_stop_reports_and_audits_each_broadcast_stopped(rig: Rig) -> None:
    one = await rig.admin.draft_broadcast(ADMIN_ID, "One", None, source_message_id=1)
    two = await rig.admin.draft_broadcast(ADMIN_ID, "Two", None, source_message_id=2)
    async with rig.sessionmaker() as session:
        await session.execute(
            update(Broadcast).values(status=BroadcastStatus.STOPPED, sent=Broadcast.id * 10, blocked=1, failed=0)
        )
        await session.commit()
    rig.runner.stops = [one, two]

    counts = await rig.admin.stop_broadcasts(ADMIN_ID)
    rig.runner.stops = []
    none = await rig.admin.stop_broadcasts(ADMIN_ID, one)

    assert [(c.broadcast_id, c.sent, c.blocked, c.failed) for c in counts] == [
        (one, one * 10, 1, 0),
        (two, two * 10, 1, 0),
    ]
    assert none == [] and rig.runner.stop_calls == [None, one]
    assert (await rig.audit())[-2:] == [("broadcast_stop", f"broadcast:{one}"), ("broadcast_stop", f"broadcast:{two}")]
