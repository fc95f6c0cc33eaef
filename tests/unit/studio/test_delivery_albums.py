"""Album splitting: every album Telegram gets has 2-10 photos (a lone photo goes alone)."""

from __future__ import annotations

import pytest

from studio.delivery import split_albums


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (1, [1]),
        (2, [2]),
        (7, [7]),
        (10, [10]),
        (11, [9, 2]),
        (15, [10, 5]),
        (21, [10, 9, 2]),
        (22, [10, 10, 2]),
        (23, [10, 10, 3]),
    ],
)
def test_split(count: int, sizes: list[int]) -> None:
    assert split_albums(count) == sizes


@pytest.mark.parametrize("count", range(2, 120))
def test_every_split_is_valid(count: int) -> None:
    sizes = split_albums(count)
    assert sum(sizes) == count
    assert all(2 <= size <= 10 for size in sizes)
