"""Run the real PinGlass application in-process against the fake services, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.app import Application
from bot.settings import Settings
from providers.faces import FaceAnalyser
from studio.faces import FaceLimits
from tests.fakes.telegram import FakeTelegram
from tests.support.faces import face_model_shelf


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
        # Telegram's own 1 message/s per chat is the subject of tests/integration/test_delivery.py,
        # which sets it; elsewhere it only made tests wait (a 23-photo pack: ~20 s of pacing).
        "TELEGRAM_CHAT_RATE": 1000.0,
        "LOG_LEVEL": "WARNING",
        # Most tests upload synthetic, faceless pictures; the face tests turn the checks on.
        "FACE_CHECKS": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_app(
    settings: Settings,
    *,
    with_bot: bool = True,
    load_faces: Callable[[FaceLimits], FaceAnalyser] | None = None,
) -> AsyncIterator[Application]:
    """The application, started, and stopped when the block ends.

    The money invariants are checked on the test's database by its fixture (tests/conftest.py), once
    the test passed; a test that writes a ledger no real flow could opts out there.
    """
    # Face models from the process's shelf unless the test loads them its own way.
    application = Application(settings, with_bot=with_bot, load_faces=load_faces or face_model_shelf().analyser)
    await application.start()
    try:
        yield application
    finally:
        await application.stop()


async def callback_answer(fake: FakeTelegram, query_id: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
    """The bot's answerCallbackQuery for a button press (its text, alert flag, ...), once it has answered."""
    call = await fake.wait_for(
        lambda call: call.method == "answerCallbackQuery" and str(call.params.get("callback_query_id")) == query_id,
        timeout=timeout,
    )
    return call.params


def album_sizes(fake: FakeTelegram, chat_id: int, kind: str = "photo") -> list[int]:
    """Sizes of what reached the chat as albums of ``kind`` (photo or document); a lone item counts 1."""
    sizes: list[int] = []
    for call in fake.calls(chat_id=chat_id):
        if not call.response_ok:
            continue
        if call.method == "sendMediaGroup" and call.params["media"][0]["type"] == kind:
            sizes.append(len(call.params["media"]))
        elif call.method == ("sendPhoto" if kind == "photo" else "sendDocument"):
            sizes.append(1)
    return sizes
