"""Run PinGlass as a real OS process (python -m bot / -m scheduler) for crash and scale-out tests."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.telegram import FakeTelegram
from tests.harness import free_port
from tests.support.zygote import ForkedProcess, Zygote

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class AppProcess:
    process: ForkedProcess
    port: int
    log_path: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def webhook_settings(fake: FakeTelegram, database_url: str, tmp_path: Path, port: int) -> dict[str, Any]:
    """A bot in webhook mode on ``port`` (fixed, so a restarted process gets the posts Telegram retries)."""
    return {
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.base_url,
        "DATABASE_URL": database_url,
        "LOCAL_STORAGE_DIR": str(tmp_path / "files"),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "WEBHOOK_SECRET": "test-webhook-secret",
        "TELEGRAM_CHAT_RATE": 1000,
        "THROTTLE_UPDATES_PER_SECOND": 50,
        "LOG_LEVEL": "INFO",
    }


def process_env(settings: dict[str, Any]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.isupper() or key in {"PATH", "HOME", "LANG"}}
    # Like tests.harness.app_settings: synthetic pictures have no faces, so face checks are opt-in here.
    env["FACE_CHECKS"] = "false"
    env.update({key: str(value) for key, value in settings.items()})
    env["PYTHONPATH"] = str(ROOT)
    return env


@functools.cache
def _zygote() -> Zygote:
    """The run's zygote, found (or started) when this process's first test needs a child (start_process
    is called from the middle of tests and their helper classes, so no fixture can hand it in)."""
    return Zygote(process_env({}))


def fork_from_zygote(module: str, env: dict[str, str], cwd: Path, log_path: Path) -> ForkedProcess:
    """A bench.load.Launcher: the load and chaos runners' app processes, forked like the tests' own."""
    return _zygote().spawn(module, env, cwd=cwd, log_path=log_path)


async def start_process(
    settings: dict[str, Any], log_path: Path, module: str = "scheduler", port: int | None = None
) -> AppProcess:
    """``port``: a fixed one, so a restarted bot keeps the webhook URL Telegram posts to."""
    port = port or free_port()
    env = process_env({**settings, "WEB_HOST": "127.0.0.1", "WEB_PORT": port})
    process = fork_from_zygote(module, env, log_path.parent, log_path)
    handle = AppProcess(process, port, log_path)
    deadline = asyncio.get_running_loop().time() + 60.0  # a start on a busy 2-core machine can take half of it
    async with aiohttp.ClientSession() as client:
        while asyncio.get_running_loop().time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited early:\n{handle.log()}")
            try:
                async with client.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return handle
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    handle.kill()
    raise RuntimeError(f"{module} did not become healthy:\n{handle.log()}")
