"""The common router (/help here) through ``Dispatcher.feed_update``: no server, no database."""

from __future__ import annotations

from bot.handlers import common
from bot.settings import Settings
from tests.support.telegram import TOKEN, MockedBot, Updates, chat_user, handler_dispatcher


async def test_help_names_how_long_photos_are_kept() -> None:
    settings = Settings(BOT_TOKEN=TOKEN, REFERENCE_RETENTION_DAYS=7, RESULT_RETENTION_DAYS=30, _env_file=None)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    dispatcher = handler_dispatcher(common.build_router(), settings=settings)
    bot, updates = MockedBot(), Updates(language="en")

    await dispatcher.feed_update(bot, updates.command("help"), user=chat_user(updates))

    [answer] = bot.sent("sendMessage")
    assert answer.chat_id == updates.chat.id
    assert "7" in answer.text and "30" in answer.text
