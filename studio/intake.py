"""Rules of the photo intake: how many selfies a set needs."""

from __future__ import annotations

MIN_PHOTOS = 5
MAX_PHOTOS = 8


def can_finish(count: int) -> bool:
    return count >= MIN_PHOTOS


def is_full(count: int) -> bool:
    return count >= MAX_PHOTOS
