"""/metrics and /healthz of the real application: the Prometheus text parses with prometheus-client's
own parser and follows the work; /healthz reports breaker states and turns 503 for a dead database,
a stale scheduler, or every provider's breaker open."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.app import Application
from studio.states import JobStatus, TaskStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job
from tests.fakes.kie import FakeKie
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app
from tests.integration.test_payments import until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(app: Application) -> Samples:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{app.port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _labels), v in samples.items() if sample == name)


async def health(app: Application) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{app.port}/healthz") as response:
            return response.status, await response.json()


async def test_metrics_parse_and_follow_a_job_from_queue_to_delivery(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    # No image provider configured: a paid job waits in the queue.
    idle = app_settings(fake_telegram, database_url, tmp_path / "files")
    async with running_app(idle, with_bot=False) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        await asyncio.sleep(0.3)
        waiting = await scrape(app)
        assert value(waiting, "pinglass_jobs", status="queued") == 1
        assert value(waiting, "pinglass_queue_depth") == 1
        assert 0.2 < value(waiting, "pinglass_queue_oldest_age_seconds") < 60
        assert total(waiting, "pinglass_tasks") == 0
        assert all(
            value(waiting, "pinglass_jobs", status=status.value) == 0 for status in JobStatus if status != "queued"
        )
        status, body = await health(app)
        assert status == 200 and body["providers"] == {"ok": True, "breakers": {}, "paused": []}
        await asyncio.sleep(2.1)  # past the gauges' cache: the age is read anew and has grown
        assert value(await scrape(app), "pinglass_queue_oldest_age_seconds") > value(
            waiting, "pinglass_queue_oldest_age_seconds"
        )

    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=(0.3, 0.6)) as kie:
        settings = app_settings(fake_telegram, database_url, tmp_path / "files", webhook=True, **provider_settings(kie))
        async with running_app(settings) as app:

            async def some_stored() -> bool:
                return (await job_row(app.sessionmaker, job_id)).photos_completed > 0

            await until(some_stored, timeout=30, what="a first portrait stored")
            working = await scrape(app)
            assert value(working, "pinglass_jobs", status="queued") == 0
            assert (
                value(working, "pinglass_jobs", status="processing")
                + value(working, "pinglass_jobs", status="delivering")
                == 1
            )
            assert total(working, "pinglass_tasks") == 7
            assert value(working, "pinglass_queue_depth") == 0
            assert value(working, "pinglass_queue_oldest_age_seconds") == 0
            assert value(working, "pinglass_provider_breaker", provider="kie", state="closed") == 1

            async def finished() -> bool:
                return (await job_row(app.sessionmaker, job_id)).status == JobStatus.COMPLETED

            await until(finished, timeout=60, what="job completed")
            await user.wait_reply(lambda m: "portraits are here" in m.content, timeout=10)
            await asyncio.sleep(2.1)
            done = await scrape(app)
            assert value(done, "pinglass_jobs", status="completed") == 1
            assert value(done, "pinglass_tasks", status=TaskStatus.DELIVERED.value) == 7
            assert total(done, "pinglass_tasks") == 7
            assert value(done, "pinglass_provider_latency_seconds_count", provider="kie") == 7
            # The fake never answers in under 0.3 s, so the sum has a floor; the buckets are cumulative.
            assert value(done, "pinglass_provider_latency_seconds_sum", provider="kie") >= 7 * 0.3
            buckets = sorted(
                (float(dict(labels)["le"]), count)
                for (name, labels), count in done.items()
                if name == "pinglass_provider_latency_seconds_bucket" and dict(labels).get("provider") == "kie"
            )
            counts = [count for _le, count in buckets]
            assert counts == sorted(counts) and buckets[-1] == (float("inf"), 7)
            assert value(done, "pinglass_provider_latency_seconds_bucket", provider="kie", le="+Inf") == 7
            sends = value(done, "pinglass_telegram_sends_total", method="SendMediaGroup") + value(
                done, "pinglass_telegram_sends_total", method="SendPhoto"
            )
            assert sends >= 1 and total(done, "pinglass_telegram_sends_total") > sends  # progress, messages too
            assert value(done, "pinglass_telegram_429_total") == 0
            assert value(done, "pinglass_metrics_refresh_errors_total") == 0


async def test_healthz_is_unhealthy_when_every_breaker_is_open_and_reports_states(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=40, create_window_seconds=1.0) as kie:
        # Kie's createTask answers 500 (transient, so tasks are retried): five failures in a row open its breaker.
        kie.inject_error(500, times=100, endpoint="createTask", msg="server error", http_status=500)
        settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", **provider_settings(kie))
        async with running_app(settings, with_bot=False) as app:
            status, body = await health(app)
            assert status == 200 and body["providers"]["breakers"] == {"kie": "closed"}
            await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=777, pack="p7")
            app.signals.job_queued()

            async def unhealthy() -> bool:
                return (await health(app))[0] == 503

            await until(unhealthy, timeout=30, what="the breaker to open")
            status, body = await health(app)
            assert body["status"] == "unhealthy"
            assert body["providers"] == {"ok": False, "breakers": {"kie": "open"}, "paused": []}
            assert body["database"]["ok"] and body["scheduler"]["ok"]  # only the providers are down
            samples = await scrape(app)
            assert value(samples, "pinglass_provider_breaker", provider="kie", state="open") == 1
            assert value(samples, "pinglass_provider_breaker", provider="kie", state="closed") == 0


async def test_healthz_is_unhealthy_without_database_or_with_a_stale_scheduler(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files")
    database = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    async with running_app(settings, with_bot=False) as app:
        status, body = await health(app)
        assert status == 200 and body["status"] == "ok"

        # The scheduler stops beating: stale after three missed beats.
        app.scheduler.pause()
        app.heartbeat.last_beat = time.monotonic() - app.heartbeat.interval_seconds * 3 - 1
        status, body = await health(app)
        assert status == 503 and body["scheduler"]["ok"] is False and body["database"]["ok"] is True
        app.scheduler.resume()
        app.heartbeat.beat()
        assert (await health(app))[0] == 200

        # The database file disappears (a directory in its place): no connection can be opened.
        await app.db_engine.dispose()
        moved = database.with_suffix(".away")
        shutil.move(database, moved)
        database.mkdir()
        try:
            status, body = await health(app)
            assert status == 503 and body["database"]["ok"] is False and body["database"]["error"]
            assert body["scheduler"]["ok"] is True
            samples = await scrape(app)  # /metrics still answers, and counts the failed read
            assert value(samples, "pinglass_metrics_refresh_errors_total") == 1
        finally:
            database.rmdir()
            shutil.move(moved, database)
        await app.db_engine.dispose()
        assert (await health(app))[0] == 200
