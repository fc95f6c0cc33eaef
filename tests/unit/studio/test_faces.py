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
    BACKGROUND_FACE_RATIO,
    FaceBox,
    FaceLimits,
    FaceReading,
    FaceReject,
    FakeFaceChecker,
    face_distance,
    identity_score,
    judge_selfie,
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


def test_the_configured_selfie_limits_are_the_documented_ones() -> None:
    settings = Settings(BOT_TOKEN=GOOD_TOKEN, _env_file=None)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    limits = FaceLimits()
    assert settings.FACE_MIN_SIZE_PX == limits.min_size_px == 120
    assert settings.FACE_MIN_SIZE_RATIO == limits.min_size_ratio == 0.2
    assert settings.FACE_BLUR_MIN == limits.blur_min == 15.0
    assert BACKGROUND_FACE_RATIO == 0.5


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


# ---------------------------------------------------------------- judge_selfie at its limits
# Each limit is crossed on its own: the pixel minimum (120) on a 400 px short side, where the 0.2
# ratio asks only 80 px; the ratio on a 1000 px short side, where it asks 200 px.


def _reading(
    face: float, *, others: tuple[float, ...] = (), sharpness: float = 100.0, short_side: int = 600
) -> FaceReading:
    boxes = tuple(FaceBox(0.0, 0.0, size, 0.99) for size in (face, *others))
    return FaceReading(short_side, short_side + 200, boxes, _at(0.0), sharpness)


@pytest.mark.parametrize(("face", "accepted"), [(120.0, True), (120.0 - MARGIN, False), (100.0, False)])
def test_a_selfie_face_must_be_at_least_the_minimum_pixels(face: float, accepted: bool) -> None:
    check = judge_selfie(_reading(face, short_side=400), FaceLimits())
    assert check.accepted is accepted
    assert check.reason == (None if accepted else FaceReject.SMALL)


@pytest.mark.parametrize(("face", "accepted"), [(200.0, True), (200.0 - MARGIN, False), (150.0, False)])
def test_a_selfie_face_must_be_at_least_the_minimum_share_of_the_photo(face: float, accepted: bool) -> None:
    check = judge_selfie(_reading(face, short_side=1000), FaceLimits())
    assert check.reason == (None if accepted else FaceReject.SMALL)


@pytest.mark.parametrize(("sharpness", "accepted"), [(15.0, True), (15.0 - MARGIN, False), (5.0, False)])
def test_a_selfie_must_be_at_least_the_minimum_sharpness(sharpness: float, accepted: bool) -> None:
    check = judge_selfie(_reading(300.0, sharpness=sharpness), FaceLimits())
    assert check.reason == (None if accepted else FaceReject.BLURRY)


@pytest.mark.parametrize(("other", "accepted"), [(150.0, True), (150.0 + MARGIN, False), (290.0, False)])
def test_a_second_face_over_half_the_main_one_is_a_second_sitter(other: float, accepted: bool) -> None:
    # A 300 px face; a background face up to 150 px (half) is a passer-by, anything bigger a second sitter.
    check = judge_selfie(_reading(300.0, others=(other,)), FaceLimits())
    assert check.reason == (None if accepted else FaceReject.MANY)


def test_a_selfie_without_a_face_is_refused_as_no_face() -> None:
    reading = FaceReading(600, 800, (), None, None)
    assert judge_selfie(reading, FaceLimits()).reason == FaceReject.NONE


def test_a_photo_near_the_groups_centroid_is_kept_though_far_from_the_anchor() -> None:
    """The centroid half of review_set's rule: one borderline photo does not split a real set."""
    limit = FaceLimits().match_max_distance
    # Three photos at the origin and one 0.5 along x: the anchor is the origin, the group's centroid
    # is at x = 0.125. The fifth photo is 0.545 from that centroid but 0.559 from the anchor and
    # 0.657 from the x = 0.5 photo: only the centroid keeps it.
    core = [_at(0.0)] * 3 + [_at(0.5)]
    borderline = _at(0.125) + _at(0.545, axis=1)
    assert face_distance(borderline, _at(0.0)) > limit
    verdict = review_set([*core, borderline], limit)
    assert verdict.consistent and verdict.majority == (0, 1, 2, 3, 4)
