"""Every HTTP endpoint of the running app under hostile input, over real HTTP against the fakes.

A stranger's request must cost the stranger, not us: no call to a provider with our credentials
for a task that is not ours, no 500 for any body or header, no change to any table.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import Application
from bot.web import (
    KIE_CALLBACK_PATH,
    REPLICATE_WEBHOOK_PATH,
    SELFHOSTED_WEBHOOK_PATH,
    TELEGRAM_WEBHOOK_PATH,
    YOOKASSA_PATH,
)
from storage.models import GenerationTask
from tests.endpoint_fuzz import fuzz, generate_cases, post_raw, table_contents
from tests.engine_support import FAST_POLICY, provider_settings, seed_paid_job
from tests.fakes.generator import FakeGenerator
from tests.fakes.kie import FakeKie
from tests.fakes.replicate import FakeReplicate
from tests.fakes.telegram import FakeTelegram
from tests.fakes.yookassa import FakeYooKassa
from tests.harness import app_settings, running_app

# A bounded number per run keeps `make test` quick; `make chaos` (scenario fuzz) sends thousands.
FUZZ_EXAMPLES = int(os.environ.get("PINGLASS_FUZZ_EXAMPLES", "150"))
WEBHOOK_SECRET = "test-webhook-secret"


@dataclass
class Stack:
    app: Application
    kie: FakeKie
    replicate: FakeReplicate
    kassa: FakeYooKassa
    telegram: FakeTelegram
    generator: FakeGenerator

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.app.port}{path}"


@asynccontextmanager
async def hostile_stack(
    telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, **extra: object
) -> AsyncIterator[Stack]:
    # Kie without an HMAC key: the default, and the case where every callback used to cost a recordInfo.
    async with FakeKie() as kie, FakeReplicate() as replicate, FakeYooKassa() as kassa, FakeGenerator() as generator:
        settings = app_settings(
            telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(
                kie,
                replicate,
                FALLBACK_POLICY=json.dumps(
                    {"providers": [*FAST_POLICY["providers"], {**FAST_POLICY["providers"][0], "name": "selfhosted"}]}
                ),
            ),
            GENERATOR_URL=generator.url,
            GENERATOR_TOKEN=generator.token,
            GENERATOR_WEBHOOK_SECRET=generator.webhook_secret,
            **kassa.app_settings(),
            **extra,
        )
        async with running_app(settings) as app:
            yield Stack(app, kie, replicate, kassa, telegram, generator)


def kie_calls(stack: Stack) -> list[Any]:
    """What the app asked Kie, but the health probe's balance reads (at start and on its own clock)."""
    return [request for request in stack.kie.requests if request.path != "/api/v1/chat/credit"]


def outbound_calls(stack: Stack) -> tuple[int, int, int, int, int]:
    return (
        len(kie_calls(stack)),
        len([request for request in stack.replicate.requests if not request.path.startswith("/v1/models/")]),
        len(stack.kassa.requests),
        len(stack.telegram.calls()),
        len(stack.generator.generate_calls) + len(stack.generator.status_calls),
    )


async def test_fuzzed_requests_to_every_endpoint_get_no_5xx_and_change_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    cases = generate_cases(FUZZ_EXAMPLES, WEBHOOK_SECRET)
    async with hostile_stack(fake_telegram, sqlite_url, tmp_path) as stack:
        before, calls_before = await table_contents(stack.app.sessionmaker), outbound_calls(stack)
        report = await fuzz(stack.app.port, cases)
        await asyncio.sleep(0.5)  # anything a request started in the background would have shown by now
        after, calls_after = await table_contents(stack.app.sessionmaker), outbound_calls(stack)
    print(f"endpoint fuzz: {report.line()}")
    assert not report.server_errors, report.server_errors[:3]
    assert sum(report.tried.values()) == len(cases) and set(report.tried) == {
        TELEGRAM_WEBHOOK_PATH,
        YOOKASSA_PATH,
        KIE_CALLBACK_PATH,
        REPLICATE_WEBHOOK_PATH,
        SELFHOSTED_WEBHOOK_PATH,
    }
    assert before == after
    assert calls_before == calls_after  # not one call to a provider, YooKassa or Telegram


async def test_forged_kie_callbacks_with_random_task_ids_never_reach_kie(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with hostile_stack(fake_telegram, database_url, tmp_path) as stack, aiohttp.ClientSession() as client:
        statuses = []
        for _ in range(100):
            body = {"code": 200, "data": {"taskId": uuid.uuid4().hex, "state": "success"}}
            async with client.post(stack.url(KIE_CALLBACK_PATH), json=body) as response:
                statuses.append(response.status)
        assert set(statuses) == {404}
        assert stack.kie.record_info_calls == [] and kie_calls(stack) == []


async def test_deep_huge_and_odd_bodies_and_headers_get_4xx_never_500(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    huge = b'{"data": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    async with hostile_stack(fake_telegram, sqlite_url, tmp_path, KIE_WEBHOOK_HMAC_KEY="kie-hmac") as stack:
        port = stack.app.port
        for path in (
            TELEGRAM_WEBHOOK_PATH,
            YOOKASSA_PATH,
            KIE_CALLBACK_PATH,
            REPLICATE_WEBHOOK_PATH,
            SELFHOSTED_WEBHOOK_PATH,
        ):
            secret = [(b"X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET.encode())]
            assert await post_raw(port, path, secret, deep) == 400, path
            assert await post_raw(port, path, secret, huge) == 413, path
        callback = b'{"data": {"taskId": "abc"}}'
        odd = "\u0444\u0430\u043b\u044c\u0448".encode()  # Cyrillic, as UTF-8 bytes
        for name, value in (
            (b"X-Telegram-Bot-Api-Secret-Token", odd),
            (b"X-Telegram-Bot-Api-Secret-Token", b"\xff\xfe\x80"),
        ):
            assert await post_raw(port, TELEGRAM_WEBHOOK_PATH, [(name, value)], b'{"update_id": 1}') == 401
        for value in (odd, b"\xff\xfe\x80"):
            headers = [(b"X-Webhook-Timestamp", b"1786428202"), (b"X-Webhook-Signature", value)]
            assert await post_raw(port, KIE_CALLBACK_PATH, headers, callback) == 401
            replicate = [(b"webhook-id", value), (b"webhook-timestamp", value), (b"webhook-signature", value)]
            assert await post_raw(port, REPLICATE_WEBHOOK_PATH, replicate, b'{"id": "x"}') == 401
            generator = [(b"X-Timestamp", str(int(time.time())).encode()), (b"X-Signature", value)]
            assert await post_raw(port, SELFHOSTED_WEBHOOK_PATH, generator, b'{"job_id": "x"}') == 401
        assert stack.kie.record_info_calls == [] and stack.generator.status_calls == []


async def test_metrics_token_guards_metrics_and_health_detail(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", METRICS_TOKEN="scrape-me")
    async with running_app(settings) as app, aiohttp.ClientSession() as client:
        base = f"http://127.0.0.1:{app.port}"
        async with client.get(f"{base}/metrics") as response:
            assert response.status == 401
        async with client.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with client.get(f"{base}/metrics", headers={"Authorization": "Bearer \u0444"}) as response:
            assert response.status == 401
        async with client.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-me"}) as response:
            assert response.status == 200 and "pinglass" in await response.text()
        async with client.get(f"{base}/healthz") as response:
            assert response.status in (200, 503) and set(await response.json()) == {"status"}
        async with client.get(f"{base}/healthz", headers={"Authorization": "Bearer scrape-me"}) as response:
            assert {"status", "database", "scheduler"} <= set(await response.json())


async def test_a_callback_that_outruns_our_submitted_commit_is_fetched_by_the_submitter(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id of a genuine early callback is unknown to the database when it arrives (404, no fetch);
    the submitter, once its commit lands, fetches it itself: results do not wait for the poll."""
    slow_polls = json.loads(json.dumps(FAST_POLICY))
    for provider in slow_polls["providers"]:
        provider |= {"first_poll_after_seconds": 300.0, "poll_every_seconds": 300.0, "stuck_after_seconds": 600.0}
    async with FakeKie(latency=(0.0, 0.01)) as kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(kie, FALLBACK_POLICY=json.dumps(slow_polls)),
        )
        async with running_app(settings) as app:
            submitter = app.engine_service.submitter
            record_submitted = submitter._record_submitted

            async def commit_late(*args: Any, **kwargs: Any) -> bool:
                # Commit only once this task's callback has been answered (not after a fixed delay,
                # which a busy machine outlasts): the callback must have outrun the commit.
                provider_task_id = kwargs.get("provider_task_id", args[4] if len(args) > 4 else None)
                async with asyncio.timeout(20):
                    while not any(
                        record.task_id == provider_task_id and record.status is not None for record in kie.callbacks
                    ):
                        await asyncio.sleep(0.02)
                return bool(await record_submitted(*args, **kwargs))

            monkeypatch.setattr(submitter, "_record_submitted", commit_late)
            job_id = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()
            for _ in range(300):
                async with app.sessionmaker() as session:
                    stored = await session.scalar(
                        select(func.count(GenerationTask.id)).where(
                            GenerationTask.job_id == job_id, GenerationTask.result_key.is_not(None)
                        )
                    )
                if stored == 7:
                    break
                await asyncio.sleep(0.1)
            assert stored == 7
            assert [record.status for record in kie.callbacks] == [404] * 7
            assert len(kie.record_info_calls) == 7  # one fetch per task, by the submitter
