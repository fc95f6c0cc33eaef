"""The face rules pinned at their thresholds: embeddings just inside and just outside each limit.

A rule test needs no photo: dlib's embeddings are 128-d vectors compared by Euclidean distance, so
vectors at chosen distances exercise exactly the comparison the product makes. Moving a threshold
(0.55 → 0.60 or → 0.30) or flipping a comparison makes one of these fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from bot.settings import Settings
from studio.faces import FaceLimits, identity_score, review_set

GOOD_TOKEN = "123456:AAF-test-token-for-face-rules"
MARGIN = 0.01


def _at(distance: float, axis: int = 0) -> np.ndarray:
    vector = np.zeros(128)
    vector[axis] = distance
    return vector


def _set_with_one_photo_at(distance: float) -> list[np.ndarray]:
    """Four photos of one person (the same embedding) and a fifth `distance` away from them."""
    return [_at(0.0)] * 4 + [_at(distance)]


def test_the_configured_match_limit_is_the_documented_one() -> None:
    settings = Settings(BOT_TOKEN=GOOD_TOKEN, _env_file=None)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    assert settings.FACE_MATCH_MAX_DISTANCE == FaceLimits().match_max_distance == 0.55
    assert settings.IDENTITY_MIN_SCORE == FaceLimits().identity_min_score == 0.4


@pytest.mark.parametrize("distance", [0.0, 0.3, 0.55 - MARGIN, 0.55])
def test_a_selfie_within_the_match_limit_is_the_same_person(distance: float) -> None:
    verdict = review_set(_set_with_one_photo_at(distance), FaceLimits().match_max_distance)
    assert verdict.consistent and verdict.majority == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("distance", [0.55 + MARGIN, 0.6 + MARGIN, 1.2])
def test_a_selfie_beyond_the_match_limit_is_someone_else(distance: float) -> None:
    verdict = review_set(_set_with_one_photo_at(distance), FaceLimits().match_max_distance)
    assert verdict.outliers == (4,) and verdict.has_majority


def test_a_set_split_in_two_people_has_no_majority() -> None:
    limit = FaceLimits().match_max_distance
    embeddings = [_at(0.0)] * 2 + [_at(limit + MARGIN, axis=1)] * 2
    assert not review_set(embeddings, limit).has_majority


@pytest.mark.parametrize(
    ("distance", "passes"),
    [(0.0, True), (0.6 - MARGIN, True), (0.6, True), (0.6 + MARGIN, False), (0.9, False)],
)
def test_a_portrait_passes_the_identity_gate_only_above_the_minimum_score(distance: float, passes: bool) -> None:
    """Score = 1 − distance to the selfies; the gate is score ≥ 0.4, i.e. distance ≤ 0.6."""
    references = [_at(0.0)] * 5
    score = identity_score(_at(distance), references)
    assert score.score == pytest.approx(max(0.0, 1.0 - distance), abs=1e-4)
    assert (score.score >= FaceLimits().identity_min_score) is passes
