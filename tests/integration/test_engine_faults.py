"""Engine under faults: forged and duplicate callbacks, the breaker, and a 40-job backlog without 429s."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import Application
from storage import ledger
from storage.models import GenerationTask
from studio.policy import BreakerState, CircuitBreaker
from studio.states import JobStatus, TaskStatus
from tests.engine_support import (
    CRASH_LEASE,
    FAST_POLICY,
    job_row,
    provider_settings,
    seed_paid_job,
    task_statuses,
    wait_until_stored,
)
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.replicate import FakeReplicate, sign_webhook
from tests.fakes.telegram import FakeTelegram
from tests.harness import album_sizes, app_settings, running_app

KIE_FORGERIES = ("bad_signature", "stale_timestamp", "unsigned", "unknown_task", "premature_success")


async def _all_stored(app: object, job_ids: list[int], per_job: int, timeout: float = 60) -> None:  # noqa: ASYNC109
    await wait_until_stored(app.sessionmaker, job_ids, per_job, timeout)  # type: ignore[attr-defined]


async def test_forged_callbacks_are_rejected_and_duplicates_are_harmless(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(
        hmac_key="kie-hmac-secret",
        create_limit=40,
        create_window_seconds=1.0,
        latency=(0.3, 0.6),
        duplicate_callbacks=2,
    ) as kie:
        settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, **provider_settings(kie))
        async with running_app(settings) as app:
            job_id = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()
            await kie.wait_for_task_count(1, within_seconds=10)
            task_id = next(iter(kie.tasks))
            url = f"http://127.0.0.1:{app.port}/providers/kie/callback"
            body = kie.callback_body(kie.tasks[task_id], state="success")
            async with aiohttp.ClientSession() as client:
                bad = {"X-Webhook-Timestamp": str(int(time.time())), "X-Webhook-Signature": "Zm9yZ2Vk"}
                async with client.post(url, json=body, headers=bad) as response:
                    assert response.status == 401
                async with client.post(url, json=body) as response:  # no signature at all
                    assert response.status == 401
            await _all_stored(app, [job_id], 7)
            async with app.sessionmaker() as session:
                tasks = list((await session.execute(select(GenerationTask))).scalars())
            assert len(tasks) == 7 and len({t.result_key for t in tasks}) == 7
            assert sum(1 for c in kie.callbacks if c.status == 200) >= 7 * 2  # duplicates were answered, once settled


async def _delivered_once(app: object, fake_telegram: FakeTelegram, chat_id: int, job_id: int) -> None:
    """Until the job is completed: its portraits reached the chat once each. (Leaving the app mid-delivery
    made its stop hang 30-60 s at times, in the cancelled delivery worker's release_delivery.)"""
    async with asyncio.timeout(60):
        while (await job_row(app.sessionmaker, job_id)).status != JobStatus.COMPLETED:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
    assert sum(album_sizes(fake_telegram, chat_id)) == 3


def _patient_policy() -> str:
    """The fast test policy, but no task is given up as stuck while a test holds it running."""
    policy = copy.deepcopy(FAST_POLICY)
    for provider in policy["providers"]:
        provider["stuck_after_seconds"] = 600.0
    return json.dumps(policy)


async def _tasks_of(app: object, job_id: int) -> list[GenerationTask]:
    async with app.sessionmaker() as session:  # type: ignore[attr-defined]
        return list((await session.execute(select(GenerationTask).where(GenerationTask.job_id == job_id))).scalars())


async def _trial_held_at_the_provider(app: Application, telegram_id: int) -> tuple[int, int, int]:
    """A paid trial pack whose three tasks are submitted (and held running by the provider): the job, its
    user and the user's balance at that moment."""
    job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=telegram_id, pack="trial")
    app.signals.job_queued()
    async with asyncio.timeout(60):
        while (await task_statuses(app.sessionmaker, job_id)) != {TaskStatus.SUBMITTED: 3}:
            await asyncio.sleep(0.05)
    user_id = (await job_row(app.sessionmaker, job_id)).user_id
    async with app.sessionmaker() as session:
        return job_id, user_id, await ledger.balance(session, user_id)


async def test_forged_kie_callbacks_are_refused_at_the_endpoint_and_change_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """Every forgery FakeKie can send, at the real POST /providers/kie/callback while the job's tasks run:
    refused (a signed callback for a task we never sent: not found), or, signed but claiming success
    too early, re-fetched and found running. Nothing is stored until Kie really finishes; then each
    portrait is stored once."""
    async with FakeKie(hmac_key="kie-hmac-secret", create_limit=40, create_window_seconds=1.0) as kie:
        kie.queue_outcomes(*[Outcome("stuck", latency=0.01)] * 3)  # running until kie.finish()
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(kie, FALLBACK_POLICY=_patient_policy()),
        )
        async with running_app(settings) as app:
            user = fake_telegram.user()
            job_id, user_id, balance_before = await _trial_held_at_the_provider(app, user.id)
            task_ids = sorted(kie.tasks)

            url = f"http://127.0.0.1:{app.port}/providers/kie/callback"
            answers = {kind: await kie.send_forged_callback(task_ids[0], kind, url=url) for kind in KIE_FORGERIES}

            assert answers == {
                "bad_signature": 401,
                "stale_timestamp": 401,
                "unsigned": 401,
                "unknown_task": 404,  # correctly signed, but no task of ours: refused before any re-fetch
                "premature_success": 200,  # signed: accepted, re-fetched, and Kie says it is still running
            }
            forged_ids = {callback.task_id for callback in kie.callbacks if callback.kind == "unknown_task"}
            assert forged_ids and not forged_ids & set(kie.record_info_calls)  # no call to Kie spent on it
            tasks = await _tasks_of(app, job_id)
            assert {task.status for task in tasks} == {TaskStatus.SUBMITTED}
            assert all(task.result_key is None for task in tasks)
            assert not list((tmp_path / "files").glob("results/**/*.*"))
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, user_id) == balance_before
            sent = [call.method for call in fake_telegram.calls(chat_id=user.id)]
            assert "sendPhoto" not in sent and "sendMediaGroup" not in sent

            for task_id in task_ids:  # Kie finishes and sends its genuine, signed callbacks
                await kie.finish(task_id)
            await _all_stored(app, [job_id], 3)
            tasks = await _tasks_of(app, job_id)
            assert len(tasks) == 3 and len({task.result_key for task in tasks}) == 3
            assert len(list((tmp_path / "files").glob("results/**/*.*"))) == 6  # a portrait and thumbnail each
            assert {task.provider_task_id for task in tasks} == set(task_ids)
            genuine = [callback for callback in kie.callbacks if callback.kind == "genuine"]
            assert sorted(callback.task_id for callback in genuine) == task_ids
            assert {callback.status for callback in genuine} == {200}
            await _delivered_once(app, fake_telegram, user.id, job_id)


async def test_breaker_opens_while_kie_is_down_and_closes_after_recovery(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        FakeKie(create_limit=40, create_window_seconds=1.0, latency=(0.05, 0.1)) as kie,
        FakeReplicate(latency=(0.05, 0.1)) as replicate,
    ):
        settings = app_settings(
            fake_telegram, sqlite_url, tmp_path / "files", webhook=True, **provider_settings(kie, replicate)
        )
        async with running_app(settings) as app:
            engine = app.engine_service
            # A cool-down long enough that the first pack is done (on Replicate) while it is still open
            # (4 s was not, on a loaded machine: a half-open probe then made an 8th call to the dead Kie).
            breaker = CircuitBreaker(failure_threshold=3, window_seconds=30, cooldown_seconds=8.0)
            engine.breakers["kie"] = breaker
            # Half-open probes are the breaker doing its job: on a loaded machine the first pack can
            # outlast a cool-down, and each probe is one more (legitimate) call to the dead Kie.
            probes = 0
            allow_request = CircuitBreaker.allow_request

            def counting_allow_request(self: CircuitBreaker, now: datetime) -> bool:
                nonlocal probes
                probing = self is breaker and self.state(now) == BreakerState.HALF_OPEN
                allowed = allow_request(self, now)
                probes += int(allowed and probing)
                return allowed

            monkeypatch.setattr(CircuitBreaker, "allow_request", counting_allow_request)
            kie.outage = True
            first = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()
            await _all_stored(app, [first], 7)
            from storage.models import utcnow

            assert engine.breakers["kie"].state(utcnow()) == BreakerState.OPEN
            # The fake records every request, even those its outage answers with 500 (the reference
            # upload fails first, then nothing more is tried once the breaker is open).
            # The health probe's balance reads (at start, on its own clock) are not the engine's tries.
            kie_calls_during_outage = len([call for call in kie.requests if call.path != "/api/v1/chat/credit"])
            assert kie_calls_during_outage >= 3  # the outage was really hit
            kie.outage = False
            await asyncio.sleep(8.2)  # the cool-down passes: the next fresh task probes Kie
            second = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()
            await _all_stored(app, [second], 7)
            assert engine.breakers["kie"].state(utcnow()) == BreakerState.CLOSED
            async with app.sessionmaker() as session:
                providers = (
                    (await session.execute(select(GenerationTask.provider).where(GenerationTask.job_id == second)))
                    .scalars()
                    .all()
                )
            assert "kie" in providers
            # 7 tasks × 2 attempts would be 14 tries on a dead Kie. The budget admits the whole pack at
            # once, so each task may try Kie once before the breaker opens; none tries it twice.
            assert kie_calls_during_outage <= 7 + probes
            assert replicate.creates


async def test_a_backlog_of_40_jobs_never_makes_kie_answer_429(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    # 120 creates against 20 a second: six full windows of backlog (the size of the backlog costs
    # seconds of CPU per hundred portraits in this one process, and adds nothing past a few windows).
    async with FakeKie(create_limit=20, create_window_seconds=1.0, latency=(0.01, 0.05)) as kie:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(kie),
        )
        async with running_app(settings) as app:
            users = [fake_telegram.user() for _ in range(40)]
            job_ids = [
                await seed_paid_job(
                    app.sessionmaker, app.files, app.catalogue, telegram_id=u.id, pack="trial", selfies=5
                )
                for u in users
            ]
            app.signals.job_queued()
            await _all_stored(app, job_ids, 3, timeout=120)
            assert kie.rate_limited_count == 0
            async with app.sessionmaker() as session:
                tasks = list((await session.execute(select(GenerationTask))).scalars())
            assert len(tasks) == 120 and all(t.status in (TaskStatus.STORED, TaskStatus.DELIVERED) for t in tasks)


async def test_forged_replicate_webhooks_are_rejected_at_the_endpoint(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeReplicate(latency=(0.05, 0.1)) as replicate:
        settings = app_settings(
            fake_telegram, sqlite_url, tmp_path / "files", webhook=True, **provider_settings(None, replicate)
        )
        async with running_app(settings) as app:
            url = f"http://127.0.0.1:{app.port}/providers/replicate/webhook"
            body = b'{"id": "forged", "status": "succeeded", "output": "https://example.invalid/x.png"}'
            stamp = str(int(time.time()))
            async with aiohttp.ClientSession() as client:
                for headers in (
                    {},
                    {"webhook-id": "msg_1", "webhook-timestamp": stamp, "webhook-signature": "v1,Zm9yZ2Vk"},
                    {"webhook-id": "msg_1", "webhook-timestamp": "1614265330", "webhook-signature": "v1,Zm9yZ2Vk"},
                ):
                    async with client.post(url, data=body, headers=headers) as response:
                        assert response.status == 401
            async with app.sessionmaker() as session:
                assert (await session.execute(select(GenerationTask))).first() is None


async def test_forged_replicate_webhooks_for_running_tasks_change_nothing_and_the_genuine_ones_store_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """At the real POST /providers/replicate/webhook while the job's predictions run: webhooks claiming
    success for them, but signed with another key, unsigned, stale or with the body changed after
    signing, are answered 401 and change nothing. When the predictions finish, each first webhook
    attempt is forged by FakeReplicate (401), its genuine retry is accepted, a duplicate after it is
    harmless: each portrait is stored once."""
    async with FakeReplicate(latency=(0.05, 0.1), webhook_retry_delays=(0.2, 0.5, 1.0, 2.0, 4.0)) as replicate:
        replicate.stick_next(3)  # processing until replicate.finish()
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(None, replicate, FALLBACK_POLICY=_patient_policy()),
        )
        async with running_app(settings) as app:
            user = fake_telegram.user()
            job_id, user_id, balance_before = await _trial_held_at_the_provider(app, user.id)
            prediction_ids = sorted(replicate.predictions)

            url = f"http://127.0.0.1:{app.port}/providers/replicate/webhook"
            claim = {"id": prediction_ids[0], "status": "succeeded", "output": f"{replicate.base_url}/delivery/x.png"}
            body = json.dumps(claim).encode()
            now = int(time.time())

            def signed(secret: str, timestamp: int, signed_body: bytes = body) -> dict[str, str]:
                return {
                    "Content-Type": "application/json",
                    "webhook-id": "msg_forged",
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign_webhook(secret, "msg_forged", timestamp, signed_body),
                }

            other_key = "whsec_" + base64.b64encode(b"not-replicate's-key-at-all-1234").decode()
            forgeries = {
                "another key": (signed(other_key, now), body),
                "unsigned": ({"Content-Type": "application/json"}, body),
                "stale": (signed(replicate.webhook_secret, now - 400), body),
                "body changed": (signed(replicate.webhook_secret, now, b'{"id": "x", "status": "failed"}'), body),
            }
            answers: dict[str, int] = {}
            async with aiohttp.ClientSession() as client:
                for name, (headers, data) in forgeries.items():
                    async with client.post(url, data=data, headers=headers) as response:
                        answers[name] = response.status
            assert answers == dict.fromkeys(forgeries, 401)
            tasks = await _tasks_of(app, job_id)
            assert {task.status for task in tasks} == {TaskStatus.SUBMITTED}
            assert all(task.result_key is None for task in tasks)
            assert not list((tmp_path / "files").glob("results/**/*.*"))
            async with app.sessionmaker() as session:
                assert await ledger.balance(session, user_id) == balance_before
            sent = [call.method for call in fake_telegram.calls(chat_id=user.id)]
            assert "sendPhoto" not in sent and "sendMediaGroup" not in sent

            replicate.webhook_forge_rate = 1.0  # every webhook's first attempt signed with a wrong key
            replicate.webhook_duplicate_rate = 1.0  # and sent twice once accepted
            for prediction_id in prediction_ids:
                replicate.finish(prediction_id)
            await _all_stored(app, [job_id], 3)
            async with asyncio.timeout(60):
                await replicate.wait_idle()
            tasks = await _tasks_of(app, job_id)
            assert len(tasks) == 3 and len({task.result_key for task in tasks}) == 3
            assert {task.provider_task_id for task in tasks} == set(prediction_ids)
            assert len(list((tmp_path / "files").glob("results/**/*.*"))) == 6  # a portrait and thumbnail each
            await _delivered_once(app, fake_telegram, user.id, job_id)
        completed = [attempt for attempt in replicate.webhooks if attempt.event == "completed"]
        assert sorted({attempt.prediction_id for attempt in completed if attempt.forged}) == prediction_ids
        assert {(attempt.forged, attempt.status) for attempt in completed} == {(True, 401), (False, 200)}
        assert sorted(attempt.prediction_id for attempt in completed if attempt.duplicate) == prediction_ids


async def test_a_restart_inside_a_busy_window_makes_no_kie_429(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """Without Redis the create window lives in the process; the next one reads it back from the
    database, so its first creates wait for the window the last one filled."""
    async with FakeKie(create_limit=7, create_window_seconds=6.0, latency=(0.05, 0.1)) as kie:
        # What the first process held comes back to the second within the test's time.
        restartable = provider_settings(kie, **CRASH_LEASE)
        settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, **restartable)
        async with running_app(settings) as app:
            first = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()
            await kie.wait_for_task_count(7, within_seconds=10)  # the window is full
            async with asyncio.timeout(10):  # and recorded: the restart is not mid-create
                while (await task_statuses(app.sessionmaker, first)).get(TaskStatus.PENDING, 0):
                    await asyncio.sleep(0.05)
        assert kie.rate_limited_count == 0
        async with running_app(settings) as app:
            second = await seed_paid_job(
                app.sessionmaker, app.files, app.catalogue, telegram_id=fake_telegram.user().id, pack="p7"
            )
            app.signals.job_queued()
            await _all_stored(app, [first, second], 7, timeout=90)
        assert kie.rate_limited_count == 0
