"""The engine's grid paths on in-memory providers (the rig of test_engine_paths): which provider a grid
goes to when the one whose turn it is cannot draw one, and when the breakers or an admin's pause send
fresh work to such a fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio

from storage.models import utcnow
from studio.states import TaskStatus
from tests.engine_support import seed_paid_job
from tests.unit.scheduler.test_engine_paths import Rig, _backoff_passes, _rig, _submit, _tasks

GRID_CREATES = 6  # the Lite pack: 24 portraits, four per create


@pytest_asyncio.fixture
async def rig(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with _rig(sqlite_url, tmp_path) as built:
        built.kie.grid_capable = True  # type: ignore[attr-defined]  # a test double's model can draw a grid
        yield built


async def _lite_job(rig: Rig) -> int:
    job_id = await seed_paid_job(
        rig.sessionmaker, rig.files, rig.engine.catalogue, telegram_id=4343, pack="lite", selfies=2
    )
    assert await rig.engine.dispatch_jobs() == 1
    return job_id


async def test_a_grid_is_one_create_for_four_panels_with_one_grid_prompt(rig: Rig) -> None:
    job_id = await _lite_job(rig)
    assert rig.engine.primary_grid_capable()
    await _submit(rig)

    assert len(rig.kie.creates) == GRID_CREATES
    assert all("2×2 grid" in create.prompt for create in rig.kie.creates)
    tasks = await _tasks(rig, job_id)
    assert {task.status for task in tasks} == {TaskStatus.SUBMITTED}
    assert sorted({task.provider_task_id or "" for task in tasks}) == sorted(c.task_id for c in rig.kie.creates)


async def test_while_the_primary_is_paused_a_grid_waits_rather_than_go_to_a_fallback_that_cannot_draw_it(
    rig: Rig,
) -> None:
    job_id = await _lite_job(rig)
    rig.engine.apply_overrides({"kie"}, None)
    before = utcnow()
    await _submit(rig)

    assert rig.replicate.creates == [] and rig.kie.creates == []
    tasks = await _tasks(rig, job_id)
    assert {(task.status, task.provider_index, task.attempts) for task in tasks} == {(TaskStatus.PENDING, 0, 0)}
    leaders = [task for task in tasks if task.grid_slot == 0]
    assert {task.error for task in leaders} == {"waiting for a provider that can draw a grid"}
    assert all(task.next_poll_at is not None and task.next_poll_at >= before + timedelta(seconds=4) for task in leaders)

    rig.engine.apply_overrides(set(), None)
    await _backoff_passes(rig, job_id)
    await _submit(rig)
    assert len(rig.kie.creates) == GRID_CREATES and rig.replicate.creates == []
    assert {task.status for task in await _tasks(rig, job_id)} == {TaskStatus.SUBMITTED}


async def test_when_its_turn_comes_a_provider_that_cannot_draw_a_grid_passes_it_on_untouched(rig: Rig) -> None:
    job_id = await _lite_job(rig)
    rig.engine.apply_overrides(set(), "replicate")  # the admin made the non-grid model the primary
    assert not rig.engine.primary_grid_capable()
    await _submit(rig)

    # Replicate (index 0 now) refused each grid without a create and without a mark on its breaker;
    # Kie, next in the order, made them.
    assert rig.replicate.creates == [] and len(rig.kie.creates) == GRID_CREATES
    assert rig.engine.breakers["replicate"].failures == []
    assert {(task.status, task.provider) for task in await _tasks(rig, job_id)} == {(TaskStatus.SUBMITTED, "kie")}
