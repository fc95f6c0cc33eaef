"""ReplicateProvider against FakeReplicate over real HTTP on 127.0.0.1 (replicate.md)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from collections.abc import AsyncIterator
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
    RateLimitedError,
    RetryableProviderError,
    TaskNotFoundError,
    TaskResult,
    TaskState,
)
from providers.http import DownloadPolicy
from providers.replicate import ReplicateProvider, prediction_to_result
from tests.fakes.replicate import FakeReplicate, sign_webhook
from tests.support.capture import OutgoingRequestCapture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# replicate-python tests/test_webhooks.py (replicate.md §6.3)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
WAIT_SECONDS = 5.0


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(latency=(0.01, 0.03), webhook_retry_delays=(0.02, 0.04, 0.08), seed=7) as server:
        yield server


def make_provider(fake: FakeReplicate, **overrides: Any) -> ReplicateProvider:
    settings: dict[str, Any] = {
        "api_token": fake.api_token,
        "api_url": fake.base_url,
        "webhook_secret": fake.webhook_secret,
        "timeout": 5.0,
        "download_policy": DownloadPolicy(allow_loopback=True),  # the fake serves outputs over http locally
    }
    settings.update(overrides)
    return ReplicateProvider(**settings)


@pytest_asyncio.fixture
async def provider(fake: FakeReplicate) -> AsyncIterator[ReplicateProvider]:
    client = make_provider(fake)
    yield client
    await client.aclose()


async def wait_terminal(provider: ReplicateProvider, prediction_id: str) -> TaskResult:
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            result = await provider.get_task(prediction_id)
            if result.terminal:
                return result
            await asyncio.sleep(0.01)


def png_bytes(colour: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest_asyncio.fixture
async def capture() -> AsyncIterator[OutgoingRequestCapture]:
    """Where the fake posts its webhooks: a capture of its outgoing requests, not our endpoint."""
    async with OutgoingRequestCapture() as outgoing:
        yield outgoing


# ----------------------------------------------------------------------------- happy path


async def test_satisfies_the_image_provider_protocol(provider: ReplicateProvider) -> None:
    assert isinstance(provider, ImageProvider)
    assert provider.name == "replicate"
    assert provider.limits.create.max_calls == 600 and provider.limits.create.period_seconds == 60


async def test_upload_create_poll_download_gives_distinct_pngs(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    reference_url = await provider.upload_reference(png_bytes(), "selfie.png")
    assert reference_url.startswith(f"{fake.base_url}/v1/files/")

    first_id = await provider.create_task("studio portrait", [reference_url], GenerationOptions(), None)
    second_id = await provider.create_task("studio portrait", [reference_url], GenerationOptions(), None)
    first, second = await wait_terminal(provider, first_id), await wait_terminal(provider, second_id)

    assert first.state is TaskState.SUCCEEDED and len(first.image_urls) == 1
    first_image = await provider.download(first.image_urls[0])
    second_image = await provider.download(second.image_urls[0])
    assert first_image.startswith(PNG_MAGIC) and second_image.startswith(PNG_MAGIC)
    assert first_image != second_image
    assert Image.open(io.BytesIO(first_image)).size == (512, 640)
    # The reference went through the Files API, unchanged, and reached the model input.
    assert [upload.content_type for upload in fake.uploads] == ["image/png"]
    assert fake.files[reference_url.rsplit("/", 1)[1]].content == png_bytes()
    sent = fake.creates[0]
    assert sent.path == "/v1/models/google/nano-banana-pro/predictions"
    assert sent.body.keys() == {"input"}
    assert sent.input == {
        "prompt": "studio portrait",
        "output_format": "png",
        "image_input": [reference_url],
        "aspect_ratio": "3:4",
        "resolution": "2K",
    }


async def test_upload_names_are_unique_per_call(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    await provider.upload_reference(png_bytes(), "selfie.png")
    await provider.upload_reference(png_bytes(), "selfie.png")
    names = [upload.filename for upload in fake.uploads]
    assert len(set(names)) == 2 and all(name and name.endswith("selfie.png") for name in names)


async def test_every_request_carries_bearer_token_and_user_agent(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    prediction_id = await provider.create_task("p", [], GenerationOptions(), None)
    await provider.get_task(prediction_id)
    assert {request.authorization for request in fake.requests} == {f"Bearer {fake.api_token}"}


async def test_string_output_is_normalised_to_one_url(provider: ReplicateProvider, api: httpx.AsyncClient) -> None:
    prediction_id = await provider.create_task("p", [], GenerationOptions(), None)
    result = await wait_terminal(provider, prediction_id)
    raw = (await api.get(f"/v1/predictions/{prediction_id}")).json()
    assert isinstance(raw["output"], str) and raw["version"] == "hidden"
    assert result.image_urls == (raw["output"],)


async def test_list_output_of_a_community_model_is_normalised(fake: FakeReplicate) -> None:
    version = fake.version_of("zsxkib/flux-pulid")
    client = make_provider(fake, model=f"zsxkib/flux-pulid:{version}")
    try:
        prediction_id = await client.create_task("p", ["https://example.com/me.jpg"], GenerationOptions(), None)
        result = await wait_terminal(client, prediction_id)
    finally:
        await client.aclose()
    sent = fake.creates[0]
    assert sent.path == "/v1/predictions" and sent.body["version"] == version
    assert sent.input["main_face_image"] == "https://example.com/me.jpg"
    assert (sent.input["width"], sent.input["height"]) == (864, 1152)
    assert isinstance(fake.predictions[prediction_id].input, dict)
    assert fake.predictions[prediction_id].model.output_is_list
    assert result.state is TaskState.SUCCEEDED and len(result.image_urls) == 1


async def test_single_reference_model_gets_one_url_and_safe_extras(fake: FakeReplicate) -> None:
    client = make_provider(fake, model="black-forest-labs/flux-kontext-pro")
    try:
        options = GenerationOptions(output_format="jpeg", seed=42)
        prediction_id = await client.create_task("p", ["https://a/1.jpg", "https://a/2.jpg"], options, None)
        result = await wait_terminal(client, prediction_id)
        image = await client.download(result.image_urls[0])
    finally:
        await client.aclose()
    assert fake.creates[0].input == {
        "prompt": "p",
        "output_format": "jpg",
        "input_image": "https://a/1.jpg",
        "aspect_ratio": "3:4",
        "seed": 42,
        "safety_tolerance": 2,
        "prompt_upsampling": False,
    }
    assert image.startswith(b"\xff\xd8\xff")


async def test_data_uri_output_is_decoded_locally(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.data_uri_outputs = "always"
    prediction_id = await provider.create_task("p", [], GenerationOptions(), None)
    result = await wait_terminal(provider, prediction_id)
    assert result.image_urls[0].startswith("data:image/png;base64,")
    deliveries_before = len(fake.requests)
    image = await provider.download(result.image_urls[0])
    assert image.startswith(PNG_MAGIC) and Image.open(io.BytesIO(image)).size == (512, 640)
    assert len(fake.requests) == deliveries_before  # no HTTP involved


async def test_download_sends_the_token_only_to_replicate_origins(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    own = await wait_terminal(provider, await provider.create_task("p", [], GenerationOptions(), None))
    await provider.download(own.image_urls[0])
    async with FakeReplicate(latency=0.0) as foreign:
        foreign_client = make_provider(foreign)
        try:
            foreign_id = await foreign_client.create_task("p", [], GenerationOptions(), None)
            foreign_result = await wait_terminal(foreign_client, foreign_id)
        finally:
            await foreign_client.aclose()
        # Our provider (configured for `fake`) fetches an output URL on another origin.
        assert (await provider.download(foreign_result.image_urls[0])).startswith(PNG_MAGIC)
        [foreign_fetch] = [r for r in foreign.requests if r.path.startswith("/delivery/")]
    [own_fetch] = [r for r in fake.requests if r.path.startswith("/delivery/")]
    assert own_fetch.authorization == f"Bearer {fake.api_token}"
    assert foreign_fetch.authorization is None


async def test_create_limiter_is_acquired_once_per_create(fake: FakeReplicate) -> None:
    class CountingLimiter:
        calls = 0

        @contextlib.asynccontextmanager
        async def admit(self) -> AsyncIterator[None]:
            self.calls += 1
            yield

    limiter = CountingLimiter()
    client = make_provider(fake, create_limiter=limiter)
    try:
        await client.create_task("p", [], GenerationOptions(), None)
        await client.create_task("p", [], GenerationOptions(), None)
        with pytest.raises(PermanentProviderError):
            # Rejected locally (nano-banana has no webp): no slot of the budget is spent.
            await client.create_task("p", [], GenerationOptions(output_format="webp"), None)
    finally:
        await client.aclose()
    assert limiter.calls == 2 and len(fake.creates) == 2


async def test_cancel_after_header_is_sent_when_configured(fake: FakeReplicate) -> None:
    client = make_provider(fake, cancel_after_seconds=300)
    try:
        await client.create_task("p", [], GenerationOptions(), None)
    finally:
        await client.aclose()
    assert fake.creates[0].cancel_after == "300s"
    assert fake.predictions[fake.creates[0].prediction_id or ""].deadline_at is not None


# ----------------------------------------------------------------------------- webhooks


async def test_parse_callback_verifies_the_fakes_webhook(
    fake: FakeReplicate, provider: ReplicateProvider, capture: OutgoingRequestCapture
) -> None:
    prediction_id = await provider.create_task("p", [], GenerationOptions(), capture.url)
    [sent] = await capture.wait_for(1, within_seconds=WAIT_SECONDS)
    result = await provider.parse_callback(sent.headers, sent.body)
    assert result.provider_task_id == prediction_id and result.state is TaskState.SUCCEEDED
    assert result.image_urls == (await provider.get_task(prediction_id)).image_urls
    assert (await provider.download(result.image_urls[0])).startswith(PNG_MAGIC)
    assert fake.creates[0].body["webhook"] == capture.url
    assert fake.creates[0].body["webhook_events_filter"] == ["completed"]
    assert [(attempt.event, attempt.status) for attempt in fake.webhooks] == [("completed", 200)]


async def test_parse_callback_refuses_a_forged_webhook_and_verifies_its_genuine_retry(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    """What the app's endpoint makes of forged webhooks (401, then the retry stored once) is tested
    in test_engine_faults.py, test_forged_replicate_webhooks_for_running_tasks_change_nothing_and_
    the_genuine_ones_store_once."""
    fake.forge_next_webhooks(1)
    # The capture answers the first attempt 401 (as a receiver refusing it would), so the fake retries.
    async with OutgoingRequestCapture(answers=[401]) as capture:
        await provider.create_task("p", [], GenerationOptions(), capture.url)
        forged, genuine = await capture.wait_for(2, within_seconds=WAIT_SECONDS)
        async with asyncio.timeout(WAIT_SECONDS):
            await fake.wait_idle()
    assert [(attempt.forged, attempt.status) for attempt in fake.webhooks] == [(True, 401), (False, 200)]
    with pytest.raises(BadSignatureError, match="no matching v1 webhook signature"):
        await provider.parse_callback(forged.headers, forged.body)
    assert (await provider.parse_callback(genuine.headers, genuine.body)).state is TaskState.SUCCEEDED
    # The retry keeps the webhook-id (receivers deduplicate on it).
    assert len({attempt.webhook_id for attempt in fake.webhooks}) == 1
    assert forged.headers["webhook-id"] == genuine.headers["webhook-id"]


async def test_parse_callback_refuses_a_stale_webhook_on_every_retry(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.webhook_clock_skew = -400.0
    async with OutgoingRequestCapture(then=401) as capture:  # refused each time, so every retry is sent
        await provider.create_task("p", [], GenerationOptions(), capture.url)
        sent = await capture.wait_for(4, within_seconds=WAIT_SECONDS)
        async with asyncio.timeout(WAIT_SECONDS):
            await fake.wait_idle()
    assert [attempt.status for attempt in fake.webhooks] == [401, 401, 401, 401]
    assert len(sent) == 4
    for attempt in sent:
        with pytest.raises(BadSignatureError, match="tolerance"):
            await provider.parse_callback(attempt.headers, attempt.body)


async def test_parse_callback_reads_duplicate_webhooks_with_the_same_id_as_the_same_result(
    fake: FakeReplicate, provider: ReplicateProvider, capture: OutgoingRequestCapture
) -> None:
    fake.duplicate_next_webhooks(1)
    await provider.create_task("p", [], GenerationOptions(), capture.url)
    first, second = await capture.wait_for(2, within_seconds=WAIT_SECONDS)
    async with asyncio.timeout(WAIT_SECONDS):
        await fake.wait_idle()
    assert [attempt.duplicate for attempt in fake.webhooks] == [False, True]
    assert fake.webhooks[0].webhook_id == fake.webhooks[1].webhook_id
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert await provider.parse_callback(first.headers, first.body) == await provider.parse_callback(
        second.headers, second.body
    )


async def test_dropped_webhook_leaves_the_poll_as_backstop(
    fake: FakeReplicate, provider: ReplicateProvider, capture: OutgoingRequestCapture
) -> None:
    fake.drop_next_webhooks(1)
    prediction_id = await provider.create_task("p", [], GenerationOptions(), capture.url)
    result = await wait_terminal(provider, prediction_id)
    async with asyncio.timeout(WAIT_SECONDS):
        await fake.wait_idle()
    assert result.state is TaskState.SUCCEEDED
    assert fake.webhooks == [] and fake.webhooks_dropped == [prediction_id] and capture.requests == []


async def test_tampered_body_or_missing_headers_are_rejected(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    body = b'{"id": "abc", "status": "succeeded", "output": "https://replicate.delivery/x.png"}'
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(fake.webhook_secret, "msg_1", timestamp, body),
    }
    assert (await provider.parse_callback(headers, body)).state is TaskState.SUCCEEDED
    with pytest.raises(BadSignatureError):
        await provider.parse_callback(headers, body.replace(b"abc", b"abd"))
    for missing in headers:
        with pytest.raises(BadSignatureError):
            await provider.parse_callback({k: v for k, v in headers.items() if k != missing}, body)
    with pytest.raises(BadSignatureError):
        await provider.parse_callback({**headers, "webhook-timestamp": str(timestamp + 400)}, body)


async def test_contract_test_vector_verifies_with_an_injected_clock(fake: FakeReplicate) -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    # The fake's independent signer reproduces the published signature.
    assert sign_webhook(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    at_signing_time = make_provider(fake, webhook_secret=VECTOR_SECRET, clock=lambda: VECTOR_TIMESTAMP + 10.0)
    now = make_provider(fake, webhook_secret=VECTOR_SECRET)
    try:
        assert await at_signing_time.verify_webhook(headers, VECTOR_BODY) == {"test": 2432232314}
        # Among several signatures one valid v1 entry is enough; other versions never count.
        several = {**headers, "webhook-signature": f"v1,AAAA v2,junk {VECTOR_SIGNATURE}"}
        assert await at_signing_time.verify_webhook(several, VECTOR_BODY) == {"test": 2432232314}
        wrong_version = {**headers, "webhook-signature": VECTOR_SIGNATURE.replace("v1,", "v2,")}
        with pytest.raises(BadSignatureError):
            await at_signing_time.verify_webhook(wrong_version, VECTOR_BODY)
        with pytest.raises(BadSignatureError):
            await at_signing_time.verify_webhook(headers, VECTOR_BODY.replace(b"4}", b"5}"))
        # Verified, but not a prediction: parse_callback refuses to invent a TaskResult.
        with pytest.raises(BadSignatureError, match="not a prediction"):
            await at_signing_time.parse_callback(headers, VECTOR_BODY)
        # With the real clock the 2021 timestamp is far outside the 300 s tolerance.
        with pytest.raises(BadSignatureError, match="tolerance"):
            await now.verify_webhook(headers, VECTOR_BODY)
    finally:
        await at_signing_time.aclose()
        await now.aclose()


async def test_webhook_secret_is_fetched_once_when_not_configured(fake: FakeReplicate) -> None:
    client = make_provider(fake, webhook_secret=None)
    body = b'{"id": "abc", "status": "processing"}'
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(fake.webhook_secret, "msg_2", timestamp, body),
    }
    try:
        results = await asyncio.gather(*(client.parse_callback(headers, body) for _ in range(3)))
    finally:
        await client.aclose()
    assert {result.state for result in results} == {TaskState.RUNNING}
    assert [request.path for request in fake.requests] == ["/v1/webhooks/default/secret"]


# ----------------------------------------------------------------------------- failures


async def test_failed_prediction_is_failed_and_retryable(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.fail_next(1, error="CUDA error: out of memory")
    result = await wait_terminal(provider, await provider.create_task("p", [], GenerationOptions(), None))
    assert result.state is TaskState.FAILED and result.retryable
    assert result.error == "CUDA error: out of memory" and result.image_urls == ()


async def test_content_policy_failure_is_not_retryable(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.fail_next(1, error="The input or output was flagged as sensitive. Please try again. (E005)")
    result = await wait_terminal(provider, await provider.create_task("p", [], GenerationOptions(), None))
    assert result.state is TaskState.FAILED and not result.retryable


async def test_expired_outputs_fail_retryably_and_cannot_be_downloaded(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    prediction_id = await provider.create_task("p", [], GenerationOptions(), None)
    result = await wait_terminal(provider, prediction_id)
    fake.output_ttl_seconds = 0.0  # everything completed is now older than the retention
    expired = await provider.get_task(prediction_id)
    assert expired.state is TaskState.FAILED and expired.retryable and "expired" in (expired.error or "")
    with pytest.raises(PermanentProviderError) as caught:
        await provider.download(result.image_urls[0])
    assert caught.value.status == 404


async def test_stuck_prediction_stays_running(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.stick_next(1)
    prediction_id = await provider.create_task("p", [], GenerationOptions(), None)
    await asyncio.sleep(0.06)
    assert (await provider.get_task(prediction_id)).state is TaskState.RUNNING


async def test_invalid_input_is_permanent(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        await provider.create_task("p", [], GenerationOptions(aspect_ratio="7:3"), None)
    assert caught.value.status == 422 and "input.aspect_ratio" in str(caught.value)
    assert not caught.value.retryable


async def test_telegram_file_url_never_leaves_the_process(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    leaking_url = "https://api.telegram.org/file/bot123:SECRET/photos/file_1.jpg"
    with pytest.raises(PermanentProviderError, match="Telegram"):
        await provider.create_task("p", [leaking_url], GenerationOptions(), None)
    assert fake.creates == [] and fake.input_urls == []


async def test_wrong_token_is_permanent(fake: FakeReplicate) -> None:
    client = make_provider(fake, api_token="r8_wrong")
    try:
        with pytest.raises(PermanentProviderError) as caught:
            await client.create_task("p", [], GenerationOptions(), None)
        with pytest.raises(PermanentProviderError):
            await client.upload_reference(png_bytes(), "a.png")
    finally:
        await client.aclose()
    assert caught.value.status == 401 and "Unauthenticated" in str(caught.value)
    assert not isinstance(caught.value, RetryableProviderError)


async def test_throttled_create_is_rate_limited_with_the_hinted_wait(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.set_rate_limits(create=(1, 60.0))
    await provider.create_task("p", [], GenerationOptions(), None)
    with pytest.raises(RateLimitedError) as from_body:
        await provider.create_task("p", [], GenerationOptions(), None)
    assert from_body.value.retryable and from_body.value.retry_after == 60.0
    fake.set_rate_limits(create=(1, 2.0))
    fake.send_retry_after = True
    await provider.create_task("p", [], GenerationOptions(), None)
    with pytest.raises(RateLimitedError) as from_header:
        await provider.create_task("p", [], GenerationOptions(), None)
    assert from_header.value.retry_after == 2.0
    assert fake.throttled_count == 2


async def test_insufficient_credit_is_its_own_error(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.inject(402, path_prefix="/v1/models/", body={"title": "Insufficient credit", "detail": "Top up"})
    with pytest.raises(InsufficientBalanceError):
        await provider.create_task("p", [], GenerationOptions(), None)


async def test_outage_and_5xx_are_retryable(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    prediction_id = await provider.create_task("p", [], GenerationOptions(), None)
    fake.outage = True
    for call in (
        provider.create_task("p", [], GenerationOptions(), None),
        provider.get_task(prediction_id),
        provider.upload_reference(png_bytes(), "a.png"),
    ):
        with pytest.raises(RetryableProviderError) as caught:
            await call
        assert caught.value.status == 500
    fake.outage = False
    fake.inject(503, method="GET")
    with pytest.raises(RetryableProviderError):
        await provider.get_task(prediction_id)
    assert (await provider.get_task(prediction_id)).provider_task_id == prediction_id


async def test_slow_answer_times_out_as_retryable(fake: FakeReplicate) -> None:
    client = make_provider(fake, timeout=0.05)
    fake.response_delay = 0.3
    try:
        with pytest.raises(RetryableProviderError, match="timed out"):
            await client.create_task("p", [], GenerationOptions(), None)
    finally:
        await client.aclose()


async def test_unreachable_host_is_retryable(fake: FakeReplicate) -> None:
    client = make_provider(fake, api_url="http://127.0.0.1:9")  # discard port: nothing listens
    try:
        with pytest.raises(RetryableProviderError):
            await client.get_task("abc")
    finally:
        await client.aclose()


async def test_unknown_prediction_is_task_not_found(provider: ReplicateProvider) -> None:
    with pytest.raises(TaskNotFoundError):
        await provider.get_task("nosuchpredictionid234567ab")


async def test_misconfigured_models_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="community"):
        ReplicateProvider("r8_x", model="zsxkib/flux-pulid")
    with pytest.raises(ValueError, match=r"unknown Replicate model .*known: .*google/nano-banana-pro"):
        ReplicateProvider("r8_x", model="someone/unknown-model")
    with pytest.raises(ValueError, match="64"):
        ReplicateProvider("r8_x", model="google/nano-banana:abc")


# ----------------------------------------------------------------------------- status mapping


@pytest.mark.parametrize(
    ("prediction", "state", "retryable"),
    [
        ({"status": "starting"}, TaskState.QUEUED, True),
        # The sync-mode quirk: outputs present but not terminal yet.
        ({"status": "processing", "output": "https://replicate.delivery/a.png"}, TaskState.RUNNING, True),
        ({"status": "succeeded", "output": None, "data_removed": True}, TaskState.FAILED, True),
        ({"status": "failed", "error": "NSFW content detected"}, TaskState.FAILED, False),
        ({"status": "canceled"}, TaskState.FAILED, True),
        ({"status": "aborted"}, TaskState.FAILED, True),
        ({"status": "some_future_status"}, TaskState.RUNNING, True),
    ],
)
def test_prediction_status_mapping(prediction: dict[str, Any], state: TaskState, retryable: bool) -> None:
    result = prediction_to_result({"id": "p1", **prediction})
    assert (result.state, result.retryable) == (state, retryable)


def test_a_result_carries_the_moment_replicate_says_it_completed() -> None:
    prediction = {"id": "p1", "status": "succeeded", "output": "https://a/1.png"}
    done = prediction_to_result({**prediction, "completed_at": "2023-09-08T16:19:34.791859Z"})
    assert done.finished_at == datetime(2023, 9, 8, 16, 19, 34, 791859, tzinfo=UTC)
    assert prediction_to_result(prediction).finished_at is None  # then the engine dates it on arrival
    assert prediction_to_result({**prediction, "completed_at": "yesterday"}).finished_at is None


def test_outputs_keep_only_uris_in_order() -> None:
    result = prediction_to_result(
        {
            "id": "p1",
            "status": "succeeded",
            "output": ["https://a/1.png", None, "data:image/png;base64,AA==", 5],
        }
    )
    assert result.image_urls == ("https://a/1.png", "data:image/png;base64,AA==")


# ----------------------------------------------------------------------------- the fake's own strictness


@pytest_asyncio.fixture
async def api(fake: FakeReplicate) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {fake.api_token}"}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers, timeout=5.0) as client:
        yield client


async def test_fake_rejects_unknown_top_level_keys(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/predictions", json={"model": "google/nano-banana", "input": {"prompt": "p"}})
    assert response.status_code == 422
    assert response.json()["detail"] == "- version is required\n- Additional property model is not allowed\n"


async def test_fake_validates_model_inputs_with_invalid_fields(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/models/black-forest-labs/flux-kontext-pro/predictions",
        json={"input": {"prompt": "p", "input_image": "https://a/me.jpg", "output_format": "webp"}},
    )
    assert response.status_code == 422
    [invalid] = response.json()["invalid_fields"]
    assert invalid["field"] == "input.output_format" and invalid["type"] == "enum"
    too_tolerant = await api.post(
        "/v1/models/black-forest-labs/flux-kontext-pro/predictions",
        json={"input": {"prompt": "p", "input_image": "https://a/me.jpg", "safety_tolerance": 5}},
    )
    assert too_tolerant.status_code == 422


async def test_fake_rejects_and_records_telegram_file_urls(fake: FakeReplicate, api: httpx.AsyncClient) -> None:
    leaking_url = "https://api.telegram.org/file/bot123:SECRET/photo.jpg"
    response = await api.post(
        "/v1/models/google/nano-banana/predictions",
        json={"input": {"prompt": "p", "image_input": [leaking_url]}},
    )
    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["type"] == "forbidden_url"
    assert fake.input_urls == [leaking_url]


async def test_fake_requires_bearer_auth(fake: FakeReplicate) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        response = await client.get("/v1/predictions/x", headers={"Authorization": f"Token {fake.api_token}"})
    assert response.status_code == 401 and response.json()["title"] == "Unauthenticated"


async def test_fake_prefer_wait_returns_processing_with_data_uri_output(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/models/google/nano-banana/predictions",
        json={"input": {"prompt": "p"}},
        headers={"Prefer": "wait=5"},
    )
    assert response.status_code == 201 and response.headers["Preference-Applied"] == "wait=5"
    prediction = response.json()
    assert prediction["status"] == "processing"
    assert base64.b64decode(prediction["output"].split(",", 1)[1]).startswith(PNG_MAGIC)
    assert response.headers["Location"] == prediction["urls"]["get"]
    assert len(prediction["id"]) == 26 and prediction["version"] == "hidden"
    bad = await api.post(
        "/v1/models/google/nano-banana/predictions",
        json={"input": {"prompt": "p"}},
        headers={"Prefer": "wait=61"},
    )
    assert bad.status_code == 422


async def test_fake_cancel_after_aborts_or_cancels(fake: FakeReplicate, api: httpx.AsyncClient) -> None:
    fake.min_cancel_after_seconds = 0.01
    fake.latency = 0.2  # starting for 60 ms, then processing
    early = await api.post(
        "/v1/models/google/nano-banana/predictions",
        json={"input": {"prompt": "p"}},
        headers={"Cancel-After": "20ms"},
    )
    late = await api.post(
        "/v1/models/google/nano-banana/predictions",
        json={"input": {"prompt": "p"}},
        headers={"Cancel-After": "100ms"},
    )
    assert "deadline" in early.json()
    await asyncio.sleep(0.15)
    assert fake.status_of(early.json()["id"]) == "aborted"
    assert fake.status_of(late.json()["id"]) == "canceled"
    fake.min_cancel_after_seconds = 5.0
    too_short = await api.post(
        "/v1/models/google/nano-banana/predictions",
        json={"input": {"prompt": "p"}},
        headers={"Cancel-After": "2s"},
    )
    assert too_short.status_code == 422


async def test_fake_files_api_limits_and_secret(fake: FakeReplicate, api: httpx.AsyncClient) -> None:
    fake.max_file_bytes = 1000
    too_big = await api.post("/v1/files", files={"content": ("big.png", b"x" * 5000, "image/png")})
    assert too_big.status_code == 413
    stored = await api.post("/v1/files", files={"content": ("ok.png", b"x" * 10, "image/png")})
    assert stored.status_code == 201
    assert (await api.get(stored.json()["urls"]["get"])).json()["size"] == 10
    assert (await api.get("/v1/webhooks/default/secret")).json() == {"key": fake.webhook_secret}


async def test_fake_honours_webhook_events_filter(
    fake: FakeReplicate, provider: ReplicateProvider, capture: OutgoingRequestCapture
) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        response = await client.post(
            "/v1/models/google/nano-banana/predictions",
            json={
                "input": {"prompt": "p"},
                "webhook": capture.url,
                "webhook_events_filter": ["start", "completed"],
            },
            headers={"Authorization": f"Bearer {fake.api_token}"},
        )
    assert response.status_code == 201
    sent = await capture.wait_for(2, within_seconds=WAIT_SECONDS)
    async with asyncio.timeout(WAIT_SECONDS):
        await fake.wait_idle()
    assert [attempt.event for attempt in fake.webhooks] == ["start", "completed"]
    # Both genuinely signed; the "start" body holds the prediction as it was when sent, which a busy machine
    # can make already finished, so only the "completed" one has a fixed state.
    results = [await provider.parse_callback(request.headers, request.body) for request in sent]
    assert results[-1].state is TaskState.SUCCEEDED


async def test_fake_missing_input_file_fails_the_prediction(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    reference_url = await provider.upload_reference(png_bytes(), "a.png")
    fake.files.clear()
    result = await wait_terminal(provider, await provider.create_task("p", [reference_url], GenerationOptions(), None))
    assert result.state is TaskState.FAILED and "download input" in (result.error or "")


async def test_the_retired_default_model_still_builds_its_own_input(fake: FakeReplicate) -> None:
    """google/nano-banana (Gemini 2.5 Flash Image) stays in the table while Replicate lists it."""
    client = make_provider(fake, model="google/nano-banana")
    try:
        await client.create_task("studio portrait", [], GenerationOptions(), None)
    finally:
        await client.aclose()
    [sent] = fake.creates
    assert sent.path == "/v1/models/google/nano-banana/predictions"
    assert sent.input == {"prompt": "studio portrait", "output_format": "png", "aspect_ratio": "3:4"}
