"""Face checks on dlib: one clear face per selfie, one person per set, and how much a portrait looks like them.

Only public-domain dlib models are used (per davisking/dlib-models): the HOG detector built into dlib,
the 5-point landmark model and the ResNet 128-d embedding from the ``face-recognition-models`` package.
The 68-point model in the same package is never loaded: its training data forbids commercial use.
The package is located by path, never imported: its ``__init__`` needs ``pkg_resources``, which
setuptools ≥ 82 no longer has (shared/docs/telegram.md §5.2).

Everything dlib does here is CPU-bound and blocking. :class:`FaceAnalyser` owns one worker thread and
its async methods run there, off the event loop; a single thread also means the dlib objects are never
used by two threads at once. The embedding distance is dlib's: L2 between descriptors, < 0.6 is "the
same person" on LFW. An *identity score* is ``1 − distance``, so higher is more alike.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.files import FileStore
from storage.images import EXIF_ORIENTATION_TAG
from storage.models import GenerationTask, ReferencePhoto
from storage.sql import rows_changed
from studio.intake import MIN_PHOTOS
from studio.states import TaskStatus

log = logging.getLogger(__name__)

MODEL_PACKAGE = "face_recognition_models"
LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
EMBEDDING_SIZE = 128
# A detection below this HOG score is noise (the astronaut's mission patch scores 0.12, faces > 0.6).
DETECT_MIN_SCORE = 0.5
# Faces at most this fraction of the main face's size are background people, not a second sitter.
BACKGROUND_FACE_RATIO = 0.5
# The intake starts comparing photos with each other when the set would hold this many (studio.intake's minimum).
SET_REVIEW_FROM = MIN_PHOTOS
# The sharpness chip: large enough that a sharp face keeps its texture, the same for every photo.
CHIP_SIZE = 256


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


class FaceModelsUnavailable(Exception):
    """The dlib models cannot be found or loaded; the product runs with face checks off."""


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


# ---------------------------------------------------------------- models


def model_directory() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsUnavailable(f"the {MODEL_PACKAGE} package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True, slots=True)
class FaceModels:
    detector: Any
    landmarks: Any
    encoder: Any
    face_chip: Any  # dlib.get_face_chip, kept here so dlib is imported only where the models load

    @classmethod
    def load(cls, directory: Path | None = None) -> FaceModels:
        """Blocking (about 0.5 s); raises :class:`FaceModelsUnavailable` with the reason."""
        try:
            import dlib
        except ImportError as error:
            raise FaceModelsUnavailable(f"dlib cannot be imported: {error}") from error
        directory = directory or model_directory()
        paths = [directory / LANDMARKS_MODEL, directory / EMBEDDING_MODEL]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FaceModelsUnavailable(f"model files missing: {', '.join(missing)}")
        try:
            return cls(
                detector=dlib.get_frontal_face_detector(),
                landmarks=dlib.shape_predictor(str(paths[0])),
                encoder=dlib.face_recognition_model_v1(str(paths[1])),
                face_chip=dlib.get_face_chip,
            )
        except RuntimeError as error:  # dlib's error for an unreadable or truncated model file
            raise FaceModelsUnavailable(f"model files cannot be loaded: {error}") from error


# ---------------------------------------------------------------- pure helpers


def embedding_to_bytes(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype="<f4").tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float64)


def face_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def laplacian_variance(rgb: np.ndarray) -> float:
    """Sharpness: variance of the 4-neighbour Laplacian of the luminance (blur flattens it)."""
    gray = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4.0 * gray[1:-1, 1:-1]
    return float(lap.var())


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


def _upright_rgb(data: bytes, long_side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Decode, apply EXIF orientation, and scale down to ``long_side``.

    Returns the pixels, their scale against the upright original, and the original's upright size.
    """
    with Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        if opened.getexif().get(EXIF_ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # stored sideways
            width, height = height, width
        # A JPEG far above the working size decodes at 1/2–1/8 scale (never below it): most of the time saved.
        opened.draft("RGB", (long_side, long_side))
        image = ImageOps.exif_transpose(opened).convert("RGB")
    if max(image.size) > long_side:
        factor = long_side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.LANCZOS
        )
    return np.asarray(image), image.width / width, (width, height)


# ---------------------------------------------------------------- the analyser


class FaceAnalyser:
    """Selfie checks and portrait scoring, each on its own worker with its own copy of the models.

    Separate lanes so that a flood of uploads (anyone can send photos) queues behind itself and
    never in front of the portraits people paid for; separate models because dlib's networks keep
    per-call state and are not safe to share between threads. Given only ``models``, both lanes
    share one worker (tests that build an analyser by hand)."""

    def __init__(
        self, models: FaceModels, limits: FaceLimits | None = None, portrait_models: FaceModels | None = None
    ) -> None:
        self.models = models
        self.limits = limits or FaceLimits()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces-intake")
        self._portrait_models = portrait_models or models
        self._portrait_executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces-portraits")
            if portrait_models is not None
            else self._executor
        )

    @classmethod
    def load(cls, limits: FaceLimits | None = None) -> FaceAnalyser:
        return cls(FaceModels.load(), limits, portrait_models=FaceModels.load())

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._portrait_executor.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------- blocking

    def read(self, data: bytes, models: FaceModels | None = None) -> FaceReading:
        models = models or self.models
        pixels, scale, (width, height) = _upright_rgb(data, self.limits.work_long_side)
        detector = models.detector
        # No upsampling first (4x cheaper); a second pass finds faces under ~80 px, so a small
        # face is reported as small rather than as missing.
        rects, scores, _ = detector.run(pixels, 0, DETECT_MIN_SCORE)
        if not len(rects):
            rects, scores, _ = detector.run(pixels, 1, DETECT_MIN_SCORE)
        found = sorted(zip(rects, scores, strict=True), key=lambda pair: pair[0].width(), reverse=True)
        faces = tuple(
            FaceBox(rect.left() / scale, rect.top() / scale, rect.width() / scale, float(score))
            for rect, score in found
        )
        if not found:
            return FaceReading(width, height, faces, None, None)
        shape = models.landmarks(pixels, found[0][0])
        embedding = np.array(models.encoder.compute_face_descriptor(pixels, shape))
        chip = np.asarray(models.face_chip(pixels, shape, size=CHIP_SIZE))
        # Only the middle of the chip: its margin may be background or the black fill beyond the
        # photo's edge, whose hard borders would make any blurred face look sharp.
        inner = chip[CHIP_SIZE // 4 : -CHIP_SIZE // 4, CHIP_SIZE // 4 : -CHIP_SIZE // 4]
        return FaceReading(width, height, faces, embedding, laplacian_variance(inner))

    def check_selfie(self, data: bytes) -> SelfieCheck:
        reading = self.read(data)
        if not reading.faces or reading.embedding is None:
            return SelfieCheck(FaceReject.NONE, None)
        main = reading.faces[0]
        sharpness = reading.sharpness or 0.0
        others = [face for face in reading.faces[1:] if face.size > BACKGROUND_FACE_RATIO * main.size]
        if others:
            return SelfieCheck(FaceReject.MANY, None, main.size, sharpness)
        short_side = min(reading.width, reading.height)
        if main.size < self.limits.min_size_px or main.size < self.limits.min_size_ratio * short_side:
            return SelfieCheck(FaceReject.SMALL, None, main.size, sharpness)
        if sharpness < self.limits.blur_min:
            return SelfieCheck(FaceReject.BLURRY, None, main.size, sharpness)
        return SelfieCheck(None, reading.embedding, main.size, sharpness)

    def score_portrait(self, data: bytes, references: Sequence[np.ndarray]) -> IdentityScore | None:
        """None when the portrait shows no face at all."""
        reading = self.read(data, self._portrait_models)
        if reading.embedding is None:
            return None
        return identity_score(reading.embedding, references)

    # -------------------------------------------- off the event loop

    async def check_selfie_async(self, data: bytes) -> SelfieCheck:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.check_selfie, data)

    async def score_portrait_async(self, data: bytes, references: Sequence[np.ndarray]) -> IdentityScore | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._portrait_executor, self.score_portrait, data, references)

    async def embed_async(self, data: bytes) -> np.ndarray | None:
        """A reference photo's embedding, for scoring portraits (hence the portrait lane)."""
        loop = asyncio.get_running_loop()
        reading = await loop.run_in_executor(self._portrait_executor, self.read, data, self._portrait_models)
        return reading.embedding


# ---------------------------------------------------------------- database


async def set_embeddings(session: AsyncSession, avatar_id: int) -> list[tuple[int, np.ndarray]]:
    """(slot, embedding) of the set's photos that have one, in slot order."""
    rows = await session.execute(
        select(ReferencePhoto.slot, ReferencePhoto.face_embedding)
        .where(ReferencePhoto.avatar_id == avatar_id, ReferencePhoto.face_embedding.is_not(None))
        .order_by(ReferencePhoto.slot)
    )
    return [(slot, embedding_from_bytes(blob)) for slot, blob in rows.all() if blob is not None]


async def store_embedding(session: AsyncSession, avatar_id: int, sha256: str, embedding: np.ndarray) -> None:
    await session.execute(
        update(ReferencePhoto)
        .where(ReferencePhoto.avatar_id == avatar_id, ReferencePhoto.sha256 == sha256)
        .values(face_embedding=embedding_to_bytes(embedding))
    )


async def remove_photos(session: AsyncSession, files: FileStore, avatar_id: int, slots: Sequence[int]) -> int:
    """Take photos out of a set and close the gaps in its slots; returns how many are left.

    Slots are renumbered upwards one row at a time, so UNIQUE (avatar_id, slot) holds after every
    statement and the next photo goes into slot count + 1 as the intake expects.
    """
    rows = list(
        (
            await session.execute(
                select(ReferencePhoto).where(ReferencePhoto.avatar_id == avatar_id).order_by(ReferencePhoto.slot)
            )
        ).scalars()
    )
    keys = [row.storage_key for row in rows if row.slot in slots]
    for row in rows:
        if row.slot in slots:
            await session.delete(row)
    await session.flush()
    kept = [row for row in rows if row.slot not in slots]
    for new_slot, row in enumerate(kept, start=1):
        if row.slot != new_slot:
            await session.execute(update(ReferencePhoto).where(ReferencePhoto.id == row.id).values(slot=new_slot))
    for key in keys:
        await files.delete(key)
    return len(kept)


async def reference_embeddings(
    session: AsyncSession, files: FileStore, analyser: FaceAnalyser, avatar_id: int
) -> list[np.ndarray]:
    """The set's embeddings; photos stored while checks were off are embedded now (and remembered)."""
    rows = list(
        (
            await session.execute(
                select(ReferencePhoto).where(ReferencePhoto.avatar_id == avatar_id).order_by(ReferencePhoto.slot)
            )
        ).scalars()
    )
    embeddings: list[np.ndarray] = []
    for row in rows:
        if row.face_embedding is None:
            embedding = await analyser.embed_async(await files.get(row.storage_key))
            if embedding is None:
                continue
            row.face_embedding = embedding_to_bytes(embedding)
        embeddings.append(embedding_from_bytes(row.face_embedding))
    await session.flush()
    if len(embeddings) >= 3:
        # A photo that slipped in unlike the rest would pull the centroid away from the person.
        verdict = review_set(embeddings, analyser.limits.match_max_distance)
        if verdict.has_majority:
            embeddings = [embeddings[i] for i in verdict.majority]
    return embeddings


async def begin_identity_redo(session: AsyncSession, task_id: int, result_url: str, score: float) -> bool:
    """Claim the task's one regeneration for likeness; False if it was used already (or the task moved on)."""
    result = await session.execute(
        update(GenerationTask)
        .where(
            GenerationTask.id == task_id,
            GenerationTask.status == TaskStatus.SUCCEEDED,
            GenerationTask.result_url == result_url,
            GenerationTask.identity_redos == 0,
        )
        .values(identity_redos=GenerationTask.identity_redos + 1, identity_score=score)
    )
    return bool(rows_changed(result))


async def record_identity(session: AsyncSession, task_id: int, score: float, flagged: bool) -> None:
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id, GenerationTask.status == TaskStatus.SUCCEEDED)
        .values(identity_score=score, flagged=flagged)
    )


# ---------------------------------------------------------------- the intake's questions


async def check_selfie_for_set(
    session: AsyncSession, analyser: FaceAnalyser, avatar_id: int, jpeg: bytes
) -> SelfieCheck:
    """The photo on its own, then (once the set would hold enough photos to judge) against the set."""
    check = await analyser.check_selfie_async(jpeg)
    if check.embedding is None:
        return check
    known = [embedding for _slot, embedding in await set_embeddings(session, avatar_id)]
    if len(known) + 1 >= SET_REVIEW_FROM:
        verdict = review_set([*known, check.embedding], analyser.limits.match_max_distance)
        # Without a clear majority there is no telling who the odd one is: the review at Done says so.
        if verdict.has_majority and len(known) in verdict.outliers:
            return SelfieCheck(FaceReject.MISMATCH, None, check.face_px, check.sharpness)
    return check


@dataclass(frozen=True, slots=True)
class SetReview:
    removed_slots: tuple[int, ...] = ()
    refused: bool = False  # no one person shows in most photos: nothing to keep or to remove

    @property
    def passed(self) -> bool:
        return not self.removed_slots and not self.refused


async def review_avatar(session: AsyncSession, files: FileStore, analyser: FaceAnalyser, avatar_id: int) -> SetReview:
    """Before the set is closed: drop photos of someone else, or refuse a set with no clear majority.

    Photos taken before the set held enough to judge were checked alone; this is where an early
    odd one out is caught. The caller commits.
    """
    known = await set_embeddings(session, avatar_id)
    if len(known) < 2:
        return SetReview()
    verdict = review_set([embedding for _slot, embedding in known], analyser.limits.match_max_distance)
    if not verdict.has_majority:
        return SetReview(refused=True)
    slots = tuple(known[index][0] for index in verdict.outliers)
    if slots:
        await remove_photos(session, files, avatar_id, slots)
    return SetReview(removed_slots=slots)
