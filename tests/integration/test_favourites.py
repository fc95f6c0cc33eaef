"""Favourites by reaction and the profile photo, over real HTTP (fake Telegram, fake Kie): ❤️ and
🔥 mark portraits, taking a reaction away unmarks, a repeated update changes nothing, "favourites
only" originals hold exactly the marked portraits, /favourites sends them again by file id, the
profile photo is 640 × 640 from the first favourite, and /stats counts them per style."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from storage.images import profile_photo
from storage.models import Event, Favourite, GenerationTask, PortraitMessage
from studio.states import JobStatus
from tests.engine_support import seed_paid_job
from tests.fakes.kie import FakeKie
from tests.fakes.telegram import FakeTelegram
from tests.harness import running_app
from tests.integration.test_after_pack import _settings, _until

ADMIN_ID = 990_001


async def test_reactions_mark_favourites_for_originals_resend_profile_photo_and_stats(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=60, create_window_seconds=1.0, latency=(0.02, 0.2)) as kie:
        settings = _settings(fake_telegram, sqlite_url, tmp_path, kie, ADMIN_IDS=str(ADMIN_ID))
        async with running_app(settings) as app:
            assert "message_reaction" in fake_telegram.webhook_info["allowed_updates"]
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            await _until(app, job_id, (JobStatus.COMPLETED,))
            await user.wait_reply(lambda m: any("Originals" in b["text"] for b in m.buttons), timeout=10)
            async with app.sessionmaker() as session:
                shown = dict(
                    (
                        await session.execute(
                            select(GenerationTask.position, PortraitMessage.message_id)
                            .join(PortraitMessage, PortraitMessage.task_id == GenerationTask.id)
                            .where(GenerationTask.job_id == job_id)
                        )
                    ).all()
                )
                tasks = {
                    task.position: task
                    for task in (
                        await session.execute(select(GenerationTask).where(GenerationTask.job_id == job_id))
                    ).scalars()
                }
            assert sorted(shown) == list(range(7))

            async def favourites() -> set[int]:
                async with app.sessionmaker() as session:
                    rows = await session.execute(
                        select(GenerationTask.position).join(Favourite, Favourite.task_id == GenerationTask.id)
                    )
                    return set(rows.scalars())

            async def until_favourites(expected: set[int]) -> None:
                async with asyncio.timeout(5):
                    while await favourites() != expected:
                        await asyncio.sleep(0.05)

            hearted = await user.react(shown[1], "❤")
            await user.react(shown[3], "🔥")
            await user.react(shown[5], "❤")
            await until_favourites({1, 3, 5})
            await user.react(shown[5])  # the heart taken away
            await until_favourites({1, 3})
            await user.react(shown[2], "👎")  # not a positive reaction
            await user.react(shown[3], "🤔")  # 🔥 replaced by a neutral one: unmarked
            await user.react(shown[3], "👍")  # and marked again
            closing = next(m for m in reversed(user.messages) if any("Originals" in b["text"] for b in m.buttons))
            await user.react(closing.message_id, "❤")  # not a portrait
            await fake_telegram.redeliver(hearted)  # Telegram posts an update again: nothing changes
            await until_favourites({1, 3})
            await asyncio.sleep(0.2)  # the last updates' handlers are done
            assert await favourites() == {1, 3}
            async with app.sessionmaker() as session:
                added = await session.execute(
                    select(func.count()).select_from(Event).where(Event.name == "favourite_added")
                )
                assert added.scalar_one() == 4  # 1, 3, 5, and 3 again; not the repeated update

            # Originals: the pack has favourites, so the user chooses; "favourites only" holds exactly them.
            await user.click("Originals")
            await user.wait_reply(lambda m: any("Favourites only" in b["text"] for b in m.buttons))
            await user.click("Favourites only")
            document = await user.wait_reply(lambda m: m.kind == "document", timeout=20)
            archive = zipfile.ZipFile(io.BytesIO(fake_telegram.file_bytes(document.file_id or "")))
            assert [name.split(".")[0] for name in archive.namelist()] == ["portrait-02", "portrait-04"]
            expected = [await app.files.get(tasks[position].result_key or "") for position in (1, 3)]
            assert [archive.read(name) for name in archive.namelist()] == expected

            # /favourites: the two again, as one album of the file ids Telegram gave (nothing uploaded).
            albums_before = len(fake_telegram.calls("sendMediaGroup"))
            await user.send_command("/favourites")
            await fake_telegram.wait_until(lambda: len(fake_telegram.calls("sendMediaGroup")) > albums_before)
            album = fake_telegram.calls("sendMediaGroup")[-1]
            assert album.response_ok
            assert [item["media"] for item in album.params["media"]] == [
                tasks[1].telegram_file_id,
                tasks[3].telegram_file_id,
            ]

            # The profile photo: the first favourite, cut square (no face box without face checks: the
            # centre), 640 × 640, as a file and as a photo.
            await user.click("Make a profile photo")
            file = await user.wait_reply(lambda m: m.kind == "document", timeout=10)
            photo = await user.wait_reply(lambda m: m.kind == "photo", timeout=10)
            data = fake_telegram.file_bytes(file.file_id or "")
            assert data == profile_photo(expected[0], None)
            assert Image.open(io.BytesIO(data)).size == (640, 640)
            assert "profile photo" in photo.content

            # /stats: favourite_added events and the favourites kept, per style.
            admin = fake_telegram.user(user_id=ADMIN_ID, language_code="en")
            await admin.send_command("/stats")
            report = await admin.wait_reply(lambda m: "Favourites" in m.content)
            assert "Favourites: 4 added; by style: professional 2" in report.content
