"""The image-provider protocol: what the generation engine needs from Kie.ai, Replicate or a fake.

Every call is fire-and-forget: ``create_task`` returns the provider's task id at once, and the
result arrives later through ``parse_callback`` (a webhook) or ``get_task`` (a poll).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class TaskState(StrEnum):
    QUEUED = "queued"  # accepted, not running yet (Kie waiting/queuing, Replicate starting)
    RUNNING = "running"  # Kie generating, Replicate processing
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # terminal: Kie fail, Replicate failed/canceled/aborted


@dataclass(frozen=True, slots=True)
class TaskResult:
    provider_task_id: str
    state: TaskState
    image_urls: tuple[str, ...] = ()
    error: str | None = None
    # For FAILED results: may the same prompt be tried again (transient) or is it final (policy)?
    retryable: bool = True
    # When the provider says it finished (its own clock), if it says: a poll finds a result up to a
    # poll step late, and the album window and the latency figures count from the real moment.
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in (TaskState.SUCCEEDED, TaskState.FAILED)


def provider_time(value: object) -> datetime | None:
    """A provider's timestamp as an aware UTC datetime: Unix milliseconds (a number or a string of
    digits, Kie's ``completeTime``) or ISO 8601 (Replicate's ``completed_at``, Kie's legacy APIs).
    None for anything else: the time is a refinement, never a reason to refuse a result."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        if value <= 0:
            return None
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    aspect_ratio: str = "3:4"
    output_format: str = "png"
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max_calls`` in any window of ``period_seconds`` (account-wide)."""

    max_calls: int
    period_seconds: float


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    create: RateLimit
    status: RateLimit = field(default_factory=lambda: RateLimit(50, 1.0))


class ProviderError(Exception):
    """Base of every provider failure; ``retryable`` tells the engine whether to try again."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableProviderError(ProviderError):
    """429, 5xx, timeouts, network errors: the same call may succeed later."""

    retryable = True


class RateLimitedError(RetryableProviderError):
    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """Auth, validation, content policy: repeating the same call will not help."""


class TaskNotFoundError(PermanentProviderError):
    """The provider does not know this task id (Kie 422 "recordInfo is null", Replicate 404)."""


class InsufficientBalanceError(ProviderError):
    """The account ran out of credits: move to the fallback provider, alert the admins."""


class BadSignatureError(Exception):
    """A callback/webhook whose signature, timestamp or shape does not verify."""


class MalformedCallbackError(BadSignatureError):
    """A callback body that is not what any provider sends (not JSON, too deep, no task id): a 400."""


@runtime_checkable
class ImageProvider(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def limits(self) -> ProviderLimits: ...

    @property
    def create_limiter(self) -> CreateLimiter | None:
        """The budget ``create_task`` admits itself through (None: unlimited, as in unit tests)."""

    async def upload_reference(self, data: bytes, name: str, *, stored_key: str | None = None) -> str:
        """Upload one reference photo; return a URL the provider can read. Unique names only.
        ``stored_key`` is where our file store holds it: a provider that reads our own signed
        ``/files`` links (the self-hosted generator) links to it instead of uploading ``data``."""

    async def create_task(
        self,
        prompt: str,
        reference_urls: Sequence[str],
        options: GenerationOptions,
        callback_url: str | None,
    ) -> str:
        """Start one generation; return the provider task id. Never waits for the image."""

    async def get_task(self, provider_task_id: str) -> TaskResult: ...

    async def callback_task_id(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        """The task a callback is about, after every check that costs no outbound call (body shape,
        signature when configured). Raises MalformedCallbackError or BadSignatureError."""

    async def parse_callback(self, headers: Mapping[str, str], raw_body: bytes) -> TaskResult:
        """Verify and decode a callback. Raises BadSignatureError. The result is trustworthy:
        providers whose callbacks are not fully signed re-fetch the task before answering."""

    async def download(self, url: str) -> bytes:
        """Fetch a result image (https URL or ``data:`` URI) with the provider's auth if needed."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """What a provider's health probe learned; None: this provider cannot tell (no such endpoint)."""

    balance: float | None = None  # remaining account credits, in the provider's own unit
    model: str | None = None  # the configured model the probe looked up
    model_exists: bool | None = None  # False: the provider no longer offers it (retired, renamed)


@runtime_checkable
class HealthProbe(Protocol):
    """Optional beside ImageProvider: providers with an account or model endpoint implement it."""

    async def probe_health(self) -> AccountHealth:
        """One cheap call or two; raises ProviderError when the provider cannot be asked."""


@dataclass(frozen=True, slots=True)
class Room:
    """What a create limiter can admit now: ``free`` slots, else a slot frees in ``wait_seconds``."""

    free: int
    wait_seconds: float


class CreateLimiter(Protocol):
    """Admission to a provider's account-wide create budget (local or shared through Redis)."""

    max_calls: int
    period_seconds: float

    def admit(self) -> AbstractAsyncContextManager[None]:
        """Admission for one call whose slot counts from the moment it is answered."""

    async def room(self) -> Room:
        """Admissions possible at once (after this process's waiters), or the wait for the next."""

    def restore(self, admitted_wall_times: Iterable[float]) -> None:
        """Seed the window with creates made before a restart (no-op where the window is shared)."""


@asynccontextmanager
async def admitted(limiter: CreateLimiter | StatusLimiter | None) -> AsyncIterator[None]:
    """Make one call inside ``limiter``'s budget (no limiter: at once)."""
    if limiter is None:
        yield
        return
    async with limiter.admit():
        yield


class StatusLimiter(Protocol):
    """Admission to a provider's status-call budget (Kie ``recordInfo``: 10/s per key, kie.md §3.3).

    It also tells its budget, so the engine sizes a poll round to what it admits soon instead of
    queueing a long line of polls behind it (both limiters in providers/ratelimit.py qualify)."""

    @property
    def max_calls(self) -> int: ...

    @property
    def period_seconds(self) -> float: ...

    @property
    def safety_margin_seconds(self) -> float: ...

    def admit(self) -> AbstractAsyncContextManager[None]:
        """Admission for one call whose slot counts from the moment it is answered."""
