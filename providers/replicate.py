"""Replicate client (the fallback image provider), per ../shared/docs/replicate.md.

Fire-and-forget like every provider: ``create_task`` returns the prediction id at once (no
``Prefer: wait``), results arrive through a signed webhook (``parse_callback``) or a poll
(``get_task``). Replicate deletes outputs one hour after completion, so callers download at once.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
from standardwebhooks import Webhook

from providers.base import (
    AccountHealth,
    BadSignatureError,
    CreateLimiter,
    GenerationOptions,
    InsufficientBalanceError,
    MalformedCallbackError,
    PermanentProviderError,
    ProviderError,
    ProviderLimits,
    RateLimit,
    RetryableProviderError,
    StatusLimiter,
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
    error_for_status,
    fetch_bytes,
    json_object,
    refuse_telegram_file_urls,
    retry_after_seconds,
    send,
)
from providers.jsonbody import MalformedJson, load_json

logger = logging.getLogger(__name__)

DEFAULT_WEBHOOK_TOLERANCE_SECONDS: Final = 300.0
# Files API limit (replicate.md §8); checking locally saves a doomed 100 MB upload.
MAX_UPLOAD_BYTES: Final = 100 * 1024 * 1024
# Replicate accepts at most 255 bytes of filename (replicate.md §8); the unique prefix needs room.
_MAX_FILENAME_BYTES: Final = 200
_MIN_CANCEL_AFTER_SECONDS: Final = 5
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_MODEL_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Output files live on replicate.delivery (replicate.md §4.2); the token goes only there and to the API host.
_DELIVERY_DOMAIN: Final = "replicate.delivery"
# A Telegram file URL embeds the bot token (DESIGN.md "Errors and bad input"): it never leaves the process.
# Replicate's model errors carry no machine-readable category; these phrases (and E005, "flagged as
# sensitive") mark a content-policy refusal, which the same prompt and photos would hit again.
_POLICY_ERROR = re.compile(
    r"nsfw|safety|sensitive|content[ _-]?policy|moderat|flagged|inappropriate|prohibited|\bE005\b",
    re.IGNORECASE,
)
# 429 bodies name the wait in prose: "Expected available in 1 second." / "Your rate limit resets in ~30s."
_THROTTLE_HINT = re.compile(r"available in (\d+(?:\.\d+)?) second|resets in ~?(\d+(?:\.\d+)?)\s*s", re.I)


@dataclass(frozen=True, slots=True)
class ModelInputSpec:
    """One model as data: how it wants its input (every model names the same ideas differently,
    replicate.md §9), what it is good for, and what one image costs in USD."""

    reference_field: str
    references_as_list: bool
    max_references: int
    output_formats: frozenset[str]
    # List price of one image at the resolution we request, in USD (Replicate bills USD); prices
    # move: REPLICATE_PRICE_PER_IMAGE overrides this for the configured model.
    price_per_image: Decimal
    # Keeps the person's face recognisable from reference photos (good enough for portraits).
    identity_ok: bool
    # Can draw a 2×2 grid of four poses in one image (one create, four portraits).
    grid_capable: bool
    # None for models sized by width/height instead of an aspect ratio.
    aspect_field: str | None = "aspect_ratio"
    seed_field: str | None = None
    # (width field, height field, long side in pixels) for models without an aspect-ratio input.
    size_fields: tuple[str, str, int] | None = None
    # Community models are only reachable through an explicit version id (replicate.md §2.1, §10.10).
    needs_version: bool = False
    extras: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


MODEL_INPUTS: Final[Mapping[str, ModelInputSpec]] = MappingProxyType(
    {
        "google/nano-banana": ModelInputSpec(
            price_per_image=Decimal("0.039"),  # per output image
            identity_ok=True,
            grid_capable=True,
            reference_field="image_input",
            references_as_list=True,
            # No documented cap; our avatars hold at most 8 photos anyway.
            max_references=8,
            output_formats=frozenset({"jpg", "png"}),
        ),
        "google/nano-banana-pro": ModelInputSpec(
            price_per_image=Decimal("0.15"),  # per output image at 1K/2K
            identity_ok=True,
            grid_capable=True,
            reference_field="image_input",
            references_as_list=True,
            max_references=14,
            output_formats=frozenset({"jpg", "png"}),
            extras=MappingProxyType({"resolution": "2K"}),
        ),
        "black-forest-labs/flux-kontext-pro": ModelInputSpec(
            price_per_image=Decimal("0.04"),  # per output image; one reference only
            identity_ok=False,
            grid_capable=False,
            reference_field="input_image",
            references_as_list=False,
            max_references=1,
            output_formats=frozenset({"jpg", "png"}),
            seed_field="seed",
            # Above 2 the model refuses input images (replicate.md §10.9); prompt rewriting drifts faces.
            extras=MappingProxyType({"safety_tolerance": 2, "prompt_upsampling": False}),
        ),
        "zsxkib/flux-pulid": ModelInputSpec(
            price_per_image=Decimal("0.03"),  # billed by GPU time: an estimate for one 1152 px image
            identity_ok=True,
            grid_capable=False,
            reference_field="main_face_image",
            references_as_list=False,
            max_references=1,
            output_formats=frozenset({"jpg", "png", "webp"}),
            aspect_field=None,
            seed_field="seed",
            size_fields=("width", "height", 1152),
            needs_version=True,
            # start_step 0 is the highest identity fidelity; one image per task.
            extras=MappingProxyType({"num_outputs": 1, "start_step": 0}),
        ),
    }
)


@dataclass(frozen=True, slots=True)
class _ModelRef:
    slug: str  # owner/name
    version: str | None  # 64-hex version id, or None for official models


def parse_model_ref(model: str) -> tuple[str, str | None]:
    """Split ``owner/name`` or ``owner/name:<64-hex>`` into (slug, version)."""
    slug, _, version = model.partition(":")
    if not _MODEL_SLUG.match(slug):
        raise ValueError(f"Replicate model must look like owner/name[:version], got {model!r}")
    if version and not _VERSION_ID.match(version):
        raise ValueError(f"Replicate version id must be 64 lowercase hex digits, got {version!r}")
    return slug, version or None


def prediction_to_result(prediction: Mapping[str, Any]) -> TaskResult:
    """Map a Replicate prediction object (GET body or webhook body) onto a TaskResult.

    Raises ValueError when the object lacks ``id``/``status``. Only a terminal status counts:
    ``processing`` with outputs already filled (the sync-mode quirk, replicate.md §4.2) stays RUNNING.
    """
    prediction_id = prediction.get("id")
    status = prediction.get("status")
    if not isinstance(prediction_id, str) or not prediction_id or not isinstance(status, str):
        raise ValueError("not a prediction object: id and status are required")
    if status == "starting":
        return TaskResult(prediction_id, TaskState.QUEUED)
    if status == "processing":
        return TaskResult(prediction_id, TaskState.RUNNING)
    if status == "succeeded":
        image_urls = normalise_output(prediction.get("output"))
        if image_urls:
            return TaskResult(
                prediction_id,
                TaskState.SUCCEEDED,
                image_urls=image_urls,
                finished_at=provider_time(prediction.get("completed_at")),
            )
        if prediction.get("data_removed"):
            # Outputs are deleted an hour after completion; regenerating is the only way back.
            return TaskResult(prediction_id, TaskState.FAILED, error="outputs expired (data_removed)")
        return TaskResult(prediction_id, TaskState.FAILED, error="prediction succeeded without an image output")
    if status == "failed":
        error = str(prediction.get("error") or "model failed without an error message")
        return TaskResult(prediction_id, TaskState.FAILED, error=error, retryable=not _POLICY_ERROR.search(error))
    if status in ("canceled", "aborted"):
        # Cancelled by us or by a Cancel-After deadline: nothing was wrong with the prompt itself.
        reason = prediction.get("error") or f"prediction {status}"
        return TaskResult(prediction_id, TaskState.FAILED, error=str(reason), retryable=True)
    # A status this client does not know yet: keep polling rather than guess at an outcome.
    logger.warning("replicate prediction %s has unknown status %r", prediction_id, status)
    return TaskResult(prediction_id, TaskState.RUNNING)


def normalise_output(output: object) -> tuple[str, ...]:
    """A model's output is one URI or a list of URIs (replicate.md §4.2); keep the http(s)/data: ones."""
    candidates = [output] if isinstance(output, str) else output if isinstance(output, list) else []
    return tuple(
        item for item in candidates if isinstance(item, str) and item.startswith(("https://", "http://", "data:"))
    )


def check_replicate_model(model: str) -> ModelInputSpec:
    """The table's entry for ``owner/name[:version]``; ValueError in one line naming the known models."""
    slug, version = parse_model_ref(model)
    spec = MODEL_INPUTS.get(slug)
    if spec is None:
        raise ValueError(f"unknown Replicate model {slug!r}; known: {', '.join(sorted(MODEL_INPUTS))}")
    if spec.needs_version and version is None:
        raise ValueError(f"{slug} is a community model: configure it as {slug}:<64-hex version id>")
    return spec


class ReplicateProvider:
    """ImageProvider for Replicate predictions; the default model is google/nano-banana-pro."""

    def __init__(
        self,
        api_token: str,
        api_url: str = "https://api.replicate.com",
        model: str = "google/nano-banana-pro",
        webhook_secret: str | None = None,
        http: httpx.AsyncClient | None = None,
        create_limiter: CreateLimiter | None = None,
        timeout: float = 30.0,
        *,
        cancel_after_seconds: int | None = None,
        webhook_tolerance_seconds: float = DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        clock: Callable[[], float] = time.time,
        download_policy: DownloadPolicy | None = None,
        status_limiter: StatusLimiter | None = None,
        price_per_image: Decimal | None = None,
    ) -> None:
        if not api_token:
            raise ValueError("Replicate api_token is required")
        spec = check_replicate_model(model)
        slug, version = parse_model_ref(model)
        if cancel_after_seconds is not None and cancel_after_seconds < _MIN_CANCEL_AFTER_SECONDS:
            raise ValueError(f"Cancel-After must be at least {_MIN_CANCEL_AFTER_SECONDS} s")
        self._api_token = api_token
        self._api_url = api_url.rstrip("/")
        self._api_origin = urlsplit(self._api_url).netloc.lower()
        self._model = _ModelRef(slug, version)
        self._spec = spec
        # Grid packs go to this provider only when its model can draw a 2×2 grid (the engine reads it).
        self.grid_capable = spec.grid_capable
        # The operator's price (REPLICATE_PRICE_PER_IMAGE) wins over the table's.
        self.price_per_image = spec.price_per_image if price_per_image is None else price_per_image
        self._create_limiter = create_limiter
        self._status_limiter = status_limiter
        self._timeout = timeout
        self._cancel_after_seconds = cancel_after_seconds
        self._webhook_tolerance_seconds = webhook_tolerance_seconds
        self._max_download_bytes = max_download_bytes
        # Outputs come only from the API host and replicate.delivery (plus the operator's list).
        self._download_policy = (download_policy or DownloadPolicy()).with_hosts(
            [urlsplit(self._api_url).hostname or "", "." + _DELIVERY_DOMAIN]
        )
        self._clock = clock
        self._owns_http = http is None
        self._http = http if http is not None else build_http_client(timeout)
        # Built eagerly so a malformed configured secret fails at start-up, not on the first webhook.
        self._webhook: Webhook | None = Webhook(webhook_secret) if webhook_secret else None
        self._webhook_secret_lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return "replicate"

    @property
    def limits(self) -> ProviderLimits:
        # 600 creates/min; every other endpoint 3000/min = 50/s, the ProviderLimits default (replicate.md §7).
        if self._status_limiter is None:
            return ProviderLimits(create=RateLimit(600, 60.0))
        limiter = self._status_limiter  # what it really admits: its window is widened by the safety margin
        status = RateLimit(limiter.max_calls, limiter.period_seconds + limiter.safety_margin_seconds)
        return ProviderLimits(create=RateLimit(600, 60.0), status=status)

    @property
    def create_limiter(self) -> CreateLimiter | None:
        return self._create_limiter

    @property
    def model(self) -> str:
        return self._model.slug if self._model.version is None else f"{self._model.slug}:{self._model.version}"

    async def upload_reference(self, data: bytes, name: str, *, stored_key: str | None = None) -> str:
        """Upload through the Files API: the URL is reused by every task of a job, unlike a data: URL."""
        if not data:
            raise PermanentProviderError("refusing to upload an empty reference photo")
        if len(data) > MAX_UPLOAD_BYTES:
            raise PermanentProviderError(f"reference photo larger than {MAX_UPLOAD_BYTES} bytes")
        filename = _unique_filename(name)
        content_type = _sniff_image_type(data) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = await self._request(
            "POST",
            "/v1/files",
            action="upload file",
            files={"content": (filename, data, content_type)},
            data={"filename": filename, "type": content_type},
        )
        payload = json_object(response, "replicate upload file")
        urls = payload.get("urls")
        file_url = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(file_url, str) or not file_url.startswith(("https://", "http://")):
            raise RetryableProviderError("replicate upload file: response has no urls.get", status=response.status_code)
        return file_url

    async def create_task(
        self,
        prompt: str,
        reference_urls: Sequence[str],
        options: GenerationOptions,
        callback_url: str | None,
    ) -> str:
        # Validate before taking a slot of the account-wide create budget.
        model_input = self._build_input(prompt, reference_urls, options)
        body: dict[str, object] = {"input": model_input}
        if self._model.version is None:
            path = f"/v1/models/{self._model.slug}/predictions"
        else:
            path = "/v1/predictions"
            # The bare version id is the form every API generation accepts (replicate.md §2.1).
            body["version"] = self._model.version
        if callback_url:
            body["webhook"] = callback_url
            # Only the terminal event: intermediate ones are not retried and we have nothing to do with them.
            body["webhook_events_filter"] = ["completed"]
        headers = {}
        if self._cancel_after_seconds is not None:
            headers["Cancel-After"] = f"{self._cancel_after_seconds}s"
        async with admitted(self._create_limiter):
            response = await self._request("POST", path, action="create prediction", json=body, headers=headers)
        prediction_id = json_object(response, "replicate create prediction").get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise RetryableProviderError("replicate create prediction: response has no id", status=response.status_code)
        return prediction_id

    async def get_task(self, provider_task_id: str) -> TaskResult:
        async with admitted(self._status_limiter):
            response = await self._request(
                "GET",
                f"/v1/predictions/{_path_segment(provider_task_id)}",
                action="get prediction",
                task_lookup=True,
            )
        try:
            return prediction_to_result(json_object(response, "replicate get prediction"))
        except ValueError as exc:
            raise RetryableProviderError(f"replicate get prediction: {exc}", status=response.status_code) from exc

    async def parse_callback(self, headers: Mapping[str, str], raw_body: bytes) -> TaskResult:
        """Verify the Standard Webhooks signature; the signed body is the full prediction, so no re-fetch."""
        payload = await self.verify_webhook(headers, raw_body)
        if not isinstance(payload, dict):
            raise BadSignatureError("webhook body is not a JSON object")
        try:
            return prediction_to_result(payload)
        except ValueError as exc:
            raise BadSignatureError(f"webhook body is not a prediction: {exc}") from exc

    async def callback_task_id(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        payload = await self.verify_webhook(headers, raw_body)
        prediction_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(prediction_id, str) or not prediction_id:
            raise MalformedCallbackError("webhook body carries no prediction id")
        return prediction_id

    async def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> object:
        """Check the ``webhook-*`` headers (replicate.md §6.3); return the parsed JSON body.

        The library's ``Webhook.sign`` builds the signature (secret decoding, ``id.timestamp.body``
        content, HMAC-SHA256); the tolerance check is ours because the library's ``verify`` reads the
        wall clock directly, and an injectable clock is what lets a recorded vector be checked.
        """
        webhook = await self._webhook_verifier()
        lowered = {key.lower(): value for key, value in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        timestamp_header = lowered.get("webhook-timestamp", "")
        signature_header = lowered.get("webhook-signature", "")
        if not (webhook_id and timestamp_header and signature_header):
            raise BadSignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if not (webhook_id.isascii() and signature_header.isascii()):
            # The library would fail encoding odd bytes; no genuine header carries them.
            raise BadSignatureError("webhook headers are not ASCII")
        if not (timestamp_header.isascii() and timestamp_header.isdigit()):
            raise BadSignatureError("webhook-timestamp is not a Unix time in seconds")
        timestamp = int(timestamp_header)
        skew = self._clock() - timestamp
        if abs(skew) > self._webhook_tolerance_seconds:
            raise BadSignatureError(f"webhook timestamp outside tolerance (skew {skew:.0f} s)")
        try:
            body_text = raw_body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadSignatureError("webhook body is not UTF-8") from exc
        expected = webhook.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body_text)
        expected_digest = base64.b64decode(expected.partition(",")[2])
        if not any(hmac.compare_digest(expected_digest, digest) for digest in _v1_digests(signature_header)):
            raise BadSignatureError("no matching v1 webhook signature")
        try:
            return load_json(raw_body)
        except MalformedJson as exc:
            raise MalformedCallbackError(f"webhook body refused: {exc}") from exc

    async def fetch_webhook_secret(self) -> str:
        """``GET /v1/webhooks/default/secret``: the account's signing key, ``whsec_<base64>``."""
        response = await self._request("GET", "/v1/webhooks/default/secret", action="get webhook secret")
        key = json_object(response, "replicate get webhook secret").get("key")
        if not isinstance(key, str) or not key.startswith("whsec_"):
            raise RetryableProviderError("replicate get webhook secret: response has no whsec_ key")
        return key

    async def probe_health(self) -> AccountHealth:
        """``GET /v1/models/{owner}/{name}``: 404 means the configured model is gone. Replicate has no
        balance endpoint; an empty balance shows as 402 on creates instead."""
        try:
            await self._request("GET", f"/v1/models/{self._model.slug}", action="get model")
        except PermanentProviderError as error:
            if error.status != 404:
                raise
            return AccountHealth(model=self.model, model_exists=False)
        return AccountHealth(model=self.model, model_exists=True)

    async def download(self, url: str) -> bytes:
        """Fetch an output (https URL or data: URI); 404/410 mean it already expired (permanent)."""
        # The token goes only to Replicate's own hosts: an output URL naming any other host must not
        # get it, and neither must a redirect target, so the headers are chosen per hop.
        return await fetch_bytes(
            self._http,
            url,
            timeout_seconds=self._timeout,
            max_bytes=self._max_download_bytes,
            policy=self._download_policy,
            headers_for=lambda hop: self._auth_headers() if _is_replicate_origin(str(hop), self._api_origin) else None,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _build_input(self, prompt: str, reference_urls: Sequence[str], options: GenerationOptions) -> dict[str, object]:
        spec = self._spec
        refuse_telegram_file_urls(reference_urls)
        output_format = "jpg" if options.output_format.lower() == "jpeg" else options.output_format.lower()
        if output_format not in spec.output_formats:
            allowed = ", ".join(sorted(spec.output_formats))
            raise PermanentProviderError(f"{self._model.slug} cannot output {options.output_format!r} ({allowed})")
        model_input: dict[str, object] = {"prompt": prompt, "output_format": output_format}
        references = list(reference_urls[: spec.max_references])
        if references:
            model_input[spec.reference_field] = references if spec.references_as_list else references[0]
        if spec.aspect_field is not None:
            model_input[spec.aspect_field] = options.aspect_ratio
        if spec.size_fields is not None:
            width_field, height_field, long_side = spec.size_fields
            width, height = _size_for_aspect(options.aspect_ratio, long_side)
            model_input[width_field] = width
            model_input[height_field] = height
        if spec.seed_field is not None and options.seed is not None:
            model_input[spec.seed_field] = options.seed
        model_input.update(spec.extras)
        return model_input

    async def _webhook_verifier(self) -> Webhook:
        if self._webhook is not None:
            return self._webhook
        # No configured secret: it is per account and readable with the API token (replicate.md §6.3).
        async with self._webhook_secret_lock:
            if self._webhook is None:
                self._webhook = Webhook(await self.fetch_webhook_secret())
        return self._webhook

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_token}", "User-Agent": USER_AGENT}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        task_lookup: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return await send(
            self._http,
            method,
            self._api_url + path,
            what=f"replicate {action}",
            timeout_seconds=self._timeout,
            error_for=lambda response: _error_for_response(response, action, task_lookup=task_lookup),
            headers={**self._auth_headers(), **(headers or {})},
            **kwargs,
        )


def _error_for_response(response: httpx.Response, action: str, *, task_lookup: bool) -> ProviderError:
    """Map an RFC 7807 problem response (replicate.md §5) onto the provider error hierarchy."""
    status = response.status_code
    message = f"replicate {action}: HTTP {status} {_problem_summary(response)}"
    if status == 402:
        return InsufficientBalanceError(message, status=status)
    retry_after = _throttle_wait_seconds(response) if status == 429 else None
    return error_for_status(status, message, retry_after=retry_after, task_lookup=task_lookup)


def _problem_summary(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(problem, dict):
        return str(problem)[:300]
    parts = [str(problem[key]) for key in ("title", "detail") if problem.get(key)]
    invalid_fields = problem.get("invalid_fields")
    if isinstance(invalid_fields, list):
        parts += [
            f"{item.get('field')}: {item.get('description')}" for item in invalid_fields if isinstance(item, dict)
        ]
    return " | ".join(part.strip() for part in parts)[:600]


def _throttle_wait_seconds(response: httpx.Response) -> float | None:
    from_header = retry_after_seconds(response.headers)
    if from_header is not None:
        return from_header
    match = _THROTTLE_HINT.search(response.text[:500])
    if match:
        return float(match.group(1) or match.group(2))
    reset = response.headers.get("ratelimit-reset", "")
    return float(reset) if reset.isdigit() else None


def _v1_digests(signature_header: str) -> list[bytes]:
    digests = []
    for entry in signature_header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            digests.append(base64.b64decode(encoded, validate=True))
        except ValueError:  # binascii.Error, or non-ASCII text
            continue
    return digests


def _is_replicate_origin(url: str, api_origin: str) -> bool:
    parts = urlsplit(url)
    if parts.netloc.lower() == api_origin:
        return True
    host = (parts.hostname or "").lower()
    is_delivery = host == _DELIVERY_DOMAIN or host.endswith("." + _DELIVERY_DOMAIN)
    return parts.scheme == "https" and is_delivery


def _path_segment(provider_task_id: str) -> str:
    # Ids come back from webhooks and the database; never let one smuggle extra path segments.
    return quote(provider_task_id, safe="")


def _unique_filename(name: str) -> str:
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "reference"
    return f"{uuid.uuid4().hex}-{safe_name}"[:_MAX_FILENAME_BYTES]


def _sniff_image_type(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    return None


def _size_for_aspect(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    """Width and height (multiples of 16) for models that take pixel sizes instead of a ratio."""
    width_part, separator, height_part = aspect_ratio.partition(":")
    try:
        ratio_width, ratio_height = float(width_part), float(height_part)
    except ValueError:
        ratio_width = ratio_height = 0.0
    if not separator or ratio_width <= 0 or ratio_height <= 0:
        # "match_input_image" and the like: the model's own portrait default (896x1152 for flux-pulid).
        return 896, 1152
    scale = long_side / max(ratio_width, ratio_height)
    return round(ratio_width * scale / 16) * 16, round(ratio_height * scale / 16) * 16
