"""A start that explains itself: Telegram unreachable, a rejected token, and Telegram through a proxy."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, free_port, running_app
from tests.integration.test_scale_out import base_settings, run_to_exit
from tests.process_harness import start_process


async def test_unreachable_telegram_is_one_line_per_retry_and_the_web_app_keeps_answering(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = base_settings(fake_telegram, sqlite_url, tmp_path, TELEGRAM_API_URL=nowhere)
    process = await start_process(settings, tmp_path / "bot.log", module="bot")
    try:
        async with asyncio.timeout(30):
            while process.log().count("Telegram is unreachable") < 3:
                assert process.process.poll() is None, process.log()
                await asyncio.sleep(0.2)
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{process.port}/healthz") as response,
        ):
            health = await response.json()
        assert response.status == 200
        assert health["telegram"]["ok"] is False and "Connect" in health["telegram"]["error"]
        assert health["scheduler"]["ok"] is True
    finally:
        process.terminate()
    lines = [line for line in process.log().splitlines() if "Telegram is unreachable" in line]
    assert all(nowhere in line and "retrying in" in line for line in lines)
    assert "Traceback" not in process.log() and "Unclosed" not in process.log()


async def test_sigterm_while_telegram_is_slow_to_answer_stops_the_bot_at_once(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    # The web app is up (healthy) while the start still waits for Telegram's first answer: a stop asked
    # for then must not wait for it (CI once waited out a 15 s deleteWebhook under load).
    slow = fake_telegram.delay("deleteWebhook", 60.0)
    settings = base_settings(fake_telegram, sqlite_url, tmp_path)
    process = await start_process(settings, tmp_path / "bot.log", module="bot")
    try:
        async with asyncio.timeout(30):
            while not slow.fired:
                await asyncio.sleep(0.05)
    finally:
        code = process.terminate(timeout=10.0)
    assert code == 0, process.log()
    assert "PinGlass stopped" in process.log() and "Traceback" not in process.log()
    # It stopped without Telegram's answer: the held deleteWebhook was never answered.
    assert slow.fired == 1 and fake_telegram.calls("deleteWebhook") == []


async def test_a_rejected_token_stops_the_process_with_one_line(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = base_settings(fake_telegram, sqlite_url, tmp_path)
    settings["BOT_TOKEN"] = "987654321:AAWrongTokenTelegramWillNotKnow_0123456"
    code, output = await asyncio.to_thread(run_to_exit, settings, tmp_path)
    assert code == 4
    [line] = output.strip().splitlines()
    assert "Telegram rejected BOT_TOKEN" in line and fake_telegram.base_url in line


class ConnectProxy:
    """An HTTP CONNECT proxy: it tunnels bytes and remembers where to."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method, target, _ = head.split("\r\n", 1)[0].split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_bot_api_calls_go_through_telegram_proxy(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    async with ConnectProxy() as proxy:
        settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", TELEGRAM_PROXY=proxy.url)
        async with running_app(settings):
            user = fake_telegram.user(language_code="en")
            await user.send_command("/help")
            assert "How it works" in (await user.wait_reply(timeout=10)).content
        assert proxy.tunnels and set(proxy.tunnels) == {fake_telegram.base_url.removeprefix("http://")}
