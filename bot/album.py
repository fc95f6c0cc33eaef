"""Collects the items of one Telegram album so the user gets one reply, not one per photo.

Telegram sends an album as separate updates sharing ``media_group_id`` with nothing marking the
last one. Each item announces itself on arrival (``begin``) and reports its outcome when done
(``finish``); the item that finishes last, after a short quiet period with no newcomers, gets
every outcome and answers for the whole album.

Crash safety rests on the webhook answering an update only after its handler returns (bot/app.py,
``handle_in_background=False``). An item gets None only while another item of its album is pending or
finished after it, and that item stays unanswered until it has replied: if the process dies first,
Telegram posts it again and, alone in a new process, it replies for everything stored (photos saved
before are found by file_unique_id, not saved twice). So no item waits for its siblings' reply (which
could deadlock on the per-user lock) and no durable record of unanswered albums is kept.
tests/integration/test_album_restarts.py kills a real process between the two. Not covered: a handler
slower than aiogram's 55 s webhook timeout is answered early, and long polling confirms updates when it
fetches them, before handling.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Outcome = TypeVar("Outcome")
AlbumKey = tuple[int, str]  # (chat id, media_group_id)


@dataclass
class _Album(Generic[Outcome]):
    pending: int = 0
    version: int = 0
    outcomes: list[tuple[int, Outcome]] = field(default_factory=list)


class AlbumCollector(Generic[Outcome]):
    def __init__(self, quiet_seconds: float = 0.8) -> None:
        self.quiet_seconds = quiet_seconds
        self._albums: dict[AlbumKey, _Album[Outcome]] = {}

    def __len__(self) -> int:
        """Albums still collecting (zero once every album has been answered)."""
        return len(self._albums)

    def begin(self, key: AlbumKey) -> None:
        album = self._albums.setdefault(key, _Album())
        album.pending += 1
        album.version += 1

    async def finish(self, key: AlbumKey, order: int, outcome: Outcome) -> list[Outcome] | None:
        """Return all outcomes (in ``order``) to the one caller that should reply, None to the rest."""
        album = self._albums[key]
        album.outcomes.append((order, outcome))
        album.pending -= 1
        album.version += 1
        seen = album.version
        await asyncio.sleep(self.quiet_seconds)
        if album.pending == 0 and album.version == seen and self._albums.get(key) is album:
            del self._albums[key]
            return [outcome for _, outcome in sorted(album.outcomes, key=lambda item: item[0])]
        return None


class UserLocks:
    """One lock per user, so one person's photos are counted and stored one at a time."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    def lock(self, user_id: int) -> _UserLock:
        return _UserLock(self, user_id)


class _UserLock:
    def __init__(self, owner: UserLocks, user_id: int) -> None:
        self.owner = owner
        self.user_id = user_id

    async def __aenter__(self) -> None:
        owner = self.owner
        owner._users[self.user_id] = owner._users.get(self.user_id, 0) + 1
        lock = owner._locks.setdefault(self.user_id, asyncio.Lock())
        await lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        owner = self.owner
        owner._locks[self.user_id].release()
        owner._users[self.user_id] -= 1
        if owner._users[self.user_id] == 0:  # nobody waits: forget the lock, keep memory bounded
            del owner._users[self.user_id]
            del owner._locks[self.user_id]
