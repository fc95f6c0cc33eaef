"""Client of our own self-hosted generator (``GENERATOR_URL``), per docs/generator.md.

The contract is ours, so it is small: ``POST /generate`` answers 202 with a job id, ``GET
/jobs/{id}`` tells its state, and a webhook signed with HMAC-SHA256 of the raw body reports the end.
Rules this client lives by:
- Reference photos reach the generator only through signed, expiring links to our own web app
  (``GET /files/{key}``): never bytes we push, never a Telegram file URL (it carries the bot token).
- Only the body of a webhook is signed, not its timestamp: a webhook is verified, then the job is
  fetched again and the fetched state is what we return, so a replayed or stale body changes nothing.
- The token goes only to the generator's own origin, never to another host a result URL may name.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from providers.base import (
    BadSignatureError,
    CreateLimiter,
    GenerationOptions,
    MalformedCallbackError,
    PermanentProviderError,
    ProviderError,
    ProviderLimits,
    RateLimit,
    RetryableProviderError,
    StatusLimiter,
    TaskNotFoundError,
    TaskResult,
    TaskState,
    admitted,
)
from providers.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    USER_AGENT,
    DownloadPolicy,
    build_http_client,
    error_for_status,
    fetch_bytes,
    json_object,
    refuse_telegram_file_urls,
    retry_after_seconds,
    send,
)
from providers.jsonbody import MalformedJson, load_json_object

logger = logging.getLogger(__name__)

PROVIDER_NAME = "selfhosted"
SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_PREFIX = "sha256="
CALLBACK_TOLERANCE_SECONDS = 300
# A job's reference links are made once and reused by all its tasks (and fallbacks to this
# provider), so they must outlive a long queue; the /files route also serves them only while the
# job is in flight, which is the tighter bound in practice.
REFERENCE_LINK_TTL_SECONDS = 6 * 3600
DEFAULT_NEGATIVE_PROMPT = "deformed face, extra fingers, blurry, watermark, text, cartoon"
# Output size: the long side in pixels; both sides are multiples of 64, which diffusion models need.
DEFAULT_LONG_SIDE = 1024
_SIZE_STEP = 64

_STATES = {
    "queued": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}

ReferenceLinker = Callable[[str, int], str]
"""(storage key, seconds valid) -> a signed ``{base}/files/{key}?exp=…&sig=…`` link to our web app."""


def webhook_signature(secret: str, raw_body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``, as sent in ``X-Signature``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def size_for_aspect(aspect_ratio: str, long_side: int = DEFAULT_LONG_SIDE) -> tuple[int, int]:
    """Width and height for "3:4" and the like; anything unparsable is refused before any call."""
    width_part, separator, height_part = aspect_ratio.partition(":")
    try:
        ratio_width, ratio_height = float(width_part), float(height_part)
    except ValueError:
        ratio_width = ratio_height = 0.0
    if not separator or ratio_width <= 0 or ratio_height <= 0:
        raise PermanentProviderError(f"the generator needs an aspect ratio like 3:4, got {aspect_ratio!r}")
    scale = long_side / max(ratio_width, ratio_height)
    return (
        max(_SIZE_STEP, round(ratio_width * scale / _SIZE_STEP) * _SIZE_STEP),
        max(_SIZE_STEP, round(ratio_height * scale / _SIZE_STEP) * _SIZE_STEP),
    )


def job_to_result(job_id: str, body: Mapping[str, Any]) -> TaskResult:
    """Map a status answer (or webhook body) onto a TaskResult; ValueError when it is not one."""
    status = body.get("status")
    state = _STATES.get(status) if isinstance(status, str) else None
    if state is None:
        raise ValueError(f"unknown job status {status!r}")
    if state is TaskState.SUCCEEDED:
        result_url = body.get("result_url")
        if not isinstance(result_url, str) or not result_url.startswith(("https://", "http://")):
            return TaskResult(job_id, TaskState.FAILED, error="completed without a result_url", retryable=True)
        return TaskResult(job_id, TaskState.SUCCEEDED, image_urls=(result_url,))
    if state is TaskState.FAILED:
        error = body.get("error")
        # Our own generator: a failure is a crashed or overloaded worker far more often than a prompt
        # it can never render, so the engine's bounded retries apply.
        return TaskResult(job_id, TaskState.FAILED, error=str(error or "generation failed")[:500], retryable=True)
    return TaskResult(job_id, state)


class SelfHostedProvider:
    """``ImageProvider`` for the self-hosted generator (fire-and-forget create, poll or webhook)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        reference_links: ReferenceLinker,
        webhook_secret: str | None = None,
        http: httpx.AsyncClient | None = None,
        create_limiter: CreateLimiter | None = None,
        status_limiter: StatusLimiter | None = None,
        timeout: float = 30.0,
        download_timeout: float = 60.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        download_policy: DownloadPolicy | None = None,
        reference_link_ttl_seconds: int = REFERENCE_LINK_TTL_SECONDS,
        negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
        long_side: int = DEFAULT_LONG_SIDE,
        callback_tolerance_seconds: float = CALLBACK_TOLERANCE_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError("GENERATOR_URL must be an http(s) URL")
        if not token:
            raise ValueError("the generator token is empty")
        self._base_url = base_url.rstrip("/")
        self._origin = _origin(self._base_url)
        self._token = token
        self._reference_links = reference_links
        self._webhook_secret = webhook_secret or None
        self._owns_http = http is None
        self._http = http if http is not None else build_http_client(timeout)
        self._create_limiter = create_limiter
        self._status_limiter = status_limiter
        self._timeout = timeout
        self._download_timeout = download_timeout
        self._max_download_bytes = max_download_bytes
        self._download_policy = download_policy or DownloadPolicy()
        self._reference_link_ttl_seconds = reference_link_ttl_seconds
        self._negative_prompt = negative_prompt
        self._long_side = long_side
        self._callback_tolerance_seconds = callback_tolerance_seconds
        self._wall_clock = wall_clock
        create = RateLimit(10, 1.0)
        if create_limiter is not None:
            create = RateLimit(create_limiter.max_calls, create_limiter.period_seconds)
        status = RateLimit(50, 1.0)
        if status_limiter is not None:
            status = RateLimit(status_limiter.max_calls, status_limiter.period_seconds)
        self._limits = ProviderLimits(create=create, status=status)
        self._warned_unsigned = False

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    @property
    def limits(self) -> ProviderLimits:
        return self._limits

    @property
    def create_limiter(self) -> CreateLimiter | None:
        return self._create_limiter

    async def upload_reference(self, data: bytes, name: str, *, stored_key: str | None = None) -> str:
        """Nothing is uploaded: the generator gets a signed link to the stored selfie on our web app."""
        if stored_key is None:
            raise PermanentProviderError("the self-hosted generator reads references from our store: no key given")
        return self._reference_links(stored_key, self._reference_link_ttl_seconds)

    def build_request(
        self, prompt: str, reference_urls: Sequence[str], options: GenerationOptions, callback_url: str | None
    ) -> dict[str, Any]:
        """The ``POST /generate`` body; raises PermanentProviderError for what must never be sent."""
        prompt = prompt.strip()
        if not prompt:
            raise PermanentProviderError("empty prompt")
        refuse_telegram_file_urls(reference_urls)
        for url in reference_urls:
            if not url.startswith(("https://", "http://")):
                raise PermanentProviderError("reference images must be http(s) URLs")
        width, height = size_for_aspect(options.aspect_ratio, self._long_side)
        webhook_url = callback_url if self._webhook_secret is not None else None
        if callback_url and webhook_url is None and not self._warned_unsigned:
            self._warned_unsigned = True
            logger.warning("GENERATOR_WEBHOOK_SECRET is not set: the generator is polled, never asked to call back")
        return {
            "prompt": prompt,
            "negative_prompt": self._negative_prompt,
            "reference_urls": list(reference_urls),
            "seed": options.seed,
            "width": width,
            "height": height,
            "webhook_url": webhook_url,
            # Ours, opaque to the generator: it appears in both sides' logs to match a create to a job.
            "ref": uuid.uuid4().hex,
        }

    async def create_task(
        self,
        prompt: str,
        reference_urls: Sequence[str],
        options: GenerationOptions,
        callback_url: str | None,
    ) -> str:
        # Validate before taking a slot of the create budget.
        body = self.build_request(prompt, reference_urls, options, callback_url)
        async with admitted(self._create_limiter):
            response = await self._request("POST", "/generate", action="generate", json=body)
        job_id = json_object(response, "generator generate").get("job_id")
        if not isinstance(job_id, str) or not job_id.strip():
            raise RetryableProviderError("generator generate: answer has no job_id", status=response.status_code)
        return job_id.strip()

    async def get_task(self, provider_task_id: str) -> TaskResult:
        async with admitted(self._status_limiter):
            response = await self._request(
                "GET", f"/jobs/{quote(provider_task_id, safe='')}", action="job status", task_lookup=True
            )
        body = json_object(response, "generator job status")
        answered_id = body.get("job_id", provider_task_id)
        if answered_id != provider_task_id:
            raise RetryableProviderError(f"generator job status: asked for {provider_task_id!r}, got {answered_id!r}")
        try:
            return job_to_result(provider_task_id, body)
        except ValueError as exc:
            raise RetryableProviderError(f"generator job status: {exc}", status=response.status_code) from exc

    async def callback_task_id(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        self._verify_signature(headers, raw_body)
        try:
            body = load_json_object(raw_body)
        except MalformedJson as exc:
            raise MalformedCallbackError(f"webhook body refused: {exc}") from exc
        job_id = body.get("job_id")
        if not isinstance(job_id, str) or not job_id.strip():
            raise MalformedCallbackError("webhook carries no job_id")
        return job_id.strip()

    async def parse_callback(self, headers: Mapping[str, str], raw_body: bytes) -> TaskResult:
        job_id = await self.callback_task_id(headers, raw_body)
        # The timestamp is not signed, so a captured body could be replayed later: the job as the
        # generator tells it now is the truth, not what the webhook says.
        try:
            return await self.get_task(job_id)
        except TaskNotFoundError as exc:
            raise BadSignatureError(f"webhook for a job the generator does not know: {job_id!r}") from exc

    def _verify_signature(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        if self._webhook_secret is None:
            raise BadSignatureError("GENERATOR_WEBHOOK_SECRET is not set: no webhook can be verified")
        lowered = {key.lower(): value for key, value in headers.items()}
        signature = lowered.get(SIGNATURE_HEADER.lower(), "").strip()
        timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "").strip()
        if not signature or not timestamp:
            raise BadSignatureError("webhook without X-Signature / X-Timestamp")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise BadSignatureError("X-Timestamp is not Unix seconds")
        if abs(self._wall_clock() - int(timestamp)) > self._callback_tolerance_seconds:
            raise BadSignatureError("webhook timestamp outside the accepted window (replay?)")
        if not signature.isascii() or not hmac.compare_digest(
            signature.encode(), webhook_signature(self._webhook_secret, raw_body).encode()
        ):
            raise BadSignatureError("webhook signature does not match")

    async def download(self, url: str) -> bytes:
        """Fetch a result. The generator's own origin is the operator's, trusted as configured (it may
        well sit on a private network) and given the token; any other host only under the download
        policy and without it."""
        if _origin(url) == self._origin:
            return await fetch_bytes(
                self._http,
                url,
                timeout_seconds=self._download_timeout,
                max_bytes=self._max_download_bytes,
                headers=self._auth_headers(),
            )
        return await fetch_bytes(
            self._http,
            url,
            timeout_seconds=self._download_timeout,
            max_bytes=self._max_download_bytes,
            policy=self._download_policy,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT}

    async def _request(
        self, method: str, path: str, *, action: str, task_lookup: bool = False, **kwargs: Any
    ) -> httpx.Response:
        what = f"generator {action}"

        def error_for(response: httpx.Response) -> ProviderError:
            message = f"{what}: HTTP {response.status_code} {_error_text(response)}".strip()
            retry_after = retry_after_seconds(response.headers)
            return error_for_status(response.status_code, message, retry_after=retry_after, task_lookup=task_lookup)

        return await send(
            self._http,
            method,
            self._base_url + path,
            what=what,
            timeout_seconds=self._timeout,
            error_for=error_for,
            headers=self._auth_headers(),
            **kwargs,
        )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:300]
    return str(body)[:300]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
