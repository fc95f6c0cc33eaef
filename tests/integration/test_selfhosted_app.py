"""The real app on the self-hosted generator (FakeGenerator): packs with and without webhooks, the
signed /files links it reads the selfies through, forged webhooks, and its place in the fallback order."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from sqlalchemy import select

from bot.app import Application
from bot.settings import Settings
from storage import ledger
from storage.files import S3FileStore, SignedFileUrls
from storage.models import GenerationTask, ReferencePhoto
from studio.states import JobStatus, TaskStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job, wait_until_stored
from tests.fakes.generator import FakeGenerator, sign_body
from tests.fakes.kie import FakeKie
from tests.fakes.replicate import FakeReplicate
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, free_port, running_app
from tests.moto_server import MotoS3Server, moto_s3_endpoint, unique_bucket_name

__all__ = ["moto_s3_endpoint"]  # the imported fixture is used by name


def _fast(name: str, max_attempts: int = 2) -> dict[str, Any]:
    return {
        "name": name,
        "max_attempts": max_attempts,
        "backoff_seconds": [0.05, 0.1],
        "stuck_after_seconds": 5.0,
        "first_poll_after_seconds": 0.1,
        "poll_every_seconds": 0.1,
    }


def generator_settings(generator: FakeGenerator, **extra: Any) -> dict[str, Any]:
    return {
        "GENERATOR_URL": generator.url,
        "GENERATOR_TOKEN": generator.token,
        "GENERATOR_WEBHOOK_SECRET": generator.webhook_secret,
        "FALLBACK_POLICY": json.dumps({"providers": [_fast("selfhosted")]}),
        **extra,
    }


def polling_only(fake_telegram: FakeTelegram, database_url: str, files_dir: Path, **overrides: Any) -> Settings:
    """No PUBLIC_URL: the generator reads the selfies through GENERATOR_FILES_URL, this app's own address."""
    port = free_port()
    return app_settings(
        fake_telegram,
        database_url,
        files_dir,
        WEB_PORT=port,
        GENERATOR_FILES_URL=f"http://127.0.0.1:{port}",
        **overrides,
    )


async def _selfie_keys(app: Application) -> set[str]:
    async with app.sessionmaker() as session:
        return set((await session.execute(select(ReferencePhoto.storage_key))).scalars())


async def _tasks(app: Application, job_id: int) -> list[GenerationTask]:
    async with app.sessionmaker() as session:
        rows = await session.execute(select(GenerationTask).where(GenerationTask.job_id == job_id))
        return list(rows.scalars())


async def _start_pack(app: Application, telegram_id: int, pack: str = "p7") -> int:
    job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=telegram_id, pack=pack)
    app.signals.job_queued()
    return job_id


def _assert_read_through_signed_links(generator: FakeGenerator, app: Application, selfie_keys: set[str]) -> None:
    assert generator.reference_fetches, "the generator fetched no reference"
    fetched_keys = set()
    for fetch in generator.reference_fetches:
        parts = urlsplit(fetch.url)
        query = parse_qs(parts.query)
        assert fetch.status == 200, fetch
        assert parts.netloc == f"127.0.0.1:{app.port}" and parts.path.startswith("/files/")
        assert set(query) == {"exp", "sig"}
        fetched_keys.add(parts.path.removeprefix("/files/"))
    assert fetched_keys == selfie_keys
    assert generator.leaked_token_urls == [] and generator.rejections == []


async def test_a_pack_completes_on_the_generator_with_webhooks(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeGenerator(latency=(0.05, 0.15)) as generator:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(**generator_settings(generator)),
        )
        async with running_app(settings) as app:
            job_id = await _start_pack(app, fake_telegram.user().id)
            await wait_until_stored(app.sessionmaker, [job_id], 7, within_seconds=30)
            await generator.wait_idle()
            _assert_read_through_signed_links(generator, app, await _selfie_keys(app))
            tasks = await _tasks(app, job_id)
            assert {task.provider for task in tasks} == {"selfhosted"} and len({t.result_key for t in tasks}) == 7
            webhook_url = f"{settings.PUBLIC_URL}/providers/selfhosted/webhook"
            assert {call["webhook_url"] for call in generator.generate_calls} == {webhook_url}
            assert len(generator.jobs) == 7
            _assert_every_webhook_taken(generator, 7)


async def test_a_pack_completes_on_the_generator_polling_only(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeGenerator(latency=(0.05, 0.15)) as generator:
        settings = polling_only(
            fake_telegram, sqlite_url, tmp_path / "files", **provider_settings(**generator_settings(generator))
        )
        assert not settings.PUBLIC_URL
        async with running_app(settings) as app:
            job_id = await _start_pack(app, fake_telegram.user().id)
            await wait_until_stored(app.sessionmaker, [job_id], 7, within_seconds=30)
            _assert_read_through_signed_links(generator, app, await _selfie_keys(app))
            assert {call["webhook_url"] for call in generator.generate_calls} == {None}
            assert generator.webhooks == [] and len(generator.status_calls) >= 7
            assert {task.provider for task in await _tasks(app, job_id)} == {"selfhosted"}


async def test_with_files_in_s3_the_generator_reads_the_selfies_through_the_app_not_from_s3(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, moto_s3_endpoint: MotoS3Server
) -> None:
    s3 = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": unique_bucket_name("generator"),
        "S3_ENDPOINT_URL": moto_s3_endpoint.endpoint_url,
        "S3_REGION": moto_s3_endpoint.region,
        "S3_ACCESS_KEY": moto_s3_endpoint.access_key,
        "S3_SECRET_KEY": moto_s3_endpoint.secret_key,
    }
    async with FakeGenerator(latency=(0.05, 0.1)) as generator:
        settings = polling_only(
            fake_telegram, sqlite_url, tmp_path / "files", **provider_settings(**generator_settings(generator)), **s3
        )
        async with running_app(settings) as app:
            assert isinstance(app.files, S3FileStore)
            await app.files.ensure_bucket()
            job_id = await _start_pack(app, fake_telegram.user().id, pack="trial")
            await wait_until_stored(app.sessionmaker, [job_id], 3, within_seconds=30)
            _assert_read_through_signed_links(generator, app, await _selfie_keys(app))
            assert not any(moto_s3_endpoint.endpoint_url in fetch.url for fetch in generator.reference_fetches)


async def test_forged_and_expired_webhooks_are_refused_and_change_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeGenerator(latency=(0.02, 0.05)) as generator:
        generator.hold_next(3)
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(**generator_settings(generator)),
        )
        async with running_app(settings) as app:
            user = fake_telegram.user()
            job_id = await _start_pack(app, user.id, pack="trial")
            await generator.wait_for(lambda: len(generator.jobs) == 3)
            async with asyncio.timeout(10):
                while {task.status for task in await _tasks(app, job_id)} != {TaskStatus.SUBMITTED}:
                    await asyncio.sleep(0.05)
            async with app.sessionmaker() as session:
                balance_before = await ledger.balance(session, (await job_row(app.sessionmaker, job_id)).user_id)

            job_ids = sorted(generator.jobs)
            claim = json.dumps(
                {
                    "job_id": job_ids[0],
                    "status": "completed",
                    "result_url": f"{generator.url}/results/x.png",
                    "error": None,
                    "processing_time_ms": 5,
                }
            ).encode()
            now = int(time.time())
            genuine = sign_body(generator.webhook_secret, claim)
            forgeries = {
                "another key": (claim, {"X-Signature": sign_body("not-the-secret", claim), "X-Timestamp": str(now)}),
                "unsigned": (claim, {"X-Timestamp": str(now)}),
                "expired": (claim, {"X-Signature": genuine, "X-Timestamp": str(now - 400)}),
                "from the future": (claim, {"X-Signature": genuine, "X-Timestamp": str(now + 400)}),
                "body changed": (
                    claim.replace(b"completed", b"failed"),
                    {"X-Signature": genuine, "X-Timestamp": str(now)},
                ),
            }
            url = f"http://127.0.0.1:{app.port}/providers/selfhosted/webhook"
            answers = {}
            async with aiohttp.ClientSession() as client:
                for name, (body, headers) in forgeries.items():
                    async with client.post(
                        url, data=body, headers={"Content-Type": "application/json", **headers}
                    ) as response:
                        answers[name] = response.status
            assert answers == dict.fromkeys(forgeries, 401)

            tasks = await _tasks(app, job_id)
            assert {task.status for task in tasks} == {TaskStatus.SUBMITTED}
            assert all(task.result_key is None for task in tasks)
            assert not list((tmp_path / "files").glob("results/**/*.*"))
            async with app.sessionmaker() as session:
                assert (
                    await ledger.balance(session, (await job_row(app.sessionmaker, job_id)).user_id) == balance_before
                )
            sent = [call.method for call in fake_telegram.calls(chat_id=user.id)]
            assert "sendPhoto" not in sent and "sendMediaGroup" not in sent

            for generator_job in job_ids:
                generator.finish(generator_job)
            await wait_until_stored(app.sessionmaker, [job_id], 3, within_seconds=30)
            await generator.wait_idle()
            _assert_every_webhook_taken(generator, 3)


async def test_files_links_refuse_tampering_and_expiry_and_serve_only_jobs_in_flight(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeGenerator(latency=(0.02, 0.05)) as generator:
        generator.hold_next(3)
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(**generator_settings(generator)),
        )
        async with running_app(settings) as app:
            job_id = await _start_pack(app, fake_telegram.user().id, pack="trial")
            await generator.wait_for(lambda: len(generator.jobs) == 3 and len(generator.reference_fetches) >= 15)
            link = generator.reference_fetches[0].url
            parts = urlsplit(link)
            key = parts.path.removeprefix("/files/")
            query = parse_qs(parts.query)
            exp, sig = query["exp"][0], query["sig"][0]
            base = f"http://127.0.0.1:{app.port}"
            other_key = next(k for k in await _selfie_keys(app) if k != key)
            # Signed with the app's own secret, but an hour ago for one minute.
            expired = SignedFileUrls(settings.file_url_secret, base, clock=lambda: time.time() - 3600).url_for(key, 60)
            attempts = {
                "genuine": link,
                "signature changed": f"{base}/files/{key}?exp={exp}&sig={sig[:-1]}{'0' if sig[-1] != '0' else '1'}",
                "expiry pushed back": f"{base}/files/{key}?exp={int(exp) + 3600}&sig={sig}",
                "another key": f"{base}/files/{other_key}?exp={exp}&sig={sig}",
                "no signature": f"{base}/files/{key}",
                "expired": expired,
                "not a key": f"{base}/files/..%2Fsecrets?exp={exp}&sig={sig}",
            }
            answers = {}
            async with aiohttp.ClientSession() as client:
                for name, attempt in attempts.items():
                    async with client.get(attempt) as response:
                        answers[name] = response.status
                        if name == "genuine":
                            assert response.headers["Content-Type"] == "image/jpeg"
                            assert await response.read() == await app.files.get(key)
            assert answers == {name: 200 if name == "genuine" else 403 for name in attempts}

            for generator_job in sorted(generator.jobs):
                generator.finish(generator_job)
            async with asyncio.timeout(30):
                while (await job_row(app.sessionmaker, job_id)).status in (JobStatus.QUEUED, JobStatus.PROCESSING):
                    await asyncio.sleep(0.05)
            # The same genuine, unexpired link reads nothing once its job is no longer generating.
            async with aiohttp.ClientSession() as client, client.get(link) as response:
                assert response.status == 404


async def test_fallback_order_kie_then_generator_then_replicate(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """FALLBACK_POLICY kie,selfhosted,replicate: with Kie failing every task, they go to the generator;
    once the generator fails too, to Replicate."""
    policy = json.dumps({"providers": [_fast("kie", 1), _fast("selfhosted", 1), _fast("replicate", 2)]})
    async with (
        FakeKie(fail_rate=1.0, latency=(0.02, 0.05), create_limit=40, create_window_seconds=1.0) as kie,
        FakeGenerator(latency=(0.02, 0.05)) as generator,
        FakeReplicate(latency=(0.02, 0.05)) as replicate,
    ):
        values = provider_settings(kie, replicate, **generator_settings(generator, FALLBACK_POLICY=policy))
        settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, **values)
        async with running_app(settings) as app:
            first = await _start_pack(app, fake_telegram.user().id, pack="trial")
            await wait_until_stored(app.sessionmaker, [first], 3, within_seconds=30)
            assert {task.provider for task in await _tasks(app, first)} == {"selfhosted"}
            assert kie.tasks and not replicate.predictions  # Kie was tried first (until its breaker opened)
            _assert_read_through_signed_links(generator, app, await _selfie_keys(app))

            generator.fail_rate = 1.0
            second = await _start_pack(app, fake_telegram.user().id, pack="trial")
            await wait_until_stored(app.sessionmaker, [second], 3, within_seconds=30)
            assert {task.provider for task in await _tasks(app, second)} == {"replicate"}
            failed_on_generator = [job for job in generator.jobs.values() if job.status == "failed"]
            assert len(failed_on_generator) >= 3


def _assert_every_webhook_taken(generator: FakeGenerator, jobs: int) -> None:
    """One webhook per job, each taken: answered 200, or (one that outran our commit of the create)
    404 with the job fetched by the submitter instead, as with Kie, so it still arrives exactly once."""
    assert len(generator.webhooks) == jobs
    for hook in generator.webhooks:
        assert hook.status == 200 or (hook.status == 404 and hook.job_id in generator.status_calls)
