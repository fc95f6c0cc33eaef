"""Real processes side by side: webhook processes behind one address, a lone bot without Redis, migrations."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import requires_postgres
from tests.fakes.telegram import FakeTelegram
from tests.harness import free_port
from tests.process_harness import ROOT, AppProcess, process_env, start_process

REPLY = 20.0


def base_settings(fake: FakeTelegram, database_url: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.base_url,
        "DATABASE_URL": database_url,
        "LOCAL_STORAGE_DIR": str(tmp_path / "files"),
        "TELEGRAM_CHAT_RATE": 1000,
        "LOG_LEVEL": "INFO",
        **extra,
    }


class RoundRobin:
    """A load balancer in front of the processes: each POST goes to the next one, answered as it answers."""

    def __init__(self) -> None:
        self.backends: list[int] = []
        self.statuses: Counter[tuple[int, int]] = Counter()  # (backend port, status) -> count
        self.port = free_port()
        self._next = itertools.count()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> RoundRobin:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        backend = self.backends[next(self._next) % len(self.backends)]
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("x-telegram", "content-type"))}
        async with (
            aiohttp.ClientSession() as client,
            client.post(
                f"http://127.0.0.1:{backend}{request.path}", data=await request.read(), headers=headers
            ) as answer,
        ):
            body = await answer.read()
        self.statuses[(backend, answer.status)] += 1
        return web.Response(status=answer.status, body=body, content_type="application/json")


async def test_two_webhook_processes_share_the_secret_and_both_serve_users(
    fake_telegram: FakeTelegram, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with RoundRobin() as balancer:
        # No WEBHOOK_SECRET configured: both derive the same one from the token.
        settings = base_settings(
            fake_telegram, sqlite_url, tmp_path, REDIS_URL=redis_url, PUBLIC_URL=f"http://127.0.0.1:{balancer.port}"
        )
        first = await start_process(settings, tmp_path / "one.log", module="bot")
        second = await start_process(settings, tmp_path / "two.log", module="bot")
        processes = [first, second]
        try:
            balancer.backends = [first.port, second.port]
            await fake_telegram.wait_for(lambda call: call.method == "getWebhookInfo", timeout=REPLY)
            assert len(fake_telegram.calls("setWebhook")) == 1, "only one process of the deploy sets the webhook"
            users = [fake_telegram.user(language_code="en") for _ in range(4)]
            for user in users:
                await user.send_command("/help")
                reply = await user.wait_reply(timeout=REPLY)
                assert "How it works" in reply.content
            assert balancer.statuses == {(first.port, 200): 2, (second.port, 200): 2}
            assert all(delivery.status == 200 for delivery in fake_telegram.webhook_deliveries)
        finally:
            for process in processes:
                process.terminate()


def run_to_exit(settings: dict[str, Any], cwd: Path, module: str = "bot", timeout: float = 60) -> tuple[int, str]:
    env = process_env({**settings, "WEB_HOST": "127.0.0.1", "WEB_PORT": free_port()})
    env["PYTHONPATH"] = str(ROOT)
    finished = subprocess.run(
        [sys.executable, "-m", module], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return finished.returncode, finished.stdout + finished.stderr


async def test_a_second_bot_without_redis_is_refused_in_one_line_and_a_scheduler_beside_it_runs(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = base_settings(fake_telegram, sqlite_url, tmp_path)
    bot = await start_process(settings, tmp_path / "bot.log", module="bot")
    scheduler: AppProcess | None = None
    try:
        code, output = await asyncio.to_thread(run_to_exit, {**settings, "LOG_LEVEL": "WARNING"}, tmp_path)
        assert code == 3
        [line] = output.strip().splitlines()
        assert line.startswith("pinglass: another bot process") and "REDIS_URL" in line

        scheduler = await start_process(settings, tmp_path / "scheduler.log", module="scheduler")
        user = fake_telegram.user(language_code="en")
        await user.send_command("/help")
        assert "How it works" in (await user.wait_reply(timeout=REPLY)).content
    finally:
        for process in (bot, scheduler):
            if process is not None:
                process.terminate()
    # Once the first bot has stopped, a bot starts again at once (its heartbeat row left with it).
    again = await start_process(settings, tmp_path / "again.log", module="bot")
    again.terminate()


@requires_postgres
async def test_two_processes_starting_at_once_on_a_fresh_postgres_both_come_up(
    fake_telegram: FakeTelegram, postgres_url: str, tmp_path: Path
) -> None:
    settings = base_settings(fake_telegram, postgres_url, tmp_path)
    processes = await asyncio.gather(
        start_process(settings, tmp_path / "one.log"),
        start_process(settings, tmp_path / "two.log"),
        return_exceptions=True,
    )
    try:
        failures = [str(result) for result in processes if isinstance(result, BaseException)]
        assert failures == []
    finally:
        for process in processes:
            if isinstance(process, AppProcess):
                process.terminate()
