"""The favourites router (reactions, /favourites, the profile photo button) through
``Dispatcher.feed_update``: a mocked Bot and a stand-in FavouritesService that records its calls."""

from __future__ import annotations

from typing import Any
from unittest.mock import create_autospec

import pytest
from aiogram import Dispatcher
from aiogram.types import ReactionTypeCustomEmoji, ReactionTypeEmoji, ReactionTypePaid, Update

from bot.callbacks import ResultsAction, ResultsCb
from bot.handlers import favourites
from scheduler.favourites import FavouritesService, ProfileRequest, Reaction
from tests.support.telegram import MockedBot, Updates, chat_user, handler_dispatcher

JOB_ID = 4
PROFILE = ResultsCb(job_id=JOB_ID, action=ResultsAction.PROFILE_PHOTO).pack()


class Chat:
    def __init__(self) -> None:
        self.favourites = create_autospec(FavouritesService, instance=True)
        self.dispatcher: Dispatcher = handler_dispatcher(favourites.build_router(), favourites=self.favourites)
        self.bot = MockedBot()
        self.updates = Updates(language="en")
        self.user = chat_user(self.updates)

    async def feed(self, update: Update) -> Any:
        return await self.dispatcher.feed_update(self.bot, update, user=self.user)

    def answers(self) -> list[tuple[str | None, bool | None]]:
        return [(answer.text, answer.show_alert) for answer in self.bot.sent("answerCallbackQuery")]


@pytest.fixture
def chat() -> Chat:
    return Chat()


async def test_a_reaction_hands_its_emoji_to_the_service_and_says_nothing(chat: Chat) -> None:
    chat.favourites.react.return_value = Reaction.MARKED
    new = [ReactionTypeEmoji(emoji="❤"), ReactionTypeCustomEmoji(custom_emoji_id="5"), ReactionTypePaid()]
    await chat.feed(chat.updates.reaction(77, new))
    await chat.feed(chat.updates.reaction(77, [], old=[ReactionTypeEmoji(emoji="❤")]))
    calls = [call.args for call in chat.favourites.react.await_args_list]
    assert calls == [(chat.user.id, chat.user.telegram_id, 77, ["❤"]), (chat.user.id, chat.user.telegram_id, 77, [])]
    assert chat.bot.requests == []


async def test_favourites_command_sends_them_or_explains_how_to_mark_one(chat: Chat) -> None:
    chat.favourites.resend.side_effect = [2, 0]
    await chat.feed(chat.updates.command("favourites"))
    await chat.feed(chat.updates.command("favourites"))
    assert [call.args for call in chat.favourites.resend.await_args_list] == [(chat.user.id, chat.user.telegram_id)] * 2
    sending, none = (request.text for request in chat.bot.sent("sendMessage"))
    assert sending == "Sending your favourite portraits…"
    assert none.startswith("No favourites yet. React to a portrait with ❤️")


async def test_profile_photo_button(chat: Chat) -> None:
    chat.favourites.request_profile_photo.side_effect = [
        ProfileRequest(started=True),
        ProfileRequest(started=True, busy=True),
        ProfileRequest(started=False),
    ]
    for _ in range(3):
        await chat.feed(chat.updates.tap(PROFILE))
    expected = (JOB_ID, chat.user.id, chat.user.telegram_id, "en")
    assert [call.args for call in chat.favourites.request_profile_photo.await_args_list] == [expected] * 3
    assert chat.answers() == [
        ("Making your profile photo — one moment.", None),
        ("Your profile photo is already being made.", None),
        ("The portraits of this session are gone, so there is nothing to make a profile photo from.", True),
    ]
