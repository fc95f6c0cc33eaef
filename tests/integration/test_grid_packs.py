"""Grid packs end to end: the real app, the fake Kie drawing 2×2 grids over real HTTP, a real database.

One create per grid of four panels; the grid is downloaded once, split and trimmed, and each panel is
stored, scored and delivered as a portrait of its own task. A panel without a face fails its own task
alone (its credit back once); a failed create sends the whole grid back to be created again.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image, ImageDraw
from sqlalchemy import select

from bot.app import Application
from scheduler.generation.roster import price_of
from storage import ledger
from storage.models import Event, GenerationTask
from studio.costs import usd_to_micros
from studio.states import JobStatus, TaskStatus
from tests import face_corpus as corpus
from tests.engine_support import FAST_POLICY, Order, job_row, provider_settings, seed_paid_job, seed_unpaid_order
from tests.fakes.kie import FakeKie, Outcome, render_grid_panel
from tests.fakes.replicate import FakeReplicate
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app
from tests.ledger_check import assert_money_invariants

FINISHED = (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED)
NOT_GRID_CAPABLE = "black-forest-labs/flux-kontext-pro"  # providers/replicate.py: grid_capable=False


@pytest_asyncio.fixture
async def kie() -> FakeKie:
    fake = FakeKie(create_limit=20, create_window_seconds=1.0, latency=(0.05, 0.2))
    await fake.start()
    yield fake
    await fake.close()


async def until_finished(app: Application, job_id: int, timeout: float = 90) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while (await job_row(app.sessionmaker, job_id)).status not in FINISHED:
            await asyncio.sleep(0.1)


async def tasks_of(app: Application, job_id: int) -> list[GenerationTask]:
    async with app.sessionmaker() as session:
        rows = await session.execute(
            select(GenerationTask).where(GenerationTask.job_id == job_id).order_by(GenerationTask.position)
        )
        return list(rows.scalars())


def delivered_photos(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.file_unique_id or "" for m in fake.sent_messages(chat_id) if m.kind == "photo"]


def successful_creates(kie: FakeKie) -> list[str]:
    return [create.task_id for create in kie.creates if create.task_id]


async def test_a_grid_pack_of_24_makes_exactly_6_creates_and_delivers_24_distinct_portraits(
    fake_telegram: FakeTelegram, kie: FakeKie, database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(
        fake_telegram, database_url, tmp_path / "files", webhook=True, **provider_settings(kie, POLL_INTERVAL_SECONDS=1)
    )
    async with running_app(settings) as app:
        assert app.engine_service.primary_grid_capable()
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="lite")
        app.signals.job_queued()
        await until_finished(app, job_id)

        job = await job_row(app.sessionmaker, job_id)
        assert (job.status, job.photos_total, job.photos_completed, job.photos_failed) == (
            JobStatus.COMPLETED,
            24,
            24,
            0,
        )
        creates = successful_creates(kie)
        assert len(creates) == 6, creates
        assert sorted(kie.grid_task_ids()) == sorted(creates)  # every create asked for a grid
        tasks = await tasks_of(app, job_id)
        assert [task.status for task in tasks] == [TaskStatus.DELIVERED] * 24
        # Four panels per create, one create per grid, each panel its own slot.
        by_create = Counter(task.provider_task_id for task in tasks)
        assert sorted(by_create) == sorted(creates) and set(by_create.values()) == {4}
        for task in tasks:
            assert task.grid_group == task.position // 4 and task.grid_slot == task.position % 4
        # 24 different stored images, each a trimmed panel (not the whole grid), all delivered.
        hashes = set()
        for task in tasks:
            assert task.result_key is not None
            data = await app.files.get(task.result_key)
            hashes.add(hashlib.sha256(data).hexdigest())
            # One panel with the gutters and margin gone (the fake's white caption band at a panel's
            # foot is trimmed down to its text too).
            width, height = Image.open(io.BytesIO(data)).size
            assert width == kie.image_size[0] and 0.9 * kie.image_size[1] <= height <= kie.image_size[1]
        assert len(hashes) == 24
        assert len(set(delivered_photos(fake_telegram, user.id))) == 24
        # The job cost six creates at the model's price, shared out over the panels.
        async with app.sessionmaker() as session:
            assert await ledger.balance(session, job.user_id) == 0
            price = sum(task.cost_micros for task in tasks)
            first_model = tasks[0].model
        assert price == 6 * usd_micros(app, first_model)
        async with app.sessionmaker() as session:
            started = await session.execute(
                select(Event.id).where(Event.job_id == job_id, Event.name == "generation_started")
            )
            assert len(started.all()) == 1  # the job's first create, not one per panel


async def test_a_grid_pack_completes_by_polling_alone_asking_only_about_each_create(
    fake_telegram: FakeTelegram, kie: FakeKie, sqlite_url: str, tmp_path: Path
) -> None:
    # Without PUBLIC_URL nothing calls back: only the grid's slot-0 task is polled, and its result
    # settles all four panels.
    settings = app_settings(
        fake_telegram, sqlite_url, tmp_path / "files", **provider_settings(kie, POLL_INTERVAL_SECONDS=1)
    )
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="lite")
        app.signals.job_queued()
        await until_finished(app, job_id)

        job = await job_row(app.sessionmaker, job_id)
        assert (job.status, job.photos_completed) == (JobStatus.COMPLETED, 24)
        creates = successful_creates(kie)
        assert len(creates) == 6 and kie.callbacks == []
        assert set(kie.record_info_calls) == set(creates)  # polled by the create's id, nothing else
        tasks = await tasks_of(app, job_id)
        assert all(task.polls == 0 for task in tasks if task.grid_slot != 0)  # panels are never polled
        assert len(set(delivered_photos(fake_telegram, user.id))) == 24


def usd_micros(app: Application, model: str | None) -> int:
    provider = app.engine_service.provider("kie")
    assert provider is not None and model == getattr(provider, "model", None)
    return usd_to_micros(price_of(provider))


async def test_a_grid_whose_one_panel_has_no_face_delivers_the_other_23_and_credits_the_missing_one_back_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    # SQLite only: 54 face readings cost 17 CPU seconds and read the same on either database; the grid's
    # claims, transitions and ledger run on both in the 24-portrait and failed-grid tests above and below.
    hopper = [corpus.variant("hopper", name) for name in ("rotate_right", "crop", "flip")]
    faceless = corpus.coffee()
    faceless_panel: list[tuple[str, int]] = []

    def panel(task_id: str, slot: int, size: tuple[int, int]) -> Image.Image:
        # The second grid's third panel has no face; every other panel is her, each a little different.
        grids = kie.grid_task_ids()
        if len(grids) > 1 and task_id == grids[1] and slot == 2:
            faceless_panel.append((task_id, slot))
            return faceless
        base = hopper[(grids.index(task_id) + slot) % len(hopper)].convert("RGB")
        distinct = base.copy()
        # A patch of its own colour in a corner, away from the face: another portrait, also as a JPEG.
        number = grids.index(task_id) * 4 + slot
        ImageDraw.Draw(distinct).rectangle((8, 8, 72, 72), fill=(10 * number, 255 - 10 * number, 128))
        return distinct

    kie = FakeKie(create_limit=20, create_window_seconds=1.0, latency=(0.05, 0.2), grid_renderer=panel)
    async with kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            FACE_CHECKS=True,
            **provider_settings(kie, POLL_INTERVAL_SECONDS=1),
        )
        async with running_app(settings) as app:
            assert app.faces is not None
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(
                app.sessionmaker,
                app.files,
                app.catalogue,
                telegram_id=user.id,
                pack="lite",
                selfie_images=corpus.selfie_set("hopper", 5),
            )
            app.signals.job_queued()
            await until_finished(app, job_id, timeout=180)

            assert len(faceless_panel) == 1  # drawn once: the grid was not redone for it
            assert len(successful_creates(kie)) == 6
            job = await job_row(app.sessionmaker, job_id)
            assert (job.status, job.photos_completed, job.photos_failed) == (JobStatus.PARTIAL, 23, 1)
            tasks = await tasks_of(app, job_id)
            skipped = [task for task in tasks if task.status == TaskStatus.SKIPPED]
            assert len(skipped) == 1
            assert skipped[0].provider_task_id == faceless_panel[0][0] and skipped[0].grid_slot == 2
            assert Counter(task.status for task in tasks)[TaskStatus.DELIVERED] == 23
            assert all(task.identity_score is not None for task in tasks if task.status == TaskStatus.DELIVERED)
            assert len(set(delivered_photos(fake_telegram, user.id))) == 23
            async with app.sessionmaker() as session:
                totals = await ledger.totals_by_reason(session, job.user_id)
                assert totals.get("release", 0) == 1  # exactly one credit back, for the faceless panel
                assert await ledger.balance(session, job.user_id) == 1
                failed = await session.execute(
                    select(Event.properties).where(Event.job_id == job_id, Event.name == "generation_failed")
                )
                assert [p["task_id"] for p in failed.scalars() if p.get("scope") == "task"] == [skipped[0].id]
                await assert_money_invariants(session)
            await app.engine_service.recover()  # a second settle changes nothing
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, job.user_id) == 1


@pytest.mark.parametrize("failure", ["create refused", "generation failed"])
async def test_a_failed_grid_goes_back_to_pending_whole_and_a_later_create_makes_it(
    fake_telegram: FakeTelegram, kie: FakeKie, database_url: str, tmp_path: Path, failure: str
) -> None:
    if failure == "create refused":
        kie.inject_error(500, endpoint="createTask")  # the first create is refused: no provider task
    else:
        kie.queue_outcomes(Outcome("fail"))  # the first provider task fails after it was created
    settings = app_settings(
        fake_telegram, database_url, tmp_path / "files", webhook=True, **provider_settings(kie, POLL_INTERVAL_SECONDS=1)
    )
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="lite")
        app.signals.job_queued()
        await until_finished(app, job_id)

        job = await job_row(app.sessionmaker, job_id)
        assert (job.status, job.photos_completed) == (JobStatus.COMPLETED, 24)
        expected_creates = 6 if failure == "create refused" else 7
        assert len(successful_creates(kie)) == expected_creates
        tasks = await tasks_of(app, job_id)
        assert all(task.status == TaskStatus.DELIVERED for task in tasks)
        # The failed grid's four panels were retried together: each has two attempts behind it and
        # all four came from one later create; every other panel took one.
        retried = [task for task in tasks if task.attempts == 2]
        assert len(retried) == 4 and len({task.grid_group for task in retried}) == 1
        assert len({task.provider_task_id for task in retried}) == 1
        assert all(task.attempts == 1 for task in tasks if task not in retried)
        assert len(set(delivered_photos(fake_telegram, user.id))) == 24


def test_render_grid_panel_is_distinct_per_panel() -> None:
    first, second = render_grid_panel("t", 0, (64, 80)), render_grid_panel("t", 1, (64, 80))
    assert first.tobytes() != second.tobytes()


async def test_a_grid_passes_over_a_provider_that_cannot_draw_one_to_the_next_in_the_policy(
    fake_telegram: FakeTelegram, kie: FakeKie, sqlite_url: str, tmp_path: Path
) -> None:
    # Replicate first, with a model that cannot draw a grid: no create there (four single creates
    # would cost four times the price), every grid is made by Kie, next in the policy.
    policy = {"providers": list(reversed(FAST_POLICY["providers"]))}
    async with FakeReplicate(latency=(0.02, 0.05)) as replicate:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(
                kie,
                replicate,
                POLL_INTERVAL_SECONDS=1,
                REPLICATE_MODEL=NOT_GRID_CAPABLE,
                FALLBACK_POLICY=json.dumps(policy),
            ),
        )
        async with running_app(settings) as app:
            assert not app.engine_service.primary_grid_capable()
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="lite")
            app.signals.job_queued()
            await until_finished(app, job_id)

            job = await job_row(app.sessionmaker, job_id)
            assert (job.status, job.photos_completed) == (JobStatus.COMPLETED, 24)
            assert replicate.creates == []
            assert len(successful_creates(kie)) == 6
            assert {task.provider for task in await tasks_of(app, job_id)} == {"kie"}


async def test_a_grid_no_provider_can_draw_is_skipped_with_every_credit_back_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeReplicate(latency=(0.02, 0.05)) as replicate:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(None, replicate, POLL_INTERVAL_SECONDS=1, REPLICATE_MODEL=NOT_GRID_CAPABLE),
        )
        async with running_app(settings) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="lite")
            app.signals.job_queued()
            await until_finished(app, job_id)

            job = await job_row(app.sessionmaker, job_id)
            assert (job.status, job.photos_failed) == (JobStatus.FAILED, 24)
            assert replicate.creates == []
            tasks = await tasks_of(app, job_id)
            assert all(task.status == TaskStatus.SKIPPED for task in tasks)
            assert {task.error for task in tasks} == {f"{NOT_GRID_CAPABLE} cannot draw a grid"}
            async with app.sessionmaker() as session:
                assert (await ledger.totals_by_reason(session, job.user_id)).get("release", 0) == 24
                assert await ledger.balance(session, job.user_id) == 24


async def test_grid_packs_are_not_offered_when_the_primary_model_cannot_draw_a_grid(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeReplicate() as replicate:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            **provider_settings(None, replicate, REPLICATE_MODEL=NOT_GRID_CAPABLE),
        )
        async with running_app(settings) as app:
            assert not app.engine_service.primary_grid_capable()
            order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=700_501)
            async with app.sessionmaker() as session:
                order = await session.get(Order, order_id)
                assert order is not None
                user_id = order.user_id
            offered = [pack.id for pack in await app.intake.offered_packs(user_id)]
            assert "lite" not in offered and "p23" in offered
