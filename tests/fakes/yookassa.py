"""An offline, strict fake of YooKassa API v3 and its webhook sender (docs/yookassa.md §7).

The real ``yookassa`` SDK works against it unchanged: point ``Configuration``/``YooKassaClient`` at
``fake.api_url`` (``http://127.0.0.1:<port>/v3``). It rejects what the real API rejects (auth,
idempotence-key rules, amount/description/metadata/receipt validation, refund limits), keeps a
per-payment state machine driven by test actions (``pay``, ``cancel``, ``expire``), posts
notifications to a webhook URL (with retries, duplicates, forgeries, reordering, losses), and
injects faults (429, 5xx, "500 but done", 202, stalls, dropped connections).

Usage::

    async with FakeYooKassa(webhook_url=bot_url) as fake:
        client = YooKassaClient(fake.shop_id, fake.secret_key, api_url=fake.api_url)
        ...
        await fake.pay(payment_id)          # -> succeeded, payment.succeeded delivered to bot_url
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import html
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import aiohttp
from aiohttp import web

API_PREFIX = "/v3"
CHECKOUT_PATH = "/api-pages/v2/payment-confirm/epl"
IDEMPOTENCE_KEY_MAX_LENGTH = 64
DESCRIPTION_MAX_LENGTH = 128
METADATA_MAX_KEYS = 16
METADATA_KEY_MAX_LENGTH = 32
METADATA_VALUE_MAX_LENGTH = 512
AMOUNT_PATTERN = re.compile(r"^\d{1,9}(\.\d{1,2})?$")
CENT = Decimal("0.01")

ALL_EVENTS = frozenset({"payment.waiting_for_capture", "payment.succeeded", "payment.canceled", "refund.succeeded"})
PAYMENT_CANCELLATION_REASONS = frozenset(
    {
        "3d_secure_failed",
        "call_issuer",
        "canceled_by_merchant",
        "card_expired",
        "country_forbidden",
        "expired_on_confirmation",
        "expired_on_capture",
        "fraud_suspected",
        "general_decline",
        "identification_required",
        "insufficient_funds",
        "internal_timeout",
        "invalid_card_number",
        "invalid_csc",
        "issuer_unavailable",
        "payment_method_limit_exceeded",
        "payment_method_restricted",
        "permission_revoked",
        "unsupported_mobile_operator",
        "deal_expired",
    }
)
CANCELLATION_PARTIES = frozenset({"merchant", "yoo_money", "payment_network"})
PAYMENT_SUBJECTS = frozenset(
    {
        "commodity",
        "excise",
        "job",
        "service",
        "gambling_bet",
        "gambling_prize",
        "lottery",
        "lottery_prize",
        "intellectual_activity",
        "payment",
        "agent_commission",
        "composite",
        "another",
    }
)
PAYMENT_MODES = frozenset(
    {
        "full_prepayment",
        "partial_prepayment",
        "advance",
        "full_payment",
        "partial_payment",
        "credit",
        "credit_payment",
    }
)
ERROR_CODES_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    410: "gone",
    429: "too_many_requests",
    500: "internal_server_error",
}
ERROR_DESCRIPTIONS_BY_STATUS = {
    429: "Too many requests. Decrease the request rate",
    500: "Internal server error. Repeat the request with the same Idempotence-Key later",
}

FaultKind = Literal["status", "stall", "drop"]
# An API operation: parsed JSON body in, (HTTP status, JSON body) out; raises ApiReject.
Operation = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def _now() -> datetime:
    return datetime.now(UTC)


def iso_ms(moment: datetime) -> str:
    """YooKassa's timestamp shape: ISO-8601 UTC with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def money(value: Decimal, currency: str = "RUB") -> dict[str, str]:
    return {"value": str(value.quantize(CENT)), "currency": currency}


def _object_id(kind: Literal["payment", "refund"]) -> str:
    # Real ids are 36 characters: 8 hex, a product-specific middle and 12 hex.
    middle = "000f-5000-9000" if kind == "payment" else "0015-5000-a000"
    return f"{secrets.token_hex(4)}-{middle}-{secrets.token_hex(6)}"


class ApiReject(Exception):
    """A rejected API call, rendered as YooKassa's error body."""

    def __init__(self, status: int, description: str, parameter: str | None = None, code: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameter = parameter
        self.code = code or ERROR_CODES_BY_STATUS.get(status, "error")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "error",
            "id": str(uuid.uuid4()),
            "code": self.code,
            "description": self.description,
        }
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return body


@dataclass
class RecordedRequest:
    method: str
    path: str
    route: str  # e.g. "POST /payments", "GET /payments/{payment_id}"
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    response_status: int | None = None

    @property
    def idempotence_key(self) -> str | None:
        return self.headers.get("Idempotence-Key")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class NotificationAttempt:
    url: str | None
    event: str
    object_id: str
    attempt: int
    status: int | None  # None: connection failed, timed out, or the notification was "lost"
    body: dict[str, Any]
    forged: bool = False
    lost: bool = False


@dataclass
class Fault:
    kind: FaultKind
    route: str | None
    remaining: int
    status: int = 500
    seconds: float = 0.0
    # For "status"/"drop": perform the operation first (and keep its idempotent result), then fail.
    operation_succeeds: bool = False

    def matches(self, route: str) -> bool:
        return self.route is None or self.route == route


@dataclass
class _IdempotentResult:
    fingerprint: str
    status: int
    body: dict[str, Any]
    stored_at: float


@dataclass
class _PaymentRecord:
    data: dict[str, Any]
    capture: bool
    has_receipt: bool
    history: list[dict[str, Any]] = field(default_factory=list)  # snapshot at every transition


@dataclass
class _HeldNotification:
    event: str
    object_id: str
    body: dict[str, Any]


def _parse_decimal(raw: object, parameter: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ApiReject(400, f"Invalid value of {parameter}", parameter)
    try:
        value = Decimal(str(raw))
    except InvalidOperation as error:
        raise ApiReject(400, f"Invalid value of {parameter}", parameter) from error
    if not value.is_finite():
        raise ApiReject(400, f"Invalid value of {parameter}", parameter)
    return value


def _parse_amount(raw: object, parameter: str = "amount") -> tuple[Decimal, str]:
    if not isinstance(raw, dict):
        raise ApiReject(400, f"Parameter {parameter} is missing or illegal", parameter)
    value = raw.get("value")
    currency = raw.get("currency")
    if not isinstance(value, str) or not AMOUNT_PATTERN.match(value):
        raise ApiReject(400, f"Invalid amount value in {parameter}.value", f"{parameter}.value")
    if currency != "RUB":
        raise ApiReject(400, f"Invalid currency in {parameter}.currency", f"{parameter}.currency")
    amount = Decimal(value)
    if amount <= 0:
        raise ApiReject(400, f"Amount in {parameter} must be greater than zero", f"{parameter}.value")
    return amount, currency


class FakeYooKassa:
    """Strict YooKassa v3 on 127.0.0.1 (ephemeral port). See the module docstring."""

    def __init__(
        self,
        *,
        shop_id: str = "123456",
        secret_key: str = "test_secret_key",
        gateway_id: str = "100700",
        webhook_url: str | None = None,
        auto_notify: bool = True,
        subscribed_events: frozenset[str] = ALL_EVENTS,
        fiscalization: bool = False,
        refund_receipt_required: bool = False,
        notification_attempts: int = 3,
        notification_backoff: float = 0.01,
        notification_timeout: float = 5.0,
        commission_percent: Decimal = Decimal("3.5"),
        idempotence_ttl: float = 24 * 3600,
    ) -> None:
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.gateway_id = gateway_id
        # Toggles tests may flip at any time.
        self.webhook_url = webhook_url
        self.auto_notify = auto_notify
        self.subscribed_events = subscribed_events
        self.fiscalization = fiscalization
        self.refund_receipt_required = refund_receipt_required
        self.refund_outcome: Literal["succeeded", "pending"] = "succeeded"  # what POST /refunds makes
        self.lose_notifications = False  # auto notifications are logged as lost and never sent
        self.hold_notifications = False  # auto notifications queue until release_notifications()
        self.notification_attempts = notification_attempts
        self.notification_backoff = notification_backoff
        self.notification_timeout = notification_timeout
        self.commission_percent = commission_percent
        self.idempotence_ttl = idempotence_ttl
        # Inspection.
        self.requests: list[RecordedRequest] = []
        self.notifications: list[NotificationAttempt] = []
        self._payments: dict[str, _PaymentRecord] = {}
        self._refunds: dict[str, dict[str, Any]] = {}
        self._idempotence: dict[str, _IdempotentResult] = {}
        self._faults: list[Fault] = []
        self._held: list[_HeldNotification] = []
        self._background: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeYooKassa:
        app = web.Application()
        app.router.add_post(f"{API_PREFIX}/payments", self._create_payment)
        app.router.add_get(f"{API_PREFIX}/payments", self._list_payments)
        app.router.add_get(f"{API_PREFIX}/payments/{{payment_id}}", self._get_payment)
        app.router.add_post(f"{API_PREFIX}/payments/{{payment_id}}/capture", self._capture_payment)
        app.router.add_post(f"{API_PREFIX}/payments/{{payment_id}}/cancel", self._cancel_payment)
        app.router.add_post(f"{API_PREFIX}/refunds", self._create_refund)
        app.router.add_get(f"{API_PREFIX}/refunds", self._list_refunds)
        app.router.add_get(f"{API_PREFIX}/refunds/{{refund_id}}", self._get_refund)
        app.router.add_get(CHECKOUT_PATH, self._checkout_page)
        app.router.add_post(CHECKOUT_PATH, self._checkout_action)
        # A short shutdown_timeout: stalled handlers are woken by _closing anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._http = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        self._closing.set()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeYooKassa:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeYooKassa is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    # ------------------------------------------------------------------ inspection

    def app_settings(self) -> dict[str, str]:
        """PinGlass's settings for card payments here: this shop, and notifications from 127.0.0.1
        (where this fake sends them from) trusted, so a test reaches the parser, not just the IP check."""
        return {
            "YOOKASSA_SHOP_ID": self.shop_id,
            "YOOKASSA_SECRET_KEY": self.secret_key,
            "YOOKASSA_API_URL": self.api_url,
            "YOOKASSA_RETURN_URL": "https://t.me/pinglass_test_bot",
            "YOOKASSA_TRUSTED_IPS": "127.0.0.1/32",
        }

    @property
    def payments(self) -> dict[str, dict[str, Any]]:
        return {payment_id: copy.deepcopy(record.data) for payment_id, record in self._payments.items()}

    @property
    def refunds(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._refunds)

    def payment(self, payment_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._record(payment_id).data)

    def payment_history(self, payment_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self._record(payment_id).history)

    def requests_to(self, route: str) -> list[RecordedRequest]:
        """Recorded requests for a route such as ``"POST /payments"``."""
        return [request for request in self.requests if request.route == route]

    def delivered(self, event: str | None = None) -> list[NotificationAttempt]:
        """Notification attempts that got HTTP 200."""
        return [
            attempt
            for attempt in self.notifications
            if attempt.status == 200 and (event is None or attempt.event == event)
        ]

    def forget_idempotence_keys(self) -> None:
        """Simulate the 24 h window passing: every key is processed as new afterwards."""
        self._idempotence.clear()

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self, status: int, *, times: int = 1, route: str | None = None, operation_succeeds: bool = False
    ) -> None:
        """Answer the next ``times`` matching API calls with ``status`` (429, 500, 202, 503 ...).

        ``operation_succeeds``: the operation is performed and its idempotent result saved before
        the error is returned, so a repeat with the same key gets the created object (the "500 but
        it worked" case). Plain faults are never stored: a repeat is processed afresh.
        """
        self._faults.append(Fault("status", route, times, status=status, operation_succeeds=operation_succeeds))

    def stall_next(self, seconds: float, *, times: int = 1, route: str | None = None) -> None:
        """Hold the next matching calls for ``seconds`` before processing them (client timeouts)."""
        self._faults.append(Fault("stall", route, times, seconds=seconds))

    def drop_next(self, *, times: int = 1, route: str | None = None, operation_succeeds: bool = False) -> None:
        """Close the connection without any response on the next matching calls."""
        self._faults.append(Fault("drop", route, times, operation_succeeds=operation_succeeds))

    def _take_fault(self, route: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(route):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ HTTP plumbing

    def _check_auth(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if scheme != "Basic" or decoded != f"{self.shop_id}:{self.secret_key}":
            raise ApiReject(
                401,
                "Login and password or token are invalid. Check the authentication data",
                code="invalid_credentials",
            )

    @staticmethod
    def _route_name(request: web.Request) -> str:
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        return f"{request.method} {canonical.removeprefix(API_PREFIX)}"

    @staticmethod
    def _json_response(status: int, body: Mapping[str, Any]) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            content_type="application/json",
        )

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        """Abort the TCP connection; the response returned afterwards is never written."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)

    async def _api_call(self, request: web.Request, operation: Operation) -> web.StreamResponse:
        """Record, inject faults, authenticate, apply idempotence, run ``operation(body)``."""
        body_bytes = await request.read()
        route = self._route_name(request)
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            route=route,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body_bytes,
        )
        self.requests.append(recorded)
        response = await self._api_call_inner(request, recorded, operation)
        recorded.response_status = response.status
        return response

    async def _api_call_inner(
        self, request: web.Request, recorded: RecordedRequest, operation: Operation
    ) -> web.StreamResponse:
        fault = self._take_fault(recorded.route)
        if fault is not None and fault.kind == "stall":
            try:
                await asyncio.wait_for(self._closing.wait(), fault.seconds)
            except TimeoutError:
                pass
            if self._closing.is_set():
                return self._drop(request)
        if fault is not None and not fault.operation_succeeds:
            if fault.kind == "drop":
                return self._drop(request)
            if fault.kind == "status":
                return self._fault_response(fault.status)
        try:
            self._check_auth(request)
            status, body = self._idempotent(request, recorded, operation)
        except ApiReject as reject:
            return self._json_response(reject.status, reject.body())
        if fault is not None and fault.operation_succeeds:
            if fault.kind == "drop":
                return self._drop(request)
            return self._fault_response(fault.status)
        return self._json_response(status, body)

    def _fault_response(self, status: int) -> web.Response:
        if status == 202:
            return self._json_response(
                202,
                {
                    "type": "processing",
                    "description": (
                        "Request accepted, but not processed yet. Retry again with the same Idempotence-Key"
                    ),
                    "retry_after": 1800,
                },
            )
        if status in ERROR_CODES_BY_STATUS:
            description = ERROR_DESCRIPTIONS_BY_STATUS.get(status, "Injected error")
            return self._json_response(status, ApiReject(status, description).body())
        # Gateways in front of the API answer 502/503/504 with an HTML page, not JSON.
        return web.Response(status=status, text="<html><body>Bad gateway</body></html>", content_type="text/html")

    def _idempotent(
        self, request: web.Request, recorded: RecordedRequest, operation: Operation
    ) -> tuple[int, dict[str, Any]]:
        if request.method != "POST":
            return operation(self._parse_body(recorded.body, required=False))
        key = recorded.idempotence_key
        if not key:
            raise ApiReject(400, "Idempotence-Key header is missing", "Idempotence-Key")
        if len(key) > IDEMPOTENCE_KEY_MAX_LENGTH:
            raise ApiReject(
                400,
                f"Idempotence key is too long. Max length is {IDEMPOTENCE_KEY_MAX_LENGTH} characters",
                "Idempotence-Key",
            )
        fingerprint = hashlib.sha256(
            f"{recorded.method} {recorded.path}\n".encode() + self._canonical_body(recorded.body)
        ).hexdigest()
        saved = self._idempotence.get(key)
        if saved is not None and time.monotonic() - saved.stored_at > self.idempotence_ttl:
            saved = None
        if saved is not None:
            if saved.fingerprint != fingerprint:
                raise ApiReject(400, "Idempotence key duplicated", "Idempotence-Key")
            return saved.status, copy.deepcopy(saved.body)
        try:
            status, body = operation(self._parse_body(recorded.body, required=False))
        except ApiReject as reject:
            # Business rejections are results too: the same request with the same key repeats them.
            status, body = reject.status, reject.body()
        self._idempotence[key] = _IdempotentResult(fingerprint, status, copy.deepcopy(body), time.monotonic())
        return status, body

    @staticmethod
    def _canonical_body(body: bytes) -> bytes:
        if not body:
            return b""
        try:
            return json.dumps(json.loads(body), sort_keys=True, ensure_ascii=False).encode("utf-8")
        except ValueError:
            return body

    @staticmethod
    def _parse_body(body: bytes, *, required: bool) -> dict[str, Any]:
        if not body:
            if required:
                raise ApiReject(400, "Request body is missing")
            return {}
        try:
            parsed = json.loads(body)
        except ValueError as error:
            raise ApiReject(400, "Request body is not valid JSON") from error
        if not isinstance(parsed, dict):
            raise ApiReject(400, "Request body must be a JSON object")
        return parsed

    def _record(self, payment_id: str) -> _PaymentRecord:
        record = self._payments.get(payment_id)
        if record is None:
            raise KeyError(f"unknown payment {payment_id}")
        return record

    # ------------------------------------------------------------------ API handlers

    async def _create_payment(self, request: web.Request) -> web.StreamResponse:
        return await self._api_call(request, self._do_create_payment)

    async def _get_payment(self, request: web.Request) -> web.StreamResponse:
        payment_id = request.match_info["payment_id"]

        def find(_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            record = self._payments.get(payment_id)
            if record is None:
                raise ApiReject(404, "Payment not found", "payment_id")
            return 200, copy.deepcopy(record.data)

        return await self._api_call(request, find)

    async def _list_payments(self, request: web.Request) -> web.StreamResponse:
        def listing(_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            status_filter = request.query.get("status")
            try:
                limit = int(request.query.get("limit", "10"))
            except ValueError as error:
                raise ApiReject(400, "Invalid limit", "limit") from error
            if not 1 <= limit <= 100:
                raise ApiReject(400, "Invalid limit", "limit")
            items = [
                copy.deepcopy(record.data)
                for record in reversed(self._payments.values())
                if status_filter is None or record.data["status"] == status_filter
            ]
            return 200, {"type": "list", "items": items[:limit]}

        return await self._api_call(request, listing)

    async def _capture_payment(self, request: web.Request) -> web.StreamResponse:
        payment_id = request.match_info["payment_id"]

        def capture(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            record = self._payments.get(payment_id)
            if record is None:
                raise ApiReject(404, "Payment not found", "payment_id")
            if record.data["status"] != "waiting_for_capture":
                raise ApiReject(400, "Payment is not in waiting_for_capture status", "payment_id")
            if "amount" in body:
                amount, _currency = _parse_amount(body["amount"])
                if amount > Decimal(record.data["amount"]["value"]):
                    raise ApiReject(400, "Capture amount exceeds the payment amount", "amount.value")
                record.data["amount"] = money(amount)
            self._succeed(record, background=True)
            return 200, copy.deepcopy(record.data)

        return await self._api_call(request, capture)

    async def _cancel_payment(self, request: web.Request) -> web.StreamResponse:
        payment_id = request.match_info["payment_id"]

        def cancel(_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            record = self._payments.get(payment_id)
            if record is None:
                raise ApiReject(404, "Payment not found", "payment_id")
            if record.data["status"] != "waiting_for_capture":
                raise ApiReject(400, "Payment is not in waiting_for_capture status", "payment_id")
            self._cancel(record, "merchant", "canceled_by_merchant", background=True)
            return 200, copy.deepcopy(record.data)

        return await self._api_call(request, cancel)

    async def _create_refund(self, request: web.Request) -> web.StreamResponse:
        return await self._api_call(request, self._do_create_refund)

    async def _list_refunds(self, request: web.Request) -> web.StreamResponse:
        """GET /v3/refunds: newest first, filtered by created_at.gte / status / payment_id, cursor pages."""

        def listing(_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            query = request.query
            try:
                limit = int(query.get("limit", "10"))
            except ValueError as error:
                raise ApiReject(400, "Invalid limit", "limit") from error
            if not 1 <= limit <= 100:
                raise ApiReject(400, "Invalid limit", "limit")
            since = query.get("created_at.gte")
            items = [
                refund
                for refund in reversed(self._refunds.values())
                if (since is None or refund["created_at"] >= since)
                and query.get("status") in (None, refund["status"])
                and query.get("payment_id") in (None, refund["payment_id"])
            ]
            start = int(query.get("cursor", "0") or 0)
            page = items[start : start + limit]
            body: dict[str, Any] = {"type": "list", "items": copy.deepcopy(page)}
            if start + limit < len(items):
                body["next_cursor"] = str(start + limit)
            return 200, body

        return await self._api_call(request, listing)

    async def _get_refund(self, request: web.Request) -> web.StreamResponse:
        refund_id = request.match_info["refund_id"]

        def find(_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            refund = self._refunds.get(refund_id)
            if refund is None:
                raise ApiReject(404, "Refund not found", "refund_id")
            return 200, copy.deepcopy(refund)

        return await self._api_call(request, find)

    # ------------------------------------------------------------------ validation

    def _validate_receipt(self, receipt: object, total: Decimal, *, required: bool) -> bool:
        """Checks a 54-FZ receipt; returns whether one was given."""
        illegal = ApiReject(400, "Receipt is missing or illegal", "receipt")
        if receipt is None:
            if required:
                raise illegal
            return False
        if not isinstance(receipt, dict):
            raise illegal
        customer = receipt.get("customer")
        if not isinstance(customer, dict) or not (customer.get("email") or customer.get("phone")):
            raise illegal
        email = customer.get("email")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise illegal
        items = receipt.get("items")
        if not isinstance(items, list) or not items:
            raise illegal
        items_total = Decimal(0)
        for item in items:
            if not isinstance(item, dict):
                raise illegal
            description = item.get("description")
            if not isinstance(description, str) or not description or len(description) > 128:
                raise illegal
            quantity = _parse_decimal(item.get("quantity"), "receipt.items.quantity")
            if quantity <= 0:
                raise illegal
            price, _currency = _parse_amount(item.get("amount"), "receipt.items.amount")
            vat_code = item.get("vat_code")
            if isinstance(vat_code, bool) or not isinstance(vat_code, int) or not 1 <= vat_code <= 12:
                raise illegal
            subject = item.get("payment_subject")
            mode = item.get("payment_mode")
            if subject is not None and subject not in PAYMENT_SUBJECTS:
                raise illegal
            if mode is not None and mode not in PAYMENT_MODES:
                raise illegal
            # Чеки от ЮKassa / FFD 1.2 require the unit of measure.
            if self.fiscalization and not isinstance(item.get("measure"), str):
                raise illegal
            items_total += (price * quantity).quantize(CENT)
        if items_total != total:
            raise ApiReject(400, "Sum of receipt items amounts does not match the payment amount", "receipt.items")
        return True

    @staticmethod
    def _validate_metadata(metadata: object) -> dict[str, str] | None:
        if metadata is None:
            return None
        if not isinstance(metadata, dict):
            raise ApiReject(400, "Invalid metadata", "metadata")
        if len(metadata) > METADATA_MAX_KEYS:
            raise ApiReject(400, f"Metadata may contain at most {METADATA_MAX_KEYS} keys", "metadata")
        for key, value in metadata.items():
            if len(key) > METADATA_KEY_MAX_LENGTH:
                raise ApiReject(400, f"Metadata key {key[:40]!r} is too long", "metadata")
            if not isinstance(value, str) or len(value) > METADATA_VALUE_MAX_LENGTH:
                raise ApiReject(400, f"Metadata value of {key!r} must be a string ≤ 512 characters", "metadata")
        return dict(metadata)

    # ------------------------------------------------------------------ operations

    def _do_create_payment(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not body:
            raise ApiReject(400, "Request body is missing")
        amount, currency = _parse_amount(body.get("amount"))
        capture = body.get("capture", False)  # the API default is a two-stage payment
        if not isinstance(capture, bool):
            raise ApiReject(400, "Invalid capture value", "capture")
        confirmation = body.get("confirmation")
        if not isinstance(confirmation, dict) or confirmation.get("type") != "redirect":
            raise ApiReject(400, "Only redirect confirmation is supported by the fake", "confirmation.type")
        return_url = confirmation.get("return_url")
        if not isinstance(return_url, str) or not return_url or len(return_url) > 2048:
            raise ApiReject(400, "Invalid return_url", "confirmation.return_url")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > DESCRIPTION_MAX_LENGTH):
            raise ApiReject(400, "Invalid description: at most 128 characters", "description")
        metadata = self._validate_metadata(body.get("metadata"))
        has_receipt = self._validate_receipt(body.get("receipt"), amount, required=self.fiscalization)

        payment_id = _object_id("payment")
        data: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": money(amount, currency),
            "confirmation": {
                "type": "redirect",
                "return_url": return_url,
                "confirmation_url": f"{self.base_url}{CHECKOUT_PATH}?orderId={payment_id}",
            },
            "created_at": iso_ms(_now()),
            "recipient": {"account_id": self.shop_id, "gateway_id": self.gateway_id},
            "refundable": False,
            "test": True,
        }
        if description is not None:
            data["description"] = description
        if metadata is not None:
            data["metadata"] = metadata
        if has_receipt:
            data["receipt_registration"] = "pending"
        record = _PaymentRecord(data=data, capture=capture, has_receipt=has_receipt)
        record.history.append(copy.deepcopy(data))
        self._payments[payment_id] = record
        return 200, copy.deepcopy(data)

    def _do_create_refund(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not body:
            raise ApiReject(400, "Request body is missing")
        payment_id = body.get("payment_id")
        if not isinstance(payment_id, str) or payment_id not in self._payments:
            raise ApiReject(400, "Payment not found", "payment_id")
        record = self._payments[payment_id]
        amount, currency = _parse_amount(body.get("amount"))
        payment = record.data
        if payment["status"] != "succeeded":
            raise ApiReject(400, "Refund is possible only for a succeeded payment", "payment_id")
        if currency != payment["amount"]["currency"]:
            raise ApiReject(400, "Refund currency differs from the payment currency", "amount.currency")
        already = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        remaining = Decimal(payment["amount"]["value"]) - already
        if amount > remaining:
            raise ApiReject(400, "Refund amount exceeds the amount available for refund", "amount.value")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 250):
            raise ApiReject(400, "Invalid description", "description")
        has_receipt = self._validate_receipt(
            body.get("receipt"), amount, required=self.fiscalization and self.refund_receipt_required
        )
        refund: dict[str, Any] = {
            "id": _object_id("refund"),
            "payment_id": payment_id,
            "status": self.refund_outcome,
            "amount": money(amount, currency),
            "created_at": iso_ms(_now()),
        }
        if description is not None:
            refund["description"] = description
        if has_receipt:
            refund["receipt_registration"] = "succeeded"
        self._refunds[refund["id"]] = refund
        refunded = already + amount
        payment["refunded_amount"] = money(refunded, currency)
        payment["refundable"] = refunded < Decimal(payment["amount"]["value"])
        record.history.append(copy.deepcopy(payment))
        if refund["status"] == "succeeded":
            self._auto_notify("refund.succeeded", refund["id"], refund, background=True)
        return 200, copy.deepcopy(refund)

    def _succeed(self, record: _PaymentRecord, *, background: bool) -> asyncio.Future[None] | None:
        data = record.data
        amount = Decimal(data["amount"]["value"])
        fee = (amount * self.commission_percent / 100).quantize(CENT)
        data.update(
            status="succeeded",
            paid=True,
            captured_at=iso_ms(_now()),
            income_amount=money(amount - fee, data["amount"]["currency"]),
            refundable=True,
            refunded_amount=money(Decimal(0), data["amount"]["currency"]),
        )
        data.pop("expires_at", None)
        data.setdefault("payment_method", self._card_method())
        data.setdefault("authorization_details", self._authorization())
        if record.has_receipt:
            data["receipt_registration"] = "succeeded"
        record.history.append(copy.deepcopy(data))
        return self._auto_notify("payment.succeeded", data["id"], data, background=background)

    def _hold(self, record: _PaymentRecord, *, background: bool) -> asyncio.Future[None] | None:
        data = record.data
        data.update(
            status="waiting_for_capture",
            paid=True,
            expires_at=iso_ms(_now() + timedelta(days=7)),
            payment_method=self._card_method(),
            authorization_details=self._authorization(),
        )
        record.history.append(copy.deepcopy(data))
        return self._auto_notify("payment.waiting_for_capture", data["id"], data, background=background)

    def _cancel(
        self, record: _PaymentRecord, party: str, reason: str, *, background: bool
    ) -> asyncio.Future[None] | None:
        data = record.data
        data.update(
            status="canceled",
            paid=False,
            refundable=False,
            cancellation_details={"party": party, "reason": reason},
        )
        data.pop("confirmation", None)
        data.pop("expires_at", None)
        if record.has_receipt:
            data["receipt_registration"] = "canceled"
        record.history.append(copy.deepcopy(data))
        return self._auto_notify("payment.canceled", data["id"], data, background=background)

    @staticmethod
    def _card_method() -> dict[str, Any]:
        return {
            "type": "bank_card",
            "id": str(uuid.uuid4()),
            "saved": False,
            "title": "Bank card *4444",
            "card": {
                "first6": "555555",
                "last4": "4444",
                "expiry_month": "12",
                "expiry_year": "2030",
                "card_type": "MasterCard",
                "issuer_country": "RU",
            },
        }

    @staticmethod
    def _authorization() -> dict[str, Any]:
        return {
            "rrn": f"{secrets.randbelow(10**12):012d}",
            "auth_code": "000000",
            "three_d_secure": {"applied": False},
        }

    # ------------------------------------------------------------------ test actions

    async def pay(self, payment_id: str) -> dict[str, Any]:
        """The user pays: ``succeeded`` (capture=true) or ``waiting_for_capture``; auto-notifies."""
        record = self._record(payment_id)
        if record.data["status"] != "pending":
            raise ValueError(f"cannot pay a {record.data['status']} payment")
        delivery = self._succeed(record, background=False) if record.capture else self._hold(record, background=False)
        if delivery is not None:
            await delivery
        return copy.deepcopy(record.data)

    async def cancel(
        self, payment_id: str, reason: str = "expired_on_confirmation", party: str = "yoo_money"
    ) -> dict[str, Any]:
        """The payment is declined/cancelled by YooKassa or the network; auto-notifies."""
        if reason not in PAYMENT_CANCELLATION_REASONS:
            raise ValueError(f"unknown cancellation reason {reason!r}")
        if party not in CANCELLATION_PARTIES:
            raise ValueError(f"unknown cancellation party {party!r}")
        record = self._record(payment_id)
        if record.data["status"] not in ("pending", "waiting_for_capture"):
            raise ValueError(f"cannot cancel a {record.data['status']} payment")
        delivery = self._cancel(record, party, reason, background=False)
        if delivery is not None:
            await delivery
        return copy.deepcopy(record.data)

    async def expire(self, payment_id: str) -> dict[str, Any]:
        """The user never confirmed (or the merchant never captured) in time."""
        status = self._record(payment_id).data["status"]
        reason = "expired_on_capture" if status == "waiting_for_capture" else "expired_on_confirmation"
        return await self.cancel(payment_id, reason=reason, party="yoo_money")

    async def settle_refund(self, refund_id: str, status: Literal["succeeded", "canceled"]) -> dict[str, Any]:
        """A pending refund ends: ``succeeded`` (notified as refund.succeeded) or ``canceled`` (YooKassa
        sends no event for that; only polling sees it), which gives the amount back to the payment."""
        refund = self._refunds[refund_id]
        if refund["status"] != "pending":
            raise ValueError(f"cannot settle a {refund['status']} refund")
        refund["status"] = status
        if status == "canceled":
            refund["cancellation_details"] = {"party": "yoo_money", "reason": "general_decline"}
            payment = self._payments[refund["payment_id"]].data
            back = Decimal(payment["refunded_amount"]["value"]) - Decimal(refund["amount"]["value"])
            payment["refunded_amount"] = money(back, payment["amount"]["currency"])
            payment["refundable"] = True
            return copy.deepcopy(refund)
        delivery = self._auto_notify("refund.succeeded", refund_id, refund, background=False)
        if delivery is not None:
            await delivery
        return copy.deepcopy(refund)

    async def dashboard_refund(self, payment_id: str, amount: str | None = None) -> dict[str, Any]:
        """The shop owner refunds in the YooKassa dashboard: no API call from the bot; a
        refund.succeeded notification if subscribed. ``amount`` defaults to what is left."""
        payment = self._record(payment_id).data
        if payment["status"] != "succeeded":
            raise ValueError("only a succeeded payment can be refunded")
        currency = payment["amount"]["currency"]
        already = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        value = Decimal(amount) if amount is not None else Decimal(payment["amount"]["value"]) - already
        refund: dict[str, Any] = {
            "id": _object_id("refund"),
            "payment_id": payment_id,
            "status": "succeeded",
            "amount": money(value, currency),
            "created_at": iso_ms(_now()),
            "description": "Refund from the dashboard",
        }
        self._refunds[refund["id"]] = refund
        payment["refunded_amount"] = money(already + value, currency)
        payment["refundable"] = already + value < Decimal(payment["amount"]["value"])
        delivery = self._auto_notify("refund.succeeded", refund["id"], refund, background=False)
        if delivery is not None:
            await delivery
        return copy.deepcopy(refund)

    # ------------------------------------------------------------------ notifications

    def _auto_notify(
        self, event: str, object_id: str, obj: Mapping[str, Any], *, background: bool
    ) -> asyncio.Future[None] | None:
        """Notify the subscribed webhook about a transition; the object is snapshotted now."""
        if not self.auto_notify or event not in self.subscribed_events:
            return None
        envelope = self._envelope(event, obj)
        if self.lose_notifications:
            self.notifications.append(
                NotificationAttempt(self.webhook_url, event, object_id, 0, None, envelope, lost=True)
            )
            return None
        if self.hold_notifications:
            self._held.append(_HeldNotification(event, object_id, envelope))
            return None
        url = self.webhook_url
        if url is None:
            return None

        async def deliver() -> None:
            await self._deliver(url, event, object_id, envelope)

        if background:
            task = asyncio.get_running_loop().create_task(deliver())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return None
        return asyncio.ensure_future(deliver())

    @staticmethod
    def _envelope(event: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "notification", "event": event, "object": copy.deepcopy(dict(obj))}

    async def _post(self, url: str, envelope: Mapping[str, Any]) -> int | None:
        if self._http is None:
            raise RuntimeError("FakeYooKassa is not started")
        try:
            async with self._http.post(
                url,
                data=json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.notification_timeout),
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _deliver(
        self, url: str, event: str, object_id: str, envelope: dict[str, Any], *, forged: bool = False
    ) -> int | None:
        """POST until HTTP 200 or ``notification_attempts`` are used up (exponential backoff)."""
        attempts = 1 if forged else max(self.notification_attempts, 1)
        status: int | None = None
        for attempt in range(1, attempts + 1):
            status = await self._post(url, envelope)
            self.notifications.append(
                NotificationAttempt(url, event, object_id, attempt, status, copy.deepcopy(envelope), forged)
            )
            if status == 200:
                return status
            if attempt < attempts:
                await asyncio.sleep(self.notification_backoff * 2 ** (attempt - 1))
        return status

    def _current_object(self, object_id: str) -> tuple[str, dict[str, Any]]:
        if object_id in self._payments:
            return "payment", copy.deepcopy(self._payments[object_id].data)
        if object_id in self._refunds:
            return "refund", copy.deepcopy(self._refunds[object_id])
        raise KeyError(f"unknown payment or refund {object_id}")

    def _target(self, url: str | None) -> str:
        target = url or self.webhook_url
        if target is None:
            raise ValueError("no webhook URL: pass url= or set webhook_url")
        return target

    async def notify(
        self,
        payment_id: str,
        event: str | None = None,
        url: str | None = None,
        *,
        duplicates: int = 1,
        delay: float = 0.0,
        concurrent: bool = False,
    ) -> list[int | None]:
        """Send the notification for the object's current state (a payment or a refund id).

        ``duplicates`` deliveries are made, each retried until 200; ``concurrent`` sends them at
        once to race the handler against itself. Returns the final status of each delivery.
        """
        kind, obj = self._current_object(payment_id)
        if event is None:
            if kind == "payment" and obj["status"] == "pending":
                raise ValueError("a pending payment has no notification event")
            event = f"{kind}.{obj['status']}"
        target = self._target(url)
        envelope = self._envelope(event, obj)
        if delay:
            await asyncio.sleep(delay)
        deliveries = [self._deliver(target, event, payment_id, envelope) for _ in range(duplicates)]
        if concurrent:
            return list(await asyncio.gather(*deliveries))
        return [await delivery for delivery in deliveries]

    async def send_forged(self, payment_id: str, url: str | None = None) -> int | None:
        """An attacker's notification: claims ``payment.succeeded`` while the payment is not."""
        _kind, obj = self._current_object(payment_id)
        obj.update(
            status="succeeded",
            paid=True,
            captured_at=iso_ms(_now()),
            income_amount=obj["amount"],
            refundable=True,
        )
        obj.pop("cancellation_details", None)
        envelope = self._envelope("payment.succeeded", obj)
        return await self._deliver(self._target(url), "payment.succeeded", payment_id, envelope, forged=True)

    async def send_stale(self, payment_id: str, event: str, url: str | None = None) -> int | None:
        """Deliver ``event`` out of order, e.g. ``payment.waiting_for_capture`` or
        ``payment.canceled`` after the payment succeeded. Uses the snapshot taken when the payment
        was in that state if there was one; otherwise an object claiming that state."""
        record = self._record(payment_id)
        wanted_status = event.split(".", 1)[1]
        snapshot = next(
            (copy.deepcopy(item) for item in reversed(record.history) if item["status"] == wanted_status),
            None,
        )
        if snapshot is None:
            snapshot = copy.deepcopy(record.data)
            snapshot["status"] = wanted_status
            snapshot["paid"] = wanted_status in ("waiting_for_capture", "succeeded")
            if wanted_status == "canceled":
                snapshot["cancellation_details"] = {"party": "yoo_money", "reason": "expired_on_confirmation"}
        envelope = self._envelope(event, snapshot)
        return await self._deliver(self._target(url), event, payment_id, envelope)

    async def release_notifications(self, *, reverse: bool = False) -> list[int | None]:
        """Send the notifications queued while ``hold_notifications`` was on (optionally reversed)."""
        held, self._held = self._held, []
        if reverse:
            held.reverse()
        target = self._target(None)
        return [await self._deliver(target, item.event, item.object_id, item.body) for item in held]

    async def wait_notifications(self) -> None:
        """Wait for notifications sent in the background (after API-triggered transitions)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # ------------------------------------------------------------------ checkout page (manual runs)

    async def _checkout_page(self, request: web.Request) -> web.Response:
        payment_id = request.query.get("orderId", "")
        record = self._payments.get(payment_id)
        if record is None:
            return web.Response(status=404, text="Unknown payment")
        amount = html.escape(record.data["amount"]["value"])
        status = html.escape(record.data["status"])
        safe_id = html.escape(payment_id)
        page = (
            f"<html><body><h1>Fake YooKassa</h1><p>Payment {safe_id}: {amount} RUB, {status}</p>"
            f'<form method="post"><input type="hidden" name="orderId" value="{safe_id}">'
            '<button name="action" value="pay">Pay</button>'
            '<button name="action" value="decline">Decline</button></form></body></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def _checkout_action(self, request: web.Request) -> web.Response:
        form = await request.post()
        payment_id = str(form.get("orderId", ""))
        record = self._payments.get(payment_id)
        if record is None or record.data["status"] != "pending":
            return web.Response(status=409, text="Payment is not pending")
        return_url = record.data["confirmation"]["return_url"]
        if form.get("action") == "pay":
            if record.capture:
                self._succeed(record, background=True)
            else:
                self._hold(record, background=True)
        else:
            self._cancel(record, "payment_network", "general_decline", background=True)
        raise web.HTTPFound(return_url)
