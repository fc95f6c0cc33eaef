"""Provider health over real HTTP: the clients' probes against the strict fakes (Kie's credit endpoint,
Replicate's model lookup), the monitor's alerts (once per change, not per probe; shared through Redis
between processes), and what /healthz and /provider show in the real application."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from providers.base import HealthProbe, PermanentProviderError, RetryableProviderError
from providers.http import DownloadPolicy
from providers.kie import KieProvider
from providers.replicate import ReplicateProvider
from scheduler.notices import ProviderAlert, ProviderCondition
from scheduler.notify import RecordingNotifier
from scheduler.provider_health import ProviderHealthMonitor, RedisLatch
from tests.engine_support import provider_settings
from tests.fakes.kie import FakeKie
from tests.fakes.replicate import FakeReplicate
from tests.fakes.telegram import FakeTelegram
from tests.harness import running_app
from tests.integration.test_admin import ADMIN_ID, ask, containing, settings_for

KIE_MODEL = "nano-banana-2"
REPLICATE_MODEL = "google/nano-banana-pro"
THRESHOLD = 100.0


@pytest_asyncio.fixture
async def kie() -> AsyncIterator[FakeKie]:
    async with FakeKie(balance=500) as server:
        yield server


@pytest_asyncio.fixture
async def replicate() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


def kie_client(fake: FakeKie, **overrides: Any) -> KieProvider:
    arguments: dict[str, Any] = {"timeout": 5.0, "download_policy": DownloadPolicy(allow_loopback=True)} | overrides
    return KieProvider(arguments.pop("api_key", fake.api_key), fake.url, fake.url, KIE_MODEL, **arguments)


def replicate_client(fake: FakeReplicate, **overrides: Any) -> ReplicateProvider:
    arguments: dict[str, Any] = {
        "api_token": fake.api_token,
        "api_url": fake.base_url,
        "webhook_secret": fake.webhook_secret,
        "model": REPLICATE_MODEL,
        "timeout": 5.0,
    }
    return ReplicateProvider(**(arguments | overrides))


@pytest_asyncio.fixture
async def clients(kie: FakeKie, replicate: FakeReplicate) -> AsyncIterator[tuple[KieProvider, ReplicateProvider]]:
    pair = (kie_client(kie), replicate_client(replicate))
    yield pair
    for client in pair:
        await client.aclose()


def monitor(clients: tuple[KieProvider, ReplicateProvider], notifier: RecordingNotifier, **extra: Any) -> Any:
    return ProviderHealthMonitor(
        clients, notifier=notifier, admin_chat_ids=[ADMIN_ID], balance_alert_below={"kie": THRESHOLD}, **extra
    )


# ---------------------------------------------------------------------- the clients' probes


async def test_kie_probe_reads_the_balance_with_the_key(kie: FakeKie) -> None:
    client = kie_client(kie)
    stranger = kie_client(kie, api_key="not-the-key")
    try:
        assert isinstance(client, HealthProbe)
        health = await client.probe_health()
        assert (health.balance, health.model_exists) == (500, None)  # Kie has no model lookup
        kie.balance = 12.5
        assert (await client.probe_health()).balance == 12.5
        assert kie.requests[-1].path == "/api/v1/chat/credit"
        assert kie.requests[-1].authorization == f"Bearer {kie.api_key}"
        with pytest.raises(PermanentProviderError, match="401"):
            await stranger.probe_health()
        kie.inject_error(500, endpoint="credit")
        with pytest.raises(RetryableProviderError):
            await client.probe_health()
    finally:
        await client.aclose()
        await stranger.aclose()


async def test_replicate_probe_finds_the_model_and_its_disappearance(replicate: FakeReplicate) -> None:
    client = replicate_client(replicate)
    stranger = replicate_client(replicate, api_token="r8_wrong")
    try:
        assert isinstance(client, HealthProbe)
        health = await client.probe_health()
        assert (health.model, health.model_exists, health.balance) == (REPLICATE_MODEL, True, None)
        assert replicate.requests[-1].path == f"/v1/models/{REPLICATE_MODEL}"
        replicate.retire(REPLICATE_MODEL)
        assert (await client.probe_health()).model_exists is False
        replicate.restore(REPLICATE_MODEL)
        assert (await client.probe_health()).model_exists is True
        # A refused token or a server fault is not "the model vanished": the probe raises instead.
        with pytest.raises(PermanentProviderError, match="401"):
            await stranger.probe_health()
        replicate.inject(503, path_prefix="/v1/models/")
        with pytest.raises(RetryableProviderError):
            await client.probe_health()
    finally:
        await client.aclose()
        await stranger.aclose()


async def test_replicate_probe_of_a_pinned_community_model_looks_up_its_slug(replicate: FakeReplicate) -> None:
    slug = "zsxkib/flux-pulid"
    client = replicate_client(replicate, model=f"{slug}:{replicate.version_of(slug)}")
    try:
        health = await client.probe_health()
        assert health.model_exists is True and health.model == f"{slug}:{replicate.version_of(slug)}"
        assert replicate.requests[-1].path == f"/v1/models/{slug}"
    finally:
        await client.aclose()


# ---------------------------------------------------------------------- the monitor's alerts


def alerts(notifier: RecordingNotifier) -> list[tuple[str, ProviderCondition, bool]]:
    return [
        (notice.provider, notice.condition, notice.active)
        for notice in notifier.notices
        if isinstance(notice, ProviderAlert)
    ]


async def test_a_low_balance_alerts_once_then_again_only_after_a_change(
    kie: FakeKie, clients: tuple[KieProvider, ReplicateProvider]
) -> None:
    notifier = RecordingNotifier()
    health = monitor(clients, notifier)
    assert health.as_json()["kie"] == dict.fromkeys(health.as_json()["kie"])  # not probed yet: all null
    await health.check()
    assert alerts(notifier) == []  # a first look that finds all well is no news
    assert health.reports["kie"].ok and health.reports["kie"].balance == 500

    kie.balance = 40
    await health.check()
    await health.check()
    assert alerts(notifier) == [("kie", ProviderCondition.BALANCE_LOW, True)]
    assert [chat for chat, _, _ in notifier.told] == [ADMIN_ID]
    assert not health.reports["kie"].ok and health.reports["kie"].balance_low

    kie.inject_error(500, endpoint="credit")  # a failed probe says nothing about the balance
    await health.check()
    assert health.reports["kie"].error is not None and len(alerts(notifier)) == 1
    kie.balance = 30
    await health.check()
    assert len(alerts(notifier)) == 1  # still low: nothing new to say

    kie.balance = THRESHOLD  # topped up to the line: not below it any more
    await health.check()
    await health.check()
    kie.balance = 99.5
    await health.check()
    assert alerts(notifier) == [
        ("kie", ProviderCondition.BALANCE_LOW, True),
        ("kie", ProviderCondition.BALANCE_LOW, False),
        ("kie", ProviderCondition.BALANCE_LOW, True),
    ]
    assert notifier.notices[-1] == ProviderAlert(
        "kie", ProviderCondition.BALANCE_LOW, True, balance=99.5, threshold=THRESHOLD, model=None
    )


async def test_a_vanished_model_alerts_once_and_its_return_once(
    replicate: FakeReplicate, clients: tuple[KieProvider, ReplicateProvider]
) -> None:
    notifier = RecordingNotifier()
    health = monitor(clients, notifier)
    replicate.retire(REPLICATE_MODEL)
    await health.check()  # trouble at the first look is news
    await health.check()
    replicate.restore(REPLICATE_MODEL)
    await health.check()
    await health.check()
    assert alerts(notifier) == [
        ("replicate", ProviderCondition.MODEL_MISSING, True),
        ("replicate", ProviderCondition.MODEL_MISSING, False),
    ]
    assert health.as_json()["replicate"] == health.reports["replicate"].as_json()
    assert health.reports["replicate"].as_json()["model_exists"] is True


async def test_processes_sharing_redis_alert_once_between_them(
    kie: FakeKie, clients: tuple[KieProvider, ReplicateProvider], redis_url: str
) -> None:
    import redis.asyncio as redis_asyncio

    redis = redis_asyncio.Redis.from_url(redis_url)
    prefix = f"test:provider-health:{uuid.uuid4().hex}:"
    try:
        first, second = RecordingNotifier(), RecordingNotifier()
        kie.balance = 10
        processes = [monitor(clients, notifier, latch=RedisLatch(redis, prefix)) for notifier in (first, second)]
        await asyncio.gather(*(process.check() for process in processes))
        await asyncio.gather(*(process.check() for process in processes))
        assert len(alerts(first) + alerts(second)) == 1
        # A restarted process finds the alert already given.
        restarted = RecordingNotifier()
        await monitor(clients, restarted, latch=RedisLatch(redis, prefix)).check()
        assert alerts(restarted) == []
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


# ---------------------------------------------------------------------- the real application


async def until_probed(app: Any, *names: str) -> None:
    async with asyncio.timeout(10):
        while not set(names) <= app.provider_health.reports.keys():
            await asyncio.sleep(0.05)


async def test_healthz_and_provider_show_the_probes_and_admins_are_alerted(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, kie: FakeKie, replicate: FakeReplicate
) -> None:
    settings = settings_for(
        fake_telegram,
        sqlite_url,
        tmp_path,
        webhook=True,
        METRICS_TOKEN="health-token",
        KIE_BALANCE_ALERT_BELOW=THRESHOLD,
        **provider_settings(kie, replicate),
    )
    async with running_app(settings) as app:
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        await until_probed(app, "kie", "replicate")  # probed at start, before the first interval
        shown = await ask(admin, "/provider", expect="Providers")
        assert "balance 500 (checked" in shown.content
        kie.balance = 42
        await app.provider_health.check()  # what the clocked job runs
        await admin.wait_reply(containing("kie balance is 42, below 100"), timeout=10)

        url = f"http://127.0.0.1:{app.port}/healthz"
        async with aiohttp.ClientSession() as client:
            async with client.get(url) as response:
                assert await response.json() == {"status": "ok"}  # the detail is for the token's holders
            async with client.get(url, headers={"Authorization": "Bearer health-token"}) as response:
                body = await response.json()
                assert response.status == 200  # a low balance is an alert, not a reason to leave the pool
        kie_health, replicate_health = body["provider_health"]["kie"], body["provider_health"]["replicate"]
        assert kie_health["ok"] is False and kie_health["balance"] == 42
        assert kie_health["balance_alert_below"] == THRESHOLD and kie_health["model_exists"] is None
        assert replicate_health["ok"] is True and replicate_health["model_exists"] is True
        assert replicate_health["model"] == REPLICATE_MODEL and replicate_health["balance"] is None
        assert kie_health["checked_at"] and replicate_health["checked_at"]
        assert body["telegram"]["ok"] is True  # the hook still carries the Telegram link's detail

        shown = await ask(admin, "/provider", expect="Providers")
        assert "⚠️ balance 42, below 100" in shown.content
        assert f"model {REPLICATE_MODEL} available" in shown.content

        replicate.retire(REPLICATE_MODEL)
        await app.provider_health.check()
        await admin.wait_reply(containing(f"model {REPLICATE_MODEL} is gone"), timeout=10)
        shown = await ask(admin, "/provider", expect="Providers")
        assert f"⚠️ model {REPLICATE_MODEL} is gone" in shown.content
