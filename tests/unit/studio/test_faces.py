"""The face rules pinned at their thresholds: embeddings just inside and just outside each limit.

A rule test needs no photo: dlib's embeddings are 128-d vectors compared by Euclidean distance, so
vectors at chosen distances exercise exactly the comparison the product makes. Moving a threshold
(0.55 → 0.60 or → 0.30) or flipping a comparison makes one of these fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from bot.settings import Settings
from studio.faces import (
    FaceLimits,
    FaceReject,
    FakeFaceChecker,
    face_distance,
    identity_score,
    person_embedding,
    review_set,
)

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


async def test_the_fake_face_checker_tells_people_apart_as_the_rules_see_them() -> None:
    faces = FakeFaceChecker()
    faces.shows(b"anna-1", "anna")
    faces.shows(b"anna-2", "anna")
    faces.shows(b"boris", "boris")
    anna = await faces.embed_async(b"anna-1")
    assert anna is not None

    same = await faces.score_portrait_async(b"anna-2", [anna])
    other = await faces.score_portrait_async(b"boris", [anna])
    assert same is not None and other is not None
    assert same.score == 1.0 and other.score < faces.limits.identity_min_score
    assert other.nearest_distance > faces.limits.match_max_distance
    assert await faces.score_portrait_async(b"a cup of coffee", [anna]) is None

    faces.next_selfies(["boris", FaceReject.SMALL])
    assert face_distance((await faces.check_selfie_async(b"anna-1")).embedding, person_embedding("boris")) == 0
    assert (await faces.check_selfie_async(b"anna-1")).reason == FaceReject.SMALL
    assert (await faces.check_selfie_async(b"anna-1")).accepted  # the queue is empty: the picture's own person
    assert (await faces.check_selfie_async(b"nobody")).reason == FaceReject.NONE
