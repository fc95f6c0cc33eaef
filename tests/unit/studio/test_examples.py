"""Rules of style previews (studio/examples.py)."""

from __future__ import annotations

from studio.examples import EXAMPLES_PER_STYLE, choose_examples, is_over
from studio.states import JobStatus

FINISHED = (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)


def test_a_set_is_over_only_when_every_job_has_ended() -> None:
    assert is_over([JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED], FINISHED)
    assert not is_over([JobStatus.COMPLETED, JobStatus.DELIVERING], FINISHED)
    assert not is_over([], FINISHED), "a set without jobs has not even started"


def test_the_first_four_of_each_style_are_its_examples() -> None:
    chosen = choose_examples(("a", "b"), {"a": [1, 2, 3, 4, 5], "b": [9]})
    assert chosen == {"a": [1, 2, 3, 4], "b": [9]}
    assert EXAMPLES_PER_STYLE == 4


def test_a_style_without_a_portrait_keeps_the_set_from_going_live() -> None:
    assert choose_examples(("a", "b"), {"a": [1, 2]}) is None
    assert choose_examples(("a", "b"), {"a": [1], "b": []}) is None
    assert choose_examples((), {}) is None
