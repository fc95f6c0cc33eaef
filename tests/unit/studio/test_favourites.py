"""Favourites' rules: which reactions mark a portrait, and the profile photo's square."""

from __future__ import annotations

import pytest

from studio.favourites import PROFILE_PHOTO_SIDE, Square, is_positive, marks_favourite, profile_square


@pytest.mark.parametrize("emoji", ["❤", "❤️", "🔥", "👍", "😍", "❤‍🔥"])
def test_positive_reactions_mark(emoji: str) -> None:
    assert is_positive(emoji) and marks_favourite([emoji])


@pytest.mark.parametrize("reactions", [[], ["👎"], ["🤔", "😐"], ["💩"]])
def test_no_positive_reaction_marks_nothing(reactions: list[str]) -> None:
    assert not marks_favourite(reactions)


def test_a_positive_reaction_among_others_still_marks() -> None:
    assert marks_favourite(["🤔", "❤"])


def test_no_face_gives_the_largest_centred_square() -> None:
    assert profile_square(1000, 1500, None) == Square(0, 250, 1000)
    assert profile_square(1500, 1000, None) == Square(250, 0, 1000)
    assert profile_square(800, 800, None).box == (0, 0, 800, 800)


def test_square_is_centred_on_the_face_with_room_around_it() -> None:
    square = profile_square(2000, 3000, (900.0, 1000.0, 200.0))
    assert square.side == 500  # the face is 40 % of the side
    assert square.left + square.side / 2 == 1000 and square.top + square.side / 2 == 1100


def test_square_near_an_edge_stays_inside_the_picture() -> None:
    square = profile_square(1000, 1200, (0.0, 1100.0, 100.0))
    assert (square.left, square.top, square.side) == (0, 950, 250)
    left, top, right, bottom = square.box
    assert left >= 0 and top >= 0 and right <= 1000 and bottom <= 1200


def test_a_face_bigger_than_the_picture_allows_uses_the_largest_square() -> None:
    assert profile_square(600, 900, (100.0, 200.0, 500.0)).side == 600


@pytest.mark.parametrize("face", [(0.0, 0.0, 0.0), (-5.0, 10.0, 50.0), (100.0, 5000.0, 50.0)])
def test_a_nonsense_box_falls_back_to_the_centre(face: tuple[float, float, float]) -> None:
    assert profile_square(1000, 1000, face) == Square(0, 0, 1000)


def test_invalid_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        profile_square(0, 10, None)
    assert PROFILE_PHOTO_SIDE == 640
