"""Long admin answers reach the admin whole and valid: the fake Bot API parses HTML as strictly as
Telegram, so a piece cut inside ``&amp;`` or a tag would be refused and the admin would see nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import update

from storage import ledger, queue
from storage.models import GenerationJob, GenerationTask, User
from studio.credits import grant_line
from studio.generation import plan_tasks
from tests.engine_support import seed_paid_job
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app

ADMIN_ID = 900_101
CUSTOMER_ID = 500_101
REPLY = 15.0


async def test_long_user_and_job_details_are_split_validly_and_lose_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(
        fake_telegram, sqlite_url, tmp_path / "files", ADMIN_IDS=str(ADMIN_ID), TELEGRAM_CHAT_RATE=1000.0
    )
    async with running_app(settings) as app:
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=CUSTOMER_ID)
        references = [f"grant:{index}&" + "&" * 110 for index in range(8)]  # each escapes to ~570 characters
        async with app.sessionmaker() as session:
            customer = (await session.execute(User.__table__.select().where(User.telegram_id == CUSTOMER_ID))).one()
            for reference in references:
                line = grant_line(reference.removeprefix("grant:"), 1, None)
                await ledger.record(session, customer.id, line)
            job = await session.get(GenerationJob, job_id)
            assert job is not None
            style = app.catalogue.style(job.style)
            await queue.add_tasks(session, job_id, plan_tasks(style, job.photos_total, job_id))
            await session.execute(
                update(GenerationTask).where(GenerationTask.job_id == job_id).values(error="&<b>" * 30)
            )
            await session.commit()
        admin = fake_telegram.user(ADMIN_ID, language_code="en")

        before = len(fake_telegram.sent_messages(admin.id))
        await admin.send_command("/user", str(CUSTOMER_ID))
        await admin.wait_reply(lambda message: bool(message.buttons), timeout=REPLY)
        pieces = fake_telegram.sent_messages(admin.id)[before:]
        assert len(pieces) > 1 and all(len(piece.content) <= 4096 for piece in pieces)
        assert [bool(piece.buttons) for piece in pieces] == [False] * (len(pieces) - 1) + [True]
        shown = "".join(piece.content for piece in pieces)
        assert all(reference.replace("&amp;", "&") in shown for reference in references)

        await admin.send_command("/job", str(job_id))
        job = await admin.wait_reply(lambda message: f"#{job_id}" in message.content, timeout=REPLY)
        assert "… +" in job.content and "&<b>&<b>" in job.content
        await asyncio.sleep(0.3)
        refused = [call for call in fake_telegram.calls(chat_id=admin.id) if not call.response_ok]
        assert refused == []
