"""In-process wake-ups: work that an event can trigger is not left waiting for the next tick."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class WorkSignals:
    jobs_queued: asyncio.Event = field(default_factory=asyncio.Event)
    tasks_stored: asyncio.Event = field(default_factory=asyncio.Event)
    tasks_pending: asyncio.Event = field(default_factory=asyncio.Event)

    def job_queued(self) -> None:
        self.jobs_queued.set()

    def task_stored(self) -> None:
        self.tasks_stored.set()

    def task_pending(self) -> None:
        self.tasks_pending.set()
