"""The providers the engine may use, in the policy's order, and what it knows about each.

Circuit breakers, the admins' pauses and choice of primary (persisted in the database), which
provider a task goes to, where it calls us back, and how long its tasks took recently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from providers.base import CreateLimiter, ImageProvider
from scheduler.generation.state import EngineConfig
from storage import queue
from storage.admin import provider_switches
from storage.models import GenerationTask, utcnow
from studio.latency import LatencyEstimate, LatencyTracker
from studio.policy import CircuitBreaker, FallbackPolicy, choose_provider, peek_provider

log = logging.getLogger(__name__)

CALLBACK_PATHS = {
    "kie": "/providers/kie/callback",
    "replicate": "/providers/replicate/webhook",
    "selfhosted": "/providers/selfhosted/webhook",
}


def model_of(provider: ImageProvider) -> str | None:
    model = getattr(provider, "model", None)
    return model if isinstance(model, str) else None


def price_of(provider: ImageProvider) -> Decimal:
    """USD per image of the provider's configured model. Not part of the ImageProvider protocol (a
    test double need not price anything): a provider without a price costs 0."""
    price = getattr(provider, "price_per_image", None)
    return price if isinstance(price, Decimal) else Decimal(0)


def grid_capable(provider: ImageProvider) -> bool:
    """Can the provider's configured model draw a 2×2 grid of poses? Not part of the ImageProvider
    protocol either: a provider that does not say cannot."""
    return getattr(provider, "grid_capable", False) is True


class Roster:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        providers: Sequence[ImageProvider],
        policy: FallbackPolicy,
        config: EngineConfig,
    ) -> None:
        by_name = {provider.name: provider for provider in providers}
        # The policy decides the order; providers without credentials simply are not in it.
        configured = tuple(p for p in policy.providers if p.name in by_name)
        left_out = sorted(set(by_name) - {p.name for p in policy.providers})
        if left_out:
            log.warning("providers %s have credentials but are not in FALLBACK_POLICY: they get no work", left_out)
        self.policy = FallbackPolicy(providers=configured) if configured else policy
        self.providers: list[ImageProvider] = [by_name[p.name] for p in self.policy.providers if p.name in by_name]
        self.sessionmaker = sessionmaker
        self.config = config
        self.breakers: dict[str, CircuitBreaker] = {
            p.name: self.policy.provider(self.policy.index_of(p.name)).new_breaker() for p in self.providers
        }
        self.paused: set[str] = set()
        self._configured_policy = self.policy  # the order before any admin switch of the primary
        # Recent latency per provider and model: the poll schedule follows it (studio/latency.py).
        self.latency = LatencyTracker(max_age_seconds=config.latency_window_seconds)

    @property
    def callbacks_enabled(self) -> bool:
        return bool(self.config.public_url)

    def provider(self, name: str) -> ImageProvider | None:
        return next((provider for provider in self.providers if provider.name == name), None)

    def breaker_states(self) -> dict[str, str]:
        """Each configured provider's circuit breaker state now, for /healthz and /metrics.
        Read-only: unlike ``allow_request`` it never takes a half-open probe slot."""
        now = utcnow()
        return {name: breaker.state(now).value for name, breaker in self.breakers.items()}

    # ------------------------------------------------------------ admin switches (persisted in the DB)

    def apply_overrides(self, paused: set[str], primary: str | None) -> None:
        """Pause providers and choose the primary at run time. Fresh work follows the new order at
        once; a task already moved to a fallback index may be read against the new order once,
        which at worst retries it on the other provider (both are valid targets)."""
        by_name = {provider.name: provider for provider in self.providers}
        self.paused = {name for name in paused if name in by_name}
        base = self._configured_policy
        policy = base.with_primary(primary) if primary in by_name and primary is not None else base
        if policy != self.policy:
            self.policy = policy
            self.providers = [by_name[p.name] for p in policy.providers]

    async def refresh_overrides(self) -> None:
        """Re-read the admins' switches (every recover round, so other processes follow within seconds)."""
        async with self.sessionmaker() as session:
            paused, primary = await provider_switches(session)
        self.apply_overrides(paused, primary)

    # ------------------------------------------------------------ where a task goes

    def provider_index_for(self, task: GenerationTask) -> int | None:
        """The provider this task's create goes to now (None: every candidate is paused or open)."""
        now = utcnow()
        if task.provider_index == 0:
            # Fresh work follows the breakers: while the primary fails, go straight to the fallback.
            return choose_provider(self.policy, self.breakers, self.paused, now)
        index = task.provider_index
        if index >= len(self.providers) or self.providers[index].name in self.paused:
            return None
        return index

    def primary_grid_capable(self) -> bool:
        """Is the model of the provider fresh work goes to first (the policy's primary, after an
        admin's switch) grid-capable? Grid packs are offered only then."""
        return bool(self.providers) and grid_capable(self.providers[0])

    def fresh_work_limiter(self) -> CreateLimiter | None:
        """The limiter of the provider new tasks go to (read-only: no half-open probe is taken)."""
        index = peek_provider(self.policy, self.breakers, self.paused, utcnow())
        return None if index is None else self.providers[index].create_limiter

    def callback_url(self, provider: ImageProvider) -> str | None:
        if not self.callbacks_enabled or provider.name not in CALLBACK_PATHS:
            return None
        return f"{self.config.public_url}{CALLBACK_PATHS[provider.name]}"

    # ------------------------------------------------------------ recent latency

    def recent_latency(self, provider: ImageProvider, now: datetime) -> LatencyEstimate | None:
        """What this provider's recent tasks took (None: too few known, the policy's guesses apply)."""
        return self.latency.estimate(provider.name, model_of(provider), now)

    def observe_latency(self, provider: ImageProvider, done_at: datetime, seconds: float) -> None:
        self.latency.observe(provider.name, model_of(provider), done_at, seconds)

    async def load_recent_latency(self) -> None:
        """Seed the latency figures from the tasks finished in the recent window, so a restart does not
        forget them. The rows do not say which model ran; they are taken as the provider's current one
        (after a model switch the window's own samples replace them)."""
        now = utcnow()
        since = now - timedelta(seconds=self.config.latency_window_seconds)
        try:
            async with self.sessionmaker() as session:
                rows = await queue.recent_provider_latencies(
                    session, since, self.latency.max_samples * max(1, len(self.providers))
                )
        except Exception:  # the figures are an optimisation: the static guesses still work
            log.exception("could not read recent provider latency; polling starts from the policy's guesses")
            return
        for name, submitted_at, done_at in rows:
            provider = self.provider(name)
            if provider is not None:
                self.observe_latency(provider, done_at, (done_at - submitted_at).total_seconds())
