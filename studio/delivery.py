"""The rules of streaming delivery, free of I/O: what to send to a chat now, in which sizes, and the
arithmetic of a chat's send budget. Clocks are passed in (any monotonic seconds), so every rule is a
plain function of its inputs.

Telegram's per-chat flood control is modelled once, here, as a token bucket: a chat takes a burst of
``capacity`` messages (one full album), then ``rate`` messages per second. Album items count one by
one, and so do progress edits. Every send reserves its cost before it goes (the reservation may be in
the future: the bucket goes into debt and the sender waits), so concurrent senders to one chat queue
up instead of overrunning it. A 429 that still comes empties the bucket for its ``retry_after``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

ALBUM_MIN = 2
ALBUM_MAX = 10


def split_albums(count: int) -> list[int]:
    """Sizes that Telegram accepts (2-10 per album; a lone photo goes alone): 21 → 10, 9, 2."""
    sizes: list[int] = []
    while count > ALBUM_MAX:
        take = ALBUM_MAX if count - ALBUM_MAX != 1 else ALBUM_MAX - 1
        sizes.append(take)
        count -= take
    if count:
        sizes.append(count)
    return sizes


class ChatBudget:
    """One chat's token bucket. ``margin`` holds back a share of the refill rate, so timing jitter between
    our clock and Telegram's never turns an exactly-at-the-limit plan into a 429."""

    def __init__(self, capacity: int, rate: float, now: float, *, margin: float = 0.1) -> None:
        if capacity < 1 or rate <= 0 or not 0 <= margin < 1:
            raise ValueError("a budget needs capacity >= 1, rate > 0 and 0 <= margin < 1")
        self.capacity = capacity
        self.rate = rate * (1 - margin)
        self.tokens = float(capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.capacity), self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def cost(self, items: int) -> int:
        """What a send of ``items`` messages is charged (an album larger than the burst is charged the burst)."""
        return max(0, min(items, self.capacity))

    def available(self, now: float) -> int:
        """Whole messages the chat can take at ``now`` without waiting."""
        self._refill(now)
        return max(0, math.floor(self.tokens + 1e-9))

    def ready_at(self, items: int, now: float) -> float:
        """The earliest moment a send of ``items`` may go."""
        self._refill(now)
        deficit = self.cost(items) - self.tokens
        return now if deficit <= 1e-9 else max(now, self.updated) + deficit / self.rate

    def reserve(self, items: int, now: float) -> float:
        """Charge a send of ``items`` and return when it may go (now, or later when the chat is busy)."""
        moment = self.ready_at(items, now)
        self.tokens -= self.cost(items)
        return moment

    def penalize(self, retry_after: float, now: float) -> None:
        """Telegram said 429: nothing more for ``retry_after`` seconds."""
        self._refill(now)
        self.tokens = min(self.tokens, 0.0) - retry_after * self.rate


class ChatBudgets:
    """The budgets of all chats (bounded: chats idle long enough are full again, so forgetting them is safe)."""

    def __init__(self, capacity: int = ALBUM_MAX, rate: float = 1.0, *, margin: float = 0.1, limit: int = 100_000):
        self.capacity = capacity
        self.rate = rate
        self.margin = margin
        self.limit = limit
        self._chats: OrderedDict[Hashable, ChatBudget] = OrderedDict()

    def of(self, chat_id: Hashable, now: float) -> ChatBudget:
        budget = self._chats.get(chat_id)
        if budget is None:
            budget = ChatBudget(self.capacity, self.rate, now, margin=self.margin)
            self._chats[chat_id] = budget
            if len(self._chats) > self.limit:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return budget


@dataclass(frozen=True)
class Ready:
    """A stored, undelivered portrait, in the order it was stored, ``ready_since`` the provider finished
    it; ``as_document`` when Telegram cannot take it as a photo (it then goes alone: documents do not
    mix with photos in an album)."""

    task_id: int
    ready_since: float
    as_document: bool = False


@dataclass(frozen=True)
class Send:
    """Send the first ``count`` ready portraits (one album, or one alone) at ``at``."""

    count: int
    at: float
    as_document: bool = False


def next_send(
    ready: Sequence[Ready],
    *,
    started: bool,
    more_coming: bool,
    now: float,
    window: float,
    budget: ChatBudget,
) -> Send | None:
    """What to send next from a pack's ready portraits, and when.

    - The first send of a pack goes the moment the chat can take it (a lone photo, or everything ready).
    - After that, two or more ready portraits go as one album of as many as the chat can take (2-10).
    - One ready portrait waits for company until ``window`` after the provider finished it, unless none
      can come (the pack is finished, or a document is next in line).
    """
    if not ready:
        return None
    if ready[0].as_document:
        return Send(1, budget.ready_at(1, now), as_document=True)
    photos = 0
    for item in ready[:ALBUM_MAX]:
        if item.as_document:
            break
        photos += 1
    alone_for_good = photos == 1 and (not more_coming or len(ready) > 1)
    if not started or photos >= ALBUM_MIN:
        count = min(photos, max(ALBUM_MIN if photos >= ALBUM_MIN else 1, budget.available(now)))
        return Send(count, budget.ready_at(count, now))
    due = now if alone_for_good else ready[0].ready_since + window
    return Send(1, max(due, budget.ready_at(1, now)))


def progress_edit_due(
    *, last_edit_at: float | None, now: float, interval: float, waiting: int, budget: ChatBudget
) -> float | None:
    """When the progress message may be edited: never ahead of a waiting portrait, at most once per
    ``interval``, and only with a message to spare in the chat's budget. None: not while portraits wait."""
    if waiting:
        return None
    earliest = now if last_edit_at is None else max(now, last_edit_at + interval)
    return max(earliest, budget.ready_at(1, earliest))
