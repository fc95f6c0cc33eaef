"""Kie.ai market-jobs client (``/api/v1/jobs/createTask`` + ``recordInfo``), per ../shared/docs/kie.md.

Rules this client lives by:
- Success is HTTP 2xx AND envelope ``code == 200``; everything else is parsed from the envelope
  whatever the HTTP status (Kie often answers errors with HTTP 200).
- The image-input field name differs per model: one table (``KIE_MODELS``) decides how ``input``
  is built, and documented defaults are sent explicitly (Kie does not always apply them).
- Callbacks are only an optimisation and only ``taskId.timestamp`` is signed: after verifying,
  the task is always re-fetched and the re-fetched state is what we return.
- The API key goes only to the Kie API and upload hosts, never to result-file hosts, and a
  Telegram file URL (it carries the bot token) is never sent as a reference image.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from providers.base import (
    AccountHealth,
    BadSignatureError,
    CreateLimiter,
    GenerationOptions,
    InsufficientBalanceError,
    MalformedCallbackError,
    PermanentProviderError,
    ProviderLimits,
    RateLimit,
    RateLimitedError,
    RetryableProviderError,
    StatusLimiter,
    TaskNotFoundError,
    TaskResult,
    TaskState,
    admitted,
    provider_time,
)
from providers.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    USER_AGENT,
    DownloadPolicy,
    build_http_client,
    fetch_bytes,
    is_cloudflare_1010,
    refuse_telegram_file_urls,
    request_timeout,
    retry_after_seconds,
)
from providers.jsonbody import MalformedJson, load_json_object, same_text

logger = logging.getLogger(__name__)

UPLOAD_PATH = "pinglass/refs"
CALLBACK_TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"

# Where Kie serves results and uploads (kie.md §2, §5.3, §8): besides the API and upload hosts.
KIE_RESULT_HOSTS = (".aiquickdraw.com", ".redpandaai.co")

_COMMON_ASPECTS = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9")


def _identity_aspects(*ratios: str) -> Mapping[str, str]:
    return MappingProxyType({ratio: ratio for ratio in ratios})


@dataclass(frozen=True, slots=True)
class KieModelSpec:
    """One market model as data (kie.md §4): how to build its ``input``, what it is good for, and
    what one image costs in USD (the unit of every provider price in PinGlass)."""

    image_field: str
    max_images: int
    max_prompt_chars: int
    # List price of one image at the resolution we request, in USD (Kie bills credits; 1 credit is
    # $0.005, kie.md §10). Prices move: KIE_PRICE_PER_IMAGE overrides this for the configured model.
    price_per_image: Decimal
    # Keeps the person's face recognisable from reference photos (good enough for portraits).
    identity_ok: bool
    # Can draw a 2×2 grid of four poses in one image (one create, four portraits).
    grid_capable: bool
    # our aspect ratio ("3:4") -> the model's value; a ratio missing here is refused before any call
    aspect_field: str = "aspect_ratio"
    aspect_values: Mapping[str, str] = field(default_factory=lambda: _identity_aspects(*_COMMON_ASPECTS))
    # our output format -> the model's spelling; None: the model has no output_format field
    output_formats: Mapping[str, str] | None = None
    seed_field: str | None = None
    image_field_required: bool = True
    # documented defaults sent explicitly (kie.md §3.1: defaults are not always applied server-side)
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


KIE_MODELS: Mapping[str, KieModelSpec] = MappingProxyType(
    {
        "google/nano-banana-edit": KieModelSpec(
            price_per_image=Decimal("0.020"),  # 4 credits
            identity_ok=True,
            grid_capable=True,
            image_field="image_urls",
            max_images=10,
            max_prompt_chars=5000,
            aspect_values=_identity_aspects(*_COMMON_ASPECTS, "auto"),
            output_formats=MappingProxyType({"png": "png", "jpeg": "jpeg", "jpg": "jpeg"}),
        ),
        "nano-banana-pro": KieModelSpec(
            price_per_image=Decimal("0.090"),  # 18 credits at 1K/2K
            identity_ok=True,
            grid_capable=True,
            image_field="image_input",
            max_images=8,
            max_prompt_chars=10000,
            aspect_values=_identity_aspects(*_COMMON_ASPECTS, "auto"),
            output_formats=MappingProxyType({"png": "png", "jpeg": "jpg", "jpg": "jpg"}),
            image_field_required=False,
            extras=MappingProxyType({"resolution": "1K"}),
        ),
        "nano-banana-2": KieModelSpec(
            price_per_image=Decimal("0.040"),  # 8 credits at 1K
            identity_ok=True,
            grid_capable=True,
            image_field="image_input",
            max_images=14,
            max_prompt_chars=20000,
            aspect_values=_identity_aspects(*_COMMON_ASPECTS, "1:4", "1:8", "4:1", "8:1", "auto"),
            output_formats=MappingProxyType({"png": "png", "jpeg": "jpg", "jpg": "jpg"}),
            image_field_required=False,
            extras=MappingProxyType({"resolution": "1K", "google_search": False}),
        ),
        "seedream/4.5-edit": KieModelSpec(
            price_per_image=Decimal("0.0325"),  # 6.5 credits
            identity_ok=True,
            grid_capable=True,
            image_field="image_urls",
            max_images=14,
            max_prompt_chars=3000,
            aspect_values=_identity_aspects("1:1", "4:3", "3:4", "16:9", "9:16", "2:3", "3:2", "21:9"),
            extras=MappingProxyType({"quality": "basic"}),
        ),
        "bytedance/seedream-v4-edit": KieModelSpec(
            price_per_image=Decimal("0.025"),  # 5 credits per image
            identity_ok=False,
            grid_capable=True,
            image_field="image_urls",
            max_images=10,
            max_prompt_chars=5000,
            aspect_field="image_size",
            aspect_values=MappingProxyType(
                {
                    "1:1": "square_hd",
                    "3:4": "portrait_4_3",
                    "2:3": "portrait_3_2",
                    "9:16": "portrait_16_9",
                    "4:3": "landscape_4_3",
                    "3:2": "landscape_3_2",
                    "16:9": "landscape_16_9",
                    "21:9": "landscape_21_9",
                }
            ),
            seed_field="seed",
            extras=MappingProxyType({"image_resolution": "1K", "max_images": 1}),
        ),
        "flux-2/pro-image-to-image": KieModelSpec(
            price_per_image=Decimal("0.025"),  # 5 credits at 1K
            identity_ok=False,
            grid_capable=True,
            image_field="input_urls",
            max_images=8,
            max_prompt_chars=5000,
            aspect_values=_identity_aspects("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "auto"),
            extras=MappingProxyType({"resolution": "1K"}),
        ),
    }
)


def check_kie_model(model: str) -> KieModelSpec:
    """The table's entry for ``model``; ValueError naming the known models (one line) otherwise."""
    spec = KIE_MODELS.get(model)
    if spec is None:
        raise ValueError(f"unknown Kie model {model!r}; known: {', '.join(sorted(KIE_MODELS))}")
    return spec


# Failure texts that mean "this prompt/photo will never pass": do not retry the same request.
_NON_RETRYABLE_FAIL_MARKERS = (
    "policy",
    "sensitive",
    "nsfw",
    "safety",
    "moderation",
    "prohibited",
    "violat",
    "inappropriate",
    "flagged",
    "not allowed",
    "illegal",
    "copyright",
    "celebrity",
)
# Callback/fail codes: 400 bad params or content policy, 422 validation, 451 unreadable input.
_NON_RETRYABLE_FAIL_CODES = frozenset({"400", "401", "402", "403", "422", "451"})
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def kie_webhook_signature(hmac_key: str, task_id: str, timestamp: str) -> str:
    """``base64(HMAC_SHA256(key, taskId + "." + timestamp))`` as sent in ``X-Webhook-Signature``."""
    digest = hmac.new(hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def is_retryable_failure(fail_code: object, fail_msg: object) -> bool:
    """Heuristic for ``state: fail``: content-policy/validation failures are final, others transient."""
    code_text = "" if fail_code is None else str(fail_code).strip()
    message_text = "" if fail_msg is None else str(fail_msg).lower()
    if any(marker in message_text for marker in _NON_RETRYABLE_FAIL_MARKERS):
        return False
    return code_text not in _NON_RETRYABLE_FAIL_CODES


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp/httpx headers are case-insensitive, a plain dict is not: look up both ways.
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _envelope_message(body: Mapping[str, Any]) -> str:
    message = body.get("msg")
    if message is None:
        message = body.get("message")
    return "" if message is None else str(message)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class KieProvider:
    """``ImageProvider`` for Kie.ai market models (fire-and-forget create, poll or callback)."""

    def __init__(
        self,
        api_key: str,
        api_url: str,
        upload_url: str,
        model: str,
        http: httpx.AsyncClient | None = None,
        hmac_key: str | None = None,
        create_limiter: CreateLimiter | None = None,
        timeout: float = 30.0,
        *,
        download_timeout: float = 60.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        input_overrides: Mapping[str, Any] | None = None,
        callback_tolerance_seconds: float = CALLBACK_TOLERANCE_SECONDS,
        wall_clock: Callable[[], float] = time.time,
        download_policy: DownloadPolicy | None = None,
        status_limiter: StatusLimiter | None = None,
        price_per_image: Decimal | None = None,
    ) -> None:
        spec = check_kie_model(model)
        if not api_key:
            raise ValueError("api_key is empty")
        self._api_key = api_key
        self._api_url = api_url.rstrip("/")
        self._upload_url = upload_url.rstrip("/")
        self.model = model
        self._spec = spec
        # Grid packs go to this provider only when its model can draw a 2×2 grid (the engine reads it).
        self.grid_capable = spec.grid_capable
        # The operator's price (KIE_PRICE_PER_IMAGE) wins over the table's: Kie reprices often.
        self.price_per_image = spec.price_per_image if price_per_image is None else price_per_image
        self._owns_http = http is None
        self._http = http if http is not None else build_http_client(timeout)
        self._hmac_key = hmac_key or None
        self._create_limiter = create_limiter
        self._timeout = timeout
        self._download_timeout = download_timeout
        self._max_download_bytes = max_download_bytes
        self._download_policy = (download_policy or DownloadPolicy()).with_hosts(
            [urlsplit(self._api_url).hostname or "", urlsplit(self._upload_url).hostname or "", *KIE_RESULT_HOSTS]
        )
        # Operator tuning on top of the table (e.g. {"resolution": "2K"}); applied last.
        self._input_overrides = dict(input_overrides or {})
        self._callback_tolerance_seconds = callback_tolerance_seconds
        self._wall_clock = wall_clock
        # recordInfo: 10 per second per key (kie.md §3.3), shared by polls and callback re-fetches.
        self._status_limiter = status_limiter
        status = RateLimit(10, 1.0)
        if status_limiter is not None:
            # What it really admits: its window is widened by the safety margin.
            window = status_limiter.period_seconds + status_limiter.safety_margin_seconds
            status = RateLimit(status_limiter.max_calls, window)
        self._limits = ProviderLimits(create=RateLimit(20, 10.0), status=status)

    @property
    def name(self) -> str:
        return "kie"

    @property
    def limits(self) -> ProviderLimits:
        return self._limits

    @property
    def create_limiter(self) -> CreateLimiter | None:
        return self._create_limiter

    # ------------------------------------------------------------------ upload

    async def upload_reference(self, data: bytes, name: str, *, stored_key: str | None = None) -> str:
        if not data:
            raise PermanentProviderError("refusing to upload an empty file")
        # Kie overwrites (and may serve a cached stale copy of) a reused fileName: always unique.
        base_name = _UNSAFE_FILENAME_CHARS.sub("_", name.rsplit("/", 1)[-1]).strip("._") or "photo"
        file_name = f"{uuid.uuid4().hex}-{base_name}"[:120]
        mime_type = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        response_data = await self._call(
            "upload",
            "POST",
            f"{self._upload_url}/api/file-stream-upload",
            json_body=False,
            files={"file": (file_name, data, mime_type)},
            form={"uploadPath": UPLOAD_PATH, "fileName": file_name},
        )
        download_url = response_data.get("downloadUrl") if isinstance(response_data, Mapping) else None
        if not isinstance(download_url, str) or not download_url:
            raise PermanentProviderError("upload answered success without data.downloadUrl")
        return download_url

    # ------------------------------------------------------------------ create

    def build_input(self, prompt: str, reference_urls: Sequence[str], options: GenerationOptions) -> dict[str, Any]:
        """The model-specific ``input`` object; raises PermanentProviderError for what Kie would reject."""
        spec = self._spec
        prompt = prompt.strip()
        if not prompt:
            raise PermanentProviderError("empty prompt")
        if len(prompt) > spec.max_prompt_chars:
            raise PermanentProviderError(f"prompt longer than {spec.max_prompt_chars} chars for {self.model}")
        urls = list(reference_urls)
        if spec.image_field_required and not urls:
            raise PermanentProviderError(f"{self.model} needs at least one reference image")
        if len(urls) > spec.max_images:
            raise PermanentProviderError(f"{self.model} takes at most {spec.max_images} reference images")
        refuse_telegram_file_urls(urls)
        for url in urls:
            if not url.startswith(("https://", "http://")):
                raise PermanentProviderError("reference images must be http(s) URLs (Kie accepts no base64)")
        aspect_value = spec.aspect_values.get(options.aspect_ratio)
        if aspect_value is None:
            raise PermanentProviderError(f"{self.model} does not support aspect ratio {options.aspect_ratio!r}")
        model_input: dict[str, Any] = {"prompt": prompt}
        if urls:
            model_input[spec.image_field] = urls
        model_input[spec.aspect_field] = aspect_value
        if spec.output_formats is not None:
            output_format = spec.output_formats.get(options.output_format.lower())
            if output_format is None:
                raise PermanentProviderError(f"{self.model} cannot output {options.output_format!r}")
            model_input["output_format"] = output_format
        if spec.seed_field is not None and options.seed is not None:
            model_input[spec.seed_field] = options.seed
        model_input.update(spec.extras)
        model_input.update(self._input_overrides)
        return model_input

    async def create_task(
        self,
        prompt: str,
        reference_urls: Sequence[str],
        options: GenerationOptions,
        callback_url: str | None,
    ) -> str:
        # Build first: an input Kie would reject must not spend the account-wide create budget.
        body: dict[str, Any] = {
            "model": self.model,
            "input": self.build_input(prompt, reference_urls, options),
        }
        if callback_url:
            body["callBackUrl"] = callback_url  # capital B (kie.md §3.1)
        async with admitted(self._create_limiter):
            data = await self._call("createTask", "POST", f"{self._api_url}/api/v1/jobs/createTask", json_payload=body)
        task_id = None
        if isinstance(data, Mapping):
            task_id = data.get("taskId") or data.get("task_id")
        if not isinstance(task_id, str | int) or not str(task_id):
            raise RetryableProviderError("createTask answered success without data.taskId")
        return str(task_id)

    # ------------------------------------------------------------------ status

    async def get_task(self, provider_task_id: str) -> TaskResult:
        async with admitted(self._status_limiter):
            data = await self._call(
                "recordInfo",
                "GET",
                f"{self._api_url}/api/v1/jobs/recordInfo",
                params={"taskId": provider_task_id},
            )
        if not isinstance(data, Mapping):
            raise RetryableProviderError("recordInfo answered success without a data object")
        return self._task_result(provider_task_id, data)

    def _task_result(self, provider_task_id: str, data: Mapping[str, Any]) -> TaskResult:
        state = str(data.get("state") or data.get("status") or "").strip().lower()
        if state in ("waiting", "queuing", "queued", "pending"):
            return TaskResult(provider_task_id, TaskState.QUEUED)
        if state in ("generating", "running", "processing"):
            return TaskResult(provider_task_id, TaskState.RUNNING)
        if state == "success":
            image_urls = self._result_urls(data.get("resultJson"))
            if not image_urls:
                return TaskResult(
                    provider_task_id, TaskState.FAILED, error="success without result URLs", retryable=True
                )
            return TaskResult(
                provider_task_id,
                TaskState.SUCCEEDED,
                image_urls=image_urls,
                finished_at=provider_time(data.get("completeTime")),
            )
        if state in ("fail", "failed"):
            fail_code = data.get("failCode")
            fail_msg = data.get("failMsg")
            code_text = "" if fail_code is None else str(fail_code).strip()
            msg_text = "" if fail_msg is None else str(fail_msg).strip()
            error = ": ".join(part for part in (code_text, msg_text) if part) or "generation failed"
            return TaskResult(
                provider_task_id,
                TaskState.FAILED,
                error=error,
                retryable=is_retryable_failure(fail_code, fail_msg),
            )
        # An unknown state is not terminal: keep polling; the engine's deadline bounds it.
        logger.warning("kie task %s has unknown state %r", provider_task_id, state)
        return TaskResult(provider_task_id, TaskState.RUNNING)

    @staticmethod
    def _result_urls(result_json: object) -> tuple[str, ...]:
        parsed: object = result_json
        if isinstance(result_json, str):
            if not result_json.strip():
                return ()
            try:
                parsed = json.loads(result_json)
            except ValueError:
                return ()
        if not isinstance(parsed, Mapping):
            return ()
        urls = parsed.get("resultUrls") or parsed.get("result_urls") or ()
        if isinstance(urls, str):
            urls = [urls]
        return tuple(url for url in urls if isinstance(url, str) and url.startswith(("https://", "http://")))

    async def get_credits(self) -> float:
        """Remaining account credits (``GET /api/v1/chat/credit``), for provider-health checks."""
        data = await self._call("credit", "GET", f"{self._api_url}/api/v1/chat/credit")
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            raise RetryableProviderError(f"credit answered an unexpected data value: {data!r}")
        try:
            return float(data)
        except ValueError as exc:
            raise RetryableProviderError(f"credit answered a non-number: {data!r}") from exc

    async def probe_health(self) -> AccountHealth:
        # Kie has no model lookup (an unknown model shows only as a refused createTask): balance only.
        return AccountHealth(balance=await self.get_credits())

    # ------------------------------------------------------------------ callbacks

    async def callback_task_id(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        try:
            body = load_json_object(raw_body)
        except MalformedJson as exc:
            raise MalformedCallbackError(f"callback body refused: {exc}") from exc
        task_id = self._callback_task_id(body)
        if self._hmac_key is not None:
            self._verify_signature(headers, task_id)
        return task_id

    async def parse_callback(self, headers: Mapping[str, str], raw_body: bytes) -> TaskResult:
        task_id = await self.callback_task_id(headers, raw_body)
        # Only taskId.timestamp is signed, never the state: the re-fetched record is the truth.
        try:
            return await self.get_task(task_id)
        except TaskNotFoundError as exc:
            raise BadSignatureError(f"callback for a task Kie does not know: {task_id!r}") from exc

    @staticmethod
    def _callback_task_id(body: Mapping[str, Any]) -> str:
        data = body.get("data")
        candidates: list[object] = []
        if isinstance(data, Mapping):
            candidates += [data.get("taskId"), data.get("task_id")]
        candidates.append(body.get("taskId"))
        for candidate in candidates:
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()
        raise MalformedCallbackError("callback carries no taskId")

    def _verify_signature(self, headers: Mapping[str, str], task_id: str) -> None:
        assert self._hmac_key is not None
        timestamp = (_header(headers, TIMESTAMP_HEADER) or "").strip()
        signature = (_header(headers, SIGNATURE_HEADER) or "").strip()
        if not timestamp or not signature:
            raise BadSignatureError("callback without X-Webhook-Timestamp / X-Webhook-Signature")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise BadSignatureError("X-Webhook-Timestamp is not Unix seconds")
        sent_at = int(timestamp)
        if sent_at > 10**11:
            # Documented as seconds; tolerate milliseconds for the age check only (the signature
            # covers the literal header text either way).
            sent_at //= 1000
        if abs(self._wall_clock() - sent_at) > self._callback_tolerance_seconds:
            raise BadSignatureError("callback timestamp outside the accepted window (replay?)")
        expected = kie_webhook_signature(self._hmac_key, task_id, timestamp)
        if not same_text(signature, expected):
            raise BadSignatureError("callback signature does not match")

    # ------------------------------------------------------------------ files

    async def download(self, url: str) -> bytes:
        # No Authorization header: result files live on other hosts, which must never see our key.
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

    # ------------------------------------------------------------------ transport

    async def _call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        json_body: bool = True,
        json_payload: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self._api_key}", "User-Agent": USER_AGENT}
        if json_body:
            # kie.md §1: every API request carries Content-Type: application/json (GETs included).
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method,
                url,
                headers=headers,
                json=json_payload,
                params=params,
                files=files,
                data=form,
                timeout=request_timeout(self._timeout),
            )
        except httpx.TimeoutException as exc:
            raise RetryableProviderError(f"kie {operation}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise RetryableProviderError(f"kie {operation}: {type(exc).__name__}: {exc}") from exc
        return self._unwrap_envelope(operation, response)

    def _unwrap_envelope(self, operation: str, response: httpx.Response) -> Any:
        http_status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            if 200 <= http_status < 300:
                raise RetryableProviderError(f"kie {operation}: HTTP {http_status} without a JSON envelope")
            self._raise_for_code(operation, http_status, response.text[:300], response)
        code = _as_int(body.get("code"))
        message = _envelope_message(body)
        if 200 <= http_status < 300 and code == 200:
            return body.get("data")
        # A JSON body without a usable code (or a 200 code on an error status): the HTTP status decides.
        effective_code = code if code is not None and code != 200 else http_status
        if 200 <= effective_code < 300:
            raise RetryableProviderError(f"kie {operation}: unexpected envelope {str(body)[:200]}", status=code)
        self._raise_for_code(operation, effective_code, message, response)

    @staticmethod
    def _raise_for_code(operation: str, code: int, message: str, response: httpx.Response) -> NoReturn:
        detail = f"kie {operation}: code {code}: {message}".strip()
        if is_cloudflare_1010(code, message) or is_cloudflare_1010(response.status_code, response.text):
            raise RetryableProviderError(f"kie {operation}: blocked by Cloudflare (error code 1010)", status=code)
        if code in (401, 403):
            raise PermanentProviderError(f"{detail} (authentication)", status=code)
        if code == 402:
            raise InsufficientBalanceError(detail, status=code)
        if code in (429, 433):
            raise RateLimitedError(detail, retry_after=retry_after_seconds(response.headers), status=code)
        if code == 422:
            if "recordinfo is null" in message.lower():
                raise TaskNotFoundError(detail, status=code)
            raise PermanentProviderError(f"{detail} (validation)", status=code)
        if code == 500 and "field is required" in message.lower():
            # Kie reports some validation errors as 500: retrying the same body cannot help.
            raise PermanentProviderError(f"{detail} (validation)", status=code)
        if code == 505:
            raise PermanentProviderError(f"{detail} (feature disabled)", status=code)
        if code in (408, 425, 455) or code >= 500:  # 455: Kie maintenance
            raise RetryableProviderError(detail, status=code)
        if 400 <= code < 500:
            raise PermanentProviderError(detail, status=code)
        # Codes outside the documented table: assume transient; the engine bounds retries.
        raise RetryableProviderError(detail, status=code)
