"""Favourites and the profile photo, as rules: which reactions mark a portrait a favourite, and the
square a profile photo is cut from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Reactions that say "I like this one", as Telegram sends them (ReactionTypeEmoji.emoji, no
# variation selector). A negative or neutral reaction (👎, 🤔, 😐 ...) marks nothing.
POSITIVE_REACTIONS = frozenset(
    {
        "❤", "❤‍🔥", "💘", "😍", "🥰", "😘", "🤩", "🔥", "👍", "👏", "👌", "💯", "🏆", "🎉", "⚡", "🆒",
        "🤗", "😇", "🙏", "💋", "🍾", "😎", "🦄",
    }
)  # fmt: skip
_VARIATION_SELECTOR = "\ufe0f"

PROFILE_PHOTO_SIDE = 640
# The face's width is this share of the square's side: head, hair and a little shoulder, as people
# frame an avatar.
FACE_SHARE_OF_SIDE = 0.4


def is_positive(emoji: str) -> bool:
    return emoji.replace(_VARIATION_SELECTOR, "") in POSITIVE_REACTIONS


def marks_favourite(reactions: Iterable[str]) -> bool:
    """Whether a user's reactions on a portrait, as they are now, make it a favourite. Telegram sends
    the whole new list with every change, so the answer follows from it alone: a repeated or late
    update gives the same answer, and removing the last positive reaction unmarks."""
    return any(is_positive(emoji) for emoji in reactions)


@dataclass(frozen=True, slots=True)
class Square:
    left: int
    top: int
    side: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, upper, right, lower), as Pillow's crop takes it."""
        return self.left, self.top, self.left + self.side, self.top + self.side


def profile_square(width: int, height: int, face: tuple[float, float, float] | None) -> Square:
    """The square of a ``width`` × ``height`` portrait to make a profile photo of: centred on the
    face (``left, top, size`` in the portrait's pixels) with room around it, pushed back inside the
    picture at its edges; the largest centred square when no face is known (or the box is nonsense)."""
    if width <= 0 or height <= 0:
        raise ValueError("a portrait has a size")
    largest = min(width, height)
    usable = face is not None and face[2] > 0 and 0 <= face[0] < width and 0 <= face[1] < height
    if face is None or not usable:
        return Square((width - largest) // 2, (height - largest) // 2, largest)
    left, top, size = face
    side = min(largest, max(round(size / FACE_SHARE_OF_SIDE), 1))
    centre_x, centre_y = left + size / 2, top + size / 2
    return Square(_inside(centre_x - side / 2, side, width), _inside(centre_y - side / 2, side, height), side)


def _inside(start: float, side: int, length: int) -> int:
    return int(min(max(round(start), 0), length - side))
