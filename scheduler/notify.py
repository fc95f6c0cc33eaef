"""What background work may tell a user; the bot implements it (the scheduler never imports aiogram)."""

from __future__ import annotations

from typing import Any, Protocol


class UserNotifier(Protocol):
    async def tell(self, chat_id: int, language: str, key: str, *, buttons: Any = None, **values: Any) -> int | None:
        """Send the text ``key`` in the user's language; return the message id, None if it failed."""
