"""Style previews over real HTTP (issue 19, item 4): an admin's five selfies become four example portraits
per style on the fake Kie, the style picker shows them as an album per style (text only before), and a
picture Telegram has seen is never uploaded again; /examples is the admins' alone, and redoing it
replaces the set only once the new one is complete."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import Application
from storage.models import ExampleJob, ExampleSet, GenerationJob, GenerationTask, LedgerEntry, StyleExample
from studio.examples import ExampleSetStatus
from studio.states import ACTIVE_JOB_STATUSES, TaskStatus
from tests import image_corpus as corpus
from tests.engine_support import provider_settings
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser, RecordedCall
from tests.harness import app_settings, running_app

REPLY_TIMEOUT = 15.0
STYLES = ("Professional", "Lifestyle", "Creative")


async def _picker(user: FakeUser, first_seed: int) -> ChatMessage:
    """A new user's way to the style picker: /start, New photo session, five selfies, Done."""
    await user.send_command("/start")
    await user.wait_reply(lambda m: any("New photo session" in b["text"] for b in m.buttons), timeout=REPLY_TIMEOUT)
    await user.click("New photo session")
    await user.wait_reply(lambda m: "Send 5–8 selfies" in m.content, timeout=REPLY_TIMEOUT)
    await user.send_album(corpus.selfie_set(5, first_seed))
    await user.wait_reply(lambda m: any("Done" in b["text"] for b in m.buttons), timeout=REPLY_TIMEOUT)
    await user.click("Done")
    return await user.wait_reply(lambda m: "Choose the style" in m.content, timeout=REPLY_TIMEOUT)


def _albums(fake: FakeTelegram, chat_id: int) -> list[RecordedCall]:
    return [c for c in fake.calls("sendMediaGroup", chat_id=chat_id) if c.response_ok]


async def _examples_made(app: Application, admin: FakeUser) -> None:
    """/examples, five selfies, and the wait until every example job of the new set is over."""
    await admin.send_command("/examples")
    await admin.wait_reply(lambda m: "Send 5 selfies" in m.content, timeout=REPLY_TIMEOUT)
    await admin.send_album(corpus.selfie_set(5, 700))
    await admin.wait_reply(lambda m: "All 5 selfies are in" in m.content, timeout=REPLY_TIMEOUT)
    await _until_over(app)


async def _until_over(app: Application) -> None:
    """Until every example job of the set being made is over."""
    async with asyncio.timeout(90):
        while True:
            async with app.sessionmaker() as session:
                open_set = (
                    await session.execute(select(ExampleSet.id).where(ExampleSet.status == ExampleSetStatus.GENERATING))
                ).scalar()
                statuses = (
                    await session.execute(
                        select(GenerationJob.status)
                        .join(ExampleJob, ExampleJob.job_id == GenerationJob.id)
                        .where(ExampleJob.set_id == open_set)
                    )
                ).scalars()
                if open_set is not None and all(status not in ACTIVE_JOB_STATUSES for status in statuses):
                    return
            await asyncio.sleep(0.2)


@pytest.mark.telegram_flood_off(
    reason="the admin's chat gets 24 preview portraits with their progress and closing messages within seconds; "
    "the harness lifts the app's own per-chat pace for speed, which production keeps"
)
async def test_admin_selfies_become_examples_the_picker_shows_once_uploaded(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    admin = fake_telegram.user(language_code="en")
    stranger = fake_telegram.user(language_code="en")
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.1)) as kie:
        settings = app_settings(
            fake_telegram, database_url, tmp_path / "files", ADMIN_IDS=str(admin.id), **provider_settings(kie)
        )
        async with running_app(settings) as app:
            # Not an admin: /examples does not exist for them, and nothing is opened.
            await stranger.send_command("/examples")
            refused = await stranger.wait_reply(timeout=REPLY_TIMEOUT)
            assert "I didn't get that" in refused.content
            async with app.sessionmaker() as session:
                assert (await session.execute(select(func.count()).select_from(ExampleSet))).scalar_one() == 0

            # Before any examples: the picker is text only.
            first = fake_telegram.user(language_code="en")
            picker = await _picker(first, first_seed=800)
            assert [b["text"] for b in picker.buttons] == list(STYLES)
            assert not _albums(fake_telegram, first.id)
            assert not fake_telegram.calls("sendPhoto", chat_id=first.id)

            await _examples_made(app, admin)
            async with app.sessionmaker() as session:
                stored = (
                    await session.execute(
                        select(GenerationJob.style, func.count())
                        .join(ExampleJob, ExampleJob.job_id == GenerationJob.id)
                        .join(GenerationTask, GenerationTask.job_id == GenerationJob.id)
                        .where(GenerationTask.status.in_([TaskStatus.STORED, TaskStatus.DELIVERED]))
                        .group_by(GenerationJob.style)
                    )
                ).all()
                assert dict(stored) == {"professional": 4, "lifestyle": 4, "creative": 4}
                assert (await session.execute(select(func.count()).select_from(LedgerEntry))).scalar_one() == 0

            # A user's picker: an album of four per style, captioned, before the buttons.
            second = first
            await second.send_command("/start")
            await second.wait_reply(lambda m: any("previous photos" in b["text"] for b in m.buttons), timeout=15)
            await second.click("Use my previous photos")
            picker = await second.wait_reply(lambda m: "Choose the style" in m.content, timeout=REPLY_TIMEOUT)
            albums = _albums(fake_telegram, second.id)
            assert [len(call.params["media"]) for call in albums] == [4, 4, 4]
            assert [call.params["media"][0]["caption"] for call in albums] == [f"<b>{s}</b>" for s in STYLES]
            assert all(call.time < picker_call_time(fake_telegram, second.id) for call in albums)
            assert [len(call.files) for call in albums] == [4, 4, 4], "the first send uploads each example"
            async with app.sessionmaker() as session:
                examples = (await session.execute(select(StyleExample.file_id))).scalars().all()
            assert len(examples) == 12 and all(examples), "every example's file id is known after its first send"

            # Another user: the same file ids, nothing uploaded.
            third = fake_telegram.user(language_code="en")
            await _picker(third, first_seed=900)
            albums = _albums(fake_telegram, third.id)
            assert [len(call.params["media"]) for call in albums] == [4, 4, 4]
            assert not any(call.files for call in albums), "an example was uploaded again"
            assert {item["media"] for call in albums for item in call.params["media"]} == set(examples)

            # Redo: the new set replaces the old one only once it is complete.
            await admin.send_command("/examples")
            again = await admin.wait_reply(lambda m: "Send 5 selfies" in m.content, timeout=REPLY_TIMEOUT)
            assert "shows 12 examples now" in again.content and "stay until" in again.content
            async with app.sessionmaker() as session:
                live = (await session.execute(select(ExampleSet.id).where(ExampleSet.status == "live"))).scalar_one()
            kie.queue_outcomes(Outcome(latency=2.0))  # the new set's first portrait: time to look at it
            await admin.send_album(corpus.selfie_set(5, 1100))
            await admin.wait_reply(lambda m: "All 5 selfies are in" in m.content, timeout=REPLY_TIMEOUT)
            await admin.send_command("/examples")
            progress = await admin.wait_reply(lambda m: "Examples in the making" in m.content, timeout=REPLY_TIMEOUT)
            assert "of 12 ready" in progress.content
            async with app.sessionmaker() as session:
                still = (await session.execute(select(ExampleSet.id).where(ExampleSet.status == "live"))).scalar_one()
            assert still == live, "the old set must stay until the new one is complete"
            await _until_over(app)
            await admin.send_command("/examples")
            await admin.wait_reply(lambda m: "shows 12 examples now" in m.content, timeout=REPLY_TIMEOUT)
            async with app.sessionmaker() as session:
                statuses = dict((await session.execute(select(ExampleSet.id, ExampleSet.status))).all())
                shown = (
                    (
                        await session.execute(
                            select(StyleExample.set_id)
                            .join(ExampleSet, ExampleSet.id == StyleExample.set_id)
                            .where(ExampleSet.status == "live")
                        )
                    )
                    .scalars()
                    .all()
                )
            assert statuses[live] == "replaced" and len(shown) == 12 and set(shown) != {live}


def picker_call_time(fake: FakeTelegram, chat_id: int) -> float:
    return next(
        call.time
        for call in reversed(fake.calls("sendMessage", chat_id=chat_id))
        if "Choose the style" in str(call.params.get("text"))
    )
