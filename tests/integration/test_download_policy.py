"""Result downloads are pinned: https from the provider's own (or allow-listed) hosts on public
addresses, few redirects each checked again, a size cap; over real HTTP where a server is involved."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from providers.base import PermanentProviderError
from providers.http import DownloadPolicy
from providers.kie import KieProvider
from providers.replicate import ReplicateProvider

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


@pytest_asyncio.fixture
async def results_host() -> AsyncIterator[str]:
    """A result host on 127.0.0.1: /r/<n> redirects n times, /away redirects to another host, /big is 2 MB."""

    async def chain(request: web.Request) -> web.StreamResponse:
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(body=PNG, content_type="image/png")
        raise web.HTTPFound(f"/r/{left - 1}")

    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://localhost:{request.url.port}/r/0")

    async def big(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\0" * (2 * 1024 * 1024), content_type="image/png")

    app = web.Application()
    app.router.add_get("/r/{n}", chain)
    app.router.add_get("/away", away)
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def kie_at(base: str, policy: DownloadPolicy) -> KieProvider:
    # The API host is the result host here, as with the fakes: "the provider's own host".
    return KieProvider("key", base, base, "nano-banana-2", download_policy=policy, max_download_bytes=1024 * 1024)


async def test_an_allowed_host_downloads_through_a_few_redirects(results_host: str) -> None:
    kie = kie_at(results_host, DownloadPolicy(allow_loopback=True, max_redirects=3))
    assert await kie.download(f"{results_host}/r/3") == PNG
    await kie.aclose()


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/r/4", "redirects"), ("/away", "not an allowed result host"), ("/big", "larger than")],
)
async def test_too_many_redirects_a_foreign_redirect_and_too_large_are_refused(
    results_host: str, path: str, reason: str
) -> None:
    kie = kie_at(results_host, DownloadPolicy(allow_loopback=True, max_redirects=3))
    with pytest.raises(PermanentProviderError, match=reason):
        await kie.download(f"{results_host}{path}")
    await kie.aclose()


async def test_plain_http_and_foreign_hosts_are_refused_before_connecting(results_host: str) -> None:
    port = httpx.URL(results_host).port
    strict = kie_at(results_host, DownloadPolicy())  # the default: no loopback, so no plain http either
    with pytest.raises(PermanentProviderError, match="plain http"):
        await strict.download(f"{results_host}/r/0")
    loopback = kie_at(results_host, DownloadPolicy(allow_loopback=True))
    with pytest.raises(PermanentProviderError, match="not an allowed result host"):
        await loopback.download(f"http://localhost:{port}/r/0")
    await strict.aclose()
    await loopback.aclose()


def resolving_to(*addresses: str) -> DownloadPolicy:
    async def resolver(_host: str, _port: int) -> list[str]:
        return list(addresses)

    return DownloadPolicy(hosts=(".results.example",), resolver=resolver)


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "192.168.0.10", "172.16.5.5", "169.254.169.254", "127.0.0.1", "::1", "fe80::1", "fc00::5",
     "::ffff:10.0.0.1", "100.64.0.1", "0.0.0.0"],
)  # fmt: skip
async def test_private_link_local_and_loopback_addresses_are_refused(address: str) -> None:
    with pytest.raises(PermanentProviderError, match="non-public"):
        await resolving_to("93.184.216.34", address).check(httpx.URL("https://cdn.results.example/x.png"))


async def test_a_public_https_result_host_passes_and_http_or_other_hosts_do_not() -> None:
    policy = resolving_to("93.184.216.34")
    await policy.check(httpx.URL("https://cdn.results.example/x.png"))
    await policy.check(httpx.URL("https://results.example/x.png"))
    with pytest.raises(PermanentProviderError, match="plain http"):
        await policy.check(httpx.URL("http://cdn.results.example/x.png"))
    for foreign in ("https://evilresults.example/x.png", "https://results.example.evil.com/x.png"):
        with pytest.raises(PermanentProviderError, match="not an allowed result host"):
            await policy.check(httpx.URL(foreign))


def test_each_provider_allows_its_own_hosts_and_the_configured_ones() -> None:
    extra = DownloadPolicy().with_hosts(["cdn.mine.example"])
    kie = KieProvider(
        "key", "https://api.kie.ai", "https://kieai.redpandaai.co", "nano-banana-2", download_policy=extra
    )
    replicate = ReplicateProvider("r8_x", download_policy=extra)
    kie_policy, replicate_policy = kie._download_policy, replicate._download_policy
    for host in ("api.kie.ai", "tempfile.aiquickdraw.com", "tempfile.redpandaai.co", "cdn.mine.example"):
        assert kie_policy.host_allowed(host), host
    for host in ("api.replicate.com", "replicate.delivery", "pbxt.replicate.delivery", "cdn.mine.example"):
        assert replicate_policy.host_allowed(host), host
    assert not kie_policy.host_allowed("replicate.delivery")
    assert not replicate_policy.host_allowed("tempfile.aiquickdraw.com")
