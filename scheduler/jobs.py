"""Every clocked background job of a PinGlass process, on one APScheduler.

The use cases' jobs (the generation engine's dispatch, submit, poll and leases; recover generation,
deliver, housekeeping, reconcile payments) are registered here and nowhere else, next to the services
they run; the process passes in its own liveness beats (``Beat``), which belong to whoever runs the
process. Event-driven work wakes its job through ``scheduler.wakeup`` (``WakeableJob``): no loop of
its own runs beside this scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.background import RunningJobs
from scheduler.engine import GenerationEngine
from scheduler.housekeeping import Housekeeping
from scheduler.payments import PaymentService
from scheduler.provider_health import ProviderHealthMonitor
from scheduler.reminders import ReminderService
from scheduler.wakeup import WakeableJob

# Retention is counted in days; an hourly pass deletes what fell due within the hour.
HOUSEKEEPING_INTERVAL_SECONDS = 3600
# A balance drains by a pack's worth of credits in minutes at most: five minutes notices it in time,
# and one credit GET and one model GET per provider every five minutes costs nothing.
PROVIDER_HEALTH_INTERVAL_SECONDS = 300
# Reminders are due an hour or days after their cause: ten minutes late is on time, and the pass is a
# few indexed reads when nobody is due.
REMINDERS_INTERVAL_SECONDS = 600


@dataclass(frozen=True)
class Beat:
    """A job of the process itself (a heartbeat), run on the same clock as the use cases' jobs."""

    job_id: str
    run: Callable[[], object]
    seconds: float
    at_start: bool = False


def build_scheduler(
    *,
    engine: GenerationEngine,
    delivery: WakeableJob,
    housekeeping: Housekeeping,
    payments: PaymentService,
    recover_seconds: float,
    beats: Sequence[Beat] = (),
    provider_health: ProviderHealthMonitor | None = None,
    reminders: ReminderService | None = None,
) -> tuple[AsyncIOScheduler, RunningJobs]:
    """The scheduler with every job added (not started), and the count of its jobs in flight."""
    # Every job: one run at a time, missed runs folded into one, a late run still runs.
    scheduler = AsyncIOScheduler(
        timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    )
    running = RunningJobs(scheduler)
    now = datetime.now(UTC)
    for beat in beats:
        # next_run_time=None would add the job paused: leave it out for the first run one interval on.
        first_run = {"next_run_time": now} if beat.at_start else {}
        scheduler.add_job(beat.run, "interval", seconds=beat.seconds, id=beat.job_id, **first_run)
    # The engine's own jobs wait for its start() (after the admins' overrides are read); none without a provider.
    for job in engine.jobs():
        job.register(scheduler)
    scheduler.add_job(engine.recover, "interval", seconds=recover_seconds, next_run_time=now, id="recover-generation")
    delivery.register(scheduler)
    scheduler.add_job(housekeeping.run, "interval", seconds=HOUSEKEEPING_INTERVAL_SECONDS, id="housekeeping")
    # Pending payments and open refunds are looked at on the payments' own poll interval.
    reconcile_seconds = payments.poll_interval.total_seconds()
    if payments.yookassa is not None or payments.stars is not None:
        # Pending card payments, open refunds (both rails) and refunds made in the dashboard.
        scheduler.add_job(payments.reconcile, "interval", seconds=reconcile_seconds, id="reconcile-payments")
    if payments.stars is not None:
        scheduler.add_job(payments.reconcile_stars, "interval", seconds=reconcile_seconds, id="reconcile-stars")
    if provider_health is not None and provider_health.names:
        # At start too: a key out of credits or a retired model should be known before the first pack.
        scheduler.add_job(
            provider_health.check,
            "interval",
            seconds=PROVIDER_HEALTH_INTERVAL_SECONDS,
            next_run_time=now,
            id="provider-health",
        )
    if reminders is not None:
        scheduler.add_job(reminders.run, "interval", seconds=REMINDERS_INTERVAL_SECONDS, id="reminders")
    return scheduler, running
