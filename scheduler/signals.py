"""In-process wake-ups: work that an event can trigger is not left waiting for the next tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class WorkSignals:
    jobs_queued: asyncio.Event = field(default_factory=asyncio.Event)
    tasks_stored: asyncio.Event = field(default_factory=asyncio.Event)
    tasks_pending: asyncio.Event = field(default_factory=asyncio.Event)
    _stored_listeners: list[Callable[[], None]] = field(default_factory=list)

    def on_task_stored(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on every stored portrait (delivery's WakeableJob.wake)."""
        self._stored_listeners.append(listener)

    def job_queued(self) -> None:
        self.jobs_queued.set()

    def task_stored(self) -> None:
        self.tasks_stored.set()
        for listener in self._stored_listeners:
            listener()

    def task_pending(self) -> None:
        self.tasks_pending.set()
