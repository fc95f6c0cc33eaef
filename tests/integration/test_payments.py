"""Issue 4, payments, end to end over real HTTP.

The real application (aiogram polling the fake Bot API, the aiohttp web app taking YooKassa
notifications, the scheduler reconciling) runs against the fake Telegram and the fake YooKassa,
which the real ``yookassa`` SDK talks to. Every money test ends with ``assert_ledger_balanced``,
which re-derives the ledger from payments and jobs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, select, update

from bot.app import Application
from bot.callbacks import OrderCb
from bot.settings import Settings
from bot.web import YOOKASSA_PATH
from providers.yookassa import YooKassaClient
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade_async
from storage.models import GenerationJob, GenerationTask, LedgerEntry, Order, Payment, User
from studio.generation import claim_key
from studio.states import JobStatus, LedgerReason, OrderStatus, PaymentProviderName, PaymentStatus, TaskStatus
from tests import ledger_check
from tests.endpoint_fuzz import table_contents
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa
from tests.harness import app_settings, callback_answer, running_app
from tests.image_corpus import selfie_set
from tests.ledger_check import assert_ledger_balanced

P7_RUB_KOPECKS = 49_000
P7_STARS = 250
REPLY_TIMEOUT = 10.0
CREATE_ROUTE = "POST /payments"
GET_ROUTE = "GET /payments/{payment_id}"


# ---------------------------------------------------------------- the running system


@asynccontextmanager
async def payment_app(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Application, FakeYooKassa]]:
    """The app with YooKassa (the fake) and Stars; the ledger must balance when the block ends."""
    async with FakeYooKassa() as kassa:
        values: dict[str, Any] = {
            "YOOKASSA_SHOP_ID": kassa.shop_id,
            "YOOKASSA_SECRET_KEY": kassa.secret_key,
            "YOOKASSA_API_URL": kassa.api_url,
            "YOOKASSA_RETURN_URL": "https://t.me/pinglass_test_bot",
            "YOOKASSA_TRUSTED_IPS": "127.0.0.1/32",
        }
        values.update(overrides)
        settings = app_settings(fake_telegram, database_url, tmp_path / "files", **values)
        kassa.webhook_url = f"http://127.0.0.1:{settings.WEB_PORT}{YOOKASSA_PATH}"
        async with running_app(settings) as app:
            yield app, kassa
            await kassa.wait_notifications()
            await assert_ledger_balanced(app.sessionmaker)


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float = REPLY_TIMEOUT, what: str = "") -> None:  # noqa: ASYNC109
    """Wait for a database condition (replies can overtake the commit of the update that sent them)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def has_text(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: fragment in message.content


def has_button(fragment: str) -> Callable[[ChatMessage], bool]:
    return lambda message: any(fragment in button.get("text", "") for button in message.buttons)


def url_of(message: ChatMessage) -> str:
    return next(button["url"] for button in message.buttons if "url" in button)


async def to_summary(app: Application, user: FakeUser, pack: str = "7 photos") -> int:
    """Drive a new user through the intake to the order summary; return the order id."""
    await user.send_command("/start")
    await user.wait_reply(has_button("New photo session"), timeout=REPLY_TIMEOUT)
    await user.click("New photo session")
    await user.wait_reply(timeout=REPLY_TIMEOUT)
    await user.send_album(selfie_set(5))
    await user.wait_reply(has_button("Done"), timeout=REPLY_TIMEOUT)
    await user.click("Done")
    await user.wait_reply(has_button("Professional"), timeout=REPLY_TIMEOUT)
    await user.click("Professional")
    await user.wait_reply(has_button(pack), timeout=REPLY_TIMEOUT)
    await user.click(pack)
    summary = await user.wait_reply(has_text("Your order"), timeout=REPLY_TIMEOUT)
    order_id = OrderCb.unpack(summary.buttons[0]["callback_data"]).order_id

    async def saved() -> bool:
        async with app.sessionmaker() as session:
            return await session.get(Order, order_id) is not None

    await until(saved, what=f"order {order_id} committed")
    return order_id


async def choose(user: FakeUser, method: str) -> ChatMessage:
    """From the summary: Pay, then the method ("By card" or "Telegram Stars"); the resulting message."""
    await user.click("💳 Pay")
    await user.wait_reply(has_text("How would you like to pay"), timeout=REPLY_TIMEOUT)
    return await tap(user, method)


async def tap(user: FakeUser, method: str) -> ChatMessage:
    await user.click(method)
    if method == "Telegram Stars":
        return await user.wait_reply(lambda message: message.kind == "invoice", timeout=REPLY_TIMEOUT)
    return await user.wait_reply(timeout=REPLY_TIMEOUT)


async def pre_checkout_answer(fake: FakeTelegram, update: dict[str, Any]) -> dict[str, Any]:
    query_id = update["pre_checkout_query"]["id"]
    call = await fake.wait_for(
        lambda call: (
            call.method == "answerPreCheckoutQuery" and str(call.params.get("pre_checkout_query_id")) == query_id
        ),
        timeout=REPLY_TIMEOUT,
    )
    return call.params


@dataclass
class Books:
    """What the database holds for one Telegram user."""

    user: User
    orders: list[Order]
    payments: list[Payment]
    jobs: list[GenerationJob]
    ledger: list[LedgerEntry]

    def lines(self, reason: LedgerReason) -> list[int]:
        return [entry.delta for entry in self.ledger if entry.reason == reason]


async def books(app: Application, telegram_id: int) -> Books:
    async with app.sessionmaker() as session:
        user = (await session.execute(select(User).where(User.telegram_id == telegram_id))).scalar_one()

        async def rows(model: Any) -> list[Any]:
            query = select(model).where(model.user_id == user.id).order_by(model.id)
            return list((await session.execute(query)).scalars())

        return Books(user, await rows(Order), await rows(Payment), await rows(GenerationJob), await rows(LedgerEntry))


def texts(fake: FakeTelegram, user: FakeUser, fragment: str) -> list[str]:
    return [message.content for message in fake.sent_messages(user.id) if fragment in message.content]


async def paid_message(user: FakeUser) -> ChatMessage:
    return await user.wait_reply(has_text("Payment received!"), timeout=REPLY_TIMEOUT)


async def assert_paid(app: Application, user: FakeUser, order_id: int) -> GenerationJob:
    """The user was told, and the order became exactly one paid job with its credits reserved."""
    await paid_message(user)
    return assert_one_paid_job(await books(app, user.id), order_id)


def assert_one_paid_job(state: Books, order_id: int, photos: int = 7) -> GenerationJob:
    assert [job.order_id for job in state.jobs] == [order_id]
    job = state.jobs[0]
    assert (job.status, job.priority, job.photos_total) == (JobStatus.QUEUED, 100, photos)
    assert state.lines(LedgerReason.PURCHASE) == [photos]
    assert state.lines(LedgerReason.RESERVE) == [-photos]
    assert next(order for order in state.orders if order.id == order_id).status == OrderStatus.PAID
    return job


# ---------------------------------------------------------------- YooKassa


async def test_yookassa_payment_queues_one_paid_job(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        link = await choose(user, "By card")
        assert has_button("Check payment")(link) and "490" in link.buttons[0]["text"]
        # A second tap while the payment is pending shows the same payment, it creates none.
        again = await tap(user, "By card")
        assert url_of(again) == url_of(link)

        creates = kassa.requests_to(CREATE_ROUTE)
        assert len(creates) == 1 and len(kassa.payments) == 1
        provider_id = next(iter(kassa.payments))
        assert provider_id in url_of(link)
        state = await books(app, user.id)
        [payment] = state.payments
        assert (payment.status, payment.provider_payment_id, payment.amount) == ("pending", provider_id, 49_000)
        assert creates[0].idempotence_key == payment.idempotence_key
        assert state.jobs == [] and state.ledger == []

        await kassa.pay(provider_id)
        told = await paid_message(user)
        assert "7 portraits are queued (position 1)" in told.content
        assert has_button("Cancel the order")(told)

        state = await books(app, user.id)
        assert_one_paid_job(state, order_id)
        assert state.payments[0].status == PaymentStatus.SUCCEEDED
        assert (state.orders[0].amount, state.orders[0].currency) == (P7_RUB_KOPECKS, "RUB")
        answer = await callback_answer(fake_telegram, await user.click("Check payment"))
        assert answer["text"] == "Payment received ✅"
        totals = await assert_ledger_balanced(app.sessionmaker)
        assert (totals[state.user.id].purchases, totals[state.user.id].balance) == (7, 0)


async def test_duplicate_concurrent_and_out_of_order_notifications_credit_once(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))

        # A stale "canceled" for the pending payment: the API says pending, so nothing moves.
        assert await kassa.send_stale(provider_id, "payment.canceled") == 200
        assert (await books(app, user.id)).payments[0].status == PaymentStatus.PENDING

        kassa.hold_notifications = True  # the genuine notification comes last, below
        await kassa.pay(provider_id)
        fetches = len(kassa.requests_to(GET_ROUTE))
        assert await kassa.notify(provider_id, duplicates=10, concurrent=True) == [200] * 10
        assert len(kassa.requests_to(GET_ROUTE)) >= fetches + 10  # each one re-fetched, none believed
        assert await kassa.notify(provider_id, duplicates=10) == [200] * 10
        assert await kassa.send_stale(provider_id, "payment.canceled") == 200
        assert await kassa.send_stale(provider_id, "payment.waiting_for_capture") == 200
        assert await kassa.release_notifications() == [200]

        state = await books(app, user.id)
        assert_one_paid_job(state, order_id)
        assert state.payments[0].status == PaymentStatus.SUCCEEDED
        assert len(texts(fake_telegram, user, "Payment received!")) == 1
        assert texts(fake_telegram, user, "did not go through") == texts(fake_telegram, user, "expired") == []
        await assert_ledger_balanced(app.sessionmaker)


async def test_held_notifications_of_two_payments_arriving_reversed_settle_each_by_its_own_state(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """One user pays, another's payment expires; YooKassa delivers the two events in reverse order.
    Each notification is re-fetched and acted on for its own payment: one pack, one expiry notice."""
    # No reconciliation round in the test's time: only the notifications can settle the payments.
    async with payment_app(fake_telegram, sqlite_url, tmp_path, POLL_INTERVAL_SECONDS=3600) as (app, kassa):
        payer = fake_telegram.user(language_code="en")
        payer_order = await to_summary(app, payer)
        await choose(payer, "By card")
        [paid_id] = kassa.payments
        lapsed = fake_telegram.user(language_code="en")
        await to_summary(app, lapsed)
        await choose(lapsed, "By card")
        [expired_id] = [payment_id for payment_id in kassa.payments if payment_id != paid_id]

        kassa.hold_notifications = True
        await kassa.pay(paid_id)
        await kassa.expire(expired_id)
        assert kassa.notifications == []  # nothing reached the app yet
        assert (await books(app, payer.id)).ledger == []

        assert await kassa.release_notifications(reverse=True) == [200, 200]

        assert [(attempt.event, attempt.object_id) for attempt in kassa.delivered()] == [
            ("payment.canceled", expired_id),
            ("payment.succeeded", paid_id),
        ]
        await assert_paid(app, payer, payer_order)
        await lapsed.wait_reply(has_text("expired"), timeout=REPLY_TIMEOUT)
        lapsed_state = await books(app, lapsed.id)
        assert [payment.status for payment in lapsed_state.payments] == [PaymentStatus.CANCELED]
        assert lapsed_state.orders[0].status == OrderStatus.AWAITING_PAYMENT
        assert lapsed_state.jobs == [] and lapsed_state.ledger == []
        assert texts(fake_telegram, payer, "expired") == [] and texts(fake_telegram, lapsed, "Payment received!") == []
        totals = await assert_ledger_balanced(app.sessionmaker)
        assert totals[(await books(app, payer.id)).user.id].purchases == 7


async def test_junk_notification_bodies_are_answered_400_and_change_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """Bodies that are not JSON (refused before the handler) and JSON that is not a notification
    (refused by its parser) both get 400 from the app's endpoint: no re-fetch, no row written."""
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        before = await table_contents(app.sessionmaker)
        async with aiohttp.ClientSession() as client:
            for junk in (
                b"",
                b"not json",
                b"[]",
                b'{"type":"notification"}',
                json.dumps({"object": {}}).encode(),
                json.dumps({"type": "notification", "event": "payment.succeeded", "object": {"id": 42}}).encode(),
            ):
                async with client.post(kassa.webhook_url or "", data=junk) as response:
                    assert response.status == 400, junk
        assert kassa.requests == []
        assert await table_contents(app.sessionmaker) == before


async def test_forged_notification_credits_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        sent = len(fake_telegram.sent_messages(user.id))

        assert await kassa.send_forged(provider_id) == 200  # re-fetched: still pending
        state = await books(app, user.id)
        assert state.payments[0].status == PaymentStatus.PENDING
        assert state.jobs == [] and state.ledger == []
        assert state.orders[0].status == OrderStatus.AWAITING_PAYMENT
        assert len(fake_telegram.sent_messages(user.id)) == sent
        await assert_ledger_balanced(app.sessionmaker)

        # A notification about a payment that is not ours is answered without asking YooKassa.
        stranger = {**kassa.payment(provider_id), "id": "2f3e4d5c-000f-5000-9000-1a2b3c4d5e6f", "status": "succeeded"}
        gets = len(kassa.requests_to(GET_ROUTE))
        async with aiohttp.ClientSession() as client:
            body = {"type": "notification", "event": "payment.succeeded", "object": stranger}
            async with client.post(kassa.webhook_url or "", json=body) as response:
                assert response.status == 200
        assert len(kassa.requests_to(GET_ROUTE)) == gets

        # The real payment afterwards is credited normally, once.
        await kassa.pay(provider_id)
        await assert_paid(app, user, order_id)


async def test_notification_from_untrusted_address_is_refused(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path, YOOKASSA_TRUSTED_IPS="185.71.76.0/27") as (app, kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        await kassa.pay(provider_id)  # the notification comes from 127.0.0.1: refused
        assert [attempt.status for attempt in kassa.notifications] == [403] * kassa.notification_attempts
        # A forwarded-for header is not believed from a peer that is not a configured proxy.
        async with aiohttp.ClientSession() as client:
            async with client.post(
                kassa.webhook_url or "",
                json=kassa.notifications[0].body,
                headers={"X-Forwarded-For": "185.71.76.1", "X-Real-IP": "185.71.76.1"},
            ) as response:
                assert response.status == 403

        state = await books(app, user.id)
        assert state.payments[0].status == PaymentStatus.PENDING and state.payments[0].last_checked_at is None
        assert state.jobs == [] and state.ledger == []
        assert not kassa.requests_to(GET_ROUTE)  # not even re-fetched
        assert texts(fake_telegram, user, "Payment received!") == []
        await assert_ledger_balanced(app.sessionmaker)


async def test_the_default_allow_list_refuses_a_notification_from_outside_yookassa(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """The app's own list, as shipped (YooKassa's published ranges): a notification from loopback
    is refused at the endpoint and changes nothing. The other tests set the list themselves, so a
    default that let everything in would pass them."""
    default_list = ",".join(Settings.model_fields["YOOKASSA_TRUSTED_IPS"].get_default(call_default_factory=True))
    async with payment_app(fake_telegram, sqlite_url, tmp_path, YOOKASSA_TRUSTED_IPS=default_list) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        await kassa.pay(provider_id)  # the fake notifies from 127.0.0.1: not YooKassa
        assert [attempt.status for attempt in kassa.notifications] == [403] * kassa.notification_attempts

        state = await books(app, user.id)
        assert state.payments[0].status == PaymentStatus.PENDING and state.payments[0].last_checked_at is None
        assert state.jobs == [] and state.ledger == []
        assert not kassa.requests_to(GET_ROUTE)  # refused before any re-fetch
        assert texts(fake_telegram, user, "Payment received!") == []


async def test_notification_through_trusted_proxy_uses_forwarded_address(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(
        fake_telegram,
        sqlite_url,
        tmp_path,
        YOOKASSA_TRUSTED_IPS="185.71.76.0/27",
        YOOKASSA_TRUSTED_PROXY_HEADER="X-Forwarded-For",
        YOOKASSA_TRUSTED_PROXIES="127.0.0.1/32",
    ) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        kassa.lose_notifications = True
        await kassa.pay(provider_id)
        body = {"type": "notification", "event": "payment.succeeded", "object": kassa.payment(provider_id)}
        url = kassa.webhook_url or ""
        async with aiohttp.ClientSession() as client:
            # Without the header the proxy itself is the source; a client-written hop left of an
            # untrusted one is ignored.
            for headers in ({}, {"X-Forwarded-For": "185.71.76.1, 198.51.100.7"}):
                async with client.post(url, json=body, headers=headers) as response:
                    assert response.status == 403
            assert (await books(app, user.id)).ledger == []
            async with client.post(url, json=body, headers={"X-Forwarded-For": "185.71.76.1"}) as response:
                assert response.status == 200
        await assert_paid(app, user, order_id)


async def test_lost_notification_is_recovered_by_reconciliation(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, POLL_INTERVAL_SECONDS=1) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        kassa.lose_notifications = True
        await kassa.pay(provider_id)
        assert [attempt.lost for attempt in kassa.notifications] == [True]

        await paid_message(user)
        assert kassa.requests_to(GET_ROUTE)
        state = await books(app, user.id)
        assert_one_paid_job(state, order_id)
        # Later rounds leave a settled payment alone.
        assert await app.payments.reconcile() == 0
        assert len(texts(fake_telegram, user, "Payment received!")) == 1
        await assert_ledger_balanced(app.sessionmaker)


async def test_lost_cancellation_is_reported_by_reconciliation(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    """The poll that settles an expiry nobody notified (or that outran the notification) tells the
    user, once: it used to settle it silently, and the user never heard the link had lapsed."""
    async with payment_app(fake_telegram, database_url, tmp_path, POLL_INTERVAL_SECONDS=1) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        kassa.lose_notifications = True
        await kassa.expire(provider_id)
        expired = await user.wait_reply(has_text("expired"), timeout=REPLY_TIMEOUT)
        assert has_button("Pay again")(expired)
        assert await app.payments.reconcile() == 0
        assert len(texts(fake_telegram, user, "expired")) == 1


async def test_lost_notification_and_check_button(fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        answer = await callback_answer(fake_telegram, await user.click("Check payment"))
        assert "has not arrived yet" in answer["text"]

        kassa.lose_notifications = True
        await kassa.pay(provider_id)
        answer = await callback_answer(fake_telegram, await user.click("Check payment"))
        assert answer["text"] == "Payment received ✅"
        await assert_paid(app, user, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_expired_payment_is_reported_and_paid_anew(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        first_link = await choose(user, "By card")
        first_id = next(iter(kassa.payments))

        await kassa.expire(first_id)
        expired = await user.wait_reply(has_text("expired"), timeout=REPLY_TIMEOUT)
        assert has_button("Pay again")(expired)
        state = await books(app, user.id)
        assert state.payments[0].status == PaymentStatus.CANCELED
        assert state.orders[0].status == OrderStatus.AWAITING_PAYMENT and state.ledger == []

        await user.click("Pay again")
        await user.wait_reply(has_text("How would you like to pay"), timeout=REPLY_TIMEOUT)
        second_link = await tap(user, "By card")
        assert url_of(second_link) != url_of(first_link)
        creates = kassa.requests_to(CREATE_ROUTE)
        assert len(creates) == 2 and creates[0].idempotence_key != creates[1].idempotence_key
        second_id = next(payment_id for payment_id in kassa.payments if payment_id != first_id)

        # The old link's button reports the old payment as not completed.
        old_check = next(b["callback_data"] for b in first_link.buttons if "callback_data" in b)
        answer = await callback_answer(fake_telegram, await user.press_button(first_link.message_id, old_check))
        assert "was not completed" in answer["text"]

        await kassa.pay(second_id)
        await paid_message(user)
        state = await books(app, user.id)
        assert [(p.status, p.provider_payment_id) for p in state.payments] == [
            (PaymentStatus.CANCELED, first_id),
            (PaymentStatus.SUCCEEDED, second_id),
        ]
        assert [p.idempotence_key for p in state.payments] == [r.idempotence_key for r in creates]
        assert_one_paid_job(state, order_id)
        await assert_ledger_balanced(app.sessionmaker)


@pytest.mark.parametrize("fault", ["500", "500-but-created", "503-html", "dropped-but-created", "timeout"])
async def test_creation_failure_leaves_nothing_half_made_and_retry_reuses_the_key(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path, fault: str
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        short_client: YooKassaClient | None = None
        match fault:
            case "500":
                kassa.fail_next(500, route=CREATE_ROUTE)
            case "500-but-created":
                kassa.fail_next(500, route=CREATE_ROUTE, operation_succeeds=True)
            case "503-html":
                kassa.fail_next(503, route=CREATE_ROUTE)
            case "dropped-but-created":
                kassa.drop_next(route=CREATE_ROUTE, operation_succeeds=True)
            case "timeout":
                # The app's client waits 15 s; a short one keeps the test quick. The fake answers
                # (and creates the payment) after the client has given up.
                short_client = YooKassaClient(kassa.shop_id, kassa.secret_key, kassa.api_url, timeout=0.5)
                app.payments.yookassa = short_client
                kassa.stall_next(1.0, route=CREATE_ROUTE)
        try:
            refused = await choose(user, "By card")
            assert "not answering" in refused.content and not refused.buttons

            state = await books(app, user.id)
            [attempt] = state.payments
            assert (attempt.status, attempt.provider_payment_id) == (PaymentStatus.CREATING, None)
            assert state.orders[0].status == OrderStatus.AWAITING_PAYMENT
            assert state.jobs == [] and state.ledger == []
            assert await app.payments.reconcile() == 0  # nothing to reconcile without a provider id

            if fault == "timeout":
                await asyncio.sleep(0.7)  # let the stalled request be processed by the fake
            link = await tap(user, "By card")
            assert has_button("Check payment")(link)
            creates = kassa.requests_to(CREATE_ROUTE)
            assert len(creates) == 2
            assert {request.idempotence_key for request in creates} == {attempt.idempotence_key}
            assert len(kassa.payments) == 1
            provider_id = next(iter(kassa.payments))
            assert provider_id in url_of(link)

            await kassa.pay(provider_id)
            await paid_message(user)
            state = await books(app, user.id)
            assert [(p.id, p.status, p.provider_payment_id) for p in state.payments] == [
                (attempt.id, PaymentStatus.SUCCEEDED, provider_id)
            ]
            assert_one_paid_job(state, order_id)
            await assert_ledger_balanced(app.sessionmaker)
        finally:
            if short_client is not None:
                await short_client.aclose()


async def test_refused_creation_closes_the_attempt_and_the_retry_is_a_new_payment(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        kassa.fail_next(400, route=CREATE_ROUTE)
        refused = await choose(user, "By card")
        assert "could not be created" in refused.content
        state = await books(app, user.id)
        assert [p.status for p in state.payments] == [PaymentStatus.CANCELED]
        assert state.ledger == []

        link = await tap(user, "By card")
        assert has_button("Check payment")(link)
        creates = kassa.requests_to(CREATE_ROUTE)
        assert len(creates) == 2 and creates[0].idempotence_key != creates[1].idempotence_key
        await kassa.pay(next(iter(kassa.payments)))
        await assert_paid(app, user, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_double_tap_on_pay_creates_one_payment(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await user.click("💳 Pay")
        choice = await user.wait_reply(has_text("How would you like to pay"), timeout=REPLY_TIMEOUT)
        card = next(b["callback_data"] for b in choice.buttons if "By card" in b["text"])
        await asyncio.gather(*(user.press_button(choice.message_id, card) for _ in range(3)))
        await fake_telegram.wait_until(
            lambda: len([m for m in fake_telegram.sent_messages(user.id) if has_button("Check payment")(m)]) == 3,
            timeout=REPLY_TIMEOUT,
        )
        links = {url_of(m) for m in fake_telegram.sent_messages(user.id) if has_button("Check payment")(m)}
        assert len(links) == 1
        assert len({request.idempotence_key for request in kassa.requests_to(CREATE_ROUTE)}) == 1
        assert len(kassa.payments) == 1
        state = await books(app, user.id)
        assert len(state.payments) == 1

        await kassa.pay(next(iter(kassa.payments)))
        await assert_paid(app, user, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_pay_again_after_an_unnoticed_expiry_makes_a_new_payment(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        first = await choose(user, "By card")
        first_id = next(iter(kassa.payments))
        kassa.lose_notifications = True
        await kassa.expire(first_id)  # we never hear of it, and the poll has not run yet

        second = await tap(user, "By card")
        assert has_button("Check payment")(second) and url_of(second) != url_of(first)
        assert texts(fake_telegram, user, "expired") == []  # the user is paying anew: no noise
        second_id = next(payment_id for payment_id in kassa.payments if payment_id != first_id)
        state = await books(app, user.id)
        assert [(p.status, p.provider_payment_id) for p in state.payments] == [
            (PaymentStatus.CANCELED, first_id),
            (PaymentStatus.PENDING, second_id),
        ]
        kassa.lose_notifications = False
        await kassa.pay(second_id)
        await assert_paid(app, user, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_failed_processing_answers_500_and_the_redelivery_credits_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        provider_id = next(iter(kassa.payments))
        kassa.fail_next(500, route=GET_ROUTE)  # our re-fetch fails once: YooKassa must retry
        await kassa.pay(provider_id)
        assert [attempt.status for attempt in kassa.notifications] == [500, 200]
        await assert_paid(app, user, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_card_payment_expiring_after_the_order_was_paid_with_stars_is_not_reported(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        await tap(user, "Telegram Stars")
        assert await user.pay() is not None
        await paid_message(user)

        await kassa.expire(next(iter(kassa.payments)))
        state = await books(app, user.id)
        assert [p.status for p in state.payments] == [PaymentStatus.CANCELED, PaymentStatus.SUCCEEDED]
        assert texts(fake_telegram, user, "expired") == []  # no "pay again" for a paid order
        assert_one_paid_job(state, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_receipt_email_is_asked_and_sent_with_the_payment(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path, YOOKASSA_RECEIPTS=True) as (app, kassa):
        kassa.fiscalization = True  # a payment without a receipt would be refused
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        asked = await choose(user, "By card")
        assert "e-mail" in asked.content
        await user.send_text("not an address")
        await user.wait_reply(has_text("looks wrong"), timeout=REPLY_TIMEOUT)
        await user.send_text("anna@example.com")
        await user.wait_reply(has_button("Check payment"), timeout=REPLY_TIMEOUT)
        [create] = kassa.requests_to(CREATE_ROUTE)
        assert create.json()["receipt"]["customer"] == {"email": "anna@example.com"}
        assert (await books(app, user.id)).user.email == "anna@example.com"

        await kassa.pay(next(iter(kassa.payments)))
        await assert_paid(app, user, order_id)
        await assert_ledger_balanced(app.sessionmaker)


# ---------------------------------------------------------------- Telegram Stars


async def test_stars_payment_queues_one_paid_job_and_a_repeated_update_credits_once(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        invoice = await choose(user, "Telegram Stars")
        assert invoice.raw["invoice"]["currency"] == "XTR"
        assert invoice.raw["invoice"]["total_amount"] == P7_STARS
        assert invoice.invoice_payload == f"order:{order_id}"

        update = await user.pay()
        assert update is not None
        charge_id = update["message"]["successful_payment"]["telegram_payment_charge_id"]
        await paid_message(user)
        state = await books(app, user.id)
        assert_one_paid_job(state, order_id)
        [payment] = state.payments
        assert (payment.provider, payment.provider_payment_id, payment.status) == ("stars", charge_id, "succeeded")
        assert (payment.amount, payment.currency) == (P7_STARS, "XTR")
        checked = payment.last_checked_at

        # Telegram redelivers the service message: twice at once, then once more.
        await asyncio.gather(
            *(user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, charge_id) for _ in range(2))
        )
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, charge_id)

        async def seen_again() -> bool:
            latest = (await books(app, user.id)).payments[0].last_checked_at
            return latest is not None and checked is not None and latest > checked

        await until(seen_again, what="the repeated successful_payment handled")
        await fake_telegram.wait_until(lambda: not fake_telegram.pending_updates, timeout=REPLY_TIMEOUT)
        await user.send_command("/paysupport")  # a round trip, so a wrong second "paid" would be in
        await user.wait_reply(has_text("Payment questions"), timeout=REPLY_TIMEOUT)
        state = await books(app, user.id)
        assert len(state.payments) == 1
        assert_one_paid_job(state, order_id)
        assert len(texts(fake_telegram, user, "Payment received!")) == 1

        # The order is paid: paying the invoice again is refused at pre-checkout.
        answer = await pre_checkout_answer(fake_telegram, await user.pre_checkout(f"order:{order_id}", "XTR", P7_STARS))
        assert answer["ok"] is False and "already paid" in answer["error_message"]
        await assert_ledger_balanced(app.sessionmaker)


async def test_stars_invoice_of_an_order_paid_by_card_is_refused(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        await tap(user, "By card")  # the user opens both, then pays by card
        await kassa.pay(next(iter(kassa.payments)))
        await paid_message(user)

        # The invoice left the chat when the card was offered; a payment form opened before that
        # still sends its pre-checkout, which is refused: no money is taken.
        assert not [m for m in user.messages if m.kind == "invoice"]
        answer = await pre_checkout_answer(fake_telegram, await user.pre_checkout(f"order:{order_id}", "XTR", P7_STARS))
        assert answer["ok"] is False and "already paid" in answer["error_message"]
        state = await books(app, user.id)
        assert [p.provider for p in state.payments] == [PaymentProviderName.YOOKASSA]
        assert_one_paid_job(state, order_id)
        await assert_ledger_balanced(app.sessionmaker)


async def test_stars_pre_checkout_refusals(fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        stranger = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        cases = [
            (stranger, f"order:{order_id}", P7_STARS, "Order not found"),  # someone else's order
            (user, f"order:{order_id}", P7_STARS - 1, "price has changed"),
            (user, "order:999999", P7_STARS, "Order not found"),
            (user, "something-else", P7_STARS, "Order not found"),
        ]
        for who, payload, amount, reason in cases:
            answer = await pre_checkout_answer(fake_telegram, await who.pre_checkout(payload, "XTR", amount))
            assert answer["ok"] is False and reason in answer["error_message"], (payload, amount, answer)
        answer = await pre_checkout_answer(fake_telegram, await user.pre_checkout(f"order:{order_id}", "XTR", P7_STARS))
        assert answer["ok"] is True
        assert (await books(app, user.id)).ledger == []
        await assert_ledger_balanced(app.sessionmaker)


# ---------------------------------------------------------------- trial, queue, cancel


async def test_trial_is_low_priority_once_per_user_and_status_shows_the_queue(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, _kassa):
        trial_user = fake_telegram.user(language_code="en")
        trial_order = await to_summary(app, trial_user, pack="Trial")
        summary = trial_user.messages[-1]
        start = next(b["callback_data"] for b in summary.buttons if "Start for free" in b["text"])
        # A double tap: one trial, one job.
        await asyncio.gather(*(trial_user.press_button(summary.message_id, start) for _ in range(2)))
        queued = await trial_user.wait_reply(has_text("portraits are queued"), timeout=REPLY_TIMEOUT)
        assert "3 portraits are queued (position 1)" in queued.content
        state = await books(app, trial_user.id)
        [job] = state.jobs
        assert (job.order_id, job.priority, job.status, job.photos_total) == (trial_order, 0, "queued", 3)
        assert state.lines(LedgerReason.TRIAL) == [3] and state.lines(LedgerReason.RESERVE) == [-3]

        # The same button again, and a forged trial pack in a new session: no second trial. The button
        # is answered with the pack it started (as Telegram's second delivery of the first tap must be).
        query = await trial_user.click("Start for free")
        assert not (await callback_answer(fake_telegram, query)).get("text")
        await trial_user.wait_reply(has_text("3 portraits are queued (position 1)"), timeout=REPLY_TIMEOUT)
        assert len((await books(app, trial_user.id)).jobs) == 1
        await trial_user.send_command("/start")
        await trial_user.wait_reply(has_button("New photo session"), timeout=REPLY_TIMEOUT)
        await trial_user.click("New photo session")
        await trial_user.wait_reply(timeout=REPLY_TIMEOUT)
        await trial_user.send_album(selfie_set(5, first_seed=10))
        await trial_user.wait_reply(has_button("Done"), timeout=REPLY_TIMEOUT)
        await trial_user.click("Done")
        await trial_user.wait_reply(has_button("Professional"), timeout=REPLY_TIMEOUT)
        await trial_user.click("Professional")
        packs = await trial_user.wait_reply(has_button("7 photos"), timeout=REPLY_TIMEOUT)
        assert not has_button("Trial")(packs)
        forged = packs.buttons[0]["callback_data"].rsplit(":", 1)[0] + ":trial"
        query = await trial_user.press_button(packs.message_id, forged)
        assert "no longer active" in (await callback_answer(fake_telegram, query))["text"]
        await trial_user.send_command("/cancel")
        await trial_user.wait_reply(timeout=REPLY_TIMEOUT)

        # A paid job, queued later, goes ahead of the free one.
        payer = fake_telegram.user(language_code="en")
        paid_order = await to_summary(app, payer)
        await choose(payer, "Telegram Stars")
        assert await payer.pay() is not None
        told = await paid_message(payer)
        assert "(position 1)" in told.content

        await trial_user.send_command("/status")
        status = await trial_user.wait_reply(has_text("portraits queued"), timeout=REPLY_TIMEOUT)
        assert f"Order #{trial_order}: 3 portraits queued, position 2." == status.content
        await payer.send_command("/status")
        status = await payer.wait_reply(has_text("portraits queued"), timeout=REPLY_TIMEOUT)
        assert f"Order #{paid_order}: 7 portraits queued, position 1." == status.content

        state = await books(app, trial_user.id)
        assert len(state.jobs) == 1 and state.lines(LedgerReason.TRIAL) == [3]
        totals = await assert_ledger_balanced(app.sessionmaker)
        assert totals[state.user.id].trials == 3 and totals[state.user.id].balance == 0


async def test_queued_job_is_cancelled_once_and_credits_come_back(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        assert await user.pay() is not None
        told = await paid_message(user)
        await user.send_command("/status")
        status = await user.wait_reply(has_text("portraits queued"), timeout=REPLY_TIMEOUT)
        assert status.content == f"Order #{order_id}: 7 portraits queued, position 1."

        cancel = next(b["callback_data"] for b in told.buttons if "Cancel the order" in b["text"])
        # Two taps at once (a double click): one cancellation, one release.
        queries = await asyncio.gather(*(user.press_button(told.message_id, cancel) for _ in range(2)))
        await user.wait_reply(has_text("credits are back"), timeout=REPLY_TIMEOUT)
        answers = [await callback_answer(fake_telegram, query) for query in queries]
        assert sorted(bool(answer.get("text")) for answer in answers) == [False, True]
        # Later the button is simply stale: the job was cancelled, not started.
        answer = await callback_answer(fake_telegram, await user.press_button(told.message_id, cancel))
        assert "no longer active" in answer["text"]

        state = await books(app, user.id)
        [job] = state.jobs
        assert job.status == JobStatus.CANCELLED
        assert state.lines(LedgerReason.RELEASE) == [7]
        assert len(texts(fake_telegram, user, "credits are back")) == 1
        totals = await assert_ledger_balanced(app.sessionmaker)
        assert (totals[state.user.id].releases, totals[state.user.id].balance) == (7, 7)

        await user.send_command("/status")
        status = await user.wait_reply(timeout=REPLY_TIMEOUT)
        assert "queued" not in status.content


async def test_a_job_with_a_portrait_made_cannot_be_cancelled(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "Telegram Stars")
        assert await user.pay() is not None
        told = await paid_message(user)
        async with app.sessionmaker() as session:
            await session.execute(update(GenerationJob).values(status=JobStatus.PROCESSING))
            job = (await session.execute(select(GenerationJob))).scalar_one()
            key = claim_key(job.priority, job.created_at, job.id, 0)
            stored = TaskStatus.STORED
            session.add(GenerationTask(job_id=job.id, position=0, prompt_index=0, seed=1, claim_key=key, status=stored))
            await session.commit()
        cancel = next(b["callback_data"] for b in told.buttons if "Cancel the order" in b["text"])
        answer = await callback_answer(fake_telegram, await user.press_button(told.message_id, cancel))
        assert "can no longer be cancelled" in answer["text"]
        state = await books(app, user.id)
        assert state.jobs[0].status == JobStatus.PROCESSING and state.lines(LedgerReason.RELEASE) == []
        await assert_ledger_balanced(app.sessionmaker)


# ---------------------------------------------------------------- the ledger check itself


@pytest.mark.parametrize(
    "corruption",
    [
        "none",
        "second purchase",
        "purchase without payment",
        "missing reserve",
        "reserve too small",
        "double release",
        "job resized",
        "refund of a kept payment",
        "negative balance",
        "two kept payments for one order",
        "refunded twice",
        "finished without its tasks",
        "returned credits spent twice",
    ],
)
@pytest.mark.ledger_unbalanced(reason="corrupts the ledger on purpose: the subject is the check finding it")
async def test_ledger_check_catches_imbalance(
    sqlite_url: str, corruption: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules the known defects still break are enforced here regardless of their flags.
    monkeypatch.setattr(ledger_check, "CROSSED_RAILS_REFUNDED", True)
    monkeypatch.setattr(ledger_check, "DOUBLE_TAP_SPENDS_ONCE", True)
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            user = User(telegram_id=1, language="en")
            session.add(user)
            await session.flush()
            order = Order(user_id=user.id, style="professional", pack="p7", photos=7, status="paid")
            session.add(order)
            await session.flush()
            payment = Payment(
                order_id=order.id,
                user_id=user.id,
                provider="stars",
                provider_payment_id="charge-1",
                idempotence_key="stars-charge-1",
                amount=250,
                currency="XTR",
                status="succeeded",
            )
            job = GenerationJob(
                user_id=user.id,
                order_id=order.id,
                chat_id=1,
                style="professional",
                priority=100,
                status="cancelled",
                photos_total=7,
            )
            session.add_all([payment, job])
            await session.flush()

            def line(reason: str, reference: str, delta: int, **links: int) -> LedgerEntry:
                return LedgerEntry(user_id=user.id, reason=reason, reference=reference, delta=delta, **links)

            session.add_all(
                [
                    line("purchase", f"payment:{payment.id}", 7, payment_id=payment.id),
                    line("reserve", f"job:{job.id}", -7, job_id=job.id),
                    line("release", f"cancel:job:{job.id}", 7, job_id=job.id),
                ]
            )
            await session.commit()
            totals = await assert_ledger_balanced(session)
            assert (totals[user.id].balance, totals[user.id].purchases) == (7, 7)

            match corruption:
                case "none":
                    return
                case "second purchase":
                    session.add(line("purchase", "payment:again", 7, payment_id=payment.id))
                case "purchase without payment":
                    session.add(line("purchase", "payment:ghost", 7))
                case "missing reserve":
                    await session.execute(delete(LedgerEntry).where(LedgerEntry.reason == "reserve"))
                case "reserve too small":
                    await session.execute(update(LedgerEntry).where(LedgerEntry.reason == "reserve").values(delta=-6))
                case "double release":
                    session.add(line("release", f"task:{job.id}", 1, job_id=job.id))
                case "job resized":
                    await session.execute(update(GenerationJob).values(photos_total=8))
                case "refund of a kept payment":
                    session.add(line("refund", f"refund:payment:{payment.id}", -7, payment_id=payment.id))
                case "negative balance":
                    # A second job reserved without credits behind it (its reserve line is right).
                    extra = GenerationJob(
                        user_id=user.id, chat_id=1, style="professional", priority=0, status="queued", photos_total=8
                    )
                    session.add(extra)
                    await session.flush()
                    session.add(line("reserve", f"job:{extra.id}", -8, job_id=extra.id))
                case "two kept payments for one order":
                    # Stars paid the order, then the card too: both kept (credited), neither refunded.
                    card = Payment(
                        order_id=order.id,
                        user_id=user.id,
                        provider="yookassa",
                        provider_payment_id="card-1",
                        idempotence_key="card-1",
                        amount=49_000,
                        currency="RUB",
                        status="succeeded",
                    )
                    session.add(card)
                    await session.flush()
                    session.add(line("purchase", f"payment:{card.id}", 7, payment_id=card.id))
                case "refunded twice":
                    await session.execute(update(Payment).values(status="refunded"))
                    session.add(line("refund", "refund:payment:stars:a", -3, payment_id=payment.id))
                    session.add(line("refund", "refund:payment:stars:b", -3, payment_id=payment.id))
                case "finished without its tasks":
                    # Credited back as if cancelled, but the job says it completed: portraits nobody made.
                    await session.execute(update(GenerationJob).values(status="completed"))
                case "returned credits spent twice":
                    await session.execute(update(GenerationJob).values(status="partial", photos_failed=3))
                    for _tap in range(2):
                        session.add(
                            Order(
                                user_id=user.id,
                                style="professional",
                                pack=f"credits-{job.id}",
                                photos=3,
                                status="ready",
                            )
                        )
            await session.commit()
            with pytest.raises(AssertionError, match="ledger out of balance"):
                await assert_ledger_balanced(sessionmaker)
    finally:
        await engine.dispose()
