"""In-process wake-ups: work that an event can trigger is not left waiting for the next tick.

A signal calls its listeners: the ``WakeableJob.wake`` of the job that does the work (dispatch for
a queued job, submit for a pending task, delivery for a stored portrait), registered by whoever runs
that job. A signal with no listener yet (a payment before the engine started) is nothing lost: each
job runs once when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class WorkSignals:
    _queued_listeners: list[Callable[[], None]] = field(default_factory=list)
    _pending_listeners: list[Callable[[], None]] = field(default_factory=list)
    _stored_listeners: list[Callable[[], None]] = field(default_factory=list)

    def on_job_queued(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on every queued (paid) job: the engine's dispatch job."""
        self._queued_listeners.append(listener)

    def on_task_pending(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on every task made due for a create: the engine's submit job."""
        self._pending_listeners.append(listener)

    def on_task_stored(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on every stored portrait (delivery's WakeableJob.wake)."""
        self._stored_listeners.append(listener)

    def job_queued(self) -> None:
        for listener in self._queued_listeners:
            listener()

    def task_stored(self) -> None:
        for listener in self._stored_listeners:
            listener()

    def task_pending(self) -> None:
        for listener in self._pending_listeners:
            listener()
