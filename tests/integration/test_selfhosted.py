"""SelfHostedProvider against FakeGenerator over real HTTP on 127.0.0.1 (docs/generator.md).

The selfies are served by the app's own signed ``GET /files/{key}`` handler (bot/web.py) over a local
file store, so every create here also proves the generator can read the links the client makes.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.web import SIGNED_FILES_PATH, signed_files
from providers.base import (
    BadSignatureError,
    GenerationOptions,
    ImageProvider,
    MalformedCallbackError,
    PermanentProviderError,
    RateLimitedError,
    RetryableProviderError,
    TaskNotFoundError,
    TaskState,
)
from providers.selfhosted import SelfHostedProvider, job_to_result, size_for_aspect, webhook_signature
from storage.files import LocalFileStore, SignedFileUrls
from tests.fakes.generator import FakeGenerator, Outcome, sign_body

SECRET = b"a-test-file-url-secret-of-32-bytes!"
SELFIE_KEY = "refs/1/1/selfie.jpg"
SELFIE = b"\xff\xd8\xff\xe0 not really a jpeg, the fake only fetches it"


@dataclass
class FileServer:
    links: SignedFileUrls
    store: LocalFileStore


@pytest_asyncio.fixture
async def file_server(tmp_path: Path) -> AsyncIterator[FileServer]:
    store = LocalFileStore(tmp_path / "files")
    await store.put(SELFIE_KEY, SELFIE)

    async def serve_any(key: str) -> bool:
        return True

    app = web.Application()
    app.router.add_get(SIGNED_FILES_PATH, signed_files(links=SignedFileUrls(SECRET), files=store, may_serve=serve_any))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield FileServer(SignedFileUrls(SECRET, f"http://127.0.0.1:{port}"), store)
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeGenerator]:
    async with FakeGenerator(latency=(0.01, 0.03)) as server:
        yield server


def make_provider(fake: FakeGenerator, files: FileServer, **overrides: Any) -> SelfHostedProvider:
    settings: dict[str, Any] = {
        "reference_links": files.links.url_for,
        "webhook_secret": fake.webhook_secret,
        "timeout": 5.0,
    }
    settings.update(overrides)
    return SelfHostedProvider(fake.url, fake.token, **settings)


async def _wait_terminal(fake: FakeGenerator, job_id: str) -> None:
    await fake.wait_for(lambda: fake.jobs[job_id].status in ("completed", "failed"))


async def test_a_create_reads_the_selfie_through_a_signed_link_and_the_result_downloads(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    provider = make_provider(fake, file_server)
    assert isinstance(provider, ImageProvider)
    try:
        link = await provider.upload_reference(SELFIE, "job1-ref0.jpg", stored_key=SELFIE_KEY)
        assert "/files/refs/1/1/selfie.jpg?exp=" in link and "&sig=" in link
        job_id = await provider.create_task("a portrait", [link], GenerationOptions(seed=7), None)
        await _wait_terminal(fake, job_id)
        result = await provider.get_task(job_id)
        assert result.state is TaskState.SUCCEEDED and len(result.image_urls) == 1
        image = await provider.download(result.image_urls[0])
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        await provider.aclose()
    assert fake.rejections == []
    body = fake.jobs[job_id].request
    assert body["seed"] == 7 and body["webhook_url"] is None and (body["width"], body["height"]) == (768, 1024)
    assert [(fetch.url, fetch.status, fetch.size) for fetch in fake.reference_fetches] == [(link, 200, len(SELFIE))]


async def test_a_reference_link_that_does_not_verify_fails_the_job_at_the_generator(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    provider = make_provider(fake, file_server)
    try:
        link = await provider.upload_reference(SELFIE, "x.jpg", stored_key=SELFIE_KEY)
        forged = link[: -len("0000")] + "0000"
        job_id = await provider.create_task("a portrait", [forged], GenerationOptions(), None)
        await _wait_terminal(fake, job_id)
        result = await provider.get_task(job_id)
    finally:
        await provider.aclose()
    assert result.state is TaskState.FAILED and "403" in (result.error or "")
    assert fake.reference_fetches[0].status == 403


async def test_upload_without_a_stored_key_and_telegram_urls_are_refused_before_any_call(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    provider = make_provider(fake, file_server)
    try:
        with pytest.raises(PermanentProviderError):
            await provider.upload_reference(SELFIE, "x.jpg")
        with pytest.raises(PermanentProviderError, match="Telegram"):
            await provider.create_task(
                "a portrait", ["https://api.telegram.org/file/bot123:abc/photo.jpg"], GenerationOptions(), None
            )
        with pytest.raises(PermanentProviderError, match="aspect"):
            await provider.create_task("a portrait", [], GenerationOptions(aspect_ratio="auto"), None)
    finally:
        await provider.aclose()
    assert fake.generate_calls == []


async def test_webhook_url_is_sent_only_when_webhooks_can_be_verified(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    signed = make_provider(fake, file_server)
    unsigned = make_provider(fake, file_server, webhook_secret=None)
    try:
        await signed.create_task(
            "a portrait", [], GenerationOptions(), "http://127.0.0.1:9/providers/selfhosted/webhook"
        )
        await unsigned.create_task("a portrait", [], GenerationOptions(), "http://127.0.0.1:9/hook")
    finally:
        await signed.aclose()
        await unsigned.aclose()
    assert [call["webhook_url"] for call in fake.generate_calls] == [
        "http://127.0.0.1:9/providers/selfhosted/webhook",
        None,
    ]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, PermanentProviderError),
        (403, PermanentProviderError),
        (422, PermanentProviderError),
        (500, RetryableProviderError),
        (503, RetryableProviderError),
    ],
)
async def test_create_errors_are_classified(
    fake: FakeGenerator, file_server: FileServer, status: int, error_type: type[Exception]
) -> None:
    provider = make_provider(fake, file_server)
    fake.inject(status, endpoint="generate")
    try:
        with pytest.raises(error_type) as raised:
            await provider.create_task("a portrait", [], GenerationOptions(), None)
    finally:
        await provider.aclose()
    assert type(raised.value) is error_type
    assert fake.jobs == {}


async def test_429_honours_retry_after_and_a_wrong_token_is_permanent(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    provider = make_provider(fake, file_server)
    wrong = SelfHostedProvider(fake.url, "not-the-token", reference_links=file_server.links.url_for, timeout=5.0)
    fake.inject(429, endpoint="generate", retry_after=7)
    try:
        with pytest.raises(RateLimitedError) as limited:
            await provider.create_task("a portrait", [], GenerationOptions(), None)
        with pytest.raises(PermanentProviderError) as refused:
            await wrong.create_task("a portrait", [], GenerationOptions(), None)
    finally:
        await provider.aclose()
        await wrong.aclose()
    assert limited.value.retry_after == 7
    assert refused.value.status == 401


async def test_status_errors_unknown_jobs_and_network_failures(fake: FakeGenerator, file_server: FileServer) -> None:
    provider = make_provider(fake, file_server)
    try:
        with pytest.raises(TaskNotFoundError):
            await provider.get_task("gen-nope")
        job_id = await provider.create_task("a portrait", [], GenerationOptions(), None)
        fake.inject(502, endpoint="status")
        with pytest.raises(RetryableProviderError):
            await provider.get_task(job_id)
        fake.inject(429, endpoint="status", retry_after=2)
        with pytest.raises(RateLimitedError):
            await provider.get_task(job_id)
    finally:
        await provider.aclose()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    nowhere = SelfHostedProvider(closed_url, "token", reference_links=file_server.links.url_for, timeout=2.0)
    try:
        with pytest.raises(RetryableProviderError):
            await nowhere.create_task("a portrait", [], GenerationOptions(), None)
    finally:
        await nowhere.aclose()


def test_status_answers_map_onto_task_results() -> None:
    assert job_to_result("j", {"status": "queued"}).state is TaskState.QUEUED
    assert job_to_result("j", {"status": "processing"}).state is TaskState.RUNNING
    done = job_to_result("j", {"status": "completed", "result_url": "http://gen/r.png", "processing_time_ms": 5})
    assert done.state is TaskState.SUCCEEDED and done.image_urls == ("http://gen/r.png",)
    empty = job_to_result("j", {"status": "completed", "result_url": None})
    assert empty.state is TaskState.FAILED and empty.retryable
    failed = job_to_result("j", {"status": "failed", "error": "CUDA out of memory"})
    assert failed.state is TaskState.FAILED and failed.error == "CUDA out of memory" and failed.retryable
    with pytest.raises(ValueError):
        job_to_result("j", {"status": "done"})
    assert size_for_aspect("3:4") == (768, 1024) and size_for_aspect("1:1") == (1024, 1024)


async def test_a_signed_webhook_is_verified_then_the_job_is_fetched_again(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    provider = make_provider(fake, file_server)
    fake.hold_next(1)
    try:
        job_id = await provider.create_task("a portrait", [], GenerationOptions(), None)
        # The body claims success; the generator says the job is still running: the re-fetch wins.
        claim = json.dumps({"job_id": job_id, "status": "completed", "result_url": "http://evil/x.png"}).encode()
        headers = fake.webhook_headers(claim)
        assert await provider.callback_task_id(headers, claim) == job_id
        calls_before = len(fake.status_calls)
        result = await provider.parse_callback(headers, claim)
        assert result.state in (TaskState.QUEUED, TaskState.RUNNING)
        assert len(fake.status_calls) == calls_before + 1
        unknown = json.dumps({"job_id": "gen-unknown", "status": "completed"}).encode()
        with pytest.raises(BadSignatureError):
            await provider.parse_callback(fake.webhook_headers(unknown), unknown)
    finally:
        fake.finish(job_id)
        await provider.aclose()


async def test_forged_stale_and_malformed_webhooks_are_refused_without_a_call(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    now = 1_800_000_000.0
    provider = make_provider(fake, file_server, wall_clock=lambda: now)
    body = json.dumps({"job_id": "gen-1", "status": "completed"}).encode()
    good = {"X-Signature": sign_body(fake.webhook_secret, body), "X-Timestamp": str(int(now))}
    assert good["X-Signature"] == webhook_signature(fake.webhook_secret, body)
    assert await provider.callback_task_id(good, body) == "gen-1"
    assert await provider.callback_task_id({k.lower(): v for k, v in good.items()}, body) == "gen-1"
    refused = {
        "another key": {**good, "X-Signature": sign_body("another-secret", body)},
        "no signature": {"X-Timestamp": good["X-Timestamp"]},
        "no timestamp": {"X-Signature": good["X-Signature"]},
        "too old": {**good, "X-Timestamp": str(int(now) - 301)},
        "too new": {**good, "X-Timestamp": str(int(now) + 301)},
        "not seconds": {**good, "X-Timestamp": "yesterday"},
        "bare hex": {**good, "X-Signature": good["X-Signature"].removeprefix("sha256=")},
    }
    for name, headers in refused.items():
        with pytest.raises(BadSignatureError):
            await provider.callback_task_id(headers, body)
        assert name
    with pytest.raises(BadSignatureError):
        await provider.callback_task_id(good, body + b" ")  # the body changed after signing
    assert await provider.callback_task_id({**good, "X-Timestamp": str(int(now) - 300)}, body) == "gen-1"
    not_json = b"not json"
    with pytest.raises(MalformedCallbackError):
        await provider.callback_task_id({**good, "X-Signature": sign_body(fake.webhook_secret, not_json)}, not_json)
    no_id = b'{"status": "completed"}'
    with pytest.raises(MalformedCallbackError):
        await provider.callback_task_id({**good, "X-Signature": sign_body(fake.webhook_secret, no_id)}, no_id)
    unverifiable = make_provider(fake, file_server, webhook_secret=None, wall_clock=lambda: now)
    with pytest.raises(BadSignatureError):
        await unverifiable.callback_task_id(good, body)
    await provider.aclose()
    await unverifiable.aclose()
    assert fake.status_calls == []


async def test_the_fake_sends_signed_webhooks_and_fails_jobs_on_demand(
    fake: FakeGenerator, file_server: FileServer
) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.json_response({"status": 200})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    hook_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
    provider = make_provider(fake, file_server, wall_clock=time.time)
    fake.queue_outcomes(Outcome("fail", "worker restarted"))
    try:
        job_id = await provider.create_task("a portrait", [], GenerationOptions(), hook_url)
        await fake.wait_idle()
        raw, headers = received[0]
        result = await provider.parse_callback(headers, raw)
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert result.provider_task_id == job_id and result.state is TaskState.FAILED
    assert result.error == "worker restarted" and result.retryable
