"""An in-memory ImageProvider: the engine's fast tests run on it, with no HTTP and no clock of its own.

It does what the test says and nothing by itself, but it refuses a create without references it
issued, as the real APIs would. A created task stays queued until ``succeed`` or ``fail``;
``create_errors`` are raised by the next creates, in order (``fail_creates`` by every one); every
call is recorded. Its callbacks are the shape of Kie's: the body names a task, whose state is
fetched (``parse_callback`` calls ``get_task``). The HTTP fakes that follow the real APIs live in
tests/fakes/.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from providers.base import (
    CreateLimiter,
    GenerationOptions,
    MalformedCallbackError,
    PermanentProviderError,
    ProviderError,
    ProviderLimits,
    RateLimit,
    TaskNotFoundError,
    TaskResult,
    TaskState,
    admitted,
)


@dataclass(frozen=True, slots=True)
class FakeCreate:
    task_id: str
    prompt: str
    reference_urls: tuple[str, ...]
    options: GenerationOptions
    callback_url: str | None


class FakeImageProvider:
    def __init__(
        self,
        name: str = "kie",
        *,
        model: str = "fake-1",
        limits: ProviderLimits | None = None,
        create_limiter: CreateLimiter | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.limits = limits or ProviderLimits(create=RateLimit(20, 10.0))
        self.create_limiter = create_limiter
        self.create_errors: list[ProviderError] = []
        self.fail_creates: ProviderError | None = None
        self.uploads: list[str] = []
        self._reference_urls: set[str] = set()
        self.creates: list[FakeCreate] = []
        self.failed_creates = 0
        self.get_calls: list[str] = []
        self.downloads: list[str] = []
        self._results: dict[str, TaskResult] = {}
        self._images: dict[str, bytes] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------ what the test does

    def succeed(self, task_id: str, image: bytes) -> TaskResult:
        url = f"fake://{self.name}/results/{task_id}"
        self._images[url] = image
        return self._settle(TaskResult(task_id, TaskState.SUCCEEDED, (url,)))

    def fail(self, task_id: str, error: str = "generation failed", *, retryable: bool = True) -> TaskResult:
        return self._settle(TaskResult(task_id, TaskState.FAILED, error=error, retryable=retryable))

    def _settle(self, result: TaskResult) -> TaskResult:
        if result.provider_task_id not in self._results:
            raise KeyError(f"{self.name} never created {result.provider_task_id}")
        self._results[result.provider_task_id] = result
        return result

    @staticmethod
    def callback_body(task_id: str) -> bytes:
        return json.dumps({"taskId": task_id}).encode()

    # ------------------------------------------------------------ the ImageProvider protocol

    async def upload_reference(self, data: bytes, name: str, *, stored_key: str | None = None) -> str:
        self.uploads.append(name)
        url = f"fake://{self.name}/refs/{name}"
        self._reference_urls.add(url)
        return url

    async def create_task(
        self,
        prompt: str,
        reference_urls: Sequence[str],
        options: GenerationOptions,
        callback_url: str | None,
    ) -> str:
        # As strict as the real APIs: a portrait needs the person's selfies, uploaded to this provider.
        unknown = [url for url in reference_urls if url not in self._reference_urls]
        if not reference_urls or unknown:
            raise PermanentProviderError(f"{self.name}: no references, or ones it never issued: {unknown}", status=422)
        async with admitted(self.create_limiter):
            error = self.create_errors.pop(0) if self.create_errors else self.fail_creates
            if error is not None:
                self.failed_creates += 1
                raise error
            task_id = f"{self.name}-{next(self._ids)}"
            self.creates.append(FakeCreate(task_id, prompt, tuple(reference_urls), options, callback_url))
            self._results[task_id] = TaskResult(task_id, TaskState.QUEUED)
            return task_id

    async def get_task(self, provider_task_id: str) -> TaskResult:
        self.get_calls.append(provider_task_id)
        result = self._results.get(provider_task_id)
        if result is None:
            raise TaskNotFoundError(f"{self.name} knows no task {provider_task_id}", status=404)
        return result

    async def callback_task_id(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        try:
            data = json.loads(raw_body)
        except ValueError as error:
            raise MalformedCallbackError("callback body is not JSON") from error
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise MalformedCallbackError("callback names no task")
        return task_id

    async def parse_callback(self, headers: Mapping[str, str], raw_body: bytes) -> TaskResult:
        return await self.get_task(await self.callback_task_id(headers, raw_body))

    async def download(self, url: str) -> bytes:
        self.downloads.append(url)
        image = self._images.get(url)
        if image is None:
            raise PermanentProviderError(f"{self.name} has no result at {url}", status=404)
        return image

    async def aclose(self) -> None:
        return None
