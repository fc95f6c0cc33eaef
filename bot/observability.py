"""Health and metrics shared by the web app, the bot and the scheduler (one per process)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


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
        self.provider_latency = Histogram(
            "pinglass_provider_latency_seconds",
            "Provider task latency, submit to done",
            ["provider"],
            buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600),
            registry=r,
        )


async def database_reachable(engine: AsyncEngine) -> tuple[bool, float, str | None]:
    started = time.monotonic()
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not reachable"; the reason goes to the report
        return False, time.monotonic() - started, type(exc).__name__
    return True, time.monotonic() - started, None
