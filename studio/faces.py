"""Face rules: one clear face per selfie, one person per set, and how much a portrait looks like them.

The decisions here are pure (numpy on embeddings); reading faces out of pictures is an outside engine
behind :class:`FaceChecker` (dlib in providers/faces.py, :class:`FakeFaceChecker` in process). The
embedding distance is dlib's: L2 between 128-d descriptors, < 0.6 is "the same person" on LFW. An
*identity score* is ``1 − distance``, so higher is more alike.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

import numpy as np

from studio.intake import MIN_PHOTOS

EMBEDDING_SIZE = 128
# Faces at most this fraction of the main face's size are background people, not a second sitter.
BACKGROUND_FACE_RATIO = 0.5
# The intake starts comparing photos with each other when the set would hold this many (studio.intake's minimum).
SET_REVIEW_FROM = MIN_PHOTOS


class FaceReject(StrEnum):
    """Why a selfie (or a set) is refused; the values are the ``photo_rejected`` event reasons."""

    NONE = "face_none"
    MANY = "face_many"
    SMALL = "face_small"
    BLURRY = "face_blurry"
    MISMATCH = "face_mismatch"


@dataclass(frozen=True, slots=True)
class FaceLimits:
    min_size_px: int = 120
    min_size_ratio: float = 0.2
    blur_min: float = 15.0
    match_max_distance: float = 0.55
    identity_min_score: float = 0.4
    # Detection runs on a copy this size: HOG time grows with pixels, faces we accept stay > 80 px on it.
    work_long_side: int = 1024


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A detected face in the coordinates of the upright original image."""

    left: float
    top: float
    size: float
    score: float


@dataclass(frozen=True, slots=True)
class FaceReading:
    width: int
    height: int
    faces: tuple[FaceBox, ...]  # confident detections, largest first
    embedding: np.ndarray | None  # of the largest face
    sharpness: float | None  # variance of the Laplacian on its aligned chip


@dataclass(frozen=True, slots=True)
class SelfieCheck:
    reason: FaceReject | None
    embedding: np.ndarray | None
    face_px: float = 0.0
    sharpness: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class IdentityScore:
    score: float  # 1 − the smaller of the two distances, clamped to [0, 1]
    centroid_distance: float
    nearest_distance: float
    face: FaceBox | None = None  # where the scored face is, in the portrait's upright pixels


@dataclass(frozen=True, slots=True)
class SetVerdict:
    """Which photos of a set belong to the one person most of them show."""

    majority: tuple[int, ...]  # indices into the input
    outliers: tuple[int, ...]

    @property
    def consistent(self) -> bool:
        return not self.outliers

    @property
    def has_majority(self) -> bool:
        return len(self.majority) * 2 > len(self.majority) + len(self.outliers)


# ---------------------------------------------------------------- the port


class FaceChecker(Protocol):
    """What the intake and the engine ask of a face engine. Every method may take a while (dlib is
    CPU-bound): an implementation keeps that off the event loop."""

    @property
    def limits(self) -> FaceLimits: ...

    async def check_selfie_async(self, data: bytes) -> SelfieCheck:
        """The picture on its own: one clear face of a usable size, or why not."""
        ...

    async def embed_async(self, data: bytes) -> np.ndarray | None:
        """The main face's embedding (a reference photo's, for scoring portraits); None without a face."""
        ...

    async def score_portrait_async(self, data: bytes, references: Sequence[np.ndarray]) -> IdentityScore | None:
        """How much the portrait looks like the references; None when it shows no face at all."""
        ...


# ---------------------------------------------------------------- the rules


def embedding_to_bytes(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype="<f4").tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float64)


def face_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def judge_selfie(reading: FaceReading, limits: FaceLimits) -> SelfieCheck:
    """One face, no second sitter, big enough and sharp enough — checked in that order."""
    if not reading.faces or reading.embedding is None:
        return SelfieCheck(FaceReject.NONE, None)
    main = reading.faces[0]
    sharpness = reading.sharpness or 0.0
    others = [face for face in reading.faces[1:] if face.size > BACKGROUND_FACE_RATIO * main.size]
    if others:
        return SelfieCheck(FaceReject.MANY, None, main.size, sharpness)
    short_side = min(reading.width, reading.height)
    if main.size < limits.min_size_px or main.size < limits.min_size_ratio * short_side:
        return SelfieCheck(FaceReject.SMALL, None, main.size, sharpness)
    if sharpness < limits.blur_min:
        return SelfieCheck(FaceReject.BLURRY, None, main.size, sharpness)
    return SelfieCheck(None, reading.embedding, main.size, sharpness)


def review_set(embeddings: Sequence[np.ndarray], max_distance: float) -> SetVerdict:
    """Group the set around the photo most others agree with; everything far from that group is an outlier.

    The anchor is the photo with the most neighbours within ``max_distance`` (ties: the smaller total
    distance). The group is the anchor's neighbours; a photo is kept when it is within ``max_distance``
    of the group's centroid or of the anchor, so one borderline photo does not split a real set.
    """
    count = len(embeddings)
    if count == 0:
        return SetVerdict((), ())
    matrix = np.stack([np.asarray(e, dtype=np.float64) for e in embeddings])
    distances = np.linalg.norm(matrix[:, None, :] - matrix[None, :, :], axis=2)
    neighbours = (distances <= max_distance).sum(axis=1)
    anchor = min(range(count), key=lambda i: (-int(neighbours[i]), float(distances[i].sum())))
    group = [i for i in range(count) if distances[anchor, i] <= max_distance]
    centroid = matrix[group].mean(axis=0)
    majority = tuple(
        i
        for i in range(count)
        if distances[anchor, i] <= max_distance or face_distance(matrix[i], centroid) <= max_distance
    )
    outliers = tuple(i for i in range(count) if i not in majority)
    return SetVerdict(majority, outliers)


def identity_score(embedding: np.ndarray, references: Sequence[np.ndarray]) -> IdentityScore:
    matrix = np.stack([np.asarray(r, dtype=np.float64) for r in references])
    centroid_distance = face_distance(embedding, matrix.mean(axis=0))
    nearest_distance = float(np.linalg.norm(matrix - np.asarray(embedding), axis=1).min())
    score = min(1.0, max(0.0, 1.0 - min(centroid_distance, nearest_distance)))
    return IdentityScore(round(score, 4), centroid_distance, nearest_distance)


# ---------------------------------------------------------------- the in-process engine


def person_embedding(person: str) -> np.ndarray:
    """A made-up embedding for a named person: the same name always gives the same vector, and two
    names are about 1.4 apart (random unit vectors in 128 dimensions), far beyond any match limit."""
    seed = int.from_bytes(hashlib.sha256(person.encode()).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(EMBEDDING_SIZE)
    return vector / np.linalg.norm(vector)


@dataclass
class FakeFaceChecker:
    """The in-process FaceChecker (tests, simulations): a picture shows whom the test says it shows.

    ``shows(picture, person)`` names the person in exact bytes (a portrait a fake provider returns, a
    stored reference photo). The intake re-encodes every selfie before it is checked, so the next
    selfie checks are answered from ``next_selfies`` in order instead: a person's name is an accepted
    face of that person, a :class:`FaceReject` is refused for that reason. Anything else shows no face.
    Every picture asked about is kept in ``asked``.
    """

    limits: FaceLimits = field(default_factory=FaceLimits)
    pictures: dict[bytes, str] = field(default_factory=dict)
    selfies: deque[str | FaceReject] = field(default_factory=deque)
    asked: list[bytes] = field(default_factory=list)
    boxes: dict[bytes, FaceBox] = field(default_factory=dict)  # where the face is in a portrait, if said

    def shows(self, picture: bytes, person: str) -> None:
        self.pictures[picture] = person

    def next_selfies(self, answers: Iterable[str | FaceReject]) -> None:
        self.selfies.extend(answers)

    async def check_selfie_async(self, data: bytes) -> SelfieCheck:
        self.asked.append(data)
        answer = self.selfies.popleft() if self.selfies else self.pictures.get(data, FaceReject.NONE)
        if isinstance(answer, FaceReject):
            return SelfieCheck(answer, None)
        return SelfieCheck(None, person_embedding(answer), face_px=float(self.limits.min_size_px), sharpness=100.0)

    async def embed_async(self, data: bytes) -> np.ndarray | None:
        self.asked.append(data)
        person = self.pictures.get(data)
        return None if person is None else person_embedding(person)

    async def score_portrait_async(self, data: bytes, references: Sequence[np.ndarray]) -> IdentityScore | None:
        embedding = await self.embed_async(data)
        if embedding is None:
            return None
        return replace(identity_score(embedding, references), face=self.boxes.get(data))
