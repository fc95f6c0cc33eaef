"""Provider health over real HTTP: the clients' probes against the strict fakes (Kie's credit endpoint,
Replicate's model lookup)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from providers.base import HealthProbe, PermanentProviderError, RetryableProviderError
from providers.http import DownloadPolicy
from providers.kie import KieProvider
from providers.replicate import ReplicateProvider
from tests.fakes.kie import FakeKie
from tests.fakes.replicate import FakeReplicate

KIE_MODEL = "nano-banana-2"
REPLICATE_MODEL = "google/nano-banana-pro"


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
