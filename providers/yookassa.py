"""YooKassa API v3 client on top of the official synchronous ``yookassa`` SDK, plus webhook helpers.

The contract is ``docs/yookassa.md``. The SDK traps this module neutralises:

* **Global configuration.** ``yookassa.Configuration`` is process-wide class state, and every
  ``configure()`` resets ``api_url`` unless it is passed. ``YooKassaClient.__init__`` is the single
  place PinGlass touches it (``_configure_sdk_globals``). On top of that, each SDK call made here
  goes through an ``ApiClient`` subclass pinned to *this* client's shop, secret and URL, so another
  ``configure()`` elsewhere in the process cannot silently redirect our calls.
* **No socket timeout, blocking I/O.** Every call runs in a small dedicated thread pool under
  ``asyncio.wait_for``; the pinned ``ApiClient`` also mounts a requests adapter with a socket
  timeout, so a stalled API frees the worker thread instead of holding it forever.
* **Odd failures.** Network errors surface as ``AttributeError`` (the SDK reads
  ``e.response.status_code`` of a response-less exception), 202 as ``ResponseProcessingError``,
  client-side validation as ``ValueError``/``TypeError``. All of it becomes one ``YooKassaError``.
* **Random idempotence keys.** The SDK invents a uuid4 when the key is empty; we refuse empty keys,
  because the caller's key (persisted with the payment attempt) is what makes retries safe.

Webhooks carry no signature: ``parse_notification`` only extracts *which* object changed, and the
caller must re-fetch it with ``get_payment``/``get_refund``. ``IpAllowList`` and ``client_ip`` are
the defence-in-depth source check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from yookassa import Configuration, Payment, Refund
from yookassa.client import ApiClient
from yookassa.domain.exceptions import ApiError
from yookassa.domain.response import PaymentResponse, RefundResponse

from providers.payments import PaymentInfo, PaymentProviderError, RefundInfo

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.yookassa.ru/v3"
CURRENCY = "RUB"
DESCRIPTION_MAX_LENGTH = 128
IDEMPOTENCE_KEY_MAX_LENGTH = 64
METADATA_MAX_KEYS = 16
METADATA_KEY_MAX_LENGTH = 32
METADATA_VALUE_MAX_LENGTH = 512
# The SDK adds this key to every payment's metadata; it counts toward the 16-key limit.
SDK_METADATA_KEY = "cms_name"
# Ids are spliced into URL paths by the SDK, so anything but a plain token is refused before it
# can turn into "../" path tricks.
PROVIDER_ID_PATTERN = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
NOTIFICATION_EVENT_PATTERN = re.compile(r"^[a-z_]{1,32}\.[a-z_]{1,64}$")
NOTIFICATION_MAX_BYTES = 256 * 1024

ResultT = TypeVar("ResultT")


class YooKassaError(PaymentProviderError):
    """Any YooKassa failure: rejected request, API error, timeout, network error, bad response.

    ``status`` is the HTTP status when one was received; ``code`` is YooKassa's error code
    (``invalid_request``, ``too_many_requests`` ...). ``retry_after`` is in seconds when the API
    suggested one.
    """

    def __init__(
        self,
        message: str,
        retryable: bool,
        status: int | None = None,
        code: str | None = None,
        *,
        parameter: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, status=status, code=code)
        self.parameter = parameter
        self.retry_after = retry_after


def _retryable_status(status: int) -> bool:
    # 202: accepted but not processed; 429: rate limited; 5xx: outcome unknown, repeat with the
    # same key. A 200 whose body could not be read also lands here: the operation may have happened.
    return status in (200, 202, 429) or status >= 500


def translate_sdk_failure(error: BaseException, http_status: int | None = None) -> YooKassaError:
    """Map anything the SDK raised to one ``YooKassaError``.

    ``http_status`` is the status of the response the failing call received, if any (recorded by the
    pinned ApiClient), which covers cases the SDK reports without it: a 503 is a bare ``ApiError``,
    a non-JSON error page is a ``JSONDecodeError``.
    """
    if isinstance(error, YooKassaError):
        return error
    if isinstance(error, ApiError):
        content: dict[str, Any] = error.content if isinstance(error.content, dict) else {}
        status = http_status if http_status is not None else (getattr(type(error), "HTTP_CODE", 0) or None)
        code = content.get("code") if isinstance(content.get("code"), str) else None
        description = str(content.get("description") or content.get("type") or type(error).__name__)
        parameter = content.get("parameter") if isinstance(content.get("parameter"), str) else None
        retry_after_ms = content.get("retry_after")
        retry_after = (
            float(retry_after_ms) / 1000
            if isinstance(retry_after_ms, int | float) and not isinstance(retry_after_ms, bool)
            else None
        )
        retryable = True if status is None else _retryable_status(status)
        suffix = f" (parameter {parameter})" if parameter else ""
        return YooKassaError(
            f"YooKassa answered {status}: {code or 'error'}: {description}{suffix}",
            retryable,
            status,
            code,
            parameter=parameter,
            retry_after=retry_after,
        )
    # The SDK's error handler does ``e.response.status_code`` on a response-less requests
    # exception, so a network failure arrives as AttributeError with the real cause as context.
    transport_failures = (requests.RequestException, OSError)
    network_cause = error if isinstance(error, transport_failures) else None
    if network_cause is None and isinstance(error.__context__, transport_failures):
        network_cause = error.__context__
    if network_cause is not None:
        retryable = True if http_status is None else _retryable_status(http_status)
        answered = f" (HTTP {http_status})" if http_status is not None else ""
        return YooKassaError(
            f"YooKassa request failed{answered}: {type(network_cause).__name__}: {network_cause}",
            retryable,
            http_status,
            None,
        )
    if isinstance(error, ValueError | TypeError):
        # Client-side validation in the SDK (description too long, amount <= 0, receipt rules).
        return YooKassaError(f"YooKassa request rejected before sending: {error}", False, http_status, None)
    return YooKassaError(f"YooKassa SDK failed unexpectedly: {type(error).__name__}: {error}", False, http_status, None)


class _SocketTimeoutAdapter(HTTPAdapter):
    """A requests adapter that applies a socket timeout when the caller (the SDK) passes none.

    It also reports each response's HTTP status, which the SDK does not always keep. No retries:
    the SDK's own Retry (202 only, https only, with 1.8 s backoff) would keep a worker thread busy
    past our deadline; callers retry with the same idempotence key instead.
    """

    def __init__(self, socket_timeout: float, on_response: Callable[[int], None]) -> None:
        super().__init__(max_retries=0)
        self._socket_timeout = socket_timeout
        self._on_response = on_response

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        response = super().send(
            request,
            stream=stream,
            timeout=self._socket_timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=dict(proxies) if proxies is not None else None,
        )
        # The SDK loses the status of a non-JSON error page (and of statuses it has no class for).
        self._on_response(response.status_code)
        return response


@dataclass(frozen=True, slots=True)
class _ShopBinding:
    shop_id: str
    secret_key: str
    api_url: str
    socket_timeout: float


def _bind_sdk(binding: _ShopBinding) -> tuple[type[Payment], type[Refund]]:
    """Payment/Refund classes whose calls use this shop's credentials, URL and socket timeout.

    The SDK's ``Payment.create`` and friends are classmethods that build ``cls()``, and ``__init__``
    creates ``self.client = ApiClient()``; subclassing both is the SDK's own extension seam, so no
    SDK code is patched and nothing global changes.
    """

    class PinnedApiClient(ApiClient):  # type: ignore[misc]  # the SDK ships no types
        def __init__(self) -> None:
            super().__init__()
            # Pin per call so a foreign Configuration.configure() cannot redirect our requests.
            self.endpoint = binding.api_url
            self.shop_id = binding.shop_id
            self.shop_password = binding.secret_key
            self.auth_token = None
            self.last_http_status: int | None = None

        def get_session(self) -> requests.Session:
            session = requests.Session()
            adapter = _SocketTimeoutAdapter(binding.socket_timeout, self._remember_status)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            return session

        def _remember_status(self, status: int) -> None:
            self.last_http_status = status

        def request(
            self,
            method: Any = "",
            path: Any = "",
            query_params: Any = None,
            headers: Any = None,
            body: Any = None,
        ) -> Any:
            self.last_http_status = None
            try:
                return super().request(method, path, query_params, headers, body)
            except Exception as error:
                raise translate_sdk_failure(error, self.last_http_status) from error

    class PinnedPayment(Payment):  # type: ignore[misc]  # the SDK ships no types
        def __init__(self) -> None:
            self.client = PinnedApiClient()

    class PinnedRefund(Refund):  # type: ignore[misc]  # the SDK ships no types
        def __init__(self) -> None:
            self.client = PinnedApiClient()

    return PinnedPayment, PinnedRefund


def _configure_sdk_globals(shop_id: str, secret_key: str, api_url: str) -> None:
    """The one touch of the SDK's process-global Configuration in PinGlass.

    Needed because ``ApiClient.__init__`` asserts that global credentials exist. ``api_url`` is always
    passed, because ``configure()`` without it silently resets the URL to production. Our own calls
    do not depend on these globals (see ``_bind_sdk``); they only keep the SDK's assertion satisfied.
    """
    Configuration.configure(shop_id, secret_key, api_url=api_url)


def kopecks_to_amount(kopecks: int) -> str:
    """Integer kopecks to YooKassa's 2-decimal string, without ever touching a float."""
    if isinstance(kopecks, bool) or not isinstance(kopecks, int):
        raise YooKassaError(f"amount must be integer kopecks, got {kopecks!r}", False)
    if kopecks <= 0:
        raise YooKassaError(f"amount must be positive, got {kopecks} kopecks", False)
    return f"{kopecks // 100}.{kopecks % 100:02d}"


def amount_to_kopecks(value: Decimal | str) -> int:
    """YooKassa amount (the SDK gives a Decimal) to integer kopecks; refuses fractions of a kopeck."""
    try:
        scaled = Decimal(str(value)) * 100
    except InvalidOperation as error:
        raise YooKassaError(f"unreadable amount {value!r}", False) from error
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise YooKassaError(f"amount {value!r} is not a whole number of kopecks", False)
    return int(scaled)


def _require_provider_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not PROVIDER_ID_PATTERN.match(value):
        raise YooKassaError(f"invalid {what} {value!r}", False)


def _require_idempotence_key(key: str) -> None:
    # An empty key would make the SDK invent a random one, defeating retries with the same key.
    if not isinstance(key, str) or not key or len(key) > IDEMPOTENCE_KEY_MAX_LENGTH:
        raise YooKassaError(f"idempotence key must be 1-{IDEMPOTENCE_KEY_MAX_LENGTH} characters, got {key!r}", False)


def _string_metadata(metadata: Mapping[str, object]) -> dict[str, str]:
    as_strings = {str(key): str(value) for key, value in metadata.items()}
    if len(as_strings.keys() | {SDK_METADATA_KEY}) > METADATA_MAX_KEYS:
        raise YooKassaError(
            f"metadata allows {METADATA_MAX_KEYS - 1} keys of ours (the SDK adds {SDK_METADATA_KEY})", False
        )
    for key, value in as_strings.items():
        if not key or len(key) > METADATA_KEY_MAX_LENGTH or len(value) > METADATA_VALUE_MAX_LENGTH:
            raise YooKassaError(f"metadata key/value too long: {key[:40]!r}", False)
    return as_strings


def _receipt(*, email: str, vat_code: int | None, item_description: str, amount: str) -> dict[str, Any]:
    if vat_code is None or isinstance(vat_code, bool) or not 1 <= vat_code <= 12:
        # The VAT code is an accounting decision (1 = no VAT); never guess it.
        raise YooKassaError(f"a receipt needs vat_code 1-12, got {vat_code!r}", False)
    return {
        "customer": {"email": email},
        "items": [
            {
                "description": item_description[:DESCRIPTION_MAX_LENGTH],
                "quantity": "1.00",
                "amount": {"value": amount, "currency": CURRENCY},
                "vat_code": vat_code,
                "payment_subject": "service",
                "payment_mode": "full_payment",
                "measure": "piece",
            }
        ],
    }


def _payment_info(response: PaymentResponse) -> PaymentInfo:
    amount = response.amount
    confirmation = getattr(response, "confirmation", None)
    cancellation = getattr(response, "cancellation_details", None)
    refunded = getattr(response, "refunded_amount", None)
    income = getattr(response, "income_amount", None)
    metadata = getattr(response, "metadata", None) or {}
    return PaymentInfo(
        id=str(response.id),
        status=str(response.status),
        paid=bool(response.paid),
        amount_kopecks=amount_to_kopecks(amount.value),
        currency=str(amount.currency),
        confirmation_url=getattr(confirmation, "confirmation_url", None),
        metadata={str(key): str(value) for key, value in dict(metadata).items()},
        test=bool(getattr(response, "test", False)),
        cancellation_party=getattr(cancellation, "party", None),
        cancellation_reason=getattr(cancellation, "reason", None),
        refunded_kopecks=amount_to_kopecks(refunded.value) if refunded is not None else 0,
        income_kopecks=amount_to_kopecks(income.value) if income is not None else None,
    )


def _refund_info(response: RefundResponse) -> RefundInfo:
    return RefundInfo(
        id=str(response.id),
        payment_id=str(response.payment_id),
        status=str(response.status),
        amount_kopecks=amount_to_kopecks(response.amount.value),
        currency=str(response.amount.currency),
    )


class YooKassaClient:
    """Async facade over the SDK: every call in a dedicated thread pool, bounded by ``timeout``.

    ``timeout`` bounds each call as seen by the caller (queueing included) and is also the socket
    timeout of the underlying HTTP request, so a stalled API frees its worker thread about as soon
    as the caller gives up. Every failure is a ``YooKassaError``; when ``retryable`` is true, repeat
    the call with the *same* idempotence key.
    """

    def __init__(
        self,
        shop_id: str,
        secret_key: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 15.0,
        max_workers: int = 4,
    ) -> None:
        if not shop_id or not secret_key:
            raise ValueError("YooKassa shop_id and secret_key are required")
        if timeout <= 0 or max_workers < 1:
            raise ValueError("timeout must be positive and max_workers at least 1")
        api_url = api_url.rstrip("/")
        self._timeout = timeout
        _configure_sdk_globals(shop_id, secret_key, api_url)
        self._payment_api, self._refund_api = _bind_sdk(
            _ShopBinding(shop_id=shop_id, secret_key=secret_key, api_url=api_url, socket_timeout=timeout)
        )
        # Dedicated so a YooKassa outage cannot starve the loop's default executor (DNS, files).
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="yookassa")
        self._closed = False

    @property
    def timeout(self) -> float:
        return self._timeout

    async def _call(self, operation: str, function: Callable[[], ResultT]) -> ResultT:
        """Run ``function`` (SDK call and conversion of its result) in the pool, within the timeout."""
        if self._closed:
            raise YooKassaError("YooKassa client is closed", False)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, function), self._timeout)
        except TimeoutError as error:
            logger.warning("YooKassa %s timed out after %.1f s", operation, self._timeout)
            raise YooKassaError(f"YooKassa {operation} timed out after {self._timeout:g} s", True) from error
        except YooKassaError:
            raise
        except RuntimeError as error:
            if self._closed:  # the executor was shut down while the call was queued
                raise YooKassaError("YooKassa client is closed", False) from error
            raise translate_sdk_failure(error) from error
        except Exception as error:
            # SDK validation in Payment.create before its ApiClient is reached, or a response the
            # SDK or our conversion could not read.
            raise translate_sdk_failure(error) from error

    async def create_payment(
        self,
        *,
        amount_kopecks: int,
        description: str,
        return_url: str,
        metadata: Mapping[str, object],
        idempotence_key: str,
        receipt_email: str | None = None,
        vat_code: int | None = None,
        item_description: str | None = None,
    ) -> PaymentInfo:
        """Create a one-stage redirect payment; the result is ``pending`` with a confirmation_url.

        ``idempotence_key`` must be stored with the payment attempt before calling and reused
        verbatim on every retry: that is what turns a retry after a timeout into the same payment.
        """
        _require_idempotence_key(idempotence_key)
        amount = kopecks_to_amount(amount_kopecks)
        description = description[:DESCRIPTION_MAX_LENGTH]
        params: dict[str, Any] = {
            "amount": {"value": amount, "currency": CURRENCY},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": return_url},
            "description": description,
            "metadata": _string_metadata(metadata),
        }
        if receipt_email is not None:
            params["receipt"] = _receipt(
                email=receipt_email,
                vat_code=vat_code,
                item_description=item_description or description,
                amount=amount,
            )
        payment_api = self._payment_api
        return await self._call("create_payment", lambda: _payment_info(payment_api.create(params, idempotence_key)))

    async def get_payment(self, payment_id: str) -> PaymentInfo:
        _require_provider_id(payment_id, "payment id")
        payment_api = self._payment_api
        return await self._call("get_payment", lambda: _payment_info(payment_api.find_one(payment_id)))

    async def create_refund(
        self,
        *,
        payment_id: str,
        amount_kopecks: int,
        idempotence_key: str,
        description: str,
        receipt_email: str | None = None,
        vat_code: int | None = None,
        item_description: str | None = None,
    ) -> RefundInfo:
        """Refund all or part of a succeeded payment. With fiscalization on, pass the receipt fields."""
        _require_provider_id(payment_id, "payment id")
        _require_idempotence_key(idempotence_key)
        amount = kopecks_to_amount(amount_kopecks)
        description = description[:DESCRIPTION_MAX_LENGTH]
        params: dict[str, Any] = {
            "payment_id": payment_id,
            "amount": {"value": amount, "currency": CURRENCY},
            "description": description,
        }
        if receipt_email is not None:
            params["receipt"] = _receipt(
                email=receipt_email,
                vat_code=vat_code,
                item_description=item_description or description,
                amount=amount,
            )
        refund_api = self._refund_api
        return await self._call("create_refund", lambda: _refund_info(refund_api.create(params, idempotence_key)))

    async def get_refund(self, refund_id: str) -> RefundInfo:
        _require_provider_id(refund_id, "refund id")
        refund_api = self._refund_api
        return await self._call("get_refund", lambda: _refund_info(refund_api.find_one(refund_id)))

    async def list_refunds(
        self, *, created_gte: str, status: str = "succeeded", cursor: str | None = None, limit: int = 100
    ) -> tuple[list[RefundInfo], str | None]:
        """One page of the shop's refunds created since ``created_gte`` (ISO 8601), newest first, and
        the cursor of the next page. Shows refunds made outside the bot, e.g. in the dashboard."""
        params: dict[str, Any] = {"created_at.gte": created_gte, "status": status, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        refund_api = self._refund_api

        def page() -> tuple[list[RefundInfo], str | None]:
            response = refund_api.list(params)
            return [_refund_info(item) for item in response.items or []], getattr(response, "next_cursor", None)

        return await self._call("list_refunds", page)

    def close(self) -> None:
        """Stop taking calls; queued calls are dropped, running ones end by their socket timeout."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# Notifications (webhooks)


class BadNotification(ValueError):
    """The body is not a YooKassa notification envelope (answer 400)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """Which object a notification is about. Nothing else in the body is trusted: re-fetch it."""

    event: str  # e.g. "payment.succeeded", "refund.succeeded"
    object_id: str
    object_type: str  # "payment", "refund", ... (the event's prefix)
    # A refund names its payment: only a gate (a payment we never created is not fetched), never trusted.
    payment_id: str | None = None


def parse_notification(raw_body: bytes) -> Notification:
    """Extract event and object id from a raw webhook body; ``BadNotification`` on anything else."""
    if not isinstance(raw_body, bytes | bytearray):
        raise BadNotification("body must be bytes")
    if len(raw_body) > NOTIFICATION_MAX_BYTES:
        raise BadNotification("body too large")
    try:
        envelope = json.loads(bytes(raw_body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise BadNotification(f"body is not JSON: {error}") from error
    if not isinstance(envelope, dict):
        raise BadNotification("body is not a JSON object")
    if envelope.get("type") != "notification":
        raise BadNotification("type is not 'notification'")
    event = envelope.get("event")
    if not isinstance(event, str) or not NOTIFICATION_EVENT_PATTERN.match(event):
        raise BadNotification("missing or malformed event")
    payload = envelope.get("object")
    if not isinstance(payload, dict):
        raise BadNotification("missing object")
    object_id = payload.get("id")
    if not isinstance(object_id, str) or not PROVIDER_ID_PATTERN.match(object_id):
        raise BadNotification("missing or malformed object.id")
    payment_id = payload.get("payment_id")
    if not isinstance(payment_id, str) or not PROVIDER_ID_PATTERN.match(payment_id):
        payment_id = None
    return Notification(event=event, object_id=object_id, object_type=event.split(".", 1)[0], payment_id=payment_id)


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ip(raw: object) -> IpAddress | None:
    """A normalised address, IPv4-mapped IPv6 unwrapped to IPv4; None for anything unparseable."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        return address.ipv4_mapped
    return address


def _parse_network(raw: str) -> IpNetwork:
    network = ipaddress.ip_network(raw.strip(), strict=False)
    mapped_prefix = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(mapped_prefix):
        # Treat a configured ::ffff:a.b.c.d/n like the IPv4 network it denotes.
        first = network.network_address.ipv4_mapped
        assert first is not None  # guaranteed by subnet_of(::ffff:0:0/96)
        return ipaddress.IPv4Network(f"{first}/{max(network.prefixlen - 96, 0)}", strict=False)
    return network


class IpAllowList:
    """Source-address check for webhooks (YooKassa's published ranges, or loopback in tests).

    Networks are validated at construction (a typo in the config fails at start-up); ``is_trusted``
    never raises: anything that is not an address is untrusted.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        parsed = [_parse_network(network) for network in networks]
        self._v4 = tuple(network for network in parsed if isinstance(network, ipaddress.IPv4Network))
        self._v6 = tuple(network for network in parsed if isinstance(network, ipaddress.IPv6Network))

    @property
    def networks(self) -> tuple[IpNetwork, ...]:
        return (*self._v4, *self._v6)

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def is_trusted(self, ip: str) -> bool:
        address = _parse_ip(ip)
        if isinstance(address, ipaddress.IPv4Address):
            return any(address in network for network in self._v4)
        if isinstance(address, ipaddress.IPv6Address):
            return any(address in network for network in self._v6)
        return False


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """All values of a header, case-insensitively, whether ``headers`` is a multidict or a dict."""
    getall = getattr(headers, "getall", None)
    if callable(getall):  # aiohttp's CIMultiDictProxy: repeated header lines are separate entries
        return [str(value) for value in getall(name, [])]
    wanted = name.lower()
    return [str(value) for key, value in headers.items() if key.lower() == wanted]


def client_ip(
    peer_ip: str,
    headers: Mapping[str, str],
    trusted_proxy_header: str,
    trusted_proxies: IpAllowList,
) -> str:
    """The address to run the allowlist on.

    The forwarded header is believed only when the direct peer is one of our proxies. It is read
    as a comma-separated hop list (X-Forwarded-For, X-Real-IP): walking from the right, hops added
    by our own proxies are skipped and the first other hop is the client. Hops to its left were
    written by the client itself and are ignored, so a forged ``X-Forwarded-For: 185.71.76.1``
    cannot pass.
    """
    if not trusted_proxy_header or not trusted_proxies.is_trusted(peer_ip):
        return peer_ip
    hops = [
        hop.strip()
        for value in _header_values(headers, trusted_proxy_header)
        for hop in value.split(",")
        if hop.strip()
    ]
    if not hops:
        return peer_ip
    for hop in reversed(hops):
        if not trusted_proxies.is_trusted(hop):
            return hop
    # Every hop is one of our proxies: the left-most is the earliest we know of.
    return hops[0]
