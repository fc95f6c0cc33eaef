"""Redo by reply, over real HTTP (fake Telegram, fake Kie): a reply 🔁 to the 7th portrait of a pack makes
exactly one new portrait of its prompt, sent as a reply to it, on one of the pack's free redos; the same
update again makes nothing; a redo of a redo; a free redo that fails goes back to the allowance; the fourth
redo asks for a credit and takes exactly one (a second tap nothing), and a paid one that fails gives its
credit back; replies to anything else, and a trigger replying to nothing, are explained; /stats counts them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.app import Application
from storage import ledger
from storage.models import Event, GenerationJob, GenerationTask, PortraitMessage, Redo
from studio.credits import grant_line
from studio.states import JobStatus
from tests.engine_support import FAST_POLICY, job_row, provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.harness import app_settings, callback_answer, running_app

FINAL = (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED)
ADMIN_ID = 4242


async def _until_final(app: Application, job_id: int) -> GenerationJob:
    async with asyncio.timeout(60):
        while (job := await job_row(app.sessionmaker, job_id)).status not in FINAL:
            await asyncio.sleep(0.05)
    return job


async def _message_of(app: Application, chat_id: int, task_id: int) -> int:
    async with app.sessionmaker() as session:
        query = select(PortraitMessage.message_id).where(
            PortraitMessage.chat_id == chat_id, PortraitMessage.task_id == task_id
        )
        return int((await session.execute(query.limit(1))).scalar_one())


async def _redo_jobs(app: Application) -> list[tuple[Redo, GenerationTask]]:
    async with app.sessionmaker() as session:
        rows = await session.execute(
            select(Redo, GenerationTask).join(GenerationTask, GenerationTask.job_id == Redo.job_id).order_by(Redo.id)
        )
        return [(redo, task) for redo, task in rows.all()]


async def _ask(user: FakeUser, text: str, reply_to: int | None) -> tuple[dict[str, Any], ChatMessage]:
    update = await user.send_text(text, reply_to=reply_to)
    return update, await user.wait_reply(lambda m: m.kind == "text", timeout=10)


async def _new_take(fake: FakeTelegram, user: FakeUser, original: int) -> ChatMessage:
    return await fake.wait_for_message(user.id, lambda m: m.kind == "photo" and m.reply_to == original, timeout=30)


async def test_redo_by_reply_free_then_for_a_credit(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.1)) as kie:
        settings = app_settings(
            fake_telegram,
            database_url,
            tmp_path / "files",
            webhook=True,
            ADMIN_IDS=str(ADMIN_ID),
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1, FALLBACK_POLICY=json.dumps(FAST_POLICY)),
        )
        async with running_app(settings) as app:
            user = fake_telegram.user(language_code="en")
            admin = fake_telegram.user(ADMIN_ID, language_code="en")
            pack_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            assert (await _until_final(app, pack_id)).status == JobStatus.COMPLETED
            closing = await user.wait_reply(lambda m: any("Originals" in b["text"] for b in m.buttons), timeout=10)
            assert "Reply 🔁 to it — free redos in this pack: 3" in closing.content
            async with app.sessionmaker() as session:
                seventh = (
                    await session.execute(
                        select(GenerationTask).where(GenerationTask.job_id == pack_id, GenerationTask.position == 6)
                    )
                ).scalar_one()
                user_id = (await session.get(GenerationJob, pack_id)).user_id  # type: ignore[union-attr]
            original = await _message_of(app, user.id, seventh.id)
            creates = len(kie.creates)

            # 🔁 in reply to the 7th portrait: one new take of its prompt, as a reply to it, on a free redo.
            update, answer = await _ask(user, "🔁", original)
            assert "Free redos left in this pack: 2" in answer.content
            take = await _new_take(fake_telegram, user, original)
            [(redo, task)] = await _redo_jobs(app)
            assert (redo.kind, redo.pack_job_id, redo.source_task_ids) == ("free", pack_id, [seventh.id])
            assert (task.prompt_index, task.variant) == (seventh.prompt_index, seventh.variant)
            assert task.seed != seventh.seed
            assert (await _until_final(app, redo.job_id)).status == JobStatus.COMPLETED
            assert len(kie.creates) == creates + 1
            # The same prompt as the 7th portrait's (its scene and pose), a seed of its own.
            assert seventh.provider_task_id is not None
            assert kie.creates[-1].input["prompt"] == kie.tasks[seventh.provider_task_id].input["prompt"]  # type: ignore[index]
            assert (await job_row(app.sessionmaker, redo.job_id)).progress_message_id is None  # no progress message

            # The same update again (Telegram re-posts what was not answered): nothing new is made.
            await fake_telegram.redeliver(update)
            await user.wait_reply(lambda m: "taken already" in m.content, timeout=10)
            assert len(await _redo_jobs(app)) == 1

            # A redo of the redo: the second free redo.
            await _ask(user, "redo", take.message_id)
            second = await _new_take(fake_telegram, user, take.message_id)
            # The third fails at the provider: the free redo is back in the pack's allowance.
            kie.queue_outcomes(Outcome("fail"), Outcome("fail"))
            _, answer = await _ask(user, "Ещё", original)
            assert "Free redos left in this pack: 0" in answer.content
            await user.wait_reply(lambda m: "The free redo is back in your pack" in m.content, timeout=30)
            _, answer = await _ask(user, "ещё", original)
            assert "Free redos left in this pack: 0" in answer.content, answer.content
            await fake_telegram.wait_for_message(
                user.id,
                lambda m: m.kind == "photo" and m.reply_to == original and m.message_id > take.message_id,
                timeout=30,
            )
            redos = await _redo_jobs(app)
            assert [r.kind for r, _ in redos] == ["free"] * 4 and {r.pack_job_id for r, _ in redos} == {pack_id}
            assert redos[1][0].source_task_ids == [redos[0][1].id]  # the redo of the redo names the take
            assert [(await _until_final(app, r.job_id)).status for r, _ in redos] == [
                JobStatus.COMPLETED,
                JobStatus.COMPLETED,
                JobStatus.FAILED,
                JobStatus.COMPLETED,
            ]

            # The fourth: no free redo left and no credit → how to get credits; nothing made.
            _, answer = await _ask(user, "/redo", second.message_id)
            assert "used up" in answer.content and "/start" in answer.content and not answer.buttons
            async with app.sessionmaker() as session:
                await ledger.record(session, user_id, grant_line("redo-test", 2, "test"))
                await session.commit()
            # With credits: asked first, then exactly one credit taken; a second tap takes nothing.
            _, answer = await _ask(user, "REDO", second.message_id)
            assert "costs 1 credit" in answer.content and "balance: 2" in answer.content
            assert len(await _redo_jobs(app)) == 4
            await user.click("Redo for 1 credit")
            paid = await user.wait_reply(lambda m: "for 1 credit" in m.content, timeout=10)
            assert "balance: 1" in paid.content
            tap = await user.click("Redo for 1 credit")
            await callback_answer(fake_telegram, tap)
            await user.wait_reply(lambda m: "taken already" in m.content, timeout=10)
            await _new_take(fake_telegram, user, second.message_id)
            redos = await _redo_jobs(app)
            assert [r.kind for r, _ in redos] == ["free"] * 4 + ["paid"]
            assert (await _until_final(app, redos[-1][0].job_id)).status == JobStatus.COMPLETED
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, user_id) == 1

            # A paid redo that fails gives its credit back, once.
            kie.queue_outcomes(Outcome("fail"), Outcome("fail"))
            await _ask(user, "🔁", take.message_id)
            await user.click("Redo for 1 credit")
            paid = await user.wait_reply(lambda m: "for 1 credit" in m.content, timeout=10)
            assert "balance: 0" in paid.content
            await user.wait_reply(lambda m: "The credit is back on your balance" in m.content, timeout=30)
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, user_id) == 1
                events = await session.execute(
                    select(func.count(Event.id)).where(Event.name == "portrait_redone", Event.user_id == user_id)
                )
                assert events.scalar_one() == 6

            # Replies to something that is not a portrait, and a trigger replying to nothing.
            _, answer = await _ask(user, "🔁", closing.message_id)
            assert "That message isn't one" in answer.content
            _, answer = await _ask(user, "redo", None)
            assert "reply to it" in answer.content
            assert len(await _redo_jobs(app)) == 6

            # /stats counts the redos by kind.
            await admin.send_command("/stats", "7d")
            stats = await admin.wait_reply(lambda m: "Stats: 7d" in m.content, timeout=10)
            assert "Redos by reply and by the likeness guarantee: free 4, paid 2" in stats.content
