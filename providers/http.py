"""Small httpx helpers shared by the provider clients (Kie.ai, Replicate, the self-hosted generator).

Kept deliberately small: a client factory with explicit timeouts and User-Agent, one request that
maps transport and HTTP failures onto the provider error hierarchy, a JSON-object reader, the guard
that keeps Telegram file URLs in, and a capped byte fetch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from providers.base import (
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    RetryableProviderError,
    TaskNotFoundError,
)

# An explicit, non-library User-Agent: Cloudflare in front of some providers answers a bare
# 403 "error code: 1010" to default library agents (kie.md §1).
USER_AGENT = "PinGlass/0.1 (+httpx)"
DEFAULT_MAX_DOWNLOAD_BYTES = 30 * 1024 * 1024
# Connecting should never take long; a slow connect means the host is unreachable.
MAX_CONNECT_TIMEOUT_SECONDS = 10.0
_DOWNLOAD_CHUNK_BYTES = 64 * 1024


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """Where result downloads may go: a provider names the URL, but a URL is only fetched from an
    allowed host over https, never from a private, link-local or otherwise non-public address
    (a forged or compromised result URL must not reach our own network), with few redirects, each
    checked again. ``allow_loopback`` admits http to 127.0.0.1/::1 for the local fakes in tests."""

    hosts: tuple[str, ...] = ()  # exact names, or ".example.com" for any subdomain (and itself)
    allow_loopback: bool = False
    max_redirects: int = 3
    resolver: Resolver = field(default=resolve_host, compare=False)

    def with_hosts(self, hosts: Iterable[str]) -> DownloadPolicy:
        merged = tuple(dict.fromkeys((*self.hosts, *(host.strip().lower().rstrip(".") for host in hosts if host))))
        return replace(self, hosts=merged)

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for allowed in self.hosts:
            if allowed.startswith("."):
                if host == allowed[1:] or host.endswith(allowed):
                    return True
            elif host == allowed:
                return True
        return False

    async def check(self, url: httpx.URL) -> None:
        """Raise PermanentProviderError unless ``url`` may be fetched (resolving its host)."""
        host = url.host
        if url.scheme not in ("https", "http") or not host:
            raise PermanentProviderError(f"download refused: unsupported URL {str(url)[:60]!r}")
        if not self.host_allowed(host):
            raise PermanentProviderError(f"download refused: host {host!r} is not an allowed result host")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(address.split("%")[0]) for address in await self.resolver(host, port)]
            except OSError as error:
                raise RetryableProviderError(f"download: cannot resolve {host!r}: {error}") from error
        if not addresses:
            raise RetryableProviderError(f"download: {host!r} resolved to nothing")
        loopback = all(_plain(address).is_loopback for address in addresses)
        if loopback and self.allow_loopback:
            return  # the test fakes: http allowed, nothing else is reachable this way
        if url.scheme != "https":
            raise PermanentProviderError(f"download refused: plain http ({host!r})")
        for address in addresses:
            if not _plain(address).is_global:
                raise PermanentProviderError(f"download refused: {host!r} resolves to non-public {address}")


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def request_timeout(total_seconds: float) -> httpx.Timeout:
    """A timeout for one request: ``total_seconds`` for read/write/pool, connect capped lower."""
    return httpx.Timeout(total_seconds, connect=min(total_seconds, MAX_CONNECT_TIMEOUT_SECONDS))


def build_http_client(timeout_seconds: float, *, max_connections: int = 50) -> httpx.AsyncClient:
    """An AsyncClient with timeouts everywhere and our User-Agent; the caller owns and closes it."""
    return httpx.AsyncClient(
        timeout=request_timeout(timeout_seconds),
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    timeout_seconds: float,
    error_for: Callable[[httpx.Response], ProviderError],
    **kwargs: Any,
) -> httpx.Response:
    """One API request: a successful response, or the provider error it means (timeouts and transport
    failures are retryable; ``error_for`` reads an unsuccessful answer). ``what`` names the call."""
    try:
        response = await http.request(method, url, timeout=request_timeout(timeout_seconds), **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableProviderError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise RetryableProviderError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if response.is_success:
        return response
    raise error_for(response)


def error_for_status(
    status: int, message: str, *, retry_after: float | None = None, task_lookup: bool = False
) -> ProviderError:
    """The usual meaning of an HTTP error status: 429 throttled, 404 of a task lookup unknown, 408/425
    and 5xx worth retrying, anything else the same request failing the same way again."""
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, status=status)
    if status == 404 and task_lookup:
        return TaskNotFoundError(message, status=status)
    if status in (408, 425) or status >= 500:
        return RetryableProviderError(message, status=status)
    return PermanentProviderError(message, status=status)


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """A successful answer's JSON object; a body that is not one is a provider fault worth retrying."""
    try:
        payload = response.json()
    except ValueError as exc:
        raise RetryableProviderError(f"{what}: answer is not JSON", status=response.status_code) from exc
    if not isinstance(payload, dict):
        raise RetryableProviderError(f"{what}: answer is not an object", status=response.status_code)
    return payload


def refuse_telegram_file_urls(urls: Iterable[str]) -> None:
    """A Telegram file URL embeds the bot token: it must never leave the process."""
    for url in urls:
        if "/file/bot" in url.lower():
            raise PermanentProviderError("refusing to send a Telegram file URL: it embeds the bot token")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Parse ``Retry-After`` (delta seconds or an HTTP date) into seconds from now."""
    raw_value = headers.get("retry-after") or headers.get("Retry-After")
    if not raw_value:
        return None
    raw_value = raw_value.strip()
    try:
        return max(0.0, float(raw_value))
    except ValueError:
        pass
    try:
        retry_at = email.utils.parsedate_to_datetime(raw_value)
    except (TypeError, ValueError):
        return None
    return max(0.0, retry_at.timestamp() - time.time())


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """Decode a ``data:`` URI (base64 or percent-encoded) with the same size cap as downloads."""
    header, separator, payload = uri.partition(",")
    if not separator or not header.startswith("data:"):
        raise PermanentProviderError("malformed data: URI")
    # base64 inflates by 4/3: reject oversized payloads before decoding them.
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise PermanentProviderError(f"data: URI larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise PermanentProviderError("undecodable data: URI") from exc
    if len(data) > max_bytes:
        raise PermanentProviderError(f"data: URI larger than {max_bytes} bytes")
    return data


async def fetch_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    timeout_seconds: float,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    headers: Mapping[str, str] | None = None,
    policy: DownloadPolicy | None = None,
    headers_for: Callable[[httpx.URL], Mapping[str, str] | None] | None = None,
) -> bytes:
    """GET ``url`` (or decode a ``data:`` URI) into memory, at most ``max_bytes``.

    With a ``policy``, the URL and every redirect target are checked against it and redirects are
    capped; ``headers_for`` then chooses the headers per hop (credentials only for a provider's
    own host, even after a redirect). 404/410 mean the provider already deleted the file (result
    URLs expire): permanent. 408/429/5xx and network failures: retryable. Other 4xx: permanent.
    """
    if url.startswith("data:"):
        return decode_data_uri(url, max_bytes)
    if not url.startswith(("https://", "http://")):
        raise PermanentProviderError(f"unsupported URL scheme: {url[:40]!r}")
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PermanentProviderError(f"malformed URL: {url[:60]!r}") from exc
    redirects_left = policy.max_redirects if policy is not None else 10
    while True:
        if policy is not None:
            await policy.check(target)
        hop_headers = headers_for(target) if headers_for is not None else headers
        body, location = await _fetch_once(client, target, timeout_seconds, max_bytes, hop_headers, policy is None)
        if location is None:
            return body
        if redirects_left <= 0:
            raise PermanentProviderError(
                f"download refused: more than {policy.max_redirects if policy else 10} redirects"
            )
        redirects_left -= 1
        try:
            target = target.join(location)
        except httpx.InvalidURL as exc:
            raise PermanentProviderError("download refused: malformed redirect") from exc


async def _fetch_once(
    client: httpx.AsyncClient,
    url: httpx.URL,
    timeout_seconds: float,
    max_bytes: int,
    headers: Mapping[str, str] | None,
    follow_redirects: bool,
) -> tuple[bytes, str | None]:
    """One GET: the body, or (when not following redirects) the Location of a 3xx."""
    request_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        async with client.stream(
            "GET",
            url,
            headers=request_headers,
            timeout=request_timeout(timeout_seconds),
            follow_redirects=follow_redirects,
        ) as response:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise PermanentProviderError("redirect without a Location", status=response.status_code)
                return b"", location
            await _raise_for_download_status(response)
            declared_length = response.headers.get("content-length")
            if declared_length is not None and declared_length.isdigit() and int(declared_length) > max_bytes:
                raise PermanentProviderError(
                    f"download larger than {max_bytes} bytes ({declared_length})", status=response.status_code
                )
            body = bytearray()
            async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK_BYTES):
                body.extend(chunk)
                # Content-Length may be absent or lie; enforce the cap on what actually arrives.
                if len(body) > max_bytes:
                    raise PermanentProviderError(f"download larger than {max_bytes} bytes")
    except httpx.TimeoutException as exc:
        raise RetryableProviderError(f"download timed out: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise RetryableProviderError(f"download failed: {type(exc).__name__}: {exc}") from exc
    if not body:
        raise RetryableProviderError("download returned an empty body", status=response.status_code)
    return bytes(body), None


def is_cloudflare_1010(status: int, body_text: str) -> bool:
    """Cloudflare's bot check ("error code: 1010"): not an auth failure, a retry with a proper UA may pass."""
    return status == 403 and "1010" in body_text[:200]


async def _raise_for_download_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 403:
        # Error pages are small; read it to tell Cloudflare's 1010 from a real denial.
        body_text = (await response.aread())[:2000].decode("utf-8", "replace")
        if is_cloudflare_1010(status, body_text):
            raise RetryableProviderError("download blocked by Cloudflare (error code 1010)", status=status)
    if status in (404, 410):
        raise PermanentProviderError(f"file gone (HTTP {status}); the URL has probably expired", status=status)
    if status in (408, 425, 429) or status >= 500:
        raise RetryableProviderError(f"download got HTTP {status}", status=status)
    raise PermanentProviderError(f"download got HTTP {status}", status=status)
