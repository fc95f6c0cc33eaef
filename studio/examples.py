"""Style previews: the rules of an example set (an admin's reference photos → a few portraits per style).

A set is collected (the admin's selfies), generated (one free job per style), and goes live only once
every job is over and every style has at least one portrait; until then the previous live set (or
none: the picker in text only) stays. Plain data and rules, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

# Selfies of the consenting model an admin sends; the intake's lower bound, so its checks apply as is.
EXAMPLE_SELFIES = 5
EXAMPLES_PER_STYLE = 4  # one album per style: 2-10 items, and four read at a glance


class ExampleSetStatus(StrEnum):
    COLLECTING = "collecting"  # the admin is sending the selfies
    GENERATING = "generating"  # the jobs run; the previous live set is still shown
    LIVE = "live"  # the one the picker shows (at most one)
    REPLACED = "replaced"  # a newer set went live
    FAILED = "failed"  # a style got no portrait: the previous set stays
    ABANDONED = "abandoned"  # /examples again before the selfies were all sent


OPEN_SET_STATUSES = frozenset({ExampleSetStatus.COLLECTING, ExampleSetStatus.GENERATING})


def is_over(job_statuses: Iterable[str], finished: Iterable[str]) -> bool:
    """Every job of the set has ended (``finished``: the terminal job statuses)."""
    statuses = list(job_statuses)
    done = set(finished)
    return bool(statuses) and all(status in done for status in statuses)


def choose_examples(
    styles: Sequence[str], portraits: Mapping[str, Sequence[int]], per_style: int = EXAMPLES_PER_STYLE
) -> dict[str, list[int]] | None:
    """The examples of each style, in ``portraits``' order (task ids by position): the first
    ``per_style`` of each. None when a style has none (the set must not go live half empty)."""
    chosen = {style: list(portraits.get(style, ()))[:per_style] for style in styles}
    if not styles or any(not examples for examples in chosen.values()):
        return None
    return chosen
