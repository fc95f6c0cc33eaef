"""Provider health: each image provider's account balance and configured model, probed at start and on
a clock (scheduler/jobs.py). Admins hear about a low balance or a vanished model once, when it starts,
and once more when it ends; never again on every probe while nothing changed.

Several processes: every process that runs the scheduler probes on its own (a probe is one cheap GET,
and each process's /healthz and /provider show what it saw itself). Who tells the admins is decided by
the ``AlertLatch``. With ``REDIS_URL`` set it is one Redis key per provider and condition, swapped
atomically (GETSET): only the process that flips it from one state to the other alerts, so a change is
told once across the deploy, and a restart with the balance still low tells nothing new. Without Redis
the latch is this process's memory: each scheduler process alerts once per change, and a restart while
the balance is still low alerts again. No table is used: the state is cheap to learn again and a
repeated alert after a restart is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from providers.base import AccountHealth, HealthProbe, ImageProvider
from scheduler.notices import ProviderAlert, ProviderCondition
from scheduler.notify import UserNotifier

log = logging.getLogger(__name__)

_BAD = "bad"
_GOOD = "ok"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What the last probe of one provider found (``error``: it could not be asked)."""

    provider: str
    checked_at: datetime
    balance: float | None = None
    balance_alert_below: float | None = None
    model: str | None = None
    model_exists: bool | None = None
    error: str | None = None

    @property
    def balance_low(self) -> bool:
        return (
            self.balance is not None
            and self.balance_alert_below is not None
            and self.balance < self.balance_alert_below
        )

    @property
    def ok(self) -> bool:
        return self.error is None and not self.balance_low and self.model_exists is not False

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "balance": self.balance,
            "balance_alert_below": self.balance_alert_below,
            "model": self.model,
            "model_exists": self.model_exists,
            "checked_at": self.checked_at.isoformat(),
            "error": self.error,
        }


class AlertLatch(Protocol):
    async def swap(self, key: str, state: str) -> str | None:
        """Record ``state`` under ``key``; answer the state recorded before (None: never)."""


class MemoryLatch:
    """One process's memory (no Redis): see the module's note on several processes."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}

    async def swap(self, key: str, state: str) -> str | None:
        before = self._states.get(key)
        self._states[key] = state
        return before


class RedisLatch:
    """Shared by every process of the deploy: GETSET is atomic, so one process sees each flip."""

    def __init__(self, redis: Any, prefix: str = "pinglass:provider-health:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def swap(self, key: str, state: str) -> str | None:
        before = await self._redis.getset(self._prefix + key, state)
        return before.decode() if isinstance(before, bytes) else before


class ProviderHealthMonitor:
    """Probes the providers that offer a probe (``providers.base.HealthProbe``); others are not listed."""

    def __init__(
        self,
        providers: Sequence[ImageProvider],
        *,
        notifier: UserNotifier,
        admin_chat_ids: Sequence[int] = (),
        balance_alert_below: Mapping[str, float] | None = None,
        latch: AlertLatch | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._probes: dict[str, HealthProbe] = {
            provider.name: provider for provider in providers if isinstance(provider, HealthProbe)
        }
        self.notifier = notifier
        self.admin_chat_ids = tuple(admin_chat_ids)
        self.balance_alert_below = dict(balance_alert_below or {})
        self.latch: AlertLatch = latch or MemoryLatch()
        self._clock = clock
        self.reports: dict[str, ProbeReport] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._probes)

    async def check(self) -> list[ProbeReport]:
        """Probe every provider at once, keep what each said, tell the admins what changed."""
        names = self.names
        answers = await asyncio.gather(*(self._probes[name].probe_health() for name in names), return_exceptions=True)
        reports = []
        for name, answer in zip(names, answers, strict=True):
            report = self._report(name, answer)
            self.reports[name] = report
            reports.append(report)
            if report.error is None:
                await self._alert_changes(report)
        return reports

    def as_json(self) -> dict[str, object]:
        """Per provider for /healthz; a provider not probed yet shows ``checked_at: null``."""
        unknown = dict.fromkeys(ProbeReport("", datetime.min).as_json())
        return {name: self.reports[name].as_json() if name in self.reports else unknown for name in self.names}

    def _report(self, name: str, answer: AccountHealth | BaseException) -> ProbeReport:
        now = self._clock()
        threshold = self.balance_alert_below.get(name)
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer  # cancellation and the like are not a provider's answer
            # Not an alert: a provider that cannot be asked is the breaker's business; the report shows it.
            log.warning("health probe of %s failed: %s: %s", name, type(answer).__name__, answer)
            return ProbeReport(name, now, balance_alert_below=threshold, error=f"{type(answer).__name__}: {answer}")
        return ProbeReport(
            name,
            now,
            balance=answer.balance,
            balance_alert_below=threshold,
            model=answer.model,
            model_exists=answer.model_exists,
        )

    async def _alert_changes(self, report: ProbeReport) -> None:
        checks: list[tuple[ProviderCondition, bool]] = []
        if report.balance is not None and report.balance_alert_below is not None:
            checks.append((ProviderCondition.BALANCE_LOW, report.balance_low))
        if report.model_exists is not None:
            checks.append((ProviderCondition.MODEL_MISSING, not report.model_exists))
        for condition, bad in checks:
            before = await self.latch.swap(f"{report.provider}:{condition}", _BAD if bad else _GOOD)
            # A first look that finds all well is no news; any flip, and a first look at trouble, is.
            if before == (_BAD if bad else _GOOD) or (before is None and not bad):
                continue
            await self._tell(
                ProviderAlert(
                    provider=report.provider,
                    condition=condition,
                    active=bad,
                    balance=report.balance,
                    threshold=report.balance_alert_below,
                    model=report.model,
                )
            )

    async def _tell(self, alert: ProviderAlert) -> None:
        log.log(
            logging.ERROR if alert.active else logging.INFO,
            "PROVIDER %s %s %s (balance %s, alert below %s, model %s)",
            alert.provider,
            alert.condition,
            "STARTED" if alert.active else "ended",
            alert.balance,
            alert.threshold,
            alert.model,
        )
        for admin_id in self.admin_chat_ids:
            await self.notifier.tell(admin_id, "en", alert)
