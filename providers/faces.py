"""The dlib face engine behind studio.faces.FaceChecker: it reads faces out of pictures; the rules decide.

Only public-domain dlib models are used (per davisking/dlib-models): the HOG detector built into dlib,
the 5-point landmark model and the ResNet 128-d embedding from the ``face-recognition-models`` package.
The 68-point model in the same package is never loaded: its training data forbids commercial use.
The package is located by path, never imported: its ``__init__`` needs ``pkg_resources``, which
setuptools ≥ 82 no longer has (shared/docs/telegram.md §5.2).

Everything dlib does here is CPU-bound and blocking. :class:`FaceAnalyser` owns worker threads and
its async methods run there, off the event loop; one thread per set of models also means the dlib
objects are never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from PIL.ExifTags import Base as ExifTag

from studio.faces import FaceBox, FaceLimits, FaceReading, IdentityScore, SelfieCheck, identity_score, judge_selfie

MODEL_PACKAGE = "face_recognition_models"
LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# A detection below this HOG score is noise (the astronaut's mission patch scores 0.12, faces > 0.6).
DETECT_MIN_SCORE = 0.5
# The sharpness chip: large enough that a sharp face keeps its texture, the same for every photo.
CHIP_SIZE = 256


class FaceModelsUnavailable(Exception):
    """The dlib models cannot be found or loaded; the product runs with face checks off."""


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


# ---------------------------------------------------------------- pixels


def laplacian_variance(rgb: np.ndarray) -> float:
    """Sharpness: variance of the 4-neighbour Laplacian of the luminance (blur flattens it)."""
    gray = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4.0 * gray[1:-1, 1:-1]
    return float(lap.var())


def _upright_rgb(data: bytes, long_side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Decode, apply EXIF orientation, and scale down to ``long_side``.

    Returns the pixels, their scale against the upright original, and the original's upright size.
    """
    with Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        if opened.getexif().get(ExifTag.Orientation, 1) in (5, 6, 7, 8):  # stored sideways
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
        return judge_selfie(self.read(data), self.limits)

    def score_portrait(self, data: bytes, references: Sequence[np.ndarray]) -> IdentityScore | None:
        """None when the portrait shows no face at all."""
        reading = self.read(data, self._portrait_models)
        if reading.embedding is None:
            return None
        return replace(identity_score(reading.embedding, references), face=reading.faces[0])

    # -------------------------------------------- off the event loop: the FaceChecker port

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
