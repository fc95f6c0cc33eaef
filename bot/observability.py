"""Health and metrics shared by the web app, the bot and the scheduler (one per process)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import queue
from storage.models import utcnow
from studio.policy import BreakerState
from studio.states import JobStatus, TaskStatus

log = logging.getLogger(__name__)


@dataclass
class Heartbeat:
    """The scheduler beats; /healthz reports how long ago it last did."""

    interval_seconds: float = 5.0
    last_beat: float | None = None

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def age_seconds(self) -> float | None:
        return None if self.last_beat is None else time.monotonic() - self.last_beat

    def healthy(self) -> bool:
        age = self.age_seconds()
        return age is not None and age < self.interval_seconds * 3


@dataclass
class Metrics:
    """Prometheus metrics in a registry of our own (no global default registry)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.updates_handled = Counter("pinglass_updates_handled", "Telegram updates handled", ["type"], registry=r)
        self.telegram_sends = Counter("pinglass_telegram_sends", "Bot API send calls", ["method"], registry=r)
        self.telegram_429 = Counter("pinglass_telegram_429", "Bot API 429 answers", registry=r)
        self.db_statements = Counter("pinglass_db_statements", "SQL statements sent to the database", registry=r)
        self.provider_latency = Histogram(
            "pinglass_provider_latency_seconds",
            "Provider task latency, submit to done",
            ["provider"],
            # Kie's nano-banana answers in ~5-30 s, a fake or warm model in under 2 s; stuck is minutes.
            buckets=(0.5, 1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600),
            registry=r,
        )
        # Written by refresh_state() when /metrics is scraped (the database is the truth, not memory).
        self.jobs = Gauge("pinglass_jobs", "Generation jobs by status", ["status"], registry=r)
        self.tasks = Gauge("pinglass_tasks", "Generation tasks by status", ["status"], registry=r)
        self.queue_depth = Gauge("pinglass_queue_depth", "Jobs waiting in the queue", registry=r)
        self.queue_oldest_age = Gauge(
            "pinglass_queue_oldest_age_seconds", "Age of the oldest queued job (0 when none)", registry=r
        )
        self.provider_breaker = Gauge(
            "pinglass_provider_breaker",
            "1 for each provider's current breaker state",
            ["provider", "state"],
            registry=r,
        )
        self.state_refresh_errors = Counter(
            "pinglass_metrics_refresh_errors", "Failed database reads for /metrics", registry=r
        )
        self._refreshed_at: float | None = None
        self._refresh_lock = asyncio.Lock()

    async def refresh_state(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        breakers: Mapping[str, str] | None = None,
        *,
        max_age_seconds: float = 2.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        """Bring the state gauges up to date; at most one database read per ``max_age_seconds``,
        however many scrapers ask (three small queries per scrape at most)."""
        for provider, state in (breakers or {}).items():
            for known in BreakerState:
                self.provider_breaker.labels(provider, known.value).set(1 if known.value == state else 0)
        async with self._refresh_lock:
            now = time.monotonic()
            if self._refreshed_at is not None and now - self._refreshed_at < max_age_seconds:
                return
            try:
                async with asyncio.timeout(timeout_seconds), sessionmaker() as session:
                    jobs, tasks, oldest = await queue.status_counts(session)
            except Exception:  # a scrape must still answer: keep the last values, count the failure
                log.warning("could not read queue state for /metrics", exc_info=True)
                self.state_refresh_errors.inc()
                return
            self._refreshed_at = now
            for status in JobStatus:
                self.jobs.labels(status.value).set(jobs.get(status.value, 0))
            for task_status in TaskStatus:
                self.tasks.labels(task_status.value).set(tasks.get(task_status.value, 0))
            self.queue_depth.set(jobs.get(JobStatus.QUEUED.value, 0))
            self.queue_oldest_age.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)


async def database_reachable(engine: AsyncEngine) -> tuple[bool, float, str | None]:
    started = time.monotonic()
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not reachable"; the reason goes to the report
        return False, time.monotonic() - started, type(exc).__name__
    return True, time.monotonic() - started, None
