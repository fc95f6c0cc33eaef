"""The fallback policy: when a failed task is retried, moved to the next provider, or skipped;
when a submitted task is polled or declared stuck; and a circuit breaker per provider.

Everything here takes the current time as an argument and never reads a clock, so the rules are
exact to test and identical in every process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from studio.latency import LatencyEstimate

# Without callbacks, once a task is later than recent tasks usually are (the high percentile), each
# further poll waits this much longer than the previous one.
POLL_BACKOFF_FACTOR = 1.5
# Without callbacks the first poll aims this share of the recent low percentile. A task found done at
# its first poll is measured as taking that long, so aiming exactly at the percentile would pin the
# estimate there; aiming a little early lets it follow a provider that got faster.
FIRST_POLL_LEAD = 0.85
# With callbacks the backstop poll waits for the recent high percentile plus this share of it (at
# least one poll step): a callback is late only when the task is clearly slower than recent ones.
CALLBACK_GRACE = 0.5
DEFAULT_POLL_INTERVAL_SECONDS = 60.0  # POLL_INTERVAL_SECONDS in DESIGN.md


class PolicyError(ValueError):
    """A policy or breaker description that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class ProviderPolicy:
    name: str
    max_attempts: int  # attempts on this provider in total, the first one included
    # Delay before retry n (1-based) is backoff_seconds[n - 1]; the last value repeats when there
    # are more retries than values, and values beyond max_attempts - 1 are never used.
    backoff_seconds: tuple[float, ...]
    stuck_after_seconds: float
    # The static guess of the provider's low latency, used until recent latency is known.
    first_poll_after_seconds: float
    poll_every_seconds: float  # the step between polls while a task is within its usual latency
    # The provider's circuit breaker (CircuitBreaker below): opens after this many failures in a row
    # within the window, and lets one probe through after the cool-down. Optional in the JSON.
    breaker_failures: int = 5
    breaker_window_seconds: float = 60.0
    breaker_cooldown_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.name:
            raise PolicyError("provider name must not be empty")
        if self.max_attempts < 1:
            raise PolicyError(f"{self.name}: max_attempts must be at least 1")
        if self.max_attempts > 1 and not self.backoff_seconds:
            raise PolicyError(f"{self.name}: retries need at least one backoff value")
        if any(delay < 0 for delay in self.backoff_seconds):
            raise PolicyError(f"{self.name}: backoff values must not be negative")
        for label, value in (
            ("stuck_after_seconds", self.stuck_after_seconds),
            ("first_poll_after_seconds", self.first_poll_after_seconds),
            ("poll_every_seconds", self.poll_every_seconds),
            ("breaker_window_seconds", self.breaker_window_seconds),
            ("breaker_cooldown_seconds", self.breaker_cooldown_seconds),
        ):
            if value <= 0:
                raise PolicyError(f"{self.name}: {label} must be positive")
        if self.breaker_failures < 1:
            raise PolicyError(f"{self.name}: breaker_failures must be at least 1")

    def backoff_before_retry(self, retry_number: int) -> float:
        if retry_number < 1:
            raise ValueError(f"retry numbers start at 1, got {retry_number}")
        return self.backoff_seconds[min(retry_number, len(self.backoff_seconds)) - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_attempts": self.max_attempts,
            "backoff_seconds": list(self.backoff_seconds),
            "stuck_after_seconds": self.stuck_after_seconds,
            "first_poll_after_seconds": self.first_poll_after_seconds,
            "poll_every_seconds": self.poll_every_seconds,
            "breaker_failures": self.breaker_failures,
            "breaker_window_seconds": self.breaker_window_seconds,
            "breaker_cooldown_seconds": self.breaker_cooldown_seconds,
        }

    def new_breaker(self) -> CircuitBreaker:
        return CircuitBreaker(
            failure_threshold=self.breaker_failures,
            window_seconds=self.breaker_window_seconds,
            cooldown_seconds=self.breaker_cooldown_seconds,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderPolicy:
        expected = {
            "name",
            "max_attempts",
            "backoff_seconds",
            "stuck_after_seconds",
            "first_poll_after_seconds",
            "poll_every_seconds",
        }
        optional = {"breaker_failures", "breaker_window_seconds", "breaker_cooldown_seconds"}
        # A typo in settings must fail loudly instead of silently keeping a default.
        unknown = set(data) - expected - optional
        missing = expected - set(data)
        if unknown or missing:
            raise PolicyError(f"provider policy: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        name = data["name"]
        if not isinstance(name, str):
            raise PolicyError("provider policy: name must be a string")
        backoff = data["backoff_seconds"]
        if not isinstance(backoff, list | tuple):
            raise PolicyError(f"{name}: backoff_seconds must be a list of numbers")
        return cls(
            name=name,
            max_attempts=_whole(data["max_attempts"], f"{name}.max_attempts"),
            backoff_seconds=tuple(_number(value, f"{name}.backoff_seconds") for value in backoff),
            stuck_after_seconds=_number(data["stuck_after_seconds"], f"{name}.stuck_after_seconds"),
            first_poll_after_seconds=_number(data["first_poll_after_seconds"], f"{name}.first_poll_after_seconds"),
            poll_every_seconds=_number(data["poll_every_seconds"], f"{name}.poll_every_seconds"),
            breaker_failures=_whole(data.get("breaker_failures", 5), f"{name}.breaker_failures"),
            breaker_window_seconds=_number(data.get("breaker_window_seconds", 60.0), f"{name}.breaker_window_seconds"),
            breaker_cooldown_seconds=_number(
                data.get("breaker_cooldown_seconds", 30.0), f"{name}.breaker_cooldown_seconds"
            ),
        )


KIE_POLICY = ProviderPolicy(
    name="kie",
    max_attempts=3,
    backoff_seconds=(2.0, 10.0, 30.0),
    stuck_after_seconds=600.0,
    first_poll_after_seconds=25.0,
    poll_every_seconds=3.0,  # kie.md §3.3: 2-3 s while a task is young
)
REPLICATE_POLICY = ProviderPolicy(
    name="replicate",
    max_attempts=2,
    backoff_seconds=(5.0, 20.0),
    stuck_after_seconds=600.0,
    first_poll_after_seconds=15.0,
    poll_every_seconds=5.0,
)

# Our own generator: no account to protect, tasks usually take seconds on a warm GPU, and a failure
# is usually a worker restarting, so retries come sooner than on the hosted providers.
SELFHOSTED_POLICY = ProviderPolicy(
    name="selfhosted",
    max_attempts=3,
    backoff_seconds=(2.0, 10.0),
    stuck_after_seconds=600.0,
    first_poll_after_seconds=10.0,
    poll_every_seconds=3.0,
)
# Each provider's policy when FALLBACK_POLICY names only the order ("selfhosted,kie,replicate").
DEFAULT_PROVIDER_POLICIES: Mapping[str, ProviderPolicy] = {
    policy.name: policy for policy in (KIE_POLICY, REPLICATE_POLICY, SELFHOSTED_POLICY)
}


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    providers: tuple[ProviderPolicy, ...] = (KIE_POLICY, REPLICATE_POLICY)  # in fallback order

    def __post_init__(self) -> None:
        if not self.providers:
            raise PolicyError("a fallback policy needs at least one provider")
        names = [provider.name for provider in self.providers]
        if len(set(names)) != len(names):
            raise PolicyError(f"provider names must be unique, got {names}")

    def provider(self, index: int) -> ProviderPolicy:
        if not 0 <= index < len(self.providers):
            raise IndexError(f"no provider at index {index}")
        return self.providers[index]

    def index_of(self, name: str) -> int:
        for index, provider in enumerate(self.providers):
            if provider.name == name:
                return index
        raise KeyError(f"no provider named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"providers": [provider.to_dict() for provider in self.providers]}

    def with_primary(self, name: str) -> FallbackPolicy:
        """The same policy with ``name`` first and the others after it in their order (an admin's switch)."""
        first = self.providers[self.index_of(name)]
        return FallbackPolicy(providers=(first, *(p for p in self.providers if p.name != name)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FallbackPolicy:
        providers = data.get("providers")
        if set(data) != {"providers"} or not isinstance(providers, list | tuple):
            raise PolicyError('a fallback policy is {"providers": [...]}')
        return cls(providers=tuple(ProviderPolicy.from_dict(_mapping(item)) for item in providers))


def parse_fallback_policy(text: str) -> FallbackPolicy:
    """FALLBACK_POLICY: empty (every known provider, hosted ones first), a comma-separated order of
    provider names with their default policies ("kie,selfhosted,replicate"), or the full JSON of
    ``FallbackPolicy.to_dict()``. Providers without credentials are left out later, at start."""
    text = text.strip()
    if not text:
        return FallbackPolicy(providers=tuple(DEFAULT_PROVIDER_POLICIES.values()))
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise PolicyError(f"not JSON: {error}") from None
        return FallbackPolicy.from_dict(_mapping(data))
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DEFAULT_PROVIDER_POLICIES]
    if unknown:
        raise PolicyError(f"unknown providers {unknown}; known: {', '.join(DEFAULT_PROVIDER_POLICIES)}")
    return FallbackPolicy(providers=tuple(DEFAULT_PROVIDER_POLICIES[name] for name in names))


class DecisionAction(StrEnum):
    RETRY = "retry"  # same provider, at retry_at
    FALLBACK = "fallback"  # next provider, attempts start again from 0
    SKIP = "skip"  # no provider left: the task is skipped and its credit released


@dataclass(frozen=True, slots=True)
class Decision:
    action: DecisionAction
    provider_index: int | None  # the provider for the next attempt; None when skipping
    attempts_on_provider: int  # attempts already made on that provider
    retry_at: datetime | None  # when to submit again; None when skipping


def decide_after_failure(
    policy: FallbackPolicy,
    provider_index: int,
    attempts_on_provider: int,
    retryable: bool,
    now: datetime,
) -> Decision:
    """What to do with a task whose latest attempt failed.

    ``attempts_on_provider`` counts the attempts made on this provider, the failed one included.
    Pass ``retryable=False`` for failures the same provider will repeat: content policy,
    validation, and an exhausted account balance - those go straight to the next provider.
    A stuck task counts as a retryable failure.
    """
    provider = policy.provider(provider_index)
    if attempts_on_provider < 1:
        raise ValueError(f"a failure implies at least one attempt, got {attempts_on_provider}")
    if retryable and attempts_on_provider < provider.max_attempts:
        delay = provider.backoff_before_retry(attempts_on_provider)
        return Decision(
            action=DecisionAction.RETRY,
            provider_index=provider_index,
            attempts_on_provider=attempts_on_provider,
            retry_at=now + timedelta(seconds=delay),
        )
    if provider_index + 1 < len(policy.providers):
        return Decision(
            action=DecisionAction.FALLBACK,
            provider_index=provider_index + 1,
            attempts_on_provider=0,
            retry_at=now,
        )
    return Decision(action=DecisionAction.SKIP, provider_index=None, attempts_on_provider=0, retry_at=None)


def is_stuck(policy: FallbackPolicy, provider_index: int, submitted_at: datetime, now: datetime) -> bool:
    stuck_after = timedelta(seconds=policy.provider(provider_index).stuck_after_seconds)
    return now - submitted_at >= stuck_after


def next_poll_at(
    policy: FallbackPolicy,
    provider_index: int,
    submitted_at: datetime,
    polls_done: int,
    now: datetime,
    callbacks_enabled: bool,
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS,
    latency: LatencyEstimate | None = None,
) -> datetime:
    """When to ask the provider about a submitted task next.

    ``latency`` is what recent tasks of this provider took (``studio.latency``); None when too few
    are known, and then the policy's static guesses stand in.

    With callbacks the poll is only the backstop for a callback that is late: the first comes once
    the task is clearly slower than recent ones (the high percentile plus a grace), the later ones
    every ``poll_interval_seconds``. Without latency figures the first comes an interval after
    submission, as the backstop always did.

    Without callbacks the first poll comes a little before the recent low percentile (or at
    ``first_poll_after_seconds``), then every ``poll_every_seconds`` while the task is within its
    usual latency; beyond the high percentile (or the static guess) the gap grows with the delay,
    ``POLL_BACKOFF_FACTOR`` per poll, never sparser than the interval.

    The poll never lands after the stuck deadline, so a stuck task is noticed on time.
    """
    if polls_done < 0:
        raise ValueError(f"polls_done must not be negative, got {polls_done}")
    if poll_interval_seconds <= 0:
        raise ValueError("poll_interval_seconds must be positive")
    provider = policy.provider(provider_index)
    step = provider.poll_every_seconds
    if callbacks_enabled:
        if polls_done > 0:
            due = now + timedelta(seconds=poll_interval_seconds)
        elif latency is None:
            due = submitted_at + timedelta(seconds=poll_interval_seconds)
        else:
            grace = max(step, CALLBACK_GRACE * latency.high_seconds)
            due = submitted_at + timedelta(seconds=latency.high_seconds + grace)
    elif polls_done == 0:
        first = provider.first_poll_after_seconds if latency is None else FIRST_POLL_LEAD * latency.low_seconds
        due = submitted_at + timedelta(seconds=first)
    else:
        usual = provider.first_poll_after_seconds if latency is None else latency.high_seconds
        overdue = (now - submitted_at).total_seconds() - usual
        gap = max(step, (POLL_BACKOFF_FACTOR - 1) * overdue)
        due = now + timedelta(seconds=min(gap, poll_interval_seconds))
    stuck_deadline = submitted_at + timedelta(seconds=provider.stuck_after_seconds)
    return max(now, min(due, stuck_deadline))


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    """Stops sending work to a provider that keeps failing, then lets one probe test it.

    Opens after ``failure_threshold`` failures in a row, all within ``window_seconds``; a success
    ends the streak, because at volume a few scattered failures are normal and are the retry
    policy's business. After ``cooldown_seconds`` it is half-open: one probe at a time is allowed;
    the probe's success closes the breaker, its failure opens it again. A probe that never reports
    (its process died) is given up after another cooldown so the breaker cannot stay stuck.

    Results of requests admitted before the breaker opened are ignored while it is open.
    """

    failure_threshold: int = 5
    window_seconds: float = 60.0
    cooldown_seconds: float = 30.0
    failures: list[datetime] = field(default_factory=list)
    opened_at: datetime | None = None
    probe_started_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise PolicyError("failure_threshold must be at least 1")
        if self.window_seconds <= 0 or self.cooldown_seconds <= 0:
            raise PolicyError("window_seconds and cooldown_seconds must be positive")

    def state(self, now: datetime) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now < self.opened_at + timedelta(seconds=self.cooldown_seconds):
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow_request(self, now: datetime) -> bool:
        """May a request go out now? In half-open state a True takes the single probe slot,
        so the caller must report that request's result with record_success/record_failure."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        probe_lost_at = (
            None if self.probe_started_at is None else self.probe_started_at + timedelta(seconds=self.cooldown_seconds)
        )
        if probe_lost_at is not None and now < probe_lost_at:
            return False
        self.probe_started_at = now
        return True

    def record_success(self, now: datetime) -> None:
        state = self.state(now)
        if state is BreakerState.OPEN:
            return
        self._close()

    def record_failure(self, now: datetime) -> None:
        state = self.state(now)
        if state is BreakerState.OPEN:
            return
        if state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        window_start = now - timedelta(seconds=self.window_seconds)
        self.failures = [failed_at for failed_at in self.failures if failed_at > window_start]
        self.failures.append(now)
        if len(self.failures) >= self.failure_threshold:
            self._open(now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failure_threshold": self.failure_threshold,
            "window_seconds": self.window_seconds,
            "cooldown_seconds": self.cooldown_seconds,
            "failures": [failed_at.isoformat() for failed_at in self.failures],
            "opened_at": _iso_or_none(self.opened_at),
            "probe_started_at": _iso_or_none(self.probe_started_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CircuitBreaker:
        try:
            return cls(
                failure_threshold=_whole(data["failure_threshold"], "failure_threshold"),
                window_seconds=_number(data["window_seconds"], "window_seconds"),
                cooldown_seconds=_number(data["cooldown_seconds"], "cooldown_seconds"),
                failures=[datetime.fromisoformat(value) for value in data.get("failures", [])],
                opened_at=_datetime_or_none(data.get("opened_at")),
                probe_started_at=_datetime_or_none(data.get("probe_started_at")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PolicyError(f"not a circuit breaker: {error}") from error

    def _open(self, now: datetime) -> None:
        self.opened_at = now
        self.probe_started_at = None
        self.failures = []

    def _close(self) -> None:
        self.opened_at = None
        self.probe_started_at = None
        self.failures = []


def choose_provider(
    policy: FallbackPolicy,
    breakers: Mapping[str, CircuitBreaker],
    paused: set[str] | frozenset[str],
    now: datetime,
) -> int | None:
    """The index of the first provider that takes new work now, or None if none does (the task
    then waits; it is not a failure). A provider without a breaker is treated as healthy.

    Breakers are asked in order and the loop stops at the first yes, so a half-open probe slot
    is only ever taken by the provider that then gets the request.
    """
    for index, provider in enumerate(policy.providers):
        if provider.name in paused:
            continue
        breaker = breakers.get(provider.name)
        if breaker is None or breaker.allow_request(now):
            return index
    return None


def peek_provider(
    policy: FallbackPolicy,
    breakers: Mapping[str, CircuitBreaker],
    paused: set[str] | frozenset[str],
    now: datetime,
) -> int | None:
    """The provider ``choose_provider`` would most likely pick, read-only: it takes no half-open
    probe slot, so it serves sizing work (how many creates fit now), not sending it."""
    for index, provider in enumerate(policy.providers):
        if provider.name in paused:
            continue
        breaker = breakers.get(provider.name)
        if breaker is None or breaker.state(now) != BreakerState.OPEN:
            return index
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError("each provider policy must be an object")
    return value


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{where}: expected an integer")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{where}: expected a number")
    return float(value)


def _iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _datetime_or_none(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
