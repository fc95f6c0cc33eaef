"""The real process parts over real HTTP: /start in polling and webhook mode, secrets, health."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from sqlalchemy import select

from storage.models import User
from tests.fakes.telegram import FakeTelegram
from tests.harness import app_settings, running_app


async def test_start_in_polling_mode_registers_once_and_keeps_source(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, database_url, tmp_path / "files")
    async with running_app(settings) as app:
        assert any(call.method == "deleteWebhook" for call in fake_telegram.calls())
        user = fake_telegram.user(first_name="Анна", language_code="ru")
        await user.send_command("/start", args="src_instagram")
        reply = await user.wait_reply(timeout=10)
        assert "Анна" in reply.content and "PinGlass" in reply.content
        assert any("Новая фотосессия" in button["text"] for button in reply.buttons)

        await user.send_command("/start", args="src_other")
        await user.wait_reply(timeout=10)
        english = fake_telegram.user(first_name="Bob", language_code="en-US")
        await english.send_command("/help")
        help_reply = await english.wait_reply(timeout=10)
        assert "How it works" in help_reply.content

        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{app.port}/metrics") as response:
                metrics = await response.text()
        assert 'pinglass_updates_handled_total{type="message"} 3.0' in metrics

        async with app.sessionmaker() as session:
            rows = (await session.execute(select(User).order_by(User.id))).scalars().all()
        assert [(row.telegram_id, row.source, row.language) for row in rows] == [
            (user.id, "instagram", "ru"),
            (english.id, None, "en"),
        ]


async def test_start_in_webhook_mode_and_wrong_secret_is_rejected(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files", webhook=True)
    async with running_app(settings) as app:
        set_webhook = fake_telegram.calls("setWebhook")[-1]
        assert set_webhook.params["url"] == f"{settings.PUBLIC_URL}/telegram/webhook"
        assert set_webhook.params["secret_token"] == "test-webhook-secret"
        assert "message" in set_webhook.params["allowed_updates"]

        user = fake_telegram.user(first_name="Web", language_code="en")
        await user.send_command("/start")
        reply = await user.wait_reply(timeout=10)
        assert "PinGlass" in reply.content
        assert fake_telegram.webhook_deliveries[-1].status == 200

        update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}}
        async with aiohttp.ClientSession() as client:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with client.post(
                    f"http://127.0.0.1:{app.port}/telegram/webhook", json=update, headers=headers
                ) as response:
                    assert response.status == 401


async def test_healthz_reports_database_and_scheduler(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    settings = app_settings(fake_telegram, sqlite_url, tmp_path / "files")
    async with running_app(settings, with_bot=False) as app:
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{app.port}/healthz") as response:
                body = await response.json()
                assert response.status == 200
            assert body["status"] == "ok"
            assert body["database"]["ok"] is True
            assert body["scheduler"]["ok"] is True
            await app.db_engine.dispose()
            app.heartbeat.last_beat = None
            async with client.get(f"http://127.0.0.1:{app.port}/healthz") as response:
                assert response.status == 503
            async with client.get(f"http://127.0.0.1:{app.port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
        # the scheduler-only process never talks to Telegram for updates
        assert not fake_telegram.calls("getUpdates")
