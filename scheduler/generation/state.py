"""What the engine's parts share: the configuration, and the little they know in memory.

None of it is the truth (every state lives in the database); it is what one process needs to tell
its own parts, such as that a create is in flight while a callback for it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from scheduler.background import BackgroundTasks, KeyedLocks

# Forged ids named in callbacks must not pile up while creates are in flight.
MAX_EARLY_CALLBACKS = 10_000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    worker_id: str
    public_url: str = ""
    poll_interval_seconds: float = 60.0
    tick_seconds: float = 2.0
    lease_seconds: float = 120.0
    # A ceiling on creates in HTTP at once. What is claimed is sized by the provider's create
    # budget (``Submitter.create_room``): a task is claimed only when its create can start at once.
    max_inflight_creates: int = 200
    jobs_per_claim: int = 20
    # At most this many polls per round, and per provider no more than its status budget admits
    # within poll_round_seconds (at least one window's worth).
    polls_per_round: int = 200
    poll_round_seconds: float = 1.0
    # Recent submit → done durations older than this are not trusted for the poll schedule.
    latency_window_seconds: float = 3600.0
    store_retry_after_seconds: float = 120.0


class EngineState:
    def __init__(self) -> None:
        self.stopping = False
        # Stores, and the latency figures read at start; stopped with the engine.
        self.background = BackgroundTasks("engine")
        # A fast provider can call back before our "submitted" commit lands. Such a callback names an
        # id the database does not know yet; while a create is in flight its id is kept (never
        # fetched: a forger could name any id), and the submitter re-fetches it if it proves ours.
        self._creating: dict[str, int] = {}
        self._early_callbacks: dict[tuple[str, str], None] = {}
        # (provider, task id) whose callback is being handled: the backstop poll leaves it alone meanwhile.
        self.callbacks_in_flight: set[tuple[str, str]] = set()
        # Callbacks for one task are looked at one at a time: a repeat that read the task's status while
        # the first was still being handled would fetch it a second time.
        self.callback_locks = KeyedLocks()
        # The poll job runs at the earliest due poll; a submit whose first poll comes earlier moves it
        # (the engine sets this to the poll job's ``WakeableJob.wake_at``).
        self.poll_at: Callable[[datetime], None] = _nobody_polls

    # ------------------------------------------------------------ creates in flight, early callbacks

    def create_started(self, provider: str) -> None:
        self._creating[provider] = self._creating.get(provider, 0) + 1

    def create_ended(self, provider: str) -> None:
        self._creating[provider] -= 1

    def creating(self, provider: str) -> bool:
        return bool(self._creating.get(provider))

    def remember_early_callback(self, key: tuple[str, str]) -> None:
        if len(self._early_callbacks) > MAX_EARLY_CALLBACKS:
            self._early_callbacks.clear()
        self._early_callbacks[key] = None

    def forget_early_callback(self, key: tuple[str, str]) -> None:
        self._early_callbacks.pop(key, None)

    def take_early_callback(self, key: tuple[str, str]) -> bool:
        """Whether a callback came for ``key`` before its create was recorded (and forget it)."""
        if key not in self._early_callbacks:
            return False
        del self._early_callbacks[key]
        return True

    # ------------------------------------------------------------ the poll job

    def poll_due_by(self, moment: datetime) -> None:
        """A poll is due at ``moment``: the poll job runs then, unless it runs earlier anyway."""
        self.poll_at(moment)


def _nobody_polls(_moment: datetime) -> None:
    """No poll job (an engine whose parts are driven by hand, in tests): nothing to move."""
