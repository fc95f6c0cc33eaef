"""Face models loaded once per test process and handed from one app to the next.

Why: an app with face checks loads two copies of dlib's models (one per lane), about 0.6 CPU s each
(the HOG detector alone 0.34 s); the face tests start some thirty such apps, and a profile of the
suite had the loading at 2.5 % of its CPU. A copy is lent to one app at a time and comes back when
that app's analyser has closed and its worker threads have finished with it (dlib's models are not
safe to share between threads).
"""

from __future__ import annotations

from functools import cache

from providers.faces import FaceAnalyser, FaceModels
from studio.faces import FaceLimits


class FaceModelShelf:
    def __init__(self) -> None:
        self._idle: list[FaceModels] = []

    def take(self) -> FaceModels:
        return self._idle.pop() if self._idle else FaceModels.load()

    def give_back(self, models: FaceModels) -> None:
        self._idle.append(models)

    def analyser(self, limits: FaceLimits | None = None) -> FaceAnalyser:
        return ShelvedFaceAnalyser(self, limits)


class ShelvedFaceAnalyser(FaceAnalyser):
    """A ``FaceAnalyser`` on borrowed models, which it returns once its threads have stopped."""

    def __init__(self, shelf: FaceModelShelf, limits: FaceLimits | None) -> None:
        self._shelf: FaceModelShelf | None = shelf
        super().__init__(shelf.take(), limits, portrait_models=shelf.take())

    def close(self) -> None:
        if self._shelf is None:
            return  # closed already: the models went back once
        shelf, self._shelf = self._shelf, None
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._portrait_executor.shutdown(wait=True, cancel_futures=True)
        shelf.give_back(self.models)
        shelf.give_back(self._portrait_models)


@cache
def face_model_shelf() -> FaceModelShelf:
    """The test process's one shelf (a process-wide cache in the tests, not in the application)."""
    return FaceModelShelf()
