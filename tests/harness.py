"""Run the real PinGlass application in-process against the fake services, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.app import Application
from bot.settings import Settings
from tests.fakes.telegram import FakeTelegram


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app_settings(
    fake: FakeTelegram, database_url: str, files_dir: Path, *, webhook: bool = False, **overrides: Any
) -> Settings:
    port = free_port()
    values: dict[str, Any] = {
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.base_url,
        "DATABASE_URL": database_url,
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": port,
        "LOCAL_STORAGE_DIR": str(files_dir),
        "PUBLIC_URL": f"http://127.0.0.1:{port}" if webhook else "",
        "WEBHOOK_SECRET": "test-webhook-secret",
        "THROTTLE_UPDATES_PER_SECOND": 50,
        "LOG_LEVEL": "WARNING",
        # Most tests upload synthetic, faceless pictures; the face tests turn the checks on.
        "FACE_CHECKS": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_app(settings: Settings, *, with_bot: bool = True) -> AsyncIterator[Application]:
    application = Application(settings, with_bot=with_bot)
    await application.start()
    try:
        yield application
    finally:
        await application.stop()
