"""Which clocked jobs a process runs, on which intervals, and which run at once."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

from apscheduler.triggers.interval import IntervalTrigger

from scheduler.engine import GenerationEngine
from scheduler.housekeeping import Housekeeping
from scheduler.jobs import (
    HOUSEKEEPING_INTERVAL_SECONDS,
    PROVIDER_HEALTH_INTERVAL_SECONDS,
    REMINDERS_INTERVAL_SECONDS,
    Beat,
    build_scheduler,
)
from scheduler.payments import PaymentService
from scheduler.provider_health import ProviderHealthMonitor
from scheduler.reminders import ReminderService
from scheduler.wakeup import WakeableJob


async def _nothing() -> None:
    return None


def _payments(*, card: bool, stars: bool) -> PaymentService:
    return cast(
        PaymentService,
        SimpleNamespace(
            reconcile=_nothing,
            reconcile_stars=_nothing,
            yookassa=object() if card else None,
            stars=object() if stars else None,
            poll_interval=timedelta(seconds=60),
        ),
    )


def _jobs(
    *, card: bool, stars: bool, beats: tuple[Beat, ...] = (), provider_health: Any = None, reminders: Any = None
) -> dict[str, Any]:
    scheduler, _running = build_scheduler(
        engine=cast(GenerationEngine, SimpleNamespace(recover=_nothing, jobs=list)),
        delivery=WakeableJob("deliver", _nothing, 0.5),
        housekeeping=cast(Housekeeping, SimpleNamespace(run=_nothing)),
        payments=_payments(card=card, stars=stars),
        recover_seconds=30,
        beats=beats,
        provider_health=provider_health,
        reminders=reminders,
    )
    scheduler.start(paused=True)  # works out each job's first run without running any
    try:
        return {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)


def _every(job: Any) -> timedelta:
    assert isinstance(job.trigger, IntervalTrigger)
    return cast(timedelta, job.trigger.interval)


async def test_both_rails_reconcile_on_the_poll_interval() -> None:
    jobs = _jobs(card=True, stars=True)
    assert set(jobs) == {"recover-generation", "deliver", "housekeeping", "reconcile-payments", "reconcile-stars"}
    assert _every(jobs["reconcile-payments"]) == _every(jobs["reconcile-stars"]) == timedelta(seconds=60)
    assert _every(jobs["recover-generation"]) == timedelta(seconds=30)
    assert _every(jobs["housekeeping"]) == timedelta(seconds=HOUSEKEEPING_INTERVAL_SECONDS)


async def test_no_payment_rail_means_no_reconcile_job() -> None:
    assert set(_jobs(card=False, stars=False)) == {"recover-generation", "deliver", "housekeeping"}


async def test_cards_alone_reconcile_payments_but_not_stars() -> None:
    assert "reconcile-stars" not in _jobs(card=True, stars=False)
    assert "reconcile-payments" in _jobs(card=True, stars=False)


async def test_stars_alone_still_reconcile_refunds() -> None:
    assert {"reconcile-payments", "reconcile-stars"} <= set(_jobs(card=False, stars=True))


async def test_beats_run_on_their_interval_and_none_is_added_paused() -> None:
    beats = (Beat("at-once", _nothing, 5, at_start=True), Beat("later", _nothing, 30))
    jobs = _jobs(card=False, stars=False, beats=beats)
    assert all(job.next_run_time is not None for job in jobs.values())  # None would mean paused
    assert jobs["at-once"].next_run_time < jobs["later"].next_run_time
    assert _every(jobs["later"]) == timedelta(seconds=30)


async def test_provider_health_is_probed_at_start_and_on_its_interval() -> None:
    probed = cast(ProviderHealthMonitor, SimpleNamespace(check=_nothing, names=["kie"]))
    jobs = _jobs(card=False, stars=False, provider_health=probed)
    assert _every(jobs["provider-health"]) == timedelta(seconds=PROVIDER_HEALTH_INTERVAL_SECONDS)
    assert jobs["provider-health"].next_run_time <= jobs["housekeeping"].next_run_time - timedelta(seconds=60)
    # Nothing to probe (no provider offers a probe): no job.
    nothing = cast(ProviderHealthMonitor, SimpleNamespace(check=_nothing, names=[]))
    assert "provider-health" not in _jobs(card=False, stars=False, provider_health=nothing)


async def test_reminders_run_on_their_interval() -> None:
    reminders = cast(ReminderService, SimpleNamespace(run=_nothing))
    jobs = _jobs(card=False, stars=False, reminders=reminders)
    assert _every(jobs["reminders"]) == timedelta(seconds=REMINDERS_INTERVAL_SECONDS)


async def test_the_engine_jobs_are_registered_here_paused_until_the_engine_starts() -> None:
    engine_jobs = [
        WakeableJob("engine-dispatch", _nothing, 2, wait_for_wake=True),
        WakeableJob("engine-poll", _nothing, 60, wait_for_wake=True),
    ]
    scheduler, _running = build_scheduler(
        engine=cast(GenerationEngine, SimpleNamespace(recover=_nothing, jobs=lambda: engine_jobs)),
        delivery=WakeableJob("deliver", _nothing, 0.5),
        housekeeping=cast(Housekeeping, SimpleNamespace(run=_nothing)),
        payments=_payments(card=False, stars=False),
        recover_seconds=30,
    )
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert {"engine-dispatch", "engine-poll"} <= set(jobs)
    assert jobs["engine-dispatch"].next_run_time is None and jobs["engine-poll"].next_run_time is None
    assert _every(jobs["engine-poll"]) == timedelta(seconds=60)
