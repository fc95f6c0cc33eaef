"""A strict local stand-in for the Replicate HTTP API (../shared/docs/replicate.md §11).

It rejects what Replicate rejects (Bearer auth, unknown top-level keys, per-model input schemas
with ``invalid_fields``), plays the prediction lifecycle on a clock (starting → processing →
succeeded | failed | canceled | aborted), serves real PNG outputs from its own host, expires them,
sends Standard-Webhooks-signed webhooks with retries, and injects faults on request. Everything it
sees is recorded for assertions. Prediction state is derived from time on every read, so no
background task is needed except for webhook delivery.

Usage::

    async with FakeReplicate(latency=(0.01, 0.02)) as fake:
        provider = ReplicateProvider(
            fake.api_token, api_url=fake.base_url, webhook_secret=fake.webhook_secret
        )
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
from aiohttp import web
from PIL import Image, ImageDraw

FieldKind = Literal["string", "uri", "uri_list", "enum", "integer", "number", "boolean"]
DataUriMode = Literal["never", "sync", "always"]
LatencySpec = float | tuple[float, float] | Callable[[], float]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
WEBHOOK_EVENTS = frozenset({"start", "output", "logs", "completed"})
# Replicate's default: "whenever there are new outputs or the prediction has finished" (§6.1).
DEFAULT_WEBHOOK_EVENTS = frozenset({"output", "completed"})
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_PREFER_WAIT = re.compile(r"^wait(=([1-9]|[1-9][0-9]|60))?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TELEGRAM_FILE_URL_MARKER = "/file/bot"

_ASPECTS_GEMINI = (
    "match_input_image",
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
_ASPECTS_KONTEXT = (
    "match_input_image",
    *("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21", "2:1", "1:2"),
)


@dataclass(frozen=True, slots=True)
class FakeField:
    kind: FieldKind
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_items: int | None = None


@dataclass(frozen=True, slots=True)
class FakeModel:
    slug: str
    official: bool
    fields: Mapping[str, FakeField]
    output_is_list: bool
    # Input field holding how many images to produce (list-output models), if any.
    output_count_field: str | None = None
    cross_check: Callable[[Mapping[str, Any]], list[dict[str, str]]] | None = None

    @property
    def version_id(self) -> str:
        # Stable fake version ids: tests configure community models as f"{slug}:{version_id}".
        return hashlib.sha256(f"fake-version:{self.slug}".encode()).hexdigest()


def _kontext_cross_check(model_input: Mapping[str, Any]) -> list[dict[str, str]]:
    tolerance = model_input.get("safety_tolerance")
    if model_input.get("input_image") and isinstance(tolerance, int) and tolerance > 2:
        return [
            {
                "type": "maximum",
                "field": "input.safety_tolerance",
                "description": "safety_tolerance must be at most 2 when input_image is set",
            }
        ]
    return []


def default_models() -> dict[str, FakeModel]:
    """The model schemas of replicate.md §9 (the subset PinGlass uses)."""
    models = [
        FakeModel(
            "google/nano-banana",
            official=True,
            output_is_list=False,
            fields={
                "prompt": FakeField("string", required=True),
                "image_input": FakeField("uri_list"),
                "aspect_ratio": FakeField("enum", choices=_ASPECTS_GEMINI),
                "output_format": FakeField("enum", choices=("jpg", "png")),
            },
        ),
        FakeModel(
            "google/nano-banana-pro",
            official=True,
            output_is_list=False,
            fields={
                "prompt": FakeField("string", required=True),
                "image_input": FakeField("uri_list", max_items=14),
                "resolution": FakeField("enum", choices=("1K", "2K", "4K")),
                "aspect_ratio": FakeField("enum", choices=_ASPECTS_GEMINI),
                "output_format": FakeField("enum", choices=("png", "jpg")),
                "safety_filter_level": FakeField(
                    "enum", choices=("block_low_and_above", "block_medium_and_above", "block_only_high")
                ),
            },
        ),
        FakeModel(
            "black-forest-labs/flux-kontext-pro",
            official=True,
            output_is_list=False,
            cross_check=_kontext_cross_check,
            fields={
                "prompt": FakeField("string", required=True),
                "input_image": FakeField("uri"),
                "aspect_ratio": FakeField("enum", choices=_ASPECTS_KONTEXT),
                "output_format": FakeField("enum", choices=("jpg", "png")),
                "safety_tolerance": FakeField("integer", minimum=0, maximum=6),
                "prompt_upsampling": FakeField("boolean"),
                "seed": FakeField("integer"),
            },
        ),
        FakeModel(
            "zsxkib/flux-pulid",
            official=False,
            output_is_list=True,
            output_count_field="num_outputs",
            fields={
                "main_face_image": FakeField("uri", required=True),
                "prompt": FakeField("string"),
                "negative_prompt": FakeField("string"),
                "width": FakeField("integer", minimum=256, maximum=1536),
                "height": FakeField("integer", minimum=256, maximum=1536),
                "num_steps": FakeField("integer", minimum=1, maximum=20),
                "start_step": FakeField("integer", minimum=0, maximum=10),
                "id_weight": FakeField("number", minimum=0, maximum=3),
                "guidance_scale": FakeField("number", minimum=1, maximum=10),
                "true_cfg": FakeField("number", minimum=1, maximum=10),
                "max_sequence_length": FakeField("integer", minimum=128, maximum=512),
                "output_format": FakeField("enum", choices=("webp", "jpg", "png")),
                "output_quality": FakeField("integer", minimum=0, maximum=100),
                "num_outputs": FakeField("integer", minimum=1, maximum=4),
                "seed": FakeField("integer"),
            },
        ),
    ]
    return {model.slug: model for model in models}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    status: int
    authorization: str | None


@dataclass(frozen=True, slots=True)
class RecordedUpload:
    file_id: str | None
    filename: str | None
    content_type: str | None
    size: int
    status: int


@dataclass(frozen=True, slots=True)
class RecordedCreate:
    path: str
    body: Any
    model: str | None
    input: Any
    status: int
    prediction_id: str | None
    prefer: str | None
    cancel_after: str | None


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    prediction_id: str
    event: str
    webhook_id: str
    attempt: int  # 1-based; duplicates count on from the delivered attempt
    url: str
    status: int | None  # None: no connection / timeout
    error: str | None
    forged: bool
    duplicate: bool
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class InjectedResponse:
    status: int
    method: str | None
    path_prefix: str | None
    body: Mapping[str, Any] | None
    headers: Mapping[str, str] | None


@dataclass(slots=True)
class FakeFile:
    id: str
    content: bytes
    filename: str
    content_type: str
    metadata: Any
    created_at: datetime
    expires_at: datetime


@dataclass(slots=True)
class FakePrediction:
    id: str
    model: FakeModel
    input: dict[str, Any]
    webhook: str | None
    events: frozenset[str]
    created_at: datetime
    created_mono: float
    start_mono: float
    finish_mono: float | None  # None: stuck, never finishes on its own
    outcome: Literal["succeeded", "failed"]
    error: str | None
    output_count: int
    output_format: str
    data_uri_output: bool
    deadline_mono: float | None = None
    deadline_at: datetime | None = None
    force_expired: bool = False
    images: list[bytes] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    status: str
    started_mono: float | None
    completed_mono: float | None
    expired: bool


class _SlidingWindow:
    def __init__(self, max_calls: int, period_seconds: float) -> None:
        self.max_calls = max_calls
        self.period_seconds = period_seconds
        self._admitted: deque[float] = deque()

    def try_admit(self, now: float) -> float:
        """0.0 when admitted, otherwise the seconds until the oldest call leaves the window."""
        while self._admitted and self._admitted[0] <= now - self.period_seconds:
            self._admitted.popleft()
        if len(self._admitted) < self.max_calls:
            self._admitted.append(now)
            return 0.0
        return self._admitted[0] + self.period_seconds - now


class _ValidationFailed(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Replicate's webhook signature (§6.3), written independently of the provider's library on purpose."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def new_prediction_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def render_image(seed_text: str, index: int, size: tuple[int, int], image_format: str) -> bytes:
    """A real, decodable image whose pixels differ per prediction and per output index."""
    digest = hashlib.sha256(f"{seed_text}/{index}".encode()).digest()
    image = Image.new("RGB", size, color=(digest[0], digest[1], digest[2]))
    draw = ImageDraw.Draw(image)
    band_height = size[1] // 8
    for band in range(8):
        colour = (digest[3 + band * 3], digest[4 + band * 3], digest[5 + band * 3])
        draw.rectangle((0, band * band_height, size[0] // 2, (band + 1) * band_height), fill=colour)
    draw.text((size[0] // 2 + 8, 16), f"{seed_text} #{index}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    pillow_format = {"jpg": "JPEG", "webp": "WEBP"}.get(image_format, "PNG")
    # Fast compression: the fake renders hundreds of these in load tests.
    image.save(buffer, pillow_format, **({"compress_level": 1} if pillow_format == "PNG" else {}))
    return buffer.getvalue()


def parse_duration(raw: str) -> float | None:
    """``Cancel-After`` value: a bare number of seconds or a Go duration such as ``1h30m`` / ``250ms``."""
    raw = raw.strip()
    with contextlib.suppress(ValueError):
        return float(raw)
    parts = _DURATION_PART.findall(raw)
    if not parts or "".join(number + unit for number, unit in parts) != raw:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"title": title, "detail": detail, "status": status, **extra},
        status=status,
        content_type="application/problem+json",
    )


def _resolve_latency(latency: LatencySpec, rng: random.Random) -> float:
    if callable(latency):
        return float(latency())
    if isinstance(latency, tuple):
        return rng.uniform(*latency)
    return float(latency)


class FakeReplicate:
    """Replicate on 127.0.0.1:<ephemeral>; every knob is a public attribute tests may change at run time."""

    def __init__(
        self,
        *,
        api_token: str = "r8_fake_token",
        webhook_secret: str | None = None,
        latency: LatencySpec = (0.01, 0.03),
        starting_share: float = 0.3,
        create_rate: tuple[int, float] = (600, 60.0),
        other_rate: tuple[int, float] = (3000, 60.0),
        output_ttl_seconds: float = 3600.0,
        file_ttl_seconds: float = 3600.0,
        max_file_bytes: int = 100 * 1024 * 1024,
        image_size: tuple[int, int] = (512, 640),
        data_uri_outputs: DataUriMode = "sync",
        sync_reports_processing: bool = True,
        create_status: int = 201,
        min_cancel_after_seconds: float = 5.0,
        send_retry_after: bool = False,
        webhook_retry_delays: Sequence[float] = (2.0, 5.0, 10.0, 20.0, 25.0),
        webhook_timeout_seconds: float = 5.0,
        seed: int | None = None,
        models: Mapping[str, FakeModel] | None = None,
    ) -> None:
        self.api_token = api_token
        self.webhook_secret = webhook_secret or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.latency: LatencySpec = latency
        self.starting_share = starting_share
        self.output_ttl_seconds = output_ttl_seconds
        self.file_ttl_seconds = file_ttl_seconds
        self.max_file_bytes = max_file_bytes
        self.image_size = image_size
        self.data_uri_outputs: DataUriMode = data_uri_outputs
        self.sync_reports_processing = sync_reports_processing
        self.create_status = create_status
        self.min_cancel_after_seconds = min_cancel_after_seconds
        self.send_retry_after = send_retry_after
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.webhook_timeout_seconds = webhook_timeout_seconds
        self.models = dict(models or default_models())
        self._retired: dict[str, FakeModel] = {}  # models taken out by retire(), for restore()
        # Fault injection.
        self.outage = False  # every /v1 request answers 500
        self.response_delay = 0.0  # seconds before every /v1 answer (client timeouts)
        self.fail_rate = 0.0
        self.stuck_rate = 0.0
        self.failure_error = "Prediction failed: CUDA out of memory (fake)"
        self.webhook_delay = 0.0
        self.webhook_drop_rate = 0.0
        self.webhook_duplicate_rate = 0.0
        self.webhook_forge_rate = 0.0
        self.webhook_clock_skew = 0.0  # added to webhook-timestamp (stale/future timestamps)
        # Records.
        self.requests: list[RecordedRequest] = []
        self.uploads: list[RecordedUpload] = []
        self.creates: list[RecordedCreate] = []
        self.gets: list[str] = []
        self.deliveries: list[str] = []  # paths of output files fetched
        self.webhooks: list[WebhookAttempt] = []
        self.webhooks_dropped: list[str] = []
        self.input_urls: list[str] = []
        self.throttled_count = 0
        self.predictions: dict[str, FakePrediction] = {}
        self.files: dict[str, FakeFile] = {}
        self._create_window = _SlidingWindow(*create_rate)
        self._other_window = _SlidingWindow(*other_rate)
        self._rng = random.Random(seed)
        self._forced_outcomes: deque[tuple[Literal["fail", "stuck"], str | None]] = deque()
        self._injected: list[InjectedResponse] = []
        self._webhook_directives: dict[str, int] = {"drop": 0, "forge": 0, "duplicate": 0}
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base_url = ""

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("FakeReplicate is not started")
        return self._base_url

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/predictions", self._create_versioned)
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create_official)
        app.router.add_get("/v1/predictions/{id}", self._get_prediction)
        app.router.add_get("/v1/models/{owner}/{name}", self._get_model)
        app.router.add_post("/v1/files", self._upload_file)
        app.router.add_get("/v1/files/{id}", self._get_file)
        app.router.add_get("/v1/files/{id}/download", self._download_file)
        app.router.add_delete("/v1/files/{id}", self._delete_file)
        app.router.add_get("/v1/webhooks/default/secret", self._get_webhook_secret)
        app.router.add_get("/delivery/{id}/{name}", self._serve_output)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.webhook_timeout_seconds))

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeReplicate:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_idle(self) -> None:
        """Wait for every pending webhook delivery (retries included); callers bound the wait."""
        pending = [task for task in self._background if not task.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ----------------------------------------------------------------- fault injection

    def fail_next(self, count: int = 1, error: str | None = None) -> None:
        """The next ``count`` created predictions end ``failed`` with ``error``."""
        self._forced_outcomes.extend([("fail", error)] * count)

    def stick_next(self, count: int = 1) -> None:
        """The next ``count`` created predictions stay ``processing`` until cancelled or their deadline."""
        self._forced_outcomes.extend([("stuck", None)] * count)

    def finish(self, prediction_id: str) -> None:
        """A prediction held by ``stick_next`` succeeds now; its webhooks follow as on any completion."""
        prediction = self.predictions[prediction_id]
        if prediction.finish_mono is not None:
            raise ValueError(f"{prediction_id} is not a stuck prediction")
        prediction.finish_mono = max(time.monotonic(), prediction.start_mono)
        prediction.changed.set()

    def inject(
        self,
        status: int,
        count: int = 1,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next ``count`` matching /v1 requests get ``status`` (a problem body unless ``body``)."""
        self._injected.extend([InjectedResponse(status, method, path_prefix, body, headers)] * count)

    def drop_next_webhooks(self, count: int = 1) -> None:
        self._webhook_directives["drop"] += count

    def forge_next_webhooks(self, count: int = 1) -> None:
        """The first attempt of the next ``count`` webhooks is signed with a wrong key; retries are real."""
        self._webhook_directives["forge"] += count

    def duplicate_next_webhooks(self, count: int = 1) -> None:
        self._webhook_directives["duplicate"] += count

    def expire(self, prediction_id: str) -> None:
        """Delete a prediction's outputs now, as Replicate does an hour after completion."""
        self.predictions[prediction_id].force_expired = True

    def set_rate_limits(self, create: tuple[int, float] | None = None, other: tuple[int, float] | None = None) -> None:
        """Change the create / other-endpoint budgets (production: 600 and 3000 per minute)."""
        if create is not None:
            self._create_window = _SlidingWindow(*create)
        if other is not None:
            self._other_window = _SlidingWindow(*other)

    def retire(self, slug: str) -> None:
        """The model vanishes, as a retired or renamed one does: its lookup and its creates answer 404."""
        self._retired[slug] = self.models.pop(slug)

    def restore(self, slug: str) -> None:
        self.models[slug] = self._retired.pop(slug)

    def version_of(self, slug: str) -> str:
        return self.models[slug].version_id

    def status_of(self, prediction_id: str) -> str:
        return self._snapshot(self.predictions[prediction_id], time.monotonic()).status

    # ----------------------------------------------------------------- middleware

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._dispatch(request, handler)
        self.requests.append(
            RecordedRequest(request.method, request.path, response.status, request.headers.get("Authorization"))
        )
        return response

    async def _dispatch(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await self._call(request, handler)
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        if self.outage:
            return _problem(500, "Internal Server Error", "The server encountered an internal error (fake outage).")
        injected = self._take_injection(request)
        if injected is not None:
            return injected
        if request.headers.get("Authorization") != f"Bearer {self.api_token}":
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        is_create = request.method == "POST" and request.path.endswith("/predictions")
        window = self._create_window if is_create else self._other_window
        wait_seconds = window.try_admit(time.monotonic())
        if wait_seconds > 0:
            self.throttled_count += 1
            return self._throttled(wait_seconds)
        return await self._call(request, handler)

    async def _call(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except _ValidationFailed as failure:
            return failure.response
        except web.HTTPNotFound:
            return _problem(404, "Not found", "The requested resource could not be found.")
        except web.HTTPMethodNotAllowed:
            return _problem(405, "Method not allowed", f"{request.method} is not allowed here.")

    def _take_injection(self, request: web.Request) -> web.Response | None:
        for index, injected in enumerate(self._injected):
            if injected.method is not None and injected.method != request.method:
                continue
            if injected.path_prefix is not None and not request.path.startswith(injected.path_prefix):
                continue
            del self._injected[index]
            body = (
                dict(injected.body)
                if injected.body is not None
                else {
                    "title": "Injected error",
                    "detail": f"Injected HTTP {injected.status} (fake)",
                    "status": injected.status,
                }
            )
            return web.json_response(body, status=injected.status, headers=dict(injected.headers or {}))
        return None

    def _throttled(self, wait_seconds: float) -> web.Response:
        whole_seconds = max(1, math.ceil(wait_seconds))
        unit = "second" if whole_seconds == 1 else "seconds"
        headers = {"ratelimit-remaining": "0", "ratelimit-reset": str(whole_seconds)}
        if self.send_retry_after:
            headers["Retry-After"] = str(whole_seconds)
        return web.json_response(
            {"detail": f"Request was throttled. Expected available in {whole_seconds} {unit}."},
            status=429,
            headers=headers,
        )

    # ----------------------------------------------------------------- predictions

    async def _create_official(self, request: web.Request) -> web.Response:
        slug = f"{request.match_info['owner']}/{request.match_info['name']}"
        model = self.models.get(slug)
        body = await self._json_body(request)
        if model is None or not model.official:
            # Community models are only reachable with a version (replicate.md §2.1).
            response = _problem(404, "Not found", f"Model {slug} not found or has no official endpoint.")
            return self._record_create(request, body, slug, response)
        allowed = {"input", "webhook", "webhook_events_filter", "webhook_completed", "stream"}
        return await self._create(request, body, model, allowed, version_required=False)

    async def _create_versioned(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        allowed = {"version", "input", "webhook", "webhook_events_filter", "webhook_completed", "stream"}
        model = None
        if isinstance(body, dict) and isinstance(body.get("version"), str):
            model = self._model_for_version(body["version"])
            if model is None:
                response = _problem(
                    422,
                    "Invalid version or not permitted",
                    "The specified version does not exist (or perhaps you don't have permission to use it?)",
                )
                return self._record_create(request, body, None, response)
        return await self._create(request, body, model, allowed, version_required=True)

    def _model_for_version(self, version: str) -> FakeModel | None:
        slug, _, version_id = version.partition(":")
        if "/" not in slug:
            slug, version_id = "", version
        for model in self.models.values():
            if slug and model.slug != slug:
                continue
            if version_id == model.version_id or (not version_id and model.official):
                return model
        return None

    async def _create(
        self,
        request: web.Request,
        body: Any,
        model: FakeModel | None,
        allowed_keys: set[str],
        *,
        version_required: bool,
    ) -> web.Response:
        slug = model.slug if model else None
        if not isinstance(body, dict):
            return self._record_create(request, body, slug, _problem(400, "Invalid JSON", "Body must be an object"))
        errors = [f"Additional property {key} is not allowed" for key in body if key not in allowed_keys]
        if version_required and "version" not in body:
            errors.insert(0, "version is required")
        if "input" not in body:
            errors.insert(0, "input is required")
        elif not isinstance(body["input"], dict):
            errors.append("input must be an object")
        errors += self._webhook_errors(body)
        if errors:
            detail = "".join(f"- {error}\n" for error in errors)
            return self._record_create(request, body, slug, _problem(422, "Invalid request", detail))
        assert model is not None
        model_input: dict[str, Any] = body["input"]
        self._record_input_urls(model_input)
        invalid_fields = self._validate_input(model, model_input)
        if invalid_fields:
            detail = "".join(f"- {item['field']}: {item['description']}\n" for item in invalid_fields)
            response = _problem(422, "Input validation failed", detail, invalid_fields=invalid_fields)
            return self._record_create(request, body, slug, response)
        prefer = request.headers.get("Prefer")
        wait_seconds: float | None = None
        if prefer is not None:
            match = _PREFER_WAIT.match(prefer.strip())
            # The OpenAPI pattern alone would admit 61-99; the documented range is 1-60 s.
            if match is None or int(match.group(2) or 60) > 60:
                problem = _problem(422, "Invalid Prefer header", "Prefer must be wait or wait=N with N in 1..60")
                return self._record_create(request, body, slug, problem)
            wait_seconds = float(match.group(2) or 60)
        cancel_after: float | None = None
        if "Cancel-After" in request.headers:
            cancel_after = parse_duration(request.headers["Cancel-After"])
            if cancel_after is None or cancel_after < self.min_cancel_after_seconds:
                detail = f"Cancel-After must be a duration of at least {self.min_cancel_after_seconds:g}s"
                return self._record_create(request, body, slug, _problem(422, "Invalid Cancel-After header", detail))

        prediction = self._new_prediction(model, model_input, body, sync=wait_seconds is not None)
        if cancel_after is not None:
            prediction.deadline_mono = prediction.created_mono + cancel_after
            prediction.deadline_at = prediction.created_at + timedelta(seconds=cancel_after)
        self.predictions[prediction.id] = prediction
        if prediction.webhook:
            self._spawn(self._webhook_watcher(prediction))

        headers = {"Location": f"{self.base_url}/v1/predictions/{prediction.id}"}
        status_code = self.create_status
        sync_quirk = False
        if wait_seconds is not None:
            await self._wait_for_terminal(prediction, wait_seconds)
            headers["Preference-Applied"] = f"wait={int(wait_seconds)}"
            status_code = 201
            sync_quirk = self.sync_reports_processing
        payload = self._prediction_json(prediction, sync_quirk=sync_quirk)
        response = web.json_response(payload, status=status_code, headers=headers)
        return self._record_create(request, body, slug, response, prediction.id)

    def _webhook_errors(self, body: Mapping[str, Any]) -> list[str]:
        errors = []
        for key in ("webhook", "webhook_completed"):
            url = body.get(key)
            if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
                errors.append(f"{key}: Does not match format 'uri'")
        events = body.get("webhook_events_filter")
        if events is not None and (not isinstance(events, list) or not all(isinstance(event, str) for event in events)):
            errors.append("webhook_events_filter: Invalid type. Expected: array of strings")
        elif events is not None:
            errors += [
                f"webhook_events_filter.{index}: must be one of the following: start, output, logs, completed"
                for index, event in enumerate(events)
                if event not in WEBHOOK_EVENTS
            ]
        return errors

    def _validate_input(self, model: FakeModel, model_input: Mapping[str, Any]) -> list[dict[str, str]]:
        invalid: list[dict[str, str]] = []

        def add(kind: str, name: str, description: str) -> None:
            invalid.append({"type": kind, "field": f"input.{name}", "description": description})

        for name, spec in model.fields.items():
            if spec.required and name not in model_input:
                add("required", name, f"{name} is required")
        for name, value in model_input.items():
            spec = model.fields.get(name)
            if spec is None:
                # Stricter than Replicate, which ignores unknown inputs: sending one is always our bug.
                add("additional_property", name, f"Additional property {name} is not allowed")
                continue
            problem = _field_problem(name, spec, value)
            if problem is not None:
                add(*problem)
        for value in _strings_in(model_input):
            if _TELEGRAM_FILE_URL_MARKER in value:
                add(
                    "forbidden_url",
                    next(name for name, item in model_input.items() if value in _strings_in(item)),
                    "Telegram file URLs embed the bot token and must never be sent to a provider",
                )
        if model.cross_check is not None and not invalid:
            invalid += model.cross_check(model_input)
        return invalid

    def _record_input_urls(self, model_input: Mapping[str, Any]) -> None:
        for value in _strings_in(model_input):
            if value.startswith(("https://", "http://")):
                self.input_urls.append(value)
            elif value.startswith("data:"):
                self.input_urls.append(value[:80])

    def _new_prediction(
        self, model: FakeModel, model_input: dict[str, Any], body: Mapping[str, Any], *, sync: bool
    ) -> FakePrediction:
        now_mono = time.monotonic()
        latency = max(0.0, _resolve_latency(self.latency, self._rng))
        outcome: Literal["succeeded", "failed"] = "succeeded"
        error: str | None = None
        stuck = False
        if self._forced_outcomes:
            kind, forced_error = self._forced_outcomes.popleft()
            if kind == "fail":
                outcome, error = "failed", forced_error or self.failure_error
            else:
                stuck = True
        elif self._rng.random() < self.fail_rate:
            outcome, error = "failed", self.failure_error
        elif self._rng.random() < self.stuck_rate:
            stuck = True
        missing_file = self._missing_input_file(model_input)
        if missing_file is not None and outcome == "succeeded":
            outcome, error = "failed", f"Failed to download input file {missing_file}: 404 Not Found"
        webhook = body.get("webhook") or body.get("webhook_completed")
        if body.get("webhook_events_filter") is not None:
            events = frozenset(body["webhook_events_filter"])
        elif body.get("webhook_completed") and not body.get("webhook"):
            events = frozenset({"completed"})
        else:
            events = DEFAULT_WEBHOOK_EVENTS
        output_count = 1
        if model.output_count_field is not None:
            output_count = int(model_input.get(model.output_count_field, 1))
        use_data_uri = self.data_uri_outputs == "always" or (self.data_uri_outputs == "sync" and sync)
        return FakePrediction(
            id=new_prediction_id(),
            model=model,
            input=model_input,
            webhook=webhook,
            events=events,
            created_at=datetime.now(UTC),
            created_mono=now_mono,
            start_mono=now_mono + latency * self.starting_share,
            finish_mono=None if stuck else now_mono + latency,
            outcome=outcome,
            error=error,
            output_count=output_count,
            output_format=str(model_input.get("output_format", "png")),
            data_uri_output=use_data_uri,
        )

    def _missing_input_file(self, model_input: Mapping[str, Any]) -> str | None:
        """A Files API URL of ours that no longer exists fails the prediction at run time, as a 404 would."""
        files_prefix = f"{self.base_url}/v1/files/"
        now = datetime.now(UTC)
        for value in _strings_in(model_input):
            if value.startswith(files_prefix):
                file_id = value.removeprefix(files_prefix).split("/")[0]
                stored = self.files.get(file_id)
                if stored is None or stored.expires_at <= now:
                    return value
        return None

    def _snapshot(self, prediction: FakePrediction, now: float) -> _Snapshot:
        endings: list[tuple[float, str]] = []
        if prediction.finish_mono is not None:
            endings.append((prediction.finish_mono, prediction.outcome))
        if prediction.deadline_mono is not None:
            ending = "aborted" if prediction.deadline_mono < prediction.start_mono else "canceled"
            endings.append((prediction.deadline_mono, ending))
        ended = min(endings) if endings else None
        if ended is not None and now >= ended[0]:
            completed_mono, status = ended
            started = prediction.start_mono if prediction.start_mono <= completed_mono else None
            expired = prediction.force_expired or now >= completed_mono + self.output_ttl_seconds
            return _Snapshot(status, started, completed_mono, expired)
        started = prediction.start_mono if now >= prediction.start_mono else None
        return _Snapshot("processing" if started is not None else "starting", started, None, False)

    def _next_transition(self, prediction: FakePrediction, now: float) -> float | None:
        moments = [
            prediction.start_mono,
            prediction.finish_mono,
            prediction.deadline_mono,
        ]
        future = [moment for moment in moments if moment is not None and moment > now]
        return min(future) - now if future else None

    def _wall(self, prediction: FakePrediction, mono: float) -> datetime:
        return prediction.created_at + timedelta(seconds=mono - prediction.created_mono)

    def _prediction_json(self, prediction: FakePrediction, *, sync_quirk: bool = False) -> dict[str, Any]:
        snapshot = self._snapshot(prediction, time.monotonic())
        urls = {
            "web": f"{self.base_url}/p/{prediction.id}",
            "get": f"{self.base_url}/v1/predictions/{prediction.id}",
            "cancel": f"{self.base_url}/v1/predictions/{prediction.id}/cancel",
        }
        status = snapshot.status
        output: Any = None
        if status == "succeeded" and not snapshot.expired:
            outputs = self._output_refs(prediction)
            output = outputs if prediction.model.output_is_list else outputs[0]
            if sync_quirk:
                # replicate-python run.py: a sync create that finished reports "processing" with outputs.
                status = "processing"
        payload: dict[str, Any] = {
            "id": prediction.id,
            "model": prediction.model.slug,
            "version": "hidden" if prediction.model.official else prediction.model.version_id,
            "input": {} if snapshot.expired else prediction.input,
            "logs": "" if snapshot.started_mono is None or snapshot.expired else "Running prediction (fake)...\n",
            "output": output,
            "data_removed": snapshot.expired,
            "error": prediction.error if snapshot.status == "failed" else None,
            "status": status,
            "created_at": _iso(prediction.created_at),
            "source": "api",
            "urls": urls,
        }
        if snapshot.started_mono is not None:
            payload["started_at"] = _iso(self._wall(prediction, snapshot.started_mono))
        if snapshot.completed_mono is not None and status in TERMINAL_STATUSES:
            payload["completed_at"] = _iso(self._wall(prediction, snapshot.completed_mono))
            metrics = {"total_time": round(snapshot.completed_mono - prediction.created_mono, 6)}
            if snapshot.started_mono is not None:
                metrics["predict_time"] = round(snapshot.completed_mono - snapshot.started_mono, 6)
            payload["metrics"] = metrics
        if prediction.deadline_at is not None:
            payload["deadline"] = _iso(prediction.deadline_at)
        return payload

    def _output_refs(self, prediction: FakePrediction) -> list[str]:
        extension = {"jpg": "jpg", "webp": "webp"}.get(prediction.output_format, "png")
        if prediction.data_uri_output:
            mime = {"jpg": "image/jpeg", "webp": "image/webp"}.get(extension, "image/png")
            return [f"data:{mime};base64,{base64.b64encode(image).decode()}" for image in self._images(prediction)]
        return [
            f"{self.base_url}/delivery/{prediction.id}/output_{index}.{extension}"
            for index in range(prediction.output_count)
        ]

    def _images(self, prediction: FakePrediction) -> list[bytes]:
        if not prediction.images:
            prediction.images = [
                render_image(prediction.id, index, self.image_size, prediction.output_format)
                for index in range(prediction.output_count)
            ]
        return prediction.images

    async def _wait_for_terminal(self, prediction: FakePrediction, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while True:
            now = time.monotonic()
            if self._snapshot(prediction, now).status in TERMINAL_STATUSES or now >= deadline:
                return
            step = self._next_transition(prediction, now)
            await asyncio.sleep(min(deadline - now, step if step is not None else deadline - now) + 0.001)

    async def _get_prediction(self, request: web.Request) -> web.Response:
        prediction_id = request.match_info["id"]
        self.gets.append(prediction_id)
        prediction = self.predictions.get(prediction_id)
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        return web.json_response(self._prediction_json(prediction))

    async def _get_model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{owner}/{name}`` (replicate.md §2.1): the model object with its latest version."""
        owner, name = request.match_info["owner"], request.match_info["name"]
        model = self.models.get(f"{owner}/{name}")
        if model is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        return web.json_response(
            {
                "url": f"https://replicate.com/{owner}/{name}",
                "owner": owner,
                "name": name,
                "description": f"{model.slug} (fake)",
                "visibility": "public",
                "run_count": len([create for create in self.creates if create.model == model.slug]),
                "latest_version": {"id": model.version_id, "created_at": "2026-01-01T00:00:00Z"},
            }
        )

    async def _serve_output(self, request: web.Request) -> web.Response:
        self.deliveries.append(request.path)
        prediction = self.predictions.get(request.match_info["id"])
        match = re.fullmatch(r"output_(\d+)\.(png|jpg|webp)", request.match_info["name"])
        if prediction is None or match is None:
            return web.Response(status=404, text="Not found")
        snapshot = self._snapshot(prediction, time.monotonic())
        index = int(match.group(1))
        if snapshot.status != "succeeded" or snapshot.expired or index >= prediction.output_count:
            return web.Response(status=404, text="Not found")
        content_type = {"jpg": "image/jpeg", "webp": "image/webp"}.get(match.group(2), "image/png")
        return web.Response(body=self._images(prediction)[index], content_type=content_type)

    # ----------------------------------------------------------------- files and secret

    async def _upload_file(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return self._record_upload(
                None, None, None, 0, _problem(400, "Bad request", "Expected multipart/form-data")
            )
        reader = await request.multipart()
        content: bytearray | None = None
        too_large = False
        fields: dict[str, str] = {}
        part_filename: str | None = None
        part_type: str | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            if part.name == "content":
                part_filename, part_type = part.filename, part.headers.get("Content-Type")
                content = bytearray()
                while chunk := await part.read_chunk(64 * 1024):
                    # Keep draining past the limit so the client sees the 413 instead of a reset connection.
                    if not too_large:
                        content.extend(chunk)
                        too_large = len(content) > self.max_file_bytes
            elif part.name:
                fields[part.name] = await part.text()
        filename = fields.get("filename") or part_filename or "file"
        content_type = fields.get("type") or part_type or "application/octet-stream"
        if too_large:
            problem = _problem(413, "Request Entity Too Large", "Files must be less than 100MB in size")
            return self._record_upload(None, filename, content_type, self.max_file_bytes + 1, problem)
        if content is None:
            problem = _problem(
                422,
                "Input validation failed",
                "- content is required\n",
                invalid_fields=[{"type": "required", "field": "content", "description": "content is required"}],
            )
            return self._record_upload(None, filename, content_type, 0, problem)
        if len(filename.encode()) > 255:
            problem = _problem(422, "Input validation failed", "- filename: must be at most 255 bytes\n")
            return self._record_upload(None, filename, content_type, len(content), problem)
        try:
            metadata = json.loads(fields["metadata"]) if "metadata" in fields else {}
        except ValueError:
            problem = _problem(422, "Input validation failed", "- metadata: must be valid JSON\n")
            return self._record_upload(None, filename, content_type, len(content), problem)
        created_at = datetime.now(UTC)
        stored = FakeFile(
            id=new_prediction_id(),
            content=bytes(content),
            filename=filename,
            content_type=content_type,
            metadata=metadata,
            created_at=created_at,
            expires_at=created_at + timedelta(seconds=self.file_ttl_seconds),
        )
        self.files[stored.id] = stored
        response = web.json_response(self._file_json(stored), status=201)
        return self._record_upload(stored.id, filename, content_type, len(content), response)

    def _record_upload(
        self,
        file_id: str | None,
        filename: str | None,
        content_type: str | None,
        size: int,
        response: web.Response,
    ) -> web.Response:
        self.uploads.append(RecordedUpload(file_id, filename, content_type, size, response.status))
        return response

    def _file_json(self, stored: FakeFile) -> dict[str, Any]:
        return {
            "id": stored.id,
            "checksums": {"sha256": hashlib.sha256(stored.content).hexdigest()},
            "content_type": stored.content_type,
            "created_at": _iso(stored.created_at),
            "expires_at": _iso(stored.expires_at),
            "metadata": stored.metadata,
            "name": stored.filename,
            "size": len(stored.content),
            "urls": {"get": f"{self.base_url}/v1/files/{stored.id}"},
        }

    def _live_file(self, request: web.Request) -> FakeFile:
        stored = self.files.get(request.match_info["id"])
        if stored is None or stored.expires_at <= datetime.now(UTC):
            raise web.HTTPNotFound()
        return stored

    async def _get_file(self, request: web.Request) -> web.Response:
        return web.json_response(self._file_json(self._live_file(request)))

    async def _download_file(self, request: web.Request) -> web.Response:
        stored = self._live_file(request)
        return web.Response(body=stored.content, content_type=stored.content_type)

    async def _delete_file(self, request: web.Request) -> web.Response:
        del self.files[self._live_file(request).id]
        return web.Response(status=204)

    async def _get_webhook_secret(self, request: web.Request) -> web.Response:
        return web.json_response({"key": self.webhook_secret})

    # ----------------------------------------------------------------- webhooks

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _webhook_watcher(self, prediction: FakePrediction) -> None:
        start_sent = False
        while True:
            now = time.monotonic()
            snapshot = self._snapshot(prediction, now)
            if "start" in prediction.events and not start_sent and snapshot.started_mono is not None:
                start_sent = True
                await self._deliver(prediction, "start", retry=False)
            if snapshot.status in TERMINAL_STATUSES:
                break
            step = self._next_transition(prediction, now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(prediction.changed.wait(), timeout=None if step is None else step + 0.001)
            prediction.changed.clear()
        if "output" in prediction.events and snapshot.status == "succeeded":
            await self._deliver(prediction, "output", retry=False)
        if "completed" in prediction.events:
            # Only the terminal webhook is retried (replicate.md §6.2).
            await self._deliver(prediction, "completed", retry=True)

    def _take_directive(self, name: str, rate: float) -> bool:
        if self._webhook_directives[name] > 0:
            self._webhook_directives[name] -= 1
            return True
        return self._rng.random() < rate

    async def _deliver(self, prediction: FakePrediction, event: str, *, retry: bool) -> None:
        assert prediction.webhook is not None
        if self._take_directive("drop", self.webhook_drop_rate):
            self.webhooks_dropped.append(prediction.id)
            return
        forge = self._take_directive("forge", self.webhook_forge_rate)
        duplicate = self._take_directive("duplicate", self.webhook_duplicate_rate)
        webhook_id = "msg_" + secrets.token_urlsafe(18)
        if self.webhook_delay:
            await asyncio.sleep(self.webhook_delay)
        attempts = 1 + (len(self.webhook_retry_delays) if retry else 0)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.webhook_retry_delays[attempt - 2])
            status = await self._post_webhook(prediction, event, webhook_id, attempt, forged=forge and attempt == 1)
            if status is not None and 200 <= status < 300:
                if duplicate:
                    await self._post_webhook(prediction, event, webhook_id, attempt + 1, duplicate=True)
                return

    async def _post_webhook(
        self,
        prediction: FakePrediction,
        event: str,
        webhook_id: str,
        attempt: int,
        *,
        forged: bool = False,
        duplicate: bool = False,
    ) -> int | None:
        assert prediction.webhook is not None and self._session is not None
        body = json.dumps(self._prediction_json(prediction)).encode()
        timestamp = int(time.time() + self.webhook_clock_skew)
        secret = self.webhook_secret
        if forged:
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Replicate-Webhooks/1.0 (fake)",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(secret, webhook_id, timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        try:
            # Replicate does not follow redirects (§6.1): a 3xx is a failed attempt.
            async with self._session.post(
                prediction.webhook, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.webhooks.append(
            WebhookAttempt(
                prediction.id,
                event,
                webhook_id,
                attempt,
                prediction.webhook,
                status,
                error,
                forged,
                duplicate,
                headers,
                body,
            )
        )
        return status

    # ----------------------------------------------------------------- helpers

    async def _json_body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError as exc:
            raise _ValidationFailed(_problem(400, "Invalid JSON", f"Request body is not valid JSON: {exc}")) from exc

    def _record_create(
        self,
        request: web.Request,
        body: Any,
        slug: str | None,
        response: web.Response,
        prediction_id: str | None = None,
    ) -> web.Response:
        model_input = body.get("input") if isinstance(body, dict) else None
        self.creates.append(
            RecordedCreate(
                path=request.path,
                body=body,
                model=slug,
                input=model_input,
                status=response.status,
                prediction_id=prediction_id,
                prefer=request.headers.get("Prefer"),
                cancel_after=request.headers.get("Cancel-After"),
            )
        )
        return response


def _field_problem(name: str, spec: FakeField, value: Any) -> tuple[str, str, str] | None:
    if spec.kind == "string":
        return None if isinstance(value, str) else ("invalid_type", name, "Invalid type. Expected: string")
    if spec.kind == "uri":
        return _uri_problem(name, value)
    if spec.kind == "uri_list":
        if not isinstance(value, list):
            return ("invalid_type", name, "Invalid type. Expected: array")
        if spec.max_items is not None and len(value) > spec.max_items:
            return ("array_max_items", name, f"Array must have at most {spec.max_items} items")
        for index, item in enumerate(value):
            problem = _uri_problem(f"{name}.{index}", item)
            if problem is not None:
                return problem
        return None
    if spec.kind == "enum":
        if value in spec.choices:
            return None
        choices = ", ".join(f'"{choice}"' for choice in spec.choices)
        return ("enum", name, f"{name} must be one of the following: {choices}")
    if spec.kind == "boolean":
        return None if isinstance(value, bool) else ("invalid_type", name, "Invalid type. Expected: boolean")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if spec.kind == "integer" and not (numeric and float(value).is_integer() and not isinstance(value, float)):
        return ("invalid_type", name, "Invalid type. Expected: integer")
    if not numeric:
        return ("invalid_type", name, "Invalid type. Expected: number")
    if spec.minimum is not None and value < spec.minimum:
        return ("number_gte", name, f"Must be greater than or equal to {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        return ("number_lte", name, f"Must be less than or equal to {spec.maximum:g}")
    return None


def _uri_problem(name: str, value: Any) -> tuple[str, str, str] | None:
    if isinstance(value, str) and value.startswith(("https://", "http://", "data:")):
        return None
    return ("format", name, "Does not match format 'uri'")


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [item for nested in value.values() for item in _strings_in(nested)]
    if isinstance(value, list):
        return [item for nested in value for item in _strings_in(nested)]
    return []
