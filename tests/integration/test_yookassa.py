"""YooKassaClient (real ``yookassa`` SDK, real HTTP) against FakeYooKassa, plus the notification parser
and the IP allow-list as units (the notification endpoint itself: test_payments.py, through the app)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from providers.payments import PaymentInfo
from providers.yookassa import (
    BadNotification,
    IpAllowList,
    YooKassaClient,
    YooKassaError,
    amount_to_kopecks,
    client_ip,
    kopecks_to_amount,
    parse_notification,
)
from tests.fakes.yookassa import FakeYooKassa

PUBLISHED_RANGES = [
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.156.11",
    "77.75.156.35",
    "77.75.154.128/25",
    "2a02:5180::/32",
]
RETURN_URL = "https://t.me/pinglass_bot"
CLIENT_TIMEOUT = 2.0


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeYooKassa]:
    async with FakeYooKassa() as server:
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeYooKassa) -> AsyncIterator[YooKassaClient]:
    yookassa = YooKassaClient(fake.shop_id, fake.secret_key, api_url=fake.api_url, timeout=CLIENT_TIMEOUT)
    yield yookassa
    yookassa.close()


async def create(client: YooKassaClient, key: str = "order:1842:1", **overrides: Any) -> PaymentInfo:
    arguments: dict[str, Any] = {
        "amount_kopecks": 99000,
        "description": "Пакет «15 AI-портретов», заказ 1842",
        "return_url": RETURN_URL,
        "metadata": {"order_id": 1842, "tg_user_id": "123456789"},
        "idempotence_key": key,
    }
    arguments.update(overrides)
    return await client.create_payment(**arguments)


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------------------------------------
# Creating payments and idempotence


async def test_create_returns_pending_payment_with_confirmation_url(fake: FakeYooKassa, client: YooKassaClient) -> None:
    long_description = "Пакет " + "x" * 200
    payment = await create(client, description=long_description)

    assert payment.status == "pending" and payment.paid is False
    assert payment.amount_kopecks == 99000 and payment.currency == "RUB"
    assert payment.confirmation_url is not None
    assert payment.confirmation_url.startswith(fake.base_url)
    assert payment.id in payment.confirmation_url and len(payment.id) == 36
    assert payment.metadata["order_id"] == "1842"
    assert payment.test is True and payment.final is False

    (sent,) = fake.requests_to("POST /payments")
    assert sent.idempotence_key == "order:1842:1"
    expected_auth = base64.b64encode(f"{fake.shop_id}:{fake.secret_key}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {expected_auth}"
    body = sent.json()
    assert body["amount"] == {"value": "990.00", "currency": "RUB"}
    assert body["capture"] is True
    assert body["confirmation"] == {"type": "redirect", "return_url": RETURN_URL}
    assert body["description"] == long_description[:128]
    assert body["metadata"] == {
        "order_id": "1842",
        "tg_user_id": "123456789",
        "cms_name": "yookassa_sdk_python",
    }
    assert "receipt" not in body


@pytest.mark.parametrize(("kopecks", "wire"), [(100, "1.00"), (12345, "123.45"), (7, "0.07"), (35000000, "350000.00")])
async def test_amounts_travel_as_exact_two_decimal_strings(
    fake: FakeYooKassa, client: YooKassaClient, kopecks: int, wire: str
) -> None:
    payment = await create(client, key=f"amount:{kopecks}", amount_kopecks=kopecks)

    assert fake.requests_to("POST /payments")[-1].json()["amount"]["value"] == wire
    assert payment.amount_kopecks == kopecks


def test_amount_conversions_refuse_floats_and_fractions() -> None:
    assert kopecks_to_amount(99001) == "990.01"
    assert amount_to_kopecks("990.01") == 99001
    with pytest.raises(YooKassaError):
        kopecks_to_amount(990.0)  # type: ignore[arg-type]
    with pytest.raises(YooKassaError):
        kopecks_to_amount(0)
    with pytest.raises(YooKassaError):
        amount_to_kopecks("1.005")


async def test_same_key_returns_the_same_payment(fake: FakeYooKassa, client: YooKassaClient) -> None:
    first = await create(client)
    repeat = await create(client)

    assert repeat.id == first.id
    assert len(fake.payments) == 1
    assert len(fake.requests_to("POST /payments")) == 2


async def test_same_key_with_a_different_body_is_rejected_for_good(fake: FakeYooKassa, client: YooKassaClient) -> None:
    await create(client)
    with pytest.raises(YooKassaError) as caught:
        await create(client, amount_kopecks=149000)

    assert caught.value.retryable is False
    assert caught.value.status == 400 and caught.value.code == "invalid_request"
    assert caught.value.parameter == "Idempotence-Key"
    assert len(fake.payments) == 1


async def test_500_then_retry_with_the_same_key_creates_one_payment(fake: FakeYooKassa, client: YooKassaClient) -> None:
    fake.fail_next(500, route="POST /payments")
    with pytest.raises(YooKassaError) as caught:
        await create(client)
    assert caught.value.retryable is True and caught.value.status == 500
    assert fake.payments == {}

    payment = await create(client)

    assert list(fake.payments) == [payment.id]


async def test_500_after_the_payment_was_created_returns_it_on_retry(
    fake: FakeYooKassa, client: YooKassaClient
) -> None:
    fake.fail_next(500, route="POST /payments", operation_succeeds=True)
    with pytest.raises(YooKassaError) as caught:
        await create(client)
    assert caught.value.retryable is True
    (created_id,) = fake.payments

    payment = await create(client)

    assert payment.id == created_id
    assert len(fake.payments) == 1


async def test_dropped_connection_after_creation_is_retryable_and_idempotent(
    fake: FakeYooKassa, client: YooKassaClient
) -> None:
    fake.drop_next(route="POST /payments", operation_succeeds=True)
    with pytest.raises(YooKassaError) as caught:
        await create(client)
    assert caught.value.retryable is True and caught.value.status is None

    payment = await create(client)

    assert list(fake.payments) == [payment.id]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (500, True),
        (503, True),
        (202, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
    ],
)
async def test_error_statuses_map_to_retryable_or_not(
    fake: FakeYooKassa, client: YooKassaClient, status: int, retryable: bool
) -> None:
    payment = await create(client)
    fake.fail_next(status, route="GET /payments/{payment_id}")

    with pytest.raises(YooKassaError) as caught:
        await client.get_payment(payment.id)

    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert (await client.get_payment(payment.id)).id == payment.id  # the fault was one-shot


async def test_wrong_credentials_are_not_retryable(fake: FakeYooKassa) -> None:
    wrong = YooKassaClient(fake.shop_id, "test_wrong", api_url=fake.api_url, timeout=CLIENT_TIMEOUT)
    try:
        with pytest.raises(YooKassaError) as caught:
            await create(wrong)
    finally:
        wrong.close()
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        401,
        "invalid_credentials",
        False,
    )
    assert fake.payments == {}


async def test_unknown_payment_is_not_found(client: YooKassaClient) -> None:
    with pytest.raises(YooKassaError) as caught:
        await client.get_payment("2419a771-000f-5000-9000-1edaf29243f2")
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (404, "not_found", False)


async def test_client_side_guards_send_nothing(fake: FakeYooKassa, client: YooKassaClient) -> None:
    too_much_metadata = {f"key{index}": "v" for index in range(16)}  # + the SDK's cms_name = 17
    bad_calls = [
        create(client, key=""),
        create(client, key="k" * 65),
        create(client, amount_kopecks=0),
        create(client, metadata=too_much_metadata),
        create(client, receipt_email="user@example.ru"),  # a receipt without a VAT code
        client.get_payment("../refunds/x"),
        client.create_refund(payment_id="p/../x", amount_kopecks=100, idempotence_key="r", description="r"),
    ]
    for bad_call in bad_calls:
        with pytest.raises(YooKassaError) as caught:
            await bad_call
        assert caught.value.retryable is False

    assert fake.requests == []


# ------------------------------------------------------------------------------------------------
# Timeouts, network errors, the SDK's global configuration


async def test_timeout_is_retryable_and_returns_within_the_deadline(fake: FakeYooKassa) -> None:
    fast = YooKassaClient(fake.shop_id, fake.secret_key, api_url=fake.api_url, timeout=0.5)
    fake.stall_next(10, route="POST /payments")
    started = time.monotonic()
    try:
        with pytest.raises(YooKassaError) as caught:
            await create(fast)
    finally:
        fast.close()

    assert time.monotonic() - started < 0.5 + 1.5
    assert caught.value.retryable is True


async def test_a_stalled_request_frees_its_worker_thread(fake: FakeYooKassa) -> None:
    # One worker: if the stalled request kept its thread (no socket timeout), the next call would
    # queue behind it and time out too.
    single = YooKassaClient(fake.shop_id, fake.secret_key, api_url=fake.api_url, timeout=0.8, max_workers=1)
    try:
        payment = await create(single)
        fake.stall_next(10, route="GET /payments/{payment_id}")
        with pytest.raises(YooKassaError):
            await single.get_payment(payment.id)

        again = await single.get_payment(payment.id)
    finally:
        single.close()

    assert again.id == payment.id


async def test_connection_refused_is_a_retryable_yookassa_error() -> None:
    offline = YooKassaClient("123456", "test_x", api_url=f"http://127.0.0.1:{unused_port()}/v3", timeout=2.0)
    try:
        with pytest.raises(YooKassaError) as caught:  # never the SDK's AttributeError
            await create(offline)
    finally:
        offline.close()
    assert caught.value.retryable is True and caught.value.status is None


async def test_a_later_client_does_not_redirect_an_earlier_one(fake: FakeYooKassa) -> None:
    # The second constructor reconfigures the SDK's global Configuration; the first client must
    # still reach its own server with its own credentials.
    first = YooKassaClient(fake.shop_id, fake.secret_key, api_url=fake.api_url, timeout=2.0)
    second = YooKassaClient("999", "test_other", api_url=f"http://127.0.0.1:{unused_port()}/v3", timeout=2.0)
    try:
        payment = await create(first)
        assert (await first.get_payment(payment.id)).id == payment.id
        with pytest.raises(YooKassaError):
            await second.get_payment(payment.id)
    finally:
        first.close()
        second.close()


async def test_closed_client_refuses_calls(client: YooKassaClient) -> None:
    client.close()
    with pytest.raises(YooKassaError) as caught:
        await create(client)
    assert caught.value.retryable is False


# ------------------------------------------------------------------------------------------------
# Payment life cycle and refunds


async def test_paid_payment_reads_back_succeeded_with_exact_kopecks(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client, amount_kopecks=12345)
    await fake.pay(payment.id)

    fetched = await client.get_payment(payment.id)

    assert fetched.status == "succeeded" and fetched.paid is True and fetched.succeeded
    assert fetched.amount_kopecks == 12345
    assert fetched.income_kopecks is not None and fetched.income_kopecks < 12345
    assert fetched.refunded_kopecks == 0
    raw = fake.payment(payment.id)
    assert raw["captured_at"].endswith("Z") and raw["refundable"] is True


async def test_expired_payment_is_canceled_with_the_reason(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client)
    await fake.expire(payment.id)

    fetched = await client.get_payment(payment.id)

    assert fetched.status == "canceled" and fetched.paid is False and fetched.final
    assert (fetched.cancellation_party, fetched.cancellation_reason) == (
        "yoo_money",
        "expired_on_confirmation",
    )


async def test_declined_payment_carries_the_network_reason(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client)
    await fake.cancel(payment.id, reason="insufficient_funds", party="payment_network")

    fetched = await client.get_payment(payment.id)

    assert (fetched.cancellation_party, fetched.cancellation_reason) == (
        "payment_network",
        "insufficient_funds",
    )


async def test_full_refund(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client)
    await fake.pay(payment.id)

    refund = await client.create_refund(
        payment_id=payment.id, amount_kopecks=99000, idempotence_key="refund:1", description="Возврат"
    )

    assert refund.payment_id == payment.id and refund.status == "succeeded" and refund.amount_kopecks == 99000
    assert (await client.get_refund(refund.id)) == refund
    assert (await client.get_payment(payment.id)).refunded_kopecks == 99000
    (sent,) = fake.requests_to("POST /refunds")
    assert sent.idempotence_key == "refund:1"
    assert sent.json()["amount"] == {"value": "990.00", "currency": "RUB"}


async def test_partial_refunds_then_over_refund_is_rejected(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client)
    await fake.pay(payment.id)

    first = await client.create_refund(
        payment_id=payment.id, amount_kopecks=30000, idempotence_key="refund:a", description="Часть 1"
    )
    repeat = await client.create_refund(
        payment_id=payment.id, amount_kopecks=30000, idempotence_key="refund:a", description="Часть 1"
    )
    await client.create_refund(
        payment_id=payment.id, amount_kopecks=50000, idempotence_key="refund:b", description="Часть 2"
    )
    assert repeat.id == first.id
    assert (await client.get_payment(payment.id)).refunded_kopecks == 80000

    with pytest.raises(YooKassaError) as caught:
        await client.create_refund(
            payment_id=payment.id, amount_kopecks=20001, idempotence_key="refund:c", description="Лишнее"
        )
    assert caught.value.status == 400 and caught.value.retryable is False
    assert len(fake.refunds) == 2


async def test_refund_of_an_unpaid_payment_is_rejected(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client)
    with pytest.raises(YooKassaError) as caught:
        await client.create_refund(
            payment_id=payment.id, amount_kopecks=100, idempotence_key="refund:x", description="Нет"
        )
    assert caught.value.status == 400 and caught.value.retryable is False
    assert fake.refunds == {}


# ------------------------------------------------------------------------------------------------
# Receipts (54-FZ)


async def test_receipt_is_required_when_fiscalization_is_on(fake: FakeYooKassa, client: YooKassaClient) -> None:
    fake.fiscalization = True
    with pytest.raises(YooKassaError) as caught:
        await create(client)
    assert (caught.value.status, caught.value.parameter, caught.value.retryable) == (400, "receipt", False)
    assert "Receipt is missing or illegal" in caught.value.message
    assert fake.payments == {}


async def test_receipt_is_sent_when_an_email_is_given(fake: FakeYooKassa, client: YooKassaClient) -> None:
    fake.fiscalization = True
    payment = await create(
        client, key="order:1842:2", receipt_email="user@example.ru", vat_code=1, item_description="Пакет «15»"
    )

    assert payment.status == "pending"
    receipt = fake.requests_to("POST /payments")[-1].json()["receipt"]
    assert receipt["customer"] == {"email": "user@example.ru"}
    (item,) = receipt["items"]
    assert item["description"] == "Пакет «15»"
    assert float(item["quantity"]) == 1
    assert item["amount"] == {"value": "990.00", "currency": "RUB"}
    assert (item["vat_code"], item["payment_subject"], item["payment_mode"], item["measure"]) == (
        1,
        "service",
        "full_payment",
        "piece",
    )
    assert fake.payment(payment.id)["receipt_registration"] == "pending"


# ------------------------------------------------------------------------------------------------
# The fake's own strictness (raw HTTP, no SDK)


async def test_fake_rejects_what_the_api_rejects(fake: FakeYooKassa) -> None:
    auth = {"Authorization": aiohttp.encode_basic_auth(fake.shop_id, fake.secret_key)}
    valid: dict[str, Any] = {
        "amount": {"value": "990.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": RETURN_URL},
        "description": "ok",
    }
    receipt_item = {
        "description": "Пакет",
        "quantity": "1.0",
        "amount": {"value": "900.00", "currency": "RUB"},
        "vat_code": 1,
        "measure": "piece",
    }
    cases: list[tuple[dict[str, str], dict[str, Any], int, str]] = [
        ({}, valid, 400, "Idempotence-Key header is missing"),
        ({"Idempotence-Key": "k" * 65}, valid, 400, "Idempotence key is too long"),
        ({"Idempotence-Key": "a"}, {**valid, "amount": {"value": "-1.00", "currency": "RUB"}}, 400, "amount"),
        ({"Idempotence-Key": "b"}, {**valid, "amount": {"value": 990, "currency": "RUB"}}, 400, "amount"),
        ({"Idempotence-Key": "c"}, {**valid, "description": "d" * 129}, 400, "128"),
        ({"Idempotence-Key": "d"}, {**valid, "metadata": {"order_id": 1842}}, 400, "string"),
        ({"Idempotence-Key": "e"}, {**valid, "metadata": {f"k{i}": "v" for i in range(17)}}, 400, "16 keys"),
        (
            {"Idempotence-Key": "f"},
            {**valid, "receipt": {"customer": {"email": "u@example.ru"}, "items": [receipt_item]}},
            400,
            "does not match",
        ),
    ]
    async with aiohttp.ClientSession(headers=auth) as session:
        for headers, body, status, fragment in cases:
            async with session.post(f"{fake.api_url}/payments", json=body, headers=headers) as response:
                error = await response.json()
                assert (response.status, error["type"]) == (status, "error"), (headers, body)
                assert fragment in error["description"], error
        async with session.post(
            f"{fake.api_url}/payments",
            json=valid,
            headers={"Idempotence-Key": "g", "Authorization": aiohttp.encode_basic_auth("1", "2")},
        ) as response:
            assert response.status == 401
            assert (await response.json())["code"] == "invalid_credentials"
    assert fake.payments == {}


async def test_fake_payment_objects_look_real(fake: FakeYooKassa, client: YooKassaClient) -> None:
    payment = await create(client)
    pending = fake.payment(payment.id)
    assert pending["recipient"] == {"account_id": fake.shop_id, "gateway_id": fake.gateway_id}
    assert len(pending["created_at"]) == len("2019-03-12T11:10:41.802Z") and pending["created_at"].endswith("Z")
    await fake.pay(payment.id)
    succeeded = fake.payment(payment.id)
    assert succeeded["income_amount"]["value"].count(".") == 1
    assert len(succeeded["income_amount"]["value"].split(".")[1]) == 2
    assert succeeded["metadata"]["order_id"] == "1842"


# ------------------------------------------------------------------------------------------------
# The notification parser, the IP allow-list and the client address, as units. The endpoint that
# uses them, POST /payments/yookassa, is tested through the running app in test_payments.py.


def envelope(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "notification",
        "event": "payment.succeeded",
        "object": {"id": "2419a771-000f-5000-9000-1edaf29243f2", "status": "succeeded"},
    }
    body.update(fields)
    return json.dumps(body).encode()


def test_parse_notification_takes_only_event_and_id() -> None:
    notification = parse_notification(envelope())
    assert notification.event == "payment.succeeded"
    assert notification.object_id == "2419a771-000f-5000-9000-1edaf29243f2"
    assert notification.object_type == "payment"
    assert parse_notification(envelope(event="refund.succeeded")).object_type == "refund"


@pytest.mark.parametrize(
    "raw_body",
    [
        b"",
        b"\xff\xfe",
        b"null",
        b"[1, 2]",
        b'"notification"',
        envelope(type="payment"),
        envelope(event=None),
        envelope(event="succeeded"),
        envelope(object=None),
        envelope(object={"status": "succeeded"}),
        envelope(object={"id": 42}),
        envelope(object={"id": "../../v3/refunds"}),
        envelope(object={"id": ""}),
        b"[" * 100_000,
    ],
)
def test_parse_notification_raises_bad_notification_on_junk(raw_body: bytes) -> None:
    with pytest.raises(BadNotification):
        parse_notification(raw_body)
    assert issubclass(BadNotification, ValueError)


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("185.71.76.1", True),
        ("185.71.76.31", True),
        ("185.71.76.32", False),
        ("77.75.156.11", True),
        ("77.75.156.12", False),
        ("77.75.154.200", True),
        ("2a02:5180:0:9999::1", True),  # the docs' /32, wider than the SDK's list
        ("2a02:5181::1", False),
        ("::ffff:185.71.76.5", True),
        ("::ffff:127.0.0.1", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("[2a02:5180::1]", True),
        (" 185.71.77.2 ", True),
        ("", False),
        ("garbage", False),
        ("999.1.1.1", False),
        ("185.71.76.5:443", False),
        ("185.71.76.0/27", False),
    ],
)
def test_ip_allow_list_trusts_exactly_the_published_ranges(address: str, trusted: bool) -> None:
    assert IpAllowList(PUBLISHED_RANGES).is_trusted(address) is trusted


def test_ip_allow_list_edge_cases() -> None:
    loopback = IpAllowList(["127.0.0.1"])
    assert loopback.is_trusted("127.0.0.1") and loopback.is_trusted("::ffff:127.0.0.1")
    assert not IpAllowList([]).is_trusted("127.0.0.1")
    assert IpAllowList(["::ffff:10.0.0.0/104"]).is_trusted("10.1.2.3")
    assert IpAllowList(PUBLISHED_RANGES).is_trusted(None) is False  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        IpAllowList(["185.71.76.0/33"])


def test_client_ip_uses_the_forwarded_header_only_from_trusted_proxies() -> None:
    proxies = IpAllowList(["10.0.0.0/8", "127.0.0.1"])
    forged = {"X-Forwarded-For": "185.71.76.1"}

    # No header configured, or the peer is not our proxy: the peer is the client.
    assert client_ip("203.0.113.9", forged, "", proxies) == "203.0.113.9"
    assert client_ip("203.0.113.9", forged, "X-Forwarded-For", proxies) == "203.0.113.9"
    # From our proxy: the right-most hop that is not one of our proxies.
    assert client_ip("10.0.0.2", {"x-forwarded-for": "185.71.76.5"}, "X-Forwarded-For", proxies) == "185.71.76.5"
    spoofed = {"X-Forwarded-For": "185.71.76.1, 203.0.113.9, 10.0.0.7"}
    assert client_ip("10.0.0.2", spoofed, "X-Forwarded-For", proxies) == "203.0.113.9"
    assert client_ip("::ffff:127.0.0.1", {"X-Real-IP": "185.71.77.3"}, "X-Real-IP", proxies) == "185.71.77.3"
    assert client_ip("10.0.0.2", {}, "X-Forwarded-For", proxies) == "10.0.0.2"
    assert client_ip("10.0.0.2", {"X-Forwarded-For": "10.0.0.9, 10.0.0.8"}, "X-Forwarded-For", proxies) == "10.0.0.9"


def test_client_ip_reads_repeated_header_lines() -> None:
    proxies = IpAllowList(["10.0.0.0/8"])
    headers = CIMultiDictProxy(
        CIMultiDict([("X-Forwarded-For", "185.71.76.1"), ("x-forwarded-for", "198.51.100.4, 10.0.0.3")])
    )
    assert client_ip("10.0.0.2", headers, "X-Forwarded-For", proxies) == "198.51.100.4"


# ------------------------------------------------------------------------------------------------
# The client's threads, and servers answering 200 with what YooKassa never sends


async def test_calls_do_not_block_the_event_loop(fake: FakeYooKassa, client: YooKassaClient) -> None:
    # While the SDK waits on a stalled request in its thread, the loop keeps ticking.
    payment = await create(client)
    fake.stall_next(0.5, route="GET /payments/{payment_id}")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        await client.get_payment(payment.id)
    finally:
        ticking.cancel()
    assert ticks >= 10


@pytest.mark.parametrize(
    ("body", "retryable"),
    [
        (b"<html>captive portal</html>", True),  # the operation may have happened: repeat with the key
        (b'{"id": "2419a771-000f-5000-9000-1edaf29243f2", "status": "pending"}', False),  # no amount
    ],
)
async def test_unreadable_200_responses_become_yookassa_errors(body: bytes, retryable: bool) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(status=200, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v3/payments/{payment_id}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    broken = YooKassaClient("123456", "test_x", api_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v3")
    try:
        with pytest.raises(YooKassaError) as caught:
            await broken.get_payment("2419a771-000f-5000-9000-1edaf29243f2")
    finally:
        broken.close()
        await runner.cleanup()
    assert caught.value.retryable is retryable
