"""The common router (/start, /help) through ``Dispatcher.feed_update``: no server, no database
(/start's account work is a stand-in ``AccountService`` that records its calls)."""

from __future__ import annotations

from typing import Any
from unittest.mock import create_autospec

import pytest
from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import MenuCb
from bot.handlers import common
from bot.settings import Settings
from scheduler.accounts import AccountService
from tests.support.telegram import TOKEN, MockedBot, Updates, chat_user, handler_dispatcher


async def test_help_names_how_long_photos_are_kept() -> None:
    settings = Settings(BOT_TOKEN=TOKEN, REFERENCE_RETENTION_DAYS=7, RESULT_RETENTION_DAYS=30, _env_file=None)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    dispatcher = handler_dispatcher(common.build_router(), settings=settings)
    bot, updates = MockedBot(), Updates(language="en")

    await dispatcher.feed_update(bot, updates.command("help"), user=chat_user(updates))

    [answer] = bot.sent("sendMessage")
    assert answer.chat_id == updates.chat.id
    assert "7" in answer.text and "30" in answer.text


class StartChat:
    def __init__(self) -> None:
        self.accounts = create_autospec(AccountService, instance=True)
        self.dispatcher = handler_dispatcher(common.build_router(), accounts=self.accounts)
        self.bot, self.updates = MockedBot(), Updates(first_name="<Anna>", language="en")
        self.user = chat_user(self.updates)

    async def start(self, args: str = "", **data: Any) -> None:
        await self.dispatcher.feed_update(self.bot, self.updates.command("start", args), user=self.user, **data)

    def buttons(self) -> list[str]:
        [greeting] = self.bot.sent("sendMessage")
        assert isinstance(greeting.reply_markup, InlineKeyboardMarkup)
        return [row[0].callback_data or "" for row in greeting.reply_markup.inline_keyboard]


async def test_start_keeps_the_deep_link_source_of_a_new_user() -> None:
    chat = StartChat()
    chat.accounts.started.return_value = False

    await chat.start("src_spring-ads", user_created=True)

    chat.accounts.started.assert_awaited_once_with(chat.user.id, source="spring-ads", first_time=True)
    [greeting] = chat.bot.sent("sendMessage")
    assert greeting.text.startswith("Hi, &lt;Anna&gt;!")
    assert chat.buttons() == [MenuCb(action="new").pack(), MenuCb(action="gift").pack()]


@pytest.mark.parametrize("args", ["", "src_", "promo", "src_" + "x" * 61, "src_a b"])
async def test_start_without_a_source(args: str) -> None:
    chat = StartChat()
    chat.accounts.started.return_value = True

    await chat.start(args)

    chat.accounts.started.assert_awaited_once_with(chat.user.id, source=None, first_time=False)
    assert chat.buttons() == [MenuCb(action=a).pack() for a in ("new", "reuse", "gift")]
