"""FakeKie: a strict local Kie.ai (market jobs + file upload + credits), per ../shared/docs/kie.md §12.

One aiohttp server on 127.0.0.1 (ephemeral port) plays both the API host and the upload host,
and serves uploaded files and generated result PNGs under ``/files/...``.

Strictness (it rejects what the real API rejects, and a bit more where that catches our bugs):
- Bearer auth on every API/upload call; library-default User-Agents get Cloudflare's bare
  403 "error code: 1010" (``require_user_agent``).
- Known models only; per-model required fields (code 500 "This field is required"), enums,
  lengths and image counts (422); unknown ``input`` fields are rejected too (422) because the
  real API silently ignores a wrong image field name — the biggest trap in its API.
- 20 creates per sliding 10 s per account (configurable); excess gets code 429 and the task is
  NOT created. Only admitted requests occupy the window.
- 10 ``recordInfo`` calls per sliding second per API key (kie.md §3.3, configurable; None: off);
  excess gets code 429. Every call is logged with its time (``record_info_log``).
- Reference URLs that carry a Telegram bot token (``/file/bot``) get 422, and every input URL
  is recorded so tests can assert no token leaked. URLs on this fake must exist.

Usage::

    async with FakeKie(latency=(0.005, 0.02)) as fake:
        provider = KieProvider(fake.api_key, fake.url, fake.url, "nano-banana-2")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from PIL import Image, ImageDraw, ImageFont

DEFAULT_API_KEY = "test-kie-key"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024

Latency = tuple[float, float] | Callable[[], float]
OutcomeKind = Literal["success", "fail", "stuck"]
ForgeryKind = Literal["bad_signature", "stale_timestamp", "premature_success", "unsigned", "unknown_task"]

_ENDPOINT_BY_PATH = {
    "/api/v1/jobs/createTask": "createTask",
    "/api/v1/jobs/recordInfo": "recordInfo",
    "/api/v1/chat/credit": "credit",
    "/api/file-stream-upload": "upload",
    "/api/file-base64-upload": "upload",
    "/api/file-url-upload": "upload",
}
_DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "You do not have access permissions",
    402: "The current credit is insufficient. Please top up.",
    404: "Not found",
    408: "Upstream has returned no result for over 10 minutes",
    422: "Validation error",
    429: "Rate limit exceeded",
    433: "Sub-key usage exceeds its limit",
    455: "Service unavailable",
    500: "Server error, please try again later",
    501: "Generation failed",
    505: "Feature disabled",
}


# ---------------------------------------------------------------------- model schemas (kie.md §4)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: Literal["text", "urls", "choice", "bool", "int"]
    required: bool = False
    choices: frozenset[str] = frozenset()
    min_length: int = 0  # chars for text, items for urls, minimum value for int
    max_length: int = 0  # 0: unbounded


def _choice(*values: str, required: bool = False) -> FieldSpec:
    return FieldSpec("choice", required=required, choices=frozenset(values))


_ASPECTS = ("1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9")
_SEEDREAM_V4_SIZES = (
    "square",
    "square_hd",
    "portrait_4_3",
    "portrait_3_2",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_3_2",
    "landscape_16_9",
    "landscape_21_9",
)

FAKE_MODELS: Mapping[str, Mapping[str, FieldSpec]] = {
    "google/nano-banana-edit": {
        "prompt": FieldSpec("text", required=True, min_length=1, max_length=5000),
        "image_urls": FieldSpec("urls", required=True, min_length=1, max_length=10),
        "aspect_ratio": _choice(*_ASPECTS, "auto"),
        "image_size": _choice(*_ASPECTS, "auto"),  # deprecated but still accepted
        "output_format": _choice("png", "jpeg"),
    },
    "google/nano-banana": {
        "prompt": FieldSpec("text", required=True, min_length=1, max_length=5000),
        "image_size": _choice(*_ASPECTS, "auto"),
        "output_format": _choice("png", "jpeg"),
    },
    "nano-banana-pro": {
        "prompt": FieldSpec("text", required=True, min_length=1, max_length=10000),
        "image_input": FieldSpec("urls", max_length=8),
        "aspect_ratio": _choice(*_ASPECTS, "auto"),
        "resolution": _choice("1K", "2K", "4K"),
        "output_format": _choice("png", "jpg"),
    },
    "nano-banana-2": {
        "prompt": FieldSpec("text", required=True, min_length=1, max_length=20000),
        "image_input": FieldSpec("urls", max_length=14),
        "aspect_ratio": _choice(*_ASPECTS, "1:4", "1:8", "4:1", "8:1", "auto"),
        "google_search": FieldSpec("bool"),
        "resolution": _choice("1K", "2K", "4K"),
        "output_format": _choice("png", "jpg"),
    },
    "seedream/4.5-edit": {
        "prompt": FieldSpec("text", required=True, min_length=1, max_length=3000),
        "image_urls": FieldSpec("urls", required=True, min_length=1, max_length=14),
        "aspect_ratio": _choice("1:1", "4:3", "3:4", "16:9", "9:16", "2:3", "3:2", "21:9", required=True),
        "quality": _choice("basic", "high", required=True),
    },
    "bytedance/seedream-v4-edit": {
        "prompt": FieldSpec("text", required=True, min_length=1, max_length=5000),
        "image_urls": FieldSpec("urls", required=True, min_length=1, max_length=10),
        "image_size": _choice(*_SEEDREAM_V4_SIZES),
        "image_resolution": _choice("1K", "2K", "4K"),
        "max_images": FieldSpec("int", min_length=1, max_length=6),
        "seed": FieldSpec("int"),
    },
    "flux-2/pro-image-to-image": {
        "prompt": FieldSpec("text", required=True, min_length=3, max_length=5000),
        "input_urls": FieldSpec("urls", required=True, min_length=1, max_length=8),
        "aspect_ratio": _choice("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "auto"),
        "resolution": _choice("1K", "2K"),
    },
}


# ---------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a task will do; queue with ``FakeKie.queue_outcomes`` to override the random draw."""

    kind: OutcomeKind = "success"
    fail_code: str | int | None = "500"
    fail_msg: str | None = "internal error, please try again later."
    latency: float | None = None  # seconds; None: drawn from the fake's latency setting


@dataclass(slots=True)
class FakeTask:
    task_id: str
    model: str
    input: dict[str, Any]
    callback_url: str | None
    outcome: Outcome
    latency: float
    created_monotonic: float
    create_time_ms: int
    final_state: str | None = None
    complete_time_ms: int | None = None
    result_urls: list[str] = field(default_factory=list)

    def state(self, now: float) -> str:
        if self.final_state is not None:
            return self.final_state
        elapsed = now - self.created_monotonic
        if elapsed < 0.2 * self.latency:
            return "waiting"
        if elapsed < 0.4 * self.latency:
            return "queuing"
        return "generating"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str | None
    authorization: str | None


@dataclass(frozen=True, slots=True)
class CreateRecord:
    payload: dict[str, Any]
    model: object
    input: object
    callback_url: object
    code: int
    msg: str
    task_id: str | None


@dataclass(frozen=True, slots=True)
class UploadRecord:
    endpoint: str
    upload_path: str
    file_name: str
    size: int
    download_url: str
    data: bytes


@dataclass(slots=True)
class CallbackRecord:
    task_id: str
    url: str
    kind: str  # "genuine", "duplicate", or a ForgeryKind
    body: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None
    attempts: int = 0


@dataclass(slots=True)
class _Injection:
    code: int
    remaining: int
    endpoint: str | None
    msg: str | None
    http_status: int | None
    raw_text: str | None


@dataclass(slots=True)
class _StoredFile:
    content_type: str
    stored_monotonic: float
    ttl_seconds: float | None
    data: bytes | None = None
    render: Callable[[], bytes] | None = None


class FakeKieError(Exception):
    """An envelope error raised inside a handler and turned into a response by the middleware."""

    def __init__(self, code: int, msg: str | None = None, *, upload_shape: bool = False) -> None:
        super().__init__(msg or _DEFAULT_MESSAGES.get(code, "error"))
        self.code = code
        self.msg = msg or _DEFAULT_MESSAGES.get(code, "error")
        self.upload_shape = upload_shape


def kie_signature(hmac_key: str, task_id: str, timestamp: str) -> str:
    """The fake's own implementation of kie.md §6.3 (deliberately independent of providers.kie)."""
    message = f"{task_id}.{timestamp}".encode()
    return base64.b64encode(hmac.new(hmac_key.encode(), message, hashlib.sha256).digest()).decode()


def render_result_png(task_id: str, size: tuple[int, int]) -> bytes:
    """A real, distinct PNG per task: seeded noise + shapes + the task id written on it.

    The noise is drawn at a quarter of the size in each direction and scaled up in blocks, and the PNG is
    compressed at level 1: 8 ms and 90 KB for 512×640 instead of 67 ms and 980 KB (full-size noise does not
    compress). A profile of the integration tests had this fake's rendering at 11 % of their CPU.
    """
    rng = random.Random(task_id)
    width, height = size
    noise_size = (max(1, width // 4), max(1, height // 4))
    channels = [Image.effect_noise(noise_size, rng.uniform(25, 70)) for _ in range(3)]
    image = Image.merge("RGB", channels).resize(size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, width // 2), y0 + rng.randrange(20, height // 2)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x0, y0, x1, y1), outline=colour, width=4)
    font = ImageFont.load_default(size=max(12, width // 24))
    draw.rectangle((0, height - width // 10, width, height), fill=(255, 255, 255))
    draw.text((8, height - width // 12), task_id, fill=(0, 0, 0), font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# What a prompt says when it asks for a 2×2 grid of poses (studio/catalogue.json "grid.instruction").
GRID_MARKER = "2×2 grid"
GRID_GUTTER = 8  # white, between the panels; the margin around the grid is the same white
GRID_MARGIN = 6


def render_grid_panel(task_id: str, slot: int, size: tuple[int, int]) -> Image.Image:
    """A panel of a grid: like a single result, distinct per task and panel."""
    return Image.open(io.BytesIO(render_result_png(f"{task_id}/{slot}", size))).convert("RGB")


def render_grid_png(
    task_id: str, panel_size: tuple[int, int], draw_panel: Callable[[str, int, tuple[int, int]], Image.Image]
) -> bytes:
    """A 2×2 grid of four panels, row-major, with white gutters and margin, as a grid model draws it."""
    width, height = panel_size
    canvas = Image.new(
        "RGB", (2 * width + GRID_GUTTER + 2 * GRID_MARGIN, 2 * height + GRID_GUTTER + 2 * GRID_MARGIN), "white"
    )
    for slot in range(4):
        row, column = divmod(slot, 2)
        panel = draw_panel(task_id, slot, panel_size).convert("RGB").resize(panel_size)
        canvas.paste(panel, (GRID_MARGIN + column * (width + GRID_GUTTER), GRID_MARGIN + row * (height + GRID_GUTTER)))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ---------------------------------------------------------------------- the fake


class FakeKie:
    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        hmac_key: str | None = None,
        create_limit: int = 20,
        create_window_seconds: float = 10.0,
        record_info_limit: int | None = 10,
        record_info_window_seconds: float = 1.0,
        latency: Latency = (0.02, 0.08),
        fail_rate: float = 0.0,
        stuck_rate: float = 0.0,
        error_http_status: int | None = 200,
        balance: float | None = None,
        credits_per_task: float = 1.0,
        result_ttl_seconds: float | None = None,
        upload_ttl_seconds: float | None = None,
        image_size: tuple[int, int] = (512, 640),
        result_renderer: Callable[[str, tuple[int, int]], bytes] | None = None,
        grid_renderer: Callable[[str, int, tuple[int, int]], Image.Image] | None = None,
        callback_delay_seconds: float = 0.0,
        drop_callbacks: bool = False,
        duplicate_callbacks: int = 0,
        callback_retry_delays: Sequence[float] = (),
        callback_timeout_seconds: float = 15.0,
        response_delay_seconds: float = 0.0,
        require_user_agent: bool = True,
        reject_unknown_fields: bool = True,
        fetch_foreign_urls: bool = False,
        result_json_as_object: bool = False,
        message_key: str = "msg",
        seed: int | None = 0,
    ) -> None:
        """``error_http_status``: HTTP status of envelope errors (None: mirror the envelope code)."""
        self.api_key = api_key
        self.hmac_key = hmac_key
        self.create_limit = create_limit
        self.create_window_seconds = create_window_seconds
        self.record_info_limit = record_info_limit
        self.record_info_window_seconds = record_info_window_seconds
        self.latency = latency
        self.fail_rate = fail_rate
        self.stuck_rate = stuck_rate
        self.error_http_status = error_http_status
        self.balance = balance
        self.credits_per_task = credits_per_task
        self.result_ttl_seconds = result_ttl_seconds
        self.upload_ttl_seconds = upload_ttl_seconds
        self.image_size = image_size
        # How result images are drawn: the default is realistic noise (~70 ms each); load runs pass a cheaper one.
        self.result_renderer = result_renderer or render_result_png
        # A prompt asking for a 2×2 grid gets one: each panel drawn by this (task id, slot 0..3, panel
        # size), e.g. a test's panel without a face; each panel is ``image_size``.
        self.grid_renderer = grid_renderer or render_grid_panel
        self.callback_delay_seconds = callback_delay_seconds
        self.drop_callbacks = drop_callbacks
        self.duplicate_callbacks = duplicate_callbacks
        self.callback_retry_delays = tuple(callback_retry_delays)
        self.callback_timeout_seconds = callback_timeout_seconds
        self.response_delay_seconds = response_delay_seconds
        self.require_user_agent = require_user_agent
        self.reject_unknown_fields = reject_unknown_fields
        self.fetch_foreign_urls = fetch_foreign_urls
        self.result_json_as_object = result_json_as_object
        self.message_key = message_key
        self.outage = False  # every endpoint (files too) answers HTTP 500

        # Records for assertions.
        self.requests: list[RequestRecord] = []
        self.creates: list[CreateRecord] = []
        self.uploads: list[UploadRecord] = []
        self.record_info_calls: list[str] = []
        self.record_info_log: list[tuple[str, float]] = []  # (taskId, monotonic time), 429s included
        self.record_info_rate_limited_count = 0
        self.callbacks: list[CallbackRecord] = []
        self.tasks: dict[str, FakeTask] = {}
        self.input_urls: list[str] = []
        self.leaked_token_urls: list[str] = []
        self.rate_limited_count = 0
        self.dropped_callback_count = 0

        self._rng = random.Random(seed)
        self._create_window: deque[float] = deque()
        self._record_info_window: deque[float] = deque()
        self._queued_outcomes: deque[Outcome] = deque()
        self._injections: list[_Injection] = []
        self._files: dict[str, _StoredFile] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeKie is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_post("/api/v1/jobs/createTask", self._handle_create)
        app.router.add_get("/api/v1/jobs/recordInfo", self._handle_record_info)
        app.router.add_get("/api/v1/chat/credit", self._handle_credit)
        app.router.add_post("/api/file-stream-upload", self._handle_stream_upload)
        app.router.add_post("/api/file-base64-upload", self._handle_base64_upload)
        app.router.add_post("/api/file-url-upload", self._handle_url_upload)
        app.router.add_get("/files/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        server = self._site._server
        assert server is not None and server.sockets
        self._port = server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.callback_timeout_seconds))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeKie:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def refuse_connections(self) -> None:
        """Outage with 'connection refused': stop listening, keep all state."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def accept_connections(self) -> None:
        """Listen again on the same port after ``refuse_connections``."""
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
            await self._site.start()

    # ------------------------------------------------------------------ fault injection

    def inject_error(
        self,
        code: int,
        times: int = 1,
        *,
        endpoint: str | None = None,
        msg: str | None = None,
        http_status: int | None = None,
        raw_text: str | None = None,
    ) -> None:
        """The next ``times`` matching API/upload calls answer with envelope ``code``.

        ``endpoint``: "createTask", "recordInfo", "credit", "upload" or None (any).
        ``raw_text``: answer this non-JSON text instead of an envelope (e.g. a proxy's error page).
        """
        self._injections.append(_Injection(code, times, endpoint, msg, http_status, raw_text))

    def inject_cloudflare_block(self, times: int = 1, *, endpoint: str | None = None) -> None:
        self.inject_error(403, times, endpoint=endpoint, http_status=403, raw_text="error code: 1010")

    def queue_outcomes(self, *outcomes: Outcome) -> None:
        """Outcomes for the next created tasks, in order (then back to fail_rate/stuck_rate)."""
        self._queued_outcomes.extend(outcomes)

    # ------------------------------------------------------------------ waiting helpers

    async def wait_for(self, predicate: Callable[[], bool], within_seconds: float = 5.0) -> None:
        async with asyncio.timeout(within_seconds):
            while not predicate():
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.05)
                except TimeoutError:
                    pass

    async def wait_for_task_count(self, count: int, within_seconds: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.tasks) >= count, within_seconds)

    async def wait_for_callbacks(self, count: int, within_seconds: float = 5.0) -> None:
        """Until ``count`` callbacks have been answered (any status) or failed for good."""
        await self.wait_for(
            lambda: sum(1 for cb in self.callbacks if cb.status is not None or cb.error) >= count,
            within_seconds,
        )

    async def wait_until_terminal(self, task_id: str, within_seconds: float = 5.0) -> None:
        await self.wait_for(lambda: self.tasks[task_id].final_state is not None, within_seconds)

    def _notify(self) -> None:
        self._changed.set()

    # ------------------------------------------------------------------ callbacks

    def sign(self, task_id: str, timestamp: int | str) -> str:
        if self.hmac_key is None:
            raise RuntimeError("FakeKie has no hmac_key")
        return kie_signature(self.hmac_key, task_id, str(timestamp))

    def callback_body(self, task: FakeTask, *, state: str | None = None) -> dict[str, Any]:
        """The §6.1 body for ``task`` (its real final state unless ``state`` forges another)."""
        state = state or task.final_state or task.state(time.monotonic())
        failed = state == "fail"
        fail_code = task.outcome.fail_code if failed else ""
        code = 200
        if failed:
            code = int(fail_code) if str(fail_code) in ("400", "500", "501") else 501
        param = {
            "model": task.model,
            "callBackUrl": task.callback_url,
            "input": json.dumps(task.input),  # double-encoded, as in the documented example
        }
        result_urls = task.result_urls or [self._result_url(task.task_id)]
        return {
            "code": code,
            self.message_key: "Playground task failed." if failed else "Playground task completed successfully.",
            "data": {
                "taskId": task.task_id,
                "model": task.model,
                "state": state,
                "param": json.dumps(param),
                "resultJson": "" if failed else json.dumps({"resultUrls": result_urls}),
                "failCode": fail_code if failed else "",
                "failMsg": task.outcome.fail_msg if failed else "",
                "costTime": round(task.latency),
                "creditsConsumed": self.credits_per_task,
                "createTime": task.create_time_ms,
                "completeTime": task.complete_time_ms or _now_ms(),
                "updateTime": task.complete_time_ms or _now_ms(),
            },
        }

    def callback_headers(self, task_id: str, *, timestamp: int | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.hmac_key is not None:
            stamp = str(timestamp if timestamp is not None else int(time.time()))
            headers["X-Webhook-Timestamp"] = stamp
            headers["X-Webhook-Signature"] = self.sign(task_id, stamp)
        return headers

    async def send_forged_callback(self, task_id: str, kind: ForgeryKind, *, url: str | None = None) -> int | None:
        """POST a callback an attacker (or a replay) could send; returns the receiver's HTTP status.

        - bad_signature: a success body with a wrong signature;
        - stale_timestamp: correctly signed, but 10 minutes old;
        - premature_success: correctly signed (a replayed signature) but claims success while the task runs;
        - unsigned: no signature headers at all;
        - unknown_task: correctly signed for a task id this fake never created.
        """
        if kind == "unknown_task":
            task = FakeTask(
                task_id=f"task_forged_{uuid.uuid4().hex[:12]}",
                model="google/nano-banana-edit",
                input={},
                callback_url=url,
                outcome=Outcome(),
                latency=0.0,
                created_monotonic=time.monotonic(),
                create_time_ms=_now_ms(),
            )
        else:
            task = self.tasks[task_id]
        target = url or task.callback_url
        if not target:
            raise ValueError("no callback URL: pass url=")
        body = self.callback_body(task, state="success")
        if kind == "bad_signature":
            headers = self.callback_headers(task.task_id)
            headers["X-Webhook-Signature"] = base64.b64encode(b"\x00" * 32).decode()
        elif kind == "stale_timestamp":
            headers = self.callback_headers(task.task_id, timestamp=int(time.time()) - 600)
        elif kind == "unsigned":
            headers = {"Content-Type": "application/json"}
        else:
            headers = self.callback_headers(task.task_id)
        record = CallbackRecord(task.task_id, target, kind, body, headers)
        self.callbacks.append(record)
        await self._post_callback(record, retry_delays=())
        return record.status

    async def _deliver_callbacks(self, task: FakeTask) -> None:
        if not task.callback_url:
            return
        if self.callback_delay_seconds:
            await asyncio.sleep(self.callback_delay_seconds)
        if self.drop_callbacks:
            self.dropped_callback_count += 1
            self._notify()
            return
        for copy_index in range(1 + self.duplicate_callbacks):
            record = CallbackRecord(
                task.task_id,
                task.callback_url,
                "genuine" if copy_index == 0 else "duplicate",
                self.callback_body(task),
                self.callback_headers(task.task_id),
            )
            self.callbacks.append(record)
            await self._post_callback(record, retry_delays=self.callback_retry_delays)

    async def _post_callback(self, record: CallbackRecord, *, retry_delays: Sequence[float]) -> None:
        assert self._session is not None
        for delay in (0.0, *retry_delays):
            if delay:
                await asyncio.sleep(delay)
            record.attempts += 1
            try:
                async with self._session.post(
                    record.url, data=json.dumps(record.body).encode(), headers=record.headers
                ) as response:
                    await response.read()
                    record.status, record.error = response.status, None
            except (aiohttp.ClientError, TimeoutError) as exc:
                record.status, record.error = None, f"{type(exc).__name__}: {exc}"
            self._notify()
            if record.status is not None and 200 <= record.status < 300:
                return

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append(
            RequestRecord(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("User-Agent"),
                request.headers.get("Authorization"),
            )
        )
        if self.outage:
            return web.json_response({"code": 500, "msg": "Server error"}, status=500)
        endpoint = _ENDPOINT_BY_PATH.get(request.path)
        if endpoint is None:  # /files/... and unknown paths
            return await handler(request)
        if self.response_delay_seconds:
            await asyncio.sleep(self.response_delay_seconds)
        user_agent = request.headers.get("User-Agent", "")
        if self.require_user_agent and (not user_agent or user_agent.lower().startswith("python")):
            return web.Response(status=403, text="error code: 1010")
        injection = self._take_injection(endpoint)
        if injection is not None:
            if injection.raw_text is not None:
                return web.Response(status=injection.http_status or 500, text=injection.raw_text)
            return self._envelope_error(
                FakeKieError(injection.code, injection.msg, upload_shape=endpoint == "upload"),
                http_status=injection.http_status,
            )
        try:
            self._check_auth(request, upload_shape=endpoint == "upload")
            return await handler(request)
        except FakeKieError as error:
            return self._envelope_error(error)

    def _take_injection(self, endpoint: str) -> _Injection | None:
        for injection in self._injections:
            if injection.remaining > 0 and injection.endpoint in (None, endpoint):
                injection.remaining -= 1
                return injection
        return None

    def _check_auth(self, request: web.Request, *, upload_shape: bool) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            if upload_shape:
                raise FakeKieError(401, "Authentication failed: Invalid API Key", upload_shape=True)
            raise FakeKieError(401)

    def _envelope_error(self, error: FakeKieError, *, http_status: int | None = None) -> web.Response:
        status = http_status or self.error_http_status or error.code
        if not 100 <= status <= 999:
            status = 500
        body: dict[str, Any] = {"code": error.code, self.message_key: error.msg}
        if error.upload_shape:
            body = {"success": False, **body}
        else:
            body["data"] = None
        return web.json_response(body, status=status)

    def _ok(self, data: object, *, upload_shape: bool = False, msg: str = "success") -> web.Response:
        body: dict[str, Any] = {"code": 200, self.message_key: msg, "data": data}
        if upload_shape:
            body = {"success": True, **body}
        return web.json_response(body)

    # ------------------------------------------------------------------ jobs API

    async def _handle_create(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise FakeKieError(400, "Request body is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise FakeKieError(400, "Request body must be a JSON object")
        model, model_input, callback_url = (
            payload.get("model"),
            payload.get("input"),
            payload.get("callBackUrl"),
        )

        def reject(code: int, msg: str | None = None) -> FakeKieError:
            error = FakeKieError(code, msg)
            self.creates.append(CreateRecord(payload, model, model_input, callback_url, code, error.msg, None))
            self._notify()
            return error

        now = time.monotonic()
        while self._create_window and now - self._create_window[0] >= self.create_window_seconds:
            self._create_window.popleft()
        if len(self._create_window) >= self.create_limit:
            # Dropped, not queued (kie.md §7): the task is not created.
            self.rate_limited_count += 1
            raise reject(429)
        self._create_window.append(now)

        if "callbackUrl" in payload or "callback_url" in payload:
            raise reject(422, "callBackUrl is spelled with a capital B")
        if callback_url is not None and not (isinstance(callback_url, str) and callback_url.startswith("http")):
            raise reject(422, "callBackUrl must be an http(s) URL")
        if not isinstance(model, str) or model not in FAKE_MODELS:
            raise reject(422, "The page does not exist or is not published")
        if not isinstance(model_input, dict):
            raise reject(500, "This field is required")
        problem = await self._validate_input(model, model_input)
        if problem is not None:
            raise reject(*problem)
        if self.balance is not None and self.balance < self.credits_per_task:
            raise reject(402)
        if self.balance is not None:
            self.balance -= self.credits_per_task

        task = self._new_task(model, model_input, callback_url)
        self.creates.append(CreateRecord(payload, model, model_input, callback_url, 200, "success", task.task_id))
        self._notify()
        return self._ok({"taskId": task.task_id})

    async def _validate_input(self, model: str, model_input: dict[str, Any]) -> tuple[int, str] | None:
        schema = FAKE_MODELS[model]
        for name, spec in schema.items():
            if spec.required and model_input.get(name) in (None, "", []):
                return 500, "This field is required"
        if self.reject_unknown_fields:
            unknown = sorted(set(model_input) - set(schema))
            if unknown:
                return 422, f"input.{unknown[0]} is not a parameter of {model}"
        for name, value in model_input.items():
            spec = schema.get(name)
            if spec is None:
                continue
            problem = await self._validate_field(name, spec, value)
            if problem is not None:
                return 422, problem
        return None

    async def _validate_field(self, name: str, spec: FieldSpec, value: object) -> str | None:
        if spec.kind == "text":
            if not isinstance(value, str):
                return f"{name} must be a string"
            if len(value) < spec.min_length or (spec.max_length and len(value) > spec.max_length):
                return f"{name} length must be within {spec.min_length}..{spec.max_length}"
        elif spec.kind == "choice":
            if value not in spec.choices:
                return f"{name} must be one of {sorted(spec.choices)}"
        elif spec.kind == "bool":
            if not isinstance(value, bool):
                return f"{name} must be a boolean"
        elif spec.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                return f"{name} must be an integer"
            if value < spec.min_length or (spec.max_length and value > spec.max_length):
                return f"{name} must be within {spec.min_length}..{spec.max_length}"
        elif spec.kind == "urls":
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                return f"{name} must be an array of URLs"
            if len(value) < spec.min_length or (spec.max_length and len(value) > spec.max_length):
                return f"{name} must hold {spec.min_length}..{spec.max_length} images"
            self.input_urls.extend(value)
            for url in value:
                problem = await self._check_reference_url(url)
                if problem is not None:
                    return f"{name}: {problem}"
        return None

    async def _check_reference_url(self, url: str) -> str | None:
        if "/file/bot" in url.lower():
            # Kie would fetch it — and a third party would now hold our bot token.
            self.leaked_token_urls.append(url)
            return "image url is not accessible (a Telegram file URL carrying a bot token)"
        if url.startswith("data:") or not url.startswith(("http://", "https://")):
            return "image url must be a public http(s) URL, not file content"
        own_prefix = f"{self.url}/files/"
        if url.startswith(own_prefix):
            if self._live_file(url.removeprefix(own_prefix)) is None:
                return "image url is not accessible (404)"
            return None
        if self.fetch_foreign_urls:
            assert self._session is not None
            try:
                async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status != 200:
                        return f"image url is not accessible ({response.status})"
            except (aiohttp.ClientError, TimeoutError):
                return "image url is not accessible"
        return None

    def _new_task(self, model: str, model_input: dict[str, Any], callback_url: str | None) -> FakeTask:
        outcome = self._queued_outcomes.popleft() if self._queued_outcomes else self._draw_outcome()
        latency = outcome.latency if outcome.latency is not None else self._draw_latency()
        prefix = model.split("/", 1)[0]
        task = FakeTask(
            task_id=f"task_{prefix}_{_now_ms()}{uuid.uuid4().hex[:6]}",
            model=model,
            input=model_input,
            callback_url=callback_url,
            outcome=outcome,
            latency=latency,
            created_monotonic=time.monotonic(),
            create_time_ms=_now_ms(),
        )
        self.tasks[task.task_id] = task
        self._spawn(self._run_task(task))
        return task

    def _draw_outcome(self) -> Outcome:
        roll = self._rng.random()
        if roll < self.fail_rate:
            return Outcome("fail")
        if roll < self.fail_rate + self.stuck_rate:
            return Outcome("stuck")
        return Outcome("success")

    def _draw_latency(self) -> float:
        if callable(self.latency):
            return max(0.0, float(self.latency()))
        low, high = self.latency
        return self._rng.uniform(low, high)

    async def _run_task(self, task: FakeTask) -> None:
        await asyncio.sleep(task.latency)
        if task.outcome.kind == "stuck" or task.final_state is not None:
            return  # stays "generating" forever (or until ``finish``, which may also come first)
        await self._complete(task)

    async def finish(self, task_id: str) -> None:
        """A task queued as ``Outcome("stuck")`` succeeds now and its callbacks are sent (returns once answered)."""
        task = self.tasks[task_id]
        if task.outcome.kind != "stuck" or task.final_state is not None:
            raise ValueError(f"{task_id} is not a stuck task")
        task.outcome = Outcome("success")
        await self._complete(task)

    async def _complete(self, task: FakeTask) -> None:
        task.complete_time_ms = _now_ms()
        if task.outcome.kind == "success":
            result_path = f"results/{task.task_id}/0.png"
            # Decided here, on the loop: the render runs in a thread, and reading ``self.tasks`` there
            # raced new creates ("dictionary changed size during iteration", a 500 for the download).
            as_grid = self._asks_for_grid(task)
            self._files[result_path] = _StoredFile(
                content_type="image/png",
                stored_monotonic=time.monotonic(),
                ttl_seconds=self.result_ttl_seconds,
                render=lambda: self._render(task, as_grid),
            )
            task.result_urls = [self._result_url(task.task_id)]
            task.final_state = "success"
        else:
            task.final_state = "fail"
        self._notify()
        await self._deliver_callbacks(task)

    def _render(self, task: FakeTask, as_grid: bool) -> bytes:
        if as_grid:
            return render_grid_png(task.task_id, self.image_size, self.grid_renderer)
        return self.result_renderer(task.task_id, self.image_size)

    @staticmethod
    def _asks_for_grid(task: FakeTask) -> bool:
        return GRID_MARKER in str(task.input.get("prompt", ""))

    def grid_task_ids(self) -> list[str]:
        """The tasks whose prompt asked for a 2×2 grid, in the order they were created."""
        return [task_id for task_id, task in self.tasks.items() if self._asks_for_grid(task)]

    def _result_url(self, task_id: str) -> str:
        return f"{self.url}/files/results/{task_id}/0.png"

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _handle_record_info(self, request: web.Request) -> web.Response:
        task_id = request.query.get("taskId", "")
        now = time.monotonic()
        self.record_info_calls.append(task_id)
        self.record_info_log.append((task_id, now))
        self._notify()
        if self.record_info_limit is not None:
            window = self._record_info_window
            while window and now - window[0] >= self.record_info_window_seconds:
                window.popleft()
            if len(window) >= self.record_info_limit:
                self.record_info_rate_limited_count += 1
                raise FakeKieError(429)
            window.append(now)
        task = self.tasks.get(task_id)
        if task is None:
            raise FakeKieError(422, "recordInfo is null")
        state = task.state(time.monotonic())
        terminal = state in ("success", "fail")
        failed = state == "fail"
        result_json: object = ""
        if state == "success":
            result = {"resultUrls": task.result_urls}
            result_json = result if self.result_json_as_object else json.dumps(result)
        param = {"model": task.model, "callBackUrl": task.callback_url, "input": task.input}
        return self._ok(
            {
                "taskId": task.task_id,
                "model": task.model,
                "state": state,
                "param": json.dumps(param),
                "resultJson": result_json,
                # Null while running (seen live), "" on success (documented), the outcome's on failure.
                "failCode": task.outcome.fail_code if failed else ("" if terminal else None),
                "failMsg": task.outcome.fail_msg if failed else ("" if terminal else None),
                "costTime": round(task.latency * 1000) if terminal else 0,
                "creditsConsumed": self.credits_per_task if terminal else 0,
                "completeTime": task.complete_time_ms,
                "createTime": task.create_time_ms,
                "updateTime": task.complete_time_ms or task.create_time_ms,
            }
        )

    async def _handle_credit(self, request: web.Request) -> web.Response:
        return self._ok(self.balance if self.balance is not None else 1_000_000)

    # ------------------------------------------------------------------ upload host

    async def _handle_stream_upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise FakeKieError(400, "Content-Type must be multipart/form-data", upload_shape=True)
        form = await request.post()
        file_field = form.get("file")
        if not isinstance(file_field, web.FileField):
            raise FakeKieError(400, "Missing required parameter: file", upload_shape=True)
        data = file_field.file.read()
        file_name = str(form.get("fileName") or file_field.filename or f"{uuid.uuid4().hex}.bin")
        return self._store_upload("stream", form.get("uploadPath"), file_name, data, file_field.content_type)

    async def _handle_base64_upload(self, request: web.Request) -> web.Response:
        payload = await self._json_body(request)
        raw = payload.get("base64Data")
        if not isinstance(raw, str) or not raw:
            raise FakeKieError(400, "Missing required parameter: base64Data", upload_shape=True)
        content_type = "application/octet-stream"
        if raw.startswith("data:"):
            header, _, raw = raw.partition(",")
            content_type = header.removeprefix("data:").split(";", 1)[0] or content_type
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FakeKieError(400, "base64Data is not valid base64", upload_shape=True) from exc
        file_name = str(payload.get("fileName") or f"{uuid.uuid4().hex}.bin")
        return self._store_upload("base64", payload.get("uploadPath"), file_name, data, content_type)

    async def _handle_url_upload(self, request: web.Request) -> web.Response:
        payload = await self._json_body(request)
        file_url = payload.get("fileUrl")
        if not isinstance(file_url, str) or not file_url:
            raise FakeKieError(400, "Missing required parameter: fileUrl", upload_shape=True)
        self.input_urls.append(file_url)
        if "/file/bot" in file_url.lower():
            self.leaked_token_urls.append(file_url)
            raise FakeKieError(400, "File download failed: a Telegram file URL", upload_shape=True)
        assert self._session is not None
        try:
            async with self._session.get(file_url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                if response.status != 200:
                    raise FakeKieError(400, f"File download failed: HTTP {response.status}", upload_shape=True)
                data = await response.read()
                content_type = response.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FakeKieError(400, "File download failed", upload_shape=True) from exc
        file_name = str(payload.get("fileName") or file_url.rsplit("/", 1)[-1] or uuid.uuid4().hex)
        return self._store_upload("url", payload.get("uploadPath"), file_name, data, content_type)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            payload = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise FakeKieError(400, "Request body is not valid JSON", upload_shape=True) from exc
        if not isinstance(payload, dict):
            raise FakeKieError(400, "Request body must be a JSON object", upload_shape=True)
        return payload

    def _store_upload(
        self, endpoint: str, upload_path: object, file_name: str, data: bytes, content_type: str
    ) -> web.Response:
        if not isinstance(upload_path, str) or not upload_path:
            raise FakeKieError(400, "Missing required parameter: uploadPath", upload_shape=True)
        if upload_path.startswith("/") or upload_path.endswith("/"):
            raise FakeKieError(400, "uploadPath must not start or end with a slash", upload_shape=True)
        if not data:
            raise FakeKieError(400, "Empty file", upload_shape=True)
        if "/" in file_name or ".." in file_name:
            raise FakeKieError(400, "Invalid fileName", upload_shape=True)
        relative_path = f"uploads/{upload_path}/{file_name}"
        # Like Kie, a reused name silently overwrites the earlier file.
        self._files[relative_path] = _StoredFile(
            content_type=content_type or "application/octet-stream",
            stored_monotonic=time.monotonic(),
            ttl_seconds=self.upload_ttl_seconds,
            data=data,
        )
        download_url = f"{self.url}/files/{relative_path}"
        self.uploads.append(UploadRecord(endpoint, upload_path, file_name, len(data), download_url, data))
        self._notify()
        return self._ok(
            {
                "fileName": file_name,
                "filePath": f"{upload_path}/{file_name}",
                "downloadUrl": download_url,
                "fileSize": len(data),
                "mimeType": content_type,
                "uploadedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            },
            upload_shape=True,
            msg="File uploaded successfully",
        )

    # ------------------------------------------------------------------ files

    def _live_file(self, relative_path: str) -> _StoredFile | None:
        stored = self._files.get(relative_path)
        if stored is None:
            return None
        if stored.ttl_seconds is not None and time.monotonic() - stored.stored_monotonic >= stored.ttl_seconds:
            return None
        return stored

    async def _handle_file(self, request: web.Request) -> web.Response:
        stored = self._live_file(request.match_info["path"])
        if stored is None:
            return web.Response(status=404, text="Not Found")
        if stored.data is None and stored.render is not None:
            # Rendered lazily (most tests never download): keeps the fake cheap on a 2-core box.
            stored.data = await asyncio.to_thread(stored.render)
        return web.Response(body=stored.data, content_type=stored.content_type)


def _now_ms() -> int:
    return int(time.time() * 1000)
