"""Per-user incoming throttle, so one flooding user cannot starve everyone else."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from aiolimiter import AsyncLimiter


def is_payment_update(event: TelegramObject) -> bool:
    """A pre-checkout query or a completed payment: money is moving, so it is never dropped."""
    return isinstance(event, Update) and (
        event.pre_checkout_query is not None
        or (event.message is not None and event.message.successful_payment is not None)
    )


class ThrottlingMiddleware(BaseMiddleware):
    """Drops updates above ``rate`` per second per user, allowing a burst (an 10-photo album fits).

    Payment updates pass untouched and spend nothing: a dropped ``successful_payment`` is money
    taken and never credited, and a dropped pre-checkout fails a payment the user meant to make.
    """

    def __init__(self, rate_per_second: float, burst: int = 12, max_users: int = 50_000) -> None:
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_users = max_users
        self._limiters: OrderedDict[int, AsyncLimiter] = OrderedDict()
        self.dropped = 0

    def _limiter_for(self, user_id: int) -> AsyncLimiter:
        limiter = self._limiters.get(user_id)
        if limiter is None:
            limiter = AsyncLimiter(self.burst, self.burst / self.rate_per_second)
            self._limiters[user_id] = limiter
            if len(self._limiters) > self.max_users:
                self._limiters.popitem(last=False)
        else:
            self._limiters.move_to_end(user_id)
        return limiter

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        from_user = data.get("event_from_user")
        if from_user is None or self.rate_per_second <= 0 or is_payment_update(event):
            return await handler(event, data)
        limiter = self._limiter_for(from_user.id)
        if not limiter.has_capacity():
            self.dropped += 1
            return None
        await limiter.acquire()
        return await handler(event, data)
