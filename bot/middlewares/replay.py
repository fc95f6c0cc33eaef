"""An update delivered again is routed the way it was routed the first time.

The webhook answers Telegram only after handling an update, so a process killed in between leaves
the update unanswered and Telegram posts it again — after its handler may already have moved the
conversation on. Routed by the new step, a tapped style would meet "this button is no longer active"
instead of the pack picker the user is waiting for. So every conversation write made while handling
an update stamps the step with that update and the step it was handled in; when the update that made
the latest step comes again, it is routed from the step it was first handled in, and its handler runs
once more. Handlers keep that safe: what they create is keyed by the update (an order by its tap, a
set by the tap that started it, a broadcast draft by its message), so the second run finds the first
run's rows and sends the same answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.types import TelegramObject, Update

# FSM data key: {"update": update_id, "from": the raw state that update was handled in}.
STAMP = "_step"

_handling: ContextVar[dict[str, Any] | None] = ContextVar("pinglass_handling_update", default=None)


def step_update(data: Mapping[str, Any]) -> int | None:
    """The update that made the conversation's current step (FSM data as ``state.get_data()`` returns it)."""
    stamp = data.get(STAMP)
    return int(stamp["update"]) if isinstance(stamp, dict) and "update" in stamp else None


class StampingStorage(BaseStorage):
    """FSM storage whose writes inside an update carry that update's stamp.

    The stamp is written with the data before the state moves: a process killed between the two
    leaves the old step stamped by the new update, which routes that update from the old step again.
    """

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        stamp = _handling.get()
        if stamp is not None:
            data = await self.inner.get_data(key)
            if data.get(STAMP) != stamp:
                await self.inner.set_data(key, {**data, STAMP: stamp})
        await self.inner.set_state(key, state)

    async def get_state(self, key: StorageKey) -> str | None:
        return await self.inner.get_state(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        stamp = _handling.get()
        await self.inner.set_data(key, {**data, STAMP: stamp} if stamp is not None else data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return await self.inner.get_data(key)

    async def close(self) -> None:
        await self.inner.close()


class ReplayMiddleware(BaseMiddleware):
    """Routes a repeated update by the step it first ran in (when that update made the current step)."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        context: FSMContext | None = data.get("state")
        if context is None or not isinstance(event, Update):
            return await handler(event, data)
        stamp = (await context.get_data()).get(STAMP)
        if isinstance(stamp, dict) and stamp.get("update") == event.update_id:
            data["raw_state"] = stamp.get("from")
        token = _handling.set({"update": event.update_id, "from": data.get("raw_state")})
        try:
            return await handler(event, data)
        finally:
            _handling.reset(token)
