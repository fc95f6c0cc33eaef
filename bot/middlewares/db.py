"""One database session (and transaction) per update, handed to handlers as ``session``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.fsm import update_session


class DbSessionMiddleware(BaseMiddleware):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        async with self.sessionmaker() as session:
            data["session"] = session
            # The conversation step (storage.fsm) is written in this transaction too.
            token = update_session.set(session)
            try:
                result = await handler(event, data)
                # Whatever the handler left uncommitted belongs to this update: keep it.
                if session.in_transaction():
                    await session.commit()
            finally:
                update_session.reset(token)
            return result
