"""What background work may tell a user; the bot implements it (the scheduler never imports aiogram)."""

from __future__ import annotations

from typing import Protocol

from scheduler.notices import Notice


class UserNotifier(Protocol):
    async def tell(self, chat_id: int, language: str, notice: Notice) -> int | None:
        """Tell the user ``notice`` in their language; return the message id, None if it failed."""


class RecordingNotifier:
    """The in-process notifier (tests, simulations): keeps what it was told, sends nothing."""

    def __init__(self) -> None:
        self.told: list[tuple[int, str, Notice]] = []  # (chat, language, notice)

    async def tell(self, chat_id: int, language: str, notice: Notice) -> int | None:
        self.told.append((chat_id, language, notice))
        return None

    @property
    def notices(self) -> list[Notice]:
        return [notice for _, _, notice in self.told]
