"""The real KieProvider against FakeKie over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from providers.base import (
    BadSignatureError,
    GenerationOptions,
    ImageProvider,
    InsufficientBalanceError,
    PermanentProviderError,
    ProviderError,
    RateLimit,
    RateLimitedError,
    RetryableProviderError,
    TaskNotFoundError,
    TaskResult,
    TaskState,
)
from providers.http import USER_AGENT, DownloadPolicy
from providers.kie import KieProvider, kie_webhook_signature
from providers.ratelimit import SlidingWindowLimiter
from tests.fakes.kie import FakeKie, Outcome, kie_signature
from tests.support.capture import OutgoingRequestCapture

HMAC_KEY = "test-hmac-key"
MODEL = "nano-banana-2"
PROMPT = "studio headshot of the person in the photo, soft light"
TELEGRAM_FILE_URL = "https://api.telegram.org/file/bot123456:AAF-secret-token/photos/file_1.jpg"


# ---------------------------------------------------------------------- fixtures and helpers


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeKie]:
    async with FakeKie(hmac_key=HMAC_KEY, latency=(0.01, 0.03), image_size=(512, 640)) as server:
        yield server


LOCAL_FAKES = DownloadPolicy(allow_loopback=True)


def make_provider(fake: FakeKie, model: str = MODEL, **overrides: Any) -> KieProvider:
    # The fake serves results over http on 127.0.0.1, which only a loopback-allowing policy fetches.
    arguments: dict[str, Any] = {"hmac_key": HMAC_KEY, "timeout": 5.0, "download_policy": LOCAL_FAKES, **overrides}
    return KieProvider(fake.api_key, fake.url, fake.url, model, **arguments)


@pytest_asyncio.fixture
async def provider(fake: FakeKie) -> AsyncIterator[KieProvider]:
    client = make_provider(fake)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def capture() -> AsyncIterator[OutgoingRequestCapture]:
    """Where the fake posts its callbacks: a capture of its outgoing requests, not our endpoint."""
    async with OutgoingRequestCapture() as outgoing:
        yield outgoing


def reference_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), (200, 150, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


async def poll_until_terminal(provider: ImageProvider, task_id: str, within_seconds: float = 5.0) -> TaskResult:
    async with asyncio.timeout(within_seconds):
        while True:
            result = await provider.get_task(task_id)
            if result.terminal:
                return result
            await asyncio.sleep(0.005)


async def create_one(provider: KieProvider, callback_url: str | None = None) -> str:
    reference_url = await provider.upload_reference(reference_png(), "selfie.png")
    return await provider.create_task(PROMPT, [reference_url], GenerationOptions(), callback_url)


def signed_headers(task_id: str, timestamp: int) -> dict[str, str]:
    return {
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": kie_webhook_signature(HMAC_KEY, task_id, str(timestamp)),
    }


# ---------------------------------------------------------------------- the happy path


async def test_upload_create_poll_download_returns_a_png(fake: FakeKie, provider: KieProvider) -> None:
    assert isinstance(provider, ImageProvider)
    reference_url = await provider.upload_reference(reference_png(), "selfie.png")
    assert reference_url.startswith(f"{fake.url}/files/uploads/pinglass/refs/")
    task_id = await provider.create_task(PROMPT, [reference_url], GenerationOptions(), None)

    states: list[TaskState] = []
    async with asyncio.timeout(5):
        while True:
            result = await provider.get_task(task_id)
            states.append(result.state)
            if result.terminal:
                break
            await asyncio.sleep(0.002)
    assert result.state is TaskState.SUCCEEDED
    assert states[0] in (TaskState.QUEUED, TaskState.RUNNING)
    assert len(result.image_urls) == 1
    complete_time_ms = fake.tasks[task_id].complete_time_ms
    assert complete_time_ms is not None
    assert result.finished_at == datetime.fromtimestamp(complete_time_ms / 1000, UTC)  # recordInfo's completeTime

    image_bytes = await provider.download(result.image_urls[0])
    assert image_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(image_bytes)) as image:
        assert image.size == (512, 640)

    create = fake.creates[-1]
    assert create.code == 200
    assert create.input == {
        "prompt": PROMPT,
        "image_input": [reference_url],
        "aspect_ratio": "3:4",
        "output_format": "png",
        "resolution": "1K",
        "google_search": False,
    }
    assert "callBackUrl" not in create.payload  # only sent when a callback URL is given
    assert fake.uploads[0].upload_path == "pinglass/refs"
    api_requests = [request for request in fake.requests if request.path.startswith("/api/")]
    assert {request.user_agent for request in api_requests} == {USER_AGENT}
    assert {request.authorization for request in api_requests} == {f"Bearer {fake.api_key}"}
    # Result files live on other hosts in production: they must never see the API key.
    file_requests = [request for request in fake.requests if request.path.startswith("/files/")]
    assert file_requests and all(request.authorization is None for request in file_requests)
    assert not any("/file/bot" in url for url in fake.input_urls)


async def test_each_result_image_is_distinct(fake: FakeKie, provider: KieProvider) -> None:
    task_ids = [await create_one(provider) for _ in range(2)]
    results = [await poll_until_terminal(provider, task_id) for task_id in task_ids]
    images = [await provider.download(result.image_urls[0]) for result in results]
    assert images[0] != images[1]


async def test_upload_names_are_unique(fake: FakeKie, provider: KieProvider) -> None:
    first = await provider.upload_reference(reference_png(), "selfie.png")
    second = await provider.upload_reference(b"other bytes", "selfie.png")
    assert first != second
    assert [upload.data for upload in fake.uploads] == [reference_png(), b"other bytes"]
    assert all(upload.file_name.endswith("-selfie.png") for upload in fake.uploads)


async def test_get_credits(fake: FakeKie, provider: KieProvider) -> None:
    fake.balance = 42.5
    assert await provider.get_credits() == 42.5


# ---------------------------------------------------------------------- callbacks


async def test_parse_callback_verifies_the_fakes_signed_callback_and_refetches_the_task(
    fake: FakeKie, provider: KieProvider, capture: OutgoingRequestCapture
) -> None:
    task_id = await create_one(provider, callback_url=capture.url)
    assert fake.creates[-1].payload["callBackUrl"] == capture.url
    [sent] = await capture.wait_for(1)
    assert fake.record_info_calls == []  # nothing polled, and the callback is not yet parsed

    result = await provider.parse_callback(sent.headers, sent.body)

    assert result.state is TaskState.SUCCEEDED
    assert result.provider_task_id == task_id
    assert result.image_urls == tuple(fake.tasks[task_id].result_urls)
    # The recordInfo call is parse_callback's re-fetch: the body's own claims are not trusted.
    assert fake.record_info_calls == [task_id]


async def test_parse_callback_reads_duplicate_callbacks_as_the_same_result(provider: KieProvider) -> None:
    async with (
        OutgoingRequestCapture() as capture,
        FakeKie(hmac_key=HMAC_KEY, latency=(0.005, 0.01), duplicate_callbacks=1) as duplicating_fake,
    ):
        client = make_provider(duplicating_fake)
        try:
            task_id = await create_one(client, callback_url=capture.url)
            sent = await capture.wait_for(2)
            results = [await client.parse_callback(request.headers, request.body) for request in sent]
        finally:
            await client.aclose()
    assert [record.kind for record in duplicating_fake.callbacks] == ["genuine", "duplicate"]
    assert [result.provider_task_id for result in results] == [task_id, task_id]
    assert {result.state for result in results} == {TaskState.SUCCEEDED}


async def test_parse_callback_reads_a_failed_tasks_callback_as_retryable_failure(
    fake: FakeKie, provider: KieProvider, capture: OutgoingRequestCapture
) -> None:
    fake.queue_outcomes(Outcome("fail", fail_code="500", fail_msg="internal error, please try again later."))
    await create_one(provider, callback_url=capture.url)
    [sent] = await capture.wait_for(1)
    assert fake.callbacks[0].body["data"]["state"] == "fail"
    result = await provider.parse_callback(sent.headers, sent.body)
    assert result.state is TaskState.FAILED
    assert result.retryable is True


@pytest.mark.parametrize("forgery", ["bad_signature", "stale_timestamp", "unsigned", "unknown_task"])
async def test_parse_callback_refuses_forged_callbacks(
    fake: FakeKie, provider: KieProvider, capture: OutgoingRequestCapture, forgery: Any
) -> None:
    """What the app's endpoint answers them (401, nothing changes) is test_engine_faults'
    test_forged_kie_callbacks_are_refused_at_the_endpoint_and_change_nothing."""
    fake.queue_outcomes(Outcome("stuck", latency=0.001))
    task_id = await create_one(provider)  # no callback_url: only the forgery arrives
    record_info_before = len(fake.record_info_calls)

    await fake.send_forged_callback(task_id, forgery, url=capture.url)
    [sent] = capture.requests

    with pytest.raises(BadSignatureError):
        await provider.parse_callback(sent.headers, sent.body)
    if forgery != "unknown_task":
        # Refused on the signature alone: no re-fetch was spent on it.
        assert len(fake.record_info_calls) == record_info_before
    else:
        # Signed, but for a task Kie does not know: the re-fetch is what finds it out.
        assert len(fake.record_info_calls) == record_info_before + 1


async def test_parse_callback_reports_running_for_a_signed_callback_claiming_success_too_early(
    fake: FakeKie, provider: KieProvider, capture: OutgoingRequestCapture
) -> None:
    fake.queue_outcomes(Outcome("stuck", latency=0.001))
    task_id = await create_one(provider)
    await fake.wait_for(lambda: fake.tasks[task_id].state(time.monotonic()) == "generating")

    await fake.send_forged_callback(task_id, "premature_success", url=capture.url)
    [sent] = capture.requests
    result = await provider.parse_callback(sent.headers, sent.body)

    assert fake.callbacks[-1].body["data"]["state"] == "success"  # the body lies...
    assert result.state is TaskState.RUNNING  # ...the re-fetch does not
    assert result.image_urls == ()


async def test_without_hmac_key_callbacks_are_still_refetched(fake: FakeKie) -> None:
    client = make_provider(fake, hmac_key=None)
    try:
        fake.queue_outcomes(Outcome("stuck", latency=0.001))
        task_id = await create_one(client)
        body = json.dumps({"code": 200, "data": {"taskId": task_id, "state": "success"}}).encode()
        result = await client.parse_callback({}, body)
    finally:
        await client.aclose()
    assert result.state in (TaskState.QUEUED, TaskState.RUNNING)


def test_signature_matches_the_contract_test_vector() -> None:
    expected = "dfkgwe9iCxbV8+98u1VXE65Y2CXpfKj3fe/TRH5TLUg="
    assert kie_webhook_signature("test-hmac-key", "task_google_1765178615729", "1765180634") == expected
    # The fake signs with its own implementation: both must agree with the vector.
    assert kie_signature("test-hmac-key", "task_google_1765178615729", "1765180634") == expected


async def test_signature_vector_verifies_at_its_own_time(fake: FakeKie) -> None:
    """The contract's vector through parse_callback, with the clock pinned near the vector's timestamp."""
    fake.queue_outcomes(Outcome("stuck", latency=1.0))
    on_time = make_provider(fake, wall_clock=lambda: 1765180634.0 + 299)
    too_late = make_provider(fake, wall_clock=lambda: 1765180634.0 + 301)
    try:
        task_id = await create_one(on_time)
        # Lower-case header names on purpose: a plain dict must be read case-insensitively.
        headers = {
            "x-webhook-timestamp": "1765180634",
            "x-webhook-signature": kie_webhook_signature(HMAC_KEY, task_id, "1765180634"),
        }
        body = json.dumps({"data": {"taskId": task_id}}).encode()
        assert (await on_time.parse_callback(headers, body)).provider_task_id == task_id
        with pytest.raises(BadSignatureError, match="window"):
            await too_late.parse_callback(headers, body)
    finally:
        await on_time.aclose()
        await too_late.aclose()


@pytest.mark.parametrize("offset_seconds", [-301, 301, -3600])
async def test_timestamps_outside_five_minutes_are_rejected(
    fake: FakeKie, provider: KieProvider, offset_seconds: int
) -> None:
    task_id = await create_one(provider)
    headers = signed_headers(task_id, int(time.time()) + offset_seconds)
    with pytest.raises(BadSignatureError):
        await provider.parse_callback(headers, json.dumps({"data": {"taskId": task_id}}).encode())


async def test_millisecond_timestamps_are_aged_correctly(fake: FakeKie, provider: KieProvider) -> None:
    task_id = await create_one(provider)
    body = json.dumps({"data": {"taskId": task_id}}).encode()
    fresh = await provider.parse_callback(signed_headers(task_id, int(time.time() * 1000)), body)
    assert fresh.provider_task_id == task_id
    with pytest.raises(BadSignatureError):
        await provider.parse_callback(signed_headers(task_id, int((time.time() - 400) * 1000)), body)


@pytest.mark.parametrize(
    "body_for",
    [
        lambda task_id: {"data": {"taskId": task_id}},
        lambda task_id: {"data": {"task_id": task_id}},
        lambda task_id: {"taskId": task_id, "data": None},
    ],
    ids=["data.taskId", "data.task_id", "top-level taskId"],
)
async def test_task_id_is_found_in_every_documented_place(fake: FakeKie, provider: KieProvider, body_for: Any) -> None:
    task_id = await create_one(provider)
    result = await provider.parse_callback(
        signed_headers(task_id, int(time.time())), json.dumps(body_for(task_id)).encode()
    )
    assert result.provider_task_id == task_id


@pytest.mark.parametrize("raw_body", [b"not json", b"[1, 2]", b'{"data": {}}', b"\xff\xfe"])
async def test_malformed_callbacks_are_bad_signatures(provider: KieProvider, raw_body: bytes) -> None:
    with pytest.raises(BadSignatureError):
        await provider.parse_callback(signed_headers("task_x", int(time.time())), raw_body)


# ---------------------------------------------------------------------- rate limit


async def test_limiter_sized_from_limits_keeps_25_concurrent_creates_free_of_429() -> None:
    async with FakeKie(create_limit=20, create_window_seconds=1.0, latency=(0.01, 0.02)) as fake:
        probe = make_provider(fake)
        assert probe.limits.create == RateLimit(20, 10.0)
        # Same budget, window compressed 10x so the test runs in ~1 s.
        compressed = RateLimit(probe.limits.create.max_calls, 1.0)
        await probe.aclose()
        limiter = SlidingWindowLimiter(compressed.max_calls, compressed.period_seconds)
        client = make_provider(fake, create_limiter=limiter)
        try:
            reference_url = await client.upload_reference(reference_png(), "selfie.png")
            task_ids = await asyncio.gather(
                *(client.create_task(PROMPT, [reference_url], GenerationOptions(), None) for _ in range(25))
            )
        finally:
            await client.aclose()
    assert fake.rate_limited_count == 0
    assert len(set(task_ids)) == 25
    assert len(fake.tasks) == 25


async def test_without_limiter_the_fake_drops_excess_creates_with_429() -> None:
    # A window far longer than the burst: on a busy machine 25 requests can take more than a second to send,
    # and the first ones would leave a 1 s window before the last ones arrive.
    async with FakeKie(create_limit=20, create_window_seconds=60.0, latency=(0.01, 0.02)) as fake:
        client = make_provider(fake)
        try:
            reference_url = await client.upload_reference(reference_png(), "selfie.png")
            outcomes = await asyncio.gather(
                *(client.create_task(PROMPT, [reference_url], GenerationOptions(), None) for _ in range(25)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()
    rate_limited = [outcome for outcome in outcomes if isinstance(outcome, RateLimitedError)]
    assert len(rate_limited) == 5
    assert all(error.retryable and error.status == 429 for error in rate_limited)
    assert fake.rate_limited_count == 5
    assert len(fake.tasks) == 20  # dropped, not queued


# ---------------------------------------------------------------------- task outcomes


@pytest.mark.parametrize(
    ("fail_code", "fail_msg", "retryable", "error_part"),
    [
        ("500", "internal error, please try again later.", True, "internal error"),
        (501, None, True, "501"),
        ("", "", True, "generation failed"),
        (None, None, True, "generation failed"),
        ("400", "Your request was flagged by our safety system", False, "flagged"),
        (None, "The prompt contains sensitive content", False, "sensitive"),
        ("422", "image could not be processed", False, "422"),
    ],
)
async def test_failed_task_is_failed_with_error(
    fake: FakeKie, provider: KieProvider, fail_code: Any, fail_msg: Any, retryable: bool, error_part: str
) -> None:
    fake.queue_outcomes(Outcome("fail", fail_code=fail_code, fail_msg=fail_msg))
    result = await poll_until_terminal(provider, await create_one(provider))
    assert result.state is TaskState.FAILED
    assert result.retryable is retryable
    assert result.error is not None and error_part in result.error
    assert result.image_urls == ()


async def test_unknown_task_is_task_not_found(provider: KieProvider) -> None:
    with pytest.raises(TaskNotFoundError):
        await provider.get_task("task_google_does_not_exist")


async def test_result_json_as_object_and_message_key_are_tolerated() -> None:
    async with FakeKie(latency=(0.005, 0.01), result_json_as_object=True, message_key="message") as fake:
        client = make_provider(fake)
        try:
            result = await poll_until_terminal(client, await create_one(client))
            with pytest.raises(TaskNotFoundError, match="recordInfo is null"):
                await client.get_task("nope")
        finally:
            await client.aclose()
    assert result.state is TaskState.SUCCEEDED
    assert result.image_urls == tuple(fake.tasks[result.provider_task_id].result_urls)


async def test_stuck_task_stays_running(fake: FakeKie, provider: KieProvider) -> None:
    fake.queue_outcomes(Outcome("stuck", latency=0.01))
    task_id = await create_one(provider)
    await asyncio.sleep(0.05)
    assert (await provider.get_task(task_id)).state is TaskState.RUNNING


# ---------------------------------------------------------------------- error mapping


@pytest.mark.parametrize("mirror_http_status", [False, True], ids=["http-200", "http-mirrors-code"])
@pytest.mark.parametrize(
    ("code", "msg", "expected_type", "retryable"),
    [
        (401, None, PermanentProviderError, False),
        (403, "Forbidden", PermanentProviderError, False),
        (402, None, InsufficientBalanceError, False),
        (422, "input.aspect_ratio must be one of ...", PermanentProviderError, False),
        (429, None, RateLimitedError, True),
        (433, None, RateLimitedError, True),
        (408, None, RetryableProviderError, True),
        (455, None, RetryableProviderError, True),
        (500, None, RetryableProviderError, True),
        (500, "This field is required", PermanentProviderError, False),
        (501, None, RetryableProviderError, True),
        (505, None, PermanentProviderError, False),
    ],
)
async def test_envelope_codes_map_to_typed_errors(
    fake: FakeKie,
    provider: KieProvider,
    code: int,
    msg: str | None,
    expected_type: type[ProviderError],
    retryable: bool,
    mirror_http_status: bool,
) -> None:
    reference_url = await provider.upload_reference(reference_png(), "selfie.png")
    fake.inject_error(code, endpoint="createTask", msg=msg, http_status=code if mirror_http_status else 200)
    with pytest.raises(expected_type) as caught:
        await provider.create_task(PROMPT, [reference_url], GenerationOptions(), None)
    assert type(caught.value) is expected_type
    assert caught.value.retryable is retryable
    assert caught.value.status == code
    assert not isinstance(caught.value, TaskNotFoundError)


@pytest.mark.parametrize("error_http_status", [200, None], ids=["http-200", "http-401"])
async def test_wrong_api_key_is_permanent_auth_error(error_http_status: int | None) -> None:
    async with FakeKie(error_http_status=error_http_status) as fake:
        await _assert_wrong_key_is_permanent(fake)


async def _assert_wrong_key_is_permanent(fake: FakeKie) -> None:
    client = KieProvider("wrong-key", fake.url, fake.url, MODEL, timeout=5.0)
    try:
        with pytest.raises(PermanentProviderError, match="401") as caught:
            await client.get_task("task_x")
        assert not caught.value.retryable
        with pytest.raises(PermanentProviderError, match="401"):
            await client.upload_reference(reference_png(), "selfie.png")
    finally:
        await client.aclose()


async def test_insufficient_balance_is_reported() -> None:
    async with FakeKie(balance=2, latency=(0.005, 0.01)) as fake:
        client = make_provider(fake)
        try:
            await create_one(client)
            await create_one(client)
            with pytest.raises(InsufficientBalanceError):
                await create_one(client)
            assert await client.get_credits() == 0
        finally:
            await client.aclose()
    assert len(fake.tasks) == 2


async def test_cloudflare_1010_is_retryable_not_auth(fake: FakeKie, provider: KieProvider) -> None:
    fake.inject_cloudflare_block(endpoint="recordInfo")
    with pytest.raises(RetryableProviderError, match="1010"):
        await provider.get_task("task_x")
    # The fake's bot check is real: a library-default User-Agent gets the same 403.
    async with httpx.AsyncClient() as raw_client:
        response = await raw_client.get(f"{fake.url}/api/v1/chat/credit", headers={"Authorization": "Bearer x"})
    assert (response.status_code, response.text) == (403, "error code: 1010")


async def test_outage_is_retryable(fake: FakeKie, provider: KieProvider) -> None:
    reference_url = await provider.upload_reference(reference_png(), "selfie.png")
    fake.outage = True
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: provider.create_task(PROMPT, [reference_url], GenerationOptions(), None),
        lambda: provider.get_task("task_x"),
        lambda: provider.upload_reference(reference_png(), "selfie.png"),
        lambda: provider.download(reference_url),
    ]
    for call in calls:
        with pytest.raises(RetryableProviderError):
            await call()
    fake.outage = False

    await fake.refuse_connections()
    with pytest.raises(RetryableProviderError):
        await provider.get_task("task_x")
    await fake.accept_connections()
    with pytest.raises(TaskNotFoundError):  # reachable again
        await provider.get_task("task_x")


async def test_slow_answers_time_out_as_retryable(fake: FakeKie) -> None:
    client = make_provider(fake, timeout=0.1)
    fake.response_delay_seconds = 0.5
    try:
        with pytest.raises(RetryableProviderError, match="timed out"):
            await client.get_task("task_x")
    finally:
        await client.aclose()


async def test_non_json_error_pages_are_mapped_by_http_status(fake: FakeKie, provider: KieProvider) -> None:
    fake.inject_error(502, endpoint="recordInfo", http_status=502, raw_text="<html>Bad Gateway</html>")
    with pytest.raises(RetryableProviderError):
        await provider.get_task("task_x")


# ---------------------------------------------------------------------- downloads


async def test_expired_result_url_is_permanent() -> None:
    async with FakeKie(latency=(0.005, 0.01), result_ttl_seconds=0.05) as fake:
        client = make_provider(fake)
        try:
            result = await poll_until_terminal(client, await create_one(client))
            await asyncio.sleep(0.1)
            with pytest.raises(PermanentProviderError, match="404"):
                await client.download(result.image_urls[0])
        finally:
            await client.aclose()


async def test_download_size_cap(fake: FakeKie) -> None:
    client = make_provider(fake, max_download_bytes=10_000)
    try:
        result = await poll_until_terminal(client, await create_one(client))
        with pytest.raises(PermanentProviderError, match="larger than"):
            await client.download(result.image_urls[0])
    finally:
        await client.aclose()


# ---------------------------------------------------------------------- per-model input


@pytest.mark.parametrize(
    ("model", "options", "expected_input"),
    [
        (
            "google/nano-banana-edit",
            GenerationOptions(output_format="jpeg"),
            {"image_urls": ..., "aspect_ratio": "3:4", "output_format": "jpeg"},
        ),
        (
            "nano-banana-pro",
            GenerationOptions(aspect_ratio="4:5", output_format="jpeg"),
            {"image_input": ..., "aspect_ratio": "4:5", "resolution": "1K", "output_format": "jpg"},
        ),
        (
            "nano-banana-2",
            GenerationOptions(),
            {
                "image_input": ...,
                "aspect_ratio": "3:4",
                "resolution": "1K",
                "output_format": "png",
                "google_search": False,
            },
        ),
        (
            "seedream/4.5-edit",
            GenerationOptions(),
            {"image_urls": ..., "aspect_ratio": "3:4", "quality": "basic"},
        ),
        (
            "bytedance/seedream-v4-edit",
            GenerationOptions(seed=7),
            {
                "image_urls": ...,
                "image_size": "portrait_4_3",
                "image_resolution": "1K",
                "max_images": 1,
                "seed": 7,
            },
        ),
        (
            "flux-2/pro-image-to-image",
            GenerationOptions(),
            {"input_urls": ..., "aspect_ratio": "3:4", "resolution": "1K"},
        ),
    ],
)
async def test_model_field_table(
    fake: FakeKie, model: str, options: GenerationOptions, expected_input: dict[str, Any]
) -> None:
    client = make_provider(fake, model=model)
    try:
        reference_url = await client.upload_reference(reference_png(), "selfie.png")
        task_id = await client.create_task(PROMPT, [reference_url], options, None)
        result = await poll_until_terminal(client, task_id)
    finally:
        await client.aclose()
    expected = {
        "prompt": PROMPT,
        **{key: [reference_url] if value is ... else value for key, value in expected_input.items()},
    }
    assert fake.creates[-1].input == expected
    assert fake.creates[-1].model == model
    assert result.state is TaskState.SUCCEEDED


async def test_fake_rejects_the_wrong_image_field(fake: FakeKie) -> None:
    """Why the table test means something: the strict fake refuses nano-banana-pro with image_urls."""
    body = {"model": "nano-banana-pro", "input": {"prompt": PROMPT, "image_urls": [f"{fake.url}/files/x"]}}
    async with httpx.AsyncClient(headers={"User-Agent": USER_AGENT}) as raw_client:
        response = await raw_client.post(
            f"{fake.url}/api/v1/jobs/createTask",
            json=body,
            headers={"Authorization": f"Bearer {fake.api_key}"},
        )
    assert response.status_code == 200
    assert response.json()["code"] == 422
    assert fake.tasks == {}


async def test_unsupported_options_fail_before_spending_budget(fake: FakeKie) -> None:
    limiter = SlidingWindowLimiter(1, 60.0)
    client = make_provider(fake, model="seedream/4.5-edit", create_limiter=limiter)
    try:
        with pytest.raises(PermanentProviderError, match="aspect ratio"):
            await client.create_task(PROMPT, ["https://example.com/a.png"], GenerationOptions(aspect_ratio="4:5"), None)
        with pytest.raises(PermanentProviderError, match="reference"):
            await client.create_task(PROMPT, [], GenerationOptions(), None)
        # The single slot was not consumed by the refused calls.
        await asyncio.wait_for(limiter.acquire(), 0.5)
    finally:
        await client.aclose()
    assert fake.creates == []
    with pytest.raises(ValueError):
        KieProvider("key", fake.url, fake.url, "google/not-a-model")


async def test_telegram_file_urls_never_leave_the_process(fake: FakeKie, provider: KieProvider) -> None:
    with pytest.raises(PermanentProviderError, match="Telegram"):
        await provider.create_task(PROMPT, [TELEGRAM_FILE_URL], GenerationOptions(), None)
    assert fake.creates == [] and fake.input_urls == []

    # And the fake itself refuses them (so a client without the guard would be caught).
    body = {"model": MODEL, "input": {"prompt": PROMPT, "image_input": [TELEGRAM_FILE_URL]}}
    async with httpx.AsyncClient(headers={"User-Agent": USER_AGENT}) as raw_client:
        response = await raw_client.post(
            f"{fake.url}/api/v1/jobs/createTask",
            json=body,
            headers={"Authorization": f"Bearer {fake.api_key}"},
        )
    assert response.json()["code"] == 422
    assert fake.leaked_token_urls == [TELEGRAM_FILE_URL]
    assert fake.tasks == {}


async def test_fake_refuses_reference_urls_it_cannot_serve(fake: FakeKie, provider: KieProvider) -> None:
    with pytest.raises(PermanentProviderError, match="not accessible"):
        await provider.create_task(PROMPT, [f"{fake.url}/files/uploads/never/uploaded.png"], GenerationOptions(), None)
