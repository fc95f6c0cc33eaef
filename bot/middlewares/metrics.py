"""Counts handled updates by type for /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from prometheus_client import Counter


class UpdateCountingMiddleware(BaseMiddleware):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, Update):
            self.counter.labels(event.event_type).inc()
        return await handler(event, data)
