"""Face checks on real faces from installed packages (tests/face_corpus.py): dlib's real models, no mocks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from providers.faces import FaceAnalyser, FaceModels, FaceModelsUnavailable, laplacian_variance
from studio.faces import (
    FaceLimits,
    FaceReject,
    embedding_from_bytes,
    embedding_to_bytes,
    face_distance,
    identity_score,
    review_set,
)
from tests import face_corpus as corpus

LIMITS = FaceLimits()  # the product's defaults: the tests hold them to this corpus
PEOPLE = sorted(corpus.PEOPLE)
AUGMENTATIONS = sorted(corpus.AUGMENTATIONS)


@pytest.fixture(scope="module")
def analyser() -> FaceAnalyser:
    loaded = FaceAnalyser.load(LIMITS)
    yield loaded  # type: ignore[misc]
    loaded.close()


@pytest.fixture(scope="module")
def embeddings(analyser: FaceAnalyser) -> dict[tuple[str, str | None], np.ndarray]:
    found: dict[tuple[str, str | None], np.ndarray] = {}
    for person in PEOPLE:
        for augmentation in [None, *AUGMENTATIONS]:
            check = analyser.check_selfie(corpus.jpeg(corpus.variant(person, augmentation)))
            assert check.accepted, f"{person}/{augmentation} refused as {check.reason}"
            assert check.embedding is not None and check.embedding.shape == (128,)
            found[(person, augmentation)] = check.embedding
    return found


# One test over every pair, not one per pair: the embeddings take seconds of CPU, and under
# pytest-xdist each worker that runs a test of theirs computes them again.
def test_every_augmented_pair_is_the_same_person(embeddings: dict[tuple[str, str | None], np.ndarray]) -> None:
    unlike = {}
    for person, augmentation in itertools.product(PEOPLE, AUGMENTATIONS):
        original, changed = embeddings[(person, None)], embeddings[(person, augmentation)]
        distance = face_distance(original, changed)
        score = identity_score(changed, [original]).score
        if distance > LIMITS.match_max_distance or score <= LIMITS.identity_min_score:
            unlike[f"{person}/{augmentation}"] = (round(distance, 3), round(score, 3))
    assert len(PEOPLE) * len(AUGMENTATIONS) == 3 * 8
    assert unlike == {}


def test_every_cross_pair_is_different_people(embeddings: dict[tuple[str, str | None], np.ndarray]) -> None:
    pairs = [(a, b) for a, b in itertools.combinations(embeddings, 2) if a[0] != b[0]]
    assert len(pairs) == 3 * 9 * 9
    for first, second in pairs:
        distance = face_distance(embeddings[first], embeddings[second])
        assert distance > LIMITS.match_max_distance, f"{first} vs {second}: {distance:.3f}"
        assert identity_score(embeddings[first], [embeddings[second]]).score < LIMITS.identity_min_score


def test_the_group_photo_is_several_faces(analyser: FaceAnalyser) -> None:
    reading = analyser.read(corpus.jpeg(corpus.group_photo()))
    assert len(reading.faces) >= 4
    assert analyser.check_selfie(corpus.jpeg(corpus.group_photo())).reason == FaceReject.MANY


@pytest.mark.parametrize("image", [corpus.coffee, corpus.chelsea], ids=["coffee", "chelsea"])
def test_pictures_without_a_face(analyser: FaceAnalyser, image: object) -> None:
    check = analyser.check_selfie(corpus.jpeg(image()))  # type: ignore[operator]
    assert check.reason == FaceReject.NONE and check.embedding is None


@pytest.mark.parametrize("person", PEOPLE)
def test_a_tiny_face_is_too_small(analyser: FaceAnalyser, person: str) -> None:
    check = analyser.check_selfie(corpus.jpeg(corpus.tiny_face(corpus.variant(person))))
    assert check.reason == FaceReject.SMALL
    assert 0 < check.face_px < max(LIMITS.min_size_px, LIMITS.min_size_ratio * 1024)


def test_the_whole_astronaut_picture_has_too_small_a_face(analyser: FaceAnalyser) -> None:
    assert analyser.check_selfie(corpus.jpeg(corpus.astronaut())).reason == FaceReject.SMALL


@pytest.mark.parametrize(("person", "radius"), [("hopper", 3.0), ("astronaut", 3.0), ("hanks", 3.0)])
def test_a_blurred_face_is_refused_as_blurry(analyser: FaceAnalyser, person: str, radius: float) -> None:
    sharp = analyser.check_selfie(corpus.jpeg(corpus.variant(person)))
    check = analyser.check_selfie(corpus.jpeg(corpus.blurred(corpus.variant(person), radius)))
    assert check.reason == FaceReject.BLURRY
    assert check.sharpness < LIMITS.blur_min < sharp.sharpness


def test_exif_orientation_is_applied_before_detection(analyser: FaceAnalyser) -> None:
    # Stored sideways with an "rotate 90° clockwise to view" tag, as phones do: upright only after EXIF.
    from PIL import Image

    sideways = corpus.grace_hopper().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    import io

    out = io.BytesIO()
    sideways.save(out, "JPEG", exif=exif.tobytes())
    assert analyser.check_selfie(out.getvalue()).accepted
    assert analyser.check_selfie(corpus.jpeg(sideways)).reason == FaceReject.NONE  # HOG is upright-only


def test_a_large_photo_is_analysed_on_a_scaled_copy_in_original_coordinates(analyser: FaceAnalyser) -> None:
    big = corpus.variant("hopper").resize((2048, 2400))
    reading = analyser.read(corpus.jpeg(big))
    assert (reading.width, reading.height) == (2048, 2400)
    assert 600 < reading.faces[0].size < 1100  # about 4x the 216 px face of the 512 px original


def test_review_set_finds_the_odd_one_and_refuses_a_set_without_a_majority(
    embeddings: dict[tuple[str, str | None], np.ndarray],
) -> None:
    hopper = [embeddings[("hopper", name)] for name in (None, "flip", "crop", "jpeg_q35", "scale_up")]
    stranger = embeddings[("astronaut", "flip")]
    verdict = review_set([*hopper[:2], stranger, *hopper[2:]], LIMITS.match_max_distance)
    assert verdict.outliers == (2,) and verdict.majority == (0, 1, 3, 4, 5) and verdict.has_majority
    assert review_set(hopper, LIMITS.match_max_distance).consistent

    mixed = [
        embeddings[("hopper", None)],
        embeddings[("hopper", "flip")],
        embeddings[("astronaut", None)],
        embeddings[("astronaut", "flip")],
        embeddings[("hanks", None)],
    ]
    assert not review_set(mixed, LIMITS.match_max_distance).has_majority


def test_portrait_scores_against_references(
    analyser: FaceAnalyser, embeddings: dict[tuple[str, str | None], np.ndarray]
) -> None:
    references = [embeddings[("hopper", name)] for name in (None, "flip", "crop", "jpeg_q35", "scale_up")]
    same = analyser.score_portrait(corpus.jpeg(corpus.variant("hopper", "rotate_right")), references)
    other = analyser.score_portrait(corpus.png(corpus.astronaut_selfie()), references)
    assert same is not None and other is not None
    assert same.score >= LIMITS.identity_min_score > other.score
    assert same.centroid_distance < LIMITS.match_max_distance < other.nearest_distance
    assert analyser.score_portrait(corpus.jpeg(corpus.coffee()), references) is None


def test_embeddings_round_trip_through_bytes(embeddings: dict[tuple[str, str | None], np.ndarray]) -> None:
    original = embeddings[("hanks", None)]
    blob = embedding_to_bytes(original)
    assert len(blob) == 512
    assert face_distance(original, embedding_from_bytes(blob)) < 1e-5


def test_laplacian_variance_of_flat_and_noisy_pictures() -> None:
    assert laplacian_variance(np.full((64, 64, 3), 128, dtype=np.uint8)) == 0
    rng = np.random.default_rng(1)
    assert laplacian_variance(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) > 1000


def test_missing_models_are_reported_not_crashed(tmp_path: object) -> None:
    with pytest.raises(FaceModelsUnavailable, match="model files missing"):
        FaceModels.load(tmp_path)  # type: ignore[arg-type]


async def test_async_checks_run_off_the_event_loop(analyser: FaceAnalyser) -> None:
    import threading

    seen: list[str] = []
    original = analyser.read

    def spy(data: bytes):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return original(data)

    analyser.read = spy  # type: ignore[method-assign]
    try:
        check = await analyser.check_selfie_async(corpus.jpeg(corpus.variant("hopper")))
    finally:
        del analyser.read
    assert check.accepted
    assert seen and seen[0].startswith("faces") and seen[0] != threading.main_thread().name
