"""How the delivery service dates the portraits it plans (scheduler.delivery): pure, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.delivery import ready_portraits
from storage.models import GenerationTask
from studio.delivery import ChatBudget, Ready, next_send

WALL_NOW = datetime(2026, 12, 8, 2, 0, 0, tzinfo=UTC)


def _stored(task_id: int, *, done_ago: float | None, stored_ago: float) -> GenerationTask:
    done_at = WALL_NOW - timedelta(seconds=done_ago) if done_ago is not None else None
    return GenerationTask(id=task_id, provider_done_at=done_at, stored_at=WALL_NOW - timedelta(seconds=stored_ago))


def test_a_portrait_is_ready_since_the_provider_finished_it_not_since_it_was_stored() -> None:
    polled_late = _stored(1, done_ago=2.5, stored_ago=0.2)
    dated_by_arrival = _stored(2, done_ago=None, stored_ago=1.0)
    ready = ready_portraits([polled_late, dated_by_arrival], {2}, 100.0, WALL_NOW)
    assert ready == [Ready(1, 97.5), Ready(2, 99.0, as_document=True)]
    # With a 3 s window, the one a poll found 2.3 s late waits 0.5 s more for company, not 3 s again.
    plan = next_send(ready[:1], started=True, more_coming=True, now=100.0, window=3.0, budget=ChatBudget(10, 1.0, 0.0))
    assert plan is not None and plan.count == 1 and plan.at == 100.5
