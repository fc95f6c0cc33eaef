"""The redo rules: trigger words, free or paid, the guarantee's promise and its redos."""

from __future__ import annotations

import pytest

from studio.redo import RedoKind, guarantee_redos, guaranteed, is_redo_trigger, redo_kind


@pytest.mark.parametrize("text", ["🔁", "redo", "REDO", "Ещё", "еще!", "ЕЩЁ", "/redo", "/redo@PinGlassBot", " redo. "])
def test_trigger_words_in_any_case(text: str) -> None:
    assert is_redo_trigger(text)


@pytest.mark.parametrize("text", [None, "", "redo it please", "ещё раз", "🔁🔁", "/redone", "nice"])
def test_other_texts_are_not_triggers(text: str | None) -> None:
    assert not is_redo_trigger(text)


def test_free_while_the_allowance_lasts_then_paid() -> None:
    assert [redo_kind(used, 3) for used in range(5)] == [RedoKind.FREE] * 3 + [RedoKind.PAID] * 2
    assert redo_kind(0, 0) == RedoKind.PAID


@pytest.mark.parametrize(
    ("photos", "share", "promised"),
    [(23, 0.65, 15), (7, 0.65, 5), (15, 0.65, 10), (23, 0, 0), (23, 1.0, 23), (3, 2.0, 3)],
)
def test_the_promise_is_a_share_rounded_up(photos: int, share: float, promised: int) -> None:
    assert guaranteed(photos, share) == promised


def test_the_guarantee_redoes_the_shortfall_from_the_first_unlike_portrait() -> None:
    unlike = [11, 12, 13, 14, 15]
    assert guarantee_redos(15, 13, unlike) == [11, 12]
    assert guarantee_redos(15, 15, unlike) == []
    assert guarantee_redos(15, 5, unlike) == unlike  # never more than there are
