"""FakeGenerator: a strict local self-hosted generator, per docs/generator.md.

One aiohttp server on 127.0.0.1 (ephemeral port): ``POST /generate``, ``GET /jobs/{job_id}``, and the
result PNGs under ``/results/{job_id}.png``.

Strictness (it rejects what the contract does not allow, so our client's mistakes show):
- ``Authorization: Bearer <token>`` on every API call (401 otherwise; results are served to anyone,
  as a real server behind its own network would).
- The ``/generate`` body has exactly the contract's keys with the contract's types (422 otherwise):
  a non-empty prompt, http(s) reference URLs (a Telegram file URL is refused and recorded), an
  integer or null seed, sizes that are multiples of 64, an http(s) or null ``webhook_url``.
- Before "running", every reference URL is fetched over HTTP; a job whose fetch is not 200 fails.
  That is how the tests prove our signed ``/files`` links work (``reference_fetches``).
- Webhooks are signed the way docs/generator.md says, with the fake's own code.

Faults: ``inject(status, times, endpoint=..., retry_after=...)`` answers the next calls with an
error; ``queue_outcomes`` / ``fail_rate`` fail jobs; ``hold_next`` keeps jobs processing until
``finish``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from tests.fakes.kie import render_result_png

DEFAULT_TOKEN = "test-generator-token"
DEFAULT_WEBHOOK_SECRET = "test-generator-webhook-secret"
REQUEST_KEYS = frozenset(
    {"prompt", "negative_prompt", "reference_urls", "seed", "width", "height", "webhook_url", "ref"}
)
MAX_REFERENCES = 8

OutcomeKind = Literal["succeed", "fail"]
Endpoint = Literal["generate", "status"]


def sign_body(secret: str, raw_body: bytes) -> str:
    """docs/generator.md §webhooks, written independently of providers.selfhosted."""
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind = "succeed"
    error: str = "CUDA out of memory"


@dataclass(slots=True)
class FakeJob:
    job_id: str
    request: dict[str, Any]
    outcome: Outcome
    latency: float
    created_at: float = field(default_factory=time.monotonic)
    status: str = "queued"
    result_url: str | None = None
    error: str | None = None
    processing_time_ms: int | None = None
    held: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "result_url": self.result_url,
            "error": self.error,
            "processing_time_ms": self.processing_time_ms,
        }


@dataclass(frozen=True, slots=True)
class ReferenceFetch:
    job_id: str
    url: str
    status: int | None  # None: the fetch did not get an answer
    size: int


@dataclass(slots=True)
class WebhookRecord:
    job_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None


@dataclass(slots=True)
class _Injection:
    status: int
    remaining: int
    endpoint: Endpoint | None
    retry_after: float | None


class FakeGenerator:
    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        latency: tuple[float, float] = (0.02, 0.08),
        fail_rate: float = 0.0,
        image_size: tuple[int, int] = (512, 640),
        result_renderer: Callable[[str, tuple[int, int]], bytes] | None = None,
        webhook_timestamp_skew: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.token = token
        self.webhook_secret = webhook_secret
        self.latency = latency
        self.fail_rate = fail_rate
        self.image_size = image_size
        # As FakeKie's: cheap distinct noise by default; the face tests pass one that draws a face.
        self.result_renderer = result_renderer or render_result_png
        self.webhook_timestamp_skew = webhook_timestamp_skew

        self.jobs: dict[str, FakeJob] = {}
        self.generate_calls: list[dict[str, Any]] = []  # every body /generate received, refused ones too
        self.status_calls: list[str] = []
        self.rejections: list[tuple[int, str]] = []
        self.reference_fetches: list[ReferenceFetch] = []
        self.leaked_token_urls: list[str] = []
        self.webhooks: list[WebhookRecord] = []

        self._rng = random.Random(seed)
        self._outcomes: deque[Outcome] = deque()
        self._injections: list[_Injection] = []
        self._hold_next = 0
        self._results: dict[str, bytes] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeGenerator is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._faults])
        app.router.add_post("/generate", self._handle_generate)
        app.router.add_get("/jobs/{job_id}", self._handle_status)
        app.router.add_get("/results/{name}", self._handle_result)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self._port = server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        for job in self.jobs.values():
            job.released.set()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeGenerator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ control

    def inject(
        self, status: int, times: int = 1, *, endpoint: Endpoint | None = None, retry_after: float | None = None
    ) -> None:
        """The next ``times`` calls of ``endpoint`` (None: any API call) answer HTTP ``status``."""
        self._injections.append(_Injection(status, times, endpoint, retry_after))

    def queue_outcomes(self, *outcomes: Outcome) -> None:
        self._outcomes.extend(outcomes)

    def hold_next(self, count: int) -> None:
        """The next ``count`` jobs stay ``processing`` until ``finish``."""
        self._hold_next += count

    def finish(self, job_id: str) -> None:
        self.jobs[job_id].released.set()

    async def wait_for(self, predicate: Callable[[], bool], within_seconds: float = 10.0) -> None:
        async with asyncio.timeout(within_seconds):
            while not predicate():
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.05)
                except TimeoutError:
                    pass

    async def wait_idle(self, within_seconds: float = 10.0) -> None:
        """Until every job has ended and every webhook has been answered."""
        await self.wait_for(
            lambda: (
                all(job.status in ("completed", "failed") for job in self.jobs.values())
                and all(hook.status is not None or hook.error for hook in self.webhooks)
            ),
            within_seconds,
        )

    def webhook_headers(self, raw_body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
        sent_at = int(time.time() + self.webhook_timestamp_skew if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            "X-Signature": sign_body(self.webhook_secret, raw_body),
            "X-Timestamp": str(sent_at),
        }

    # ------------------------------------------------------------------ HTTP

    @web.middleware
    async def _faults(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        endpoint: Endpoint | None = (
            "generate" if request.path == "/generate" else "status" if request.path.startswith("/jobs/") else None
        )
        if endpoint is None:
            response: web.StreamResponse = await handler(request)
            return response
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(401, "missing or wrong bearer token")
        for injection in self._injections:
            if injection.remaining > 0 and injection.endpoint in (None, endpoint):
                injection.remaining -= 1
                headers = {} if injection.retry_after is None else {"Retry-After": f"{injection.retry_after:g}"}
                return web.json_response({"error": "injected"}, status=injection.status, headers=headers)
        response = await handler(request)
        return response

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.rejections.append((status, reason))
        self._changed.set()
        return web.json_response({"error": reason}, status=status)

    async def _handle_generate(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._refuse(400, "body is not JSON")
        self.generate_calls.append(body)
        problem = self._problem_with(body)
        if problem is not None:
            return self._refuse(422, problem)
        job = FakeJob(
            job_id=f"gen-{uuid.uuid4().hex[:16]}",
            request=body,
            outcome=self._next_outcome(),
            latency=self._rng.uniform(*self.latency),
        )
        if self._hold_next > 0:
            self._hold_next -= 1
            job.held = True
        else:
            job.released.set()
        self.jobs[job.job_id] = job
        self._spawn(self._run(job))
        self._changed.set()
        return web.json_response({"job_id": job.job_id}, status=202)

    def _problem_with(self, body: object) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        if set(body) != REQUEST_KEYS:
            return f"keys must be exactly {sorted(REQUEST_KEYS)}, got {sorted(body)}"
        if not isinstance(body["prompt"], str) or not body["prompt"].strip():
            return "prompt must be a non-empty string"
        if not isinstance(body["negative_prompt"], str):
            return "negative_prompt must be a string"
        urls = body["reference_urls"]
        if not isinstance(urls, list) or len(urls) > MAX_REFERENCES:
            return f"reference_urls must be a list of at most {MAX_REFERENCES} URLs"
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return "reference_urls must be http(s) URLs"
            if "/file/bot" in url:
                self.leaked_token_urls.append(url)
                return "reference_urls must not be Telegram file URLs"
        seed = body["seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            return "seed must be an integer or null"
        for side in ("width", "height"):
            value = body[side]
            if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 4096 or value % 64:
                return f"{side} must be an integer 64..4096, a multiple of 64"
        webhook_url = body["webhook_url"]
        if webhook_url is not None and (
            not isinstance(webhook_url, str) or not webhook_url.startswith(("http://", "https://"))
        ):
            return "webhook_url must be an http(s) URL or null"
        if not isinstance(body["ref"], str) or not body["ref"]:
            return "ref must be a non-empty string"
        return None

    def _next_outcome(self) -> Outcome:
        if self._outcomes:
            return self._outcomes.popleft()
        return Outcome("fail") if self._rng.random() < self.fail_rate else Outcome()

    async def _handle_status(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        self.status_calls.append(job_id)
        self._changed.set()
        job = self.jobs.get(job_id)
        if job is None:
            return web.json_response({"error": "no such job"}, status=404)
        return web.json_response(job.answer())

    async def _handle_result(self, request: web.Request) -> web.Response:
        data = self._results.get(request.match_info["name"])
        if data is None:
            return web.json_response({"error": "no such result"}, status=404)
        return web.Response(body=data, content_type="image/png")

    # ------------------------------------------------------------------ running a job

    async def _run(self, job: FakeJob) -> None:
        await asyncio.sleep(job.latency * 0.2)
        job.status = "processing"
        self._changed.set()
        started = time.monotonic()
        fetch_problem = await self._fetch_references(job)
        await asyncio.sleep(job.latency * 0.8)
        await job.released.wait()
        if fetch_problem is not None:
            job.status, job.error = "failed", fetch_problem
        elif job.outcome.kind == "fail":
            job.status, job.error = "failed", job.outcome.error
        else:
            name = f"{job.job_id}.png"
            self._results[name] = await asyncio.to_thread(self.result_renderer, job.job_id, self.image_size)
            job.status, job.result_url = "completed", f"{self.url}/results/{name}"
        job.processing_time_ms = round((time.monotonic() - started) * 1000)
        self._changed.set()
        webhook_url = job.request["webhook_url"]
        if webhook_url:
            await self._send_webhook(job, webhook_url)

    async def _fetch_references(self, job: FakeJob) -> str | None:
        assert self._session is not None
        problem = None
        for url in job.request["reference_urls"]:
            try:
                async with self._session.get(url) as response:
                    data = await response.read()
                    self.reference_fetches.append(ReferenceFetch(job.job_id, url, response.status, len(data)))
                    if response.status != 200 and problem is None:
                        problem = f"reference fetch got HTTP {response.status}"
            except aiohttp.ClientError as error:
                self.reference_fetches.append(ReferenceFetch(job.job_id, url, None, 0))
                problem = problem or f"reference fetch failed: {error}"
        return problem

    async def _send_webhook(self, job: FakeJob, url: str) -> None:
        assert self._session is not None
        raw_body = json.dumps(job.answer()).encode()
        record = WebhookRecord(job.job_id, url, raw_body, self.webhook_headers(raw_body))
        self.webhooks.append(record)
        try:
            async with self._session.post(url, data=raw_body, headers=record.headers) as response:
                record.status = response.status
        except aiohttp.ClientError as error:
            record.error = f"{type(error).__name__}: {error}"
        self._changed.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
