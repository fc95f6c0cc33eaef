"""Analytics events and logs through the real application: a full paid run against fake Telegram,
fake Kie.ai and fake YooKassa records every event once, at its moment, with its properties; the
structured logs of that run carry the ids and never a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import Application, configure_logging
from bot.callbacks import OrderCb
from bot.web import YOOKASSA_PATH
from providers.stars import StarsPayments
from storage import jobs
from storage.events import EventName
from storage.models import Event, GenerationJob, GenerationTask, Order, Payment, User
from studio.states import JobStatus, PaymentStatus, TaskStatus
from tests.engine_support import job_row, provider_settings, seed_paid_job, seed_unpaid_order
from tests.fakes.kie import FakeKie, Outcome
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa
from tests.harness import app_settings, running_app
from tests.image_corpus import selfie_set, small_jpeg
from tests.integration.test_payments import choose, has_button, has_text, tap, until, url_of
from tests.ledger_check import assert_ledger_balanced

TIMEOUT = 30.0  # a wait, not a bound: CI once needed more than 15 s on a loaded machine
POLICY_REFUSAL = Outcome("fail", fail_code="400", fail_msg="content policy violation", latency=0.3)


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the process logs, down to DEBUG, through the app's own (redacting) handler, as JSON."""
    stream = io.StringIO()
    root = logging.getLogger()
    noisy = ("aiogram.event", "apscheduler", "httpx", "httpcore", "aiosqlite", "asyncio")
    before = root.level, {name: logging.getLogger(name).level for name in noisy}
    handler: logging.Handler | None = None

    def install(application_settings: Any) -> None:
        nonlocal handler
        handler = configure_logging(application_settings, stream=stream)
        root.setLevel(logging.DEBUG)
        # Libraries that log URLs (httpx: every request URL) at full volume: redaction must hold anyway.
        for name in ("aiogram.event", "apscheduler", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger("aiosqlite").setLevel(logging.INFO)  # one line per cursor call: only volume

    stream.install = install  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        if handler is not None:
            root.removeHandler(handler)
        root.setLevel(before[0])
        for name, level in before[1].items():
            logging.getLogger(name).setLevel(level)


@asynccontextmanager
async def paid_app(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path, kie: FakeKie, **overrides: Any
) -> AsyncIterator[tuple[Application, FakeYooKassa]]:
    async with FakeYooKassa() as kassa:
        settings = app_settings(
            fake_telegram,
            database_url,
            tmp_path / "files",
            webhook=True,
            **provider_settings(
                kie,
                POLL_INTERVAL_SECONDS=1,
                **kassa.app_settings(),
                **overrides,
            ),
        )
        kassa.webhook_url = f"http://127.0.0.1:{settings.WEB_PORT}{YOOKASSA_PATH}"
        async with running_app(settings) as app:
            yield app, kassa
            await kassa.wait_notifications()
            await assert_ledger_balanced(app.sessionmaker)


async def events(app: Application) -> list[Event]:
    async with app.sessionmaker() as session:
        return list((await session.execute(select(Event).order_by(Event.id))).scalars())


def named(rows: list[Event], name: EventName) -> list[Event]:
    return [row for row in rows if row.name == name]


async def job_done(app: Application, job_id: int) -> bool:
    job = await job_row(app.sessionmaker, job_id)
    return job.status in (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED)


async def intake_to_summary(app: Application, user: FakeUser) -> int:
    """/start from a deep link, one photo refused, five taken, Professional, 7 photos: the order id."""
    await user.send_command("/start", args="src_instagram")
    await user.wait_reply(has_button("New photo session"), timeout=TIMEOUT)
    await user.click("New photo session")
    await user.wait_reply(timeout=TIMEOUT)
    await user.send_photo(small_jpeg())
    await user.wait_reply(has_text("too small"), timeout=TIMEOUT)
    await user.send_album(selfie_set(5))
    await user.wait_reply(has_button("Done"), timeout=TIMEOUT)
    await user.click("Done")
    await user.wait_reply(has_button("Professional"), timeout=TIMEOUT)
    await user.click("Professional")
    await user.wait_reply(has_button("7 photos"), timeout=TIMEOUT)
    await user.click("7 photos")
    summary = await user.wait_reply(has_text("Your order"), timeout=TIMEOUT)
    order_id = OrderCb.unpack(summary.buttons[0]["callback_data"]).order_id

    async def saved() -> bool:
        async with app.sessionmaker() as session:
            return await session.get(Order, order_id) is not None

    await until(saved, what="order saved")
    return order_id


async def test_full_paid_run_records_every_event_once_at_its_moment(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    async with FakeKie(create_limit=40, create_window_seconds=1.0, latency=(0.05, 0.3)) as kie:
        async with paid_app(fake_telegram, database_url, tmp_path, kie, LOG_FORMAT="json") as (app, kassa):
            captured_logs.install(app.settings)  # type: ignore[attr-defined]
            user = fake_telegram.user(language_code="en")
            order_id = await intake_to_summary(app, user)
            rows = await events(app)
            assert [row.name for row in rows] == [EventName.USER_STARTED, EventName.PHOTO_REJECTED]
            assert rows[0].properties == {"source": "instagram"}
            assert rows[1].properties == {"reason": "too_small"}

            # First attempt expires (payment_canceled), the second is paid; YooKassa repeats itself.
            first_link = await choose(user, "By card")
            first_id = next(iter(kassa.payments))
            await kassa.expire(first_id)
            await user.wait_reply(has_text("expired"), timeout=TIMEOUT)
            await user.click("Pay again")
            await user.wait_reply(has_text("How would you like to pay"), timeout=TIMEOUT)
            second_link = await tap(user, "By card")
            assert url_of(second_link) != url_of(first_link)
            second_id = next(pid for pid in kassa.payments if pid != first_id)
            # The first created task is refused for good: one generation_failed, a partial pack.
            kie.queue_outcomes(POLICY_REFUSAL)
            kassa.hold_notifications = True
            await kassa.pay(second_id)
            assert await kassa.notify(second_id, duplicates=3, concurrent=True) == [200] * 3
            assert await kassa.release_notifications() == [200]
            await user.wait_reply(has_text("Payment received!"), timeout=TIMEOUT)

            async with app.sessionmaker() as session:
                job = (
                    await session.execute(select(GenerationJob).where(GenerationJob.order_id == order_id))
                ).scalar_one()
            await until(lambda: job_done(app, job.id), timeout=60, what="job finished")
            await user.wait_reply(has_text("could not be made"), timeout=TIMEOUT)

            async with app.sessionmaker() as session:
                db_user = (await session.execute(select(User).where(User.telegram_id == user.id))).scalar_one()
                job = await session.get(GenerationJob, job.id)
                payments = list((await session.execute(select(Payment).order_by(Payment.id))).scalars())
                tasks = list(
                    (
                        await session.execute(
                            select(GenerationTask).where(GenerationTask.job_id == job.id).order_by(GenerationTask.id)
                        )
                    ).scalars()
                )
            assert job is not None and job.status == JobStatus.PARTIAL
            rows = await events(app)

    by_name = [row.name for row in rows]
    # Exactly once each, despite the duplicate notifications, concurrent submits and delivery passes.
    for name, count in {
        EventName.USER_STARTED: 1,
        EventName.PHOTO_REJECTED: 1,
        EventName.PAYMENT_CREATED: 2,
        EventName.PAYMENT_CANCELED: 1,
        EventName.PAYMENT_SUCCEEDED: 1,
        EventName.PAYMENT_REFUNDED: 0,
        EventName.GENERATION_QUEUED: 1,
        EventName.GENERATION_STARTED: 1,
        EventName.GENERATION_COMPLETED: 6,
        EventName.IMAGE_STORED: 6,
        EventName.GENERATION_FAILED: 1,
        EventName.PACK_COMPLETED: 1,
    }.items():
        assert by_name.count(name) == count, (name, by_name)
    assert all(row.user_id == db_user.id for row in rows)

    # In the order things happened (ids are commit order of the transitions that recorded them).
    def first(name: EventName) -> int:
        return by_name.index(name)

    assert by_name[:2] == [EventName.USER_STARTED, EventName.PHOTO_REJECTED]
    assert by_name[2:5] == [EventName.PAYMENT_CREATED, EventName.PAYMENT_CANCELED, EventName.PAYMENT_CREATED]
    assert by_name[5:7] == [EventName.PAYMENT_SUCCEEDED, EventName.GENERATION_QUEUED]  # one transaction
    assert first(EventName.GENERATION_STARTED) < first(EventName.GENERATION_COMPLETED)
    assert by_name[-1] == EventName.PACK_COMPLETED

    # Properties.
    first_payment, second_payment = payments
    assert (first_payment.status, second_payment.status) == (PaymentStatus.CANCELED, PaymentStatus.SUCCEEDED)
    money = named(rows, EventName.PAYMENT_CREATED) + named(rows, EventName.PAYMENT_CANCELED)
    money += named(rows, EventName.PAYMENT_SUCCEEDED)
    expected = {"provider": "yookassa", "amount": 49_000, "currency": "RUB", "order_id": order_id}
    assert all(row.properties.items() >= expected.items() for row in money)
    assert [row.properties["payment_id"] for row in money] == [first_payment.id, second_payment.id] * 2
    [queued] = named(rows, EventName.GENERATION_QUEUED)
    assert (queued.job_id, queued.properties) == (job.id, {"image_count": 7})
    [started] = named(rows, EventName.GENERATION_STARTED)
    assert started.properties == {"provider": "kie", "model": "nano-banana-2"}
    # Recorded in the transaction of the job's first submission: not before any submission, and
    # before any result was stored (a result is taken only after its own submission committed). Not
    # compared with provider_done_at: that is when the provider says it finished, which a fast one
    # does before our commit.
    first_submit = min(task.submitted_at for task in tasks if task.submitted_at)
    first_stored = min(task.stored_at for task in tasks if task.stored_at)
    assert first_submit <= started.created_at <= first_stored

    stored = {task.id: task for task in tasks if task.status == TaskStatus.DELIVERED}
    assert len(stored) == 6
    for row in named(rows, EventName.GENERATION_COMPLETED):
        task = stored[row.properties["task_id"]]
        assert task.stored_at is not None and task.submitted_at is not None
        submit_to_stored = (task.stored_at - task.submitted_at).total_seconds() * 1000
        assert abs(row.properties["duration_ms"] - submit_to_stored) <= 1
        assert row.job_id == job.id
        # Every create priced at nano-banana-2's table price, in USD.
        assert task.model == "nano-banana-2" and task.cost_micros == 40_000 * task.attempts
        assert row.properties["cost"] == task.cost_micros / 1_000_000
    for row in named(rows, EventName.IMAGE_STORED):
        task = stored[row.properties["task_id"]]
        assert row.properties["size_bytes"] == len(await app.files.get(task.result_key or ""))
    [failed] = named(rows, EventName.GENERATION_FAILED)
    [skipped] = [task for task in tasks if task.status == TaskStatus.SKIPPED]
    assert failed.properties == {"scope": "task", "task_id": skipped.id, "error_type": "rejected"}
    [pack] = named(rows, EventName.PACK_COMPLETED)
    assert job.finished_at is not None
    total_ms = (job.finished_at - job.created_at).total_seconds() * 1000
    assert pack.properties["image_count"] == 6 and pack.properties["skipped"] == 1
    assert abs(pack.properties["total_duration_ms"] - total_ms) <= 1
    # The pack's cost counts the refused portrait's create too: the provider accepted it.
    assert pack.properties["cost"] == sum(task.cost_micros for task in tasks) / 1_000_000 > 0

    # Logs: one JSON object per line, the events among them with their ids; no secret anywhere.
    text = captured_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) > 50  # DEBUG of aiogram, httpx and the app all went through the handler
    logged = [line for line in lines if line.get("logger") == "pinglass.events"]
    assert sorted(line["event"] for line in logged) == sorted(by_name)  # logged once each, after commit
    assert all(line["user_id"] == db_user.id for line in logged)
    assert all(line["job_id"] == job.id for line in logged if line["event"].startswith(("generation", "image")))
    secrets = [value for value in app.settings.secret_values() if value]
    assert app.settings.BOT_TOKEN.get_secret_value() in secrets and kie.api_key in secrets
    assert kassa.secret_key in secrets
    for secret in secrets:
        assert secret not in text
    assert "confirmation_url" not in text and '"payment_method"' not in text  # no payment bodies


async def test_stars_payment_and_refund_record_created_succeeded_refunded(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files")
    async with running_app(settings) as app:
        user = fake_telegram.user(language_code="en")
        order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
        await user.successful_payment(f"order:{order_id}", "XTR", 250, telegram_payment_charge_id="stxEVENTS")
        await fake_telegram.wait_until(lambda: any("Payment received" in m.content for m in user.messages), timeout=10)
        # The same successful_payment again, twice at once (what the handler calls): nothing new.
        repeats = await asyncio.gather(
            *(app.payments.stars_paid(order_id, user.id, "stxEVENTS", "XTR", 250) for _ in range(2))
        )
        assert [result.credited if result else None for result in repeats] == [False, False]
        async with app.sessionmaker() as session:
            payment = (
                await session.execute(select(Payment).where(Payment.provider_payment_id == "stxEVENTS"))
            ).scalar_one()
            job = (await session.execute(select(GenerationJob).where(GenerationJob.order_id == order_id))).scalar_one()
            assert await jobs.cancel_queued_job(session, job.id)
            await session.commit()
        stars = StarsPayments(app.bot)
        assert await app.payments.refund_stars(payment.id, stars) is True
        assert await app.payments.refund_stars(payment.id, stars) is False
        rows = await events(app)

    names = [row.name for row in rows]
    assert names == [
        EventName.PAYMENT_CREATED,
        EventName.PAYMENT_SUCCEEDED,
        EventName.GENERATION_QUEUED,
        EventName.PAYMENT_REFUNDED,
    ]
    expected = {"provider": "stars", "amount": 250, "currency": "XTR", "order_id": order_id, "payment_id": payment.id}
    assert all(row.properties == expected for row in rows if row.name.startswith("payment_"))
    assert {row.user_id for row in rows} == {payment.user_id}


async def test_a_job_whose_every_task_fails_records_task_and_job_failures(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeKie(create_limit=40, create_window_seconds=1.0) as kie:
        # Slow refusals: all seven creates go out before the first failure opens Kie's breaker.
        kie.queue_outcomes(*[Outcome("fail", fail_code="400", fail_msg="content policy", latency=1.0)] * 7)
        settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True, **provider_settings(kie))
        async with running_app(settings) as app:
            user = fake_telegram.user(language_code="en")
            job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
            app.signals.job_queued()
            await until(lambda: job_done(app, job_id), timeout=30, what="job settled")
            await user.wait_reply(has_text("could not make your portraits"), timeout=TIMEOUT)
            rows = await events(app)
            assert (await job_row(app.sessionmaker, job_id)).status == JobStatus.FAILED

    failures = named(rows, EventName.GENERATION_FAILED)
    assert sorted(row.properties["scope"] for row in failures) == ["job"] + ["task"] * 7
    assert all(row.properties["error_type"] == "rejected" for row in failures if row.properties["scope"] == "task")
    assert failures[-1].properties == {"scope": "job", "error_type": "all_tasks_failed"}
    assert len({row.properties.get("task_id") for row in failures if row.properties["scope"] == "task"}) == 7
    assert not named(rows, EventName.PACK_COMPLETED) and not named(rows, EventName.GENERATION_COMPLETED)
    assert len(named(rows, EventName.GENERATION_STARTED)) == 1
    # The seeded payment's events name its order, not a job.
    job_events = [row for row in rows if row.name != EventName.USER_STARTED and not row.name.startswith("payment_")]
    assert {row.job_id for row in job_events} == {job_id}
