"""The results router (originals, credits a pack returned, album resends, /forget) through
``Dispatcher.feed_update``: a mocked Bot, and stand-ins for the services that record their calls."""

from __future__ import annotations

from typing import Any
from unittest.mock import create_autospec

import pytest
from aiogram import Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Update

from bot.callbacks import ForgetCb, ResendCb, ResultsCb
from bot.handlers import results
from scheduler.credits import CreditService, CreditsUnavailable, Spent
from scheduler.delivery import DeliveryService
from scheduler.originals import OriginalsOffer, OriginalsService
from scheduler.results import Forgotten, ResultsService
from storage.models import GenerationJob
from tests.support.telegram import MockedBot, Updates, chat_user, handler_dispatcher

JOB_ID = 4


class Chat:
    def __init__(self) -> None:
        self.results = create_autospec(ResultsService, instance=True)
        self.originals = create_autospec(OriginalsService, instance=True)
        self.credits = create_autospec(CreditService, instance=True)
        self.delivery = create_autospec(DeliveryService, instance=True)
        self.dispatcher: Dispatcher = handler_dispatcher(
            results.build_router(),
            results=self.results,
            originals=self.originals,
            credits=self.credits,
            delivery=self.delivery,
        )
        self.bot = MockedBot()
        self.updates = Updates(language="en")
        self.user = chat_user(self.updates)

    async def feed(self, update: Update) -> Any:
        return await self.dispatcher.feed_update(self.bot, update, user=self.user)

    async def tap(self, data: str) -> Any:
        return await self.feed(self.updates.tap(data))

    def answers(self) -> list[tuple[str | None, bool | None]]:
        return [(answer.text, answer.show_alert) for answer in self.bot.sent("answerCallbackQuery")]

    def edits(self) -> list[str]:
        return [request.text for request in self.bot.sent("editMessageText")]


@pytest.fixture
def chat() -> Chat:
    return Chat()


ORIGINALS = ResultsCb(job_id=JOB_ID, action="originals").pack()


# ---------------------------------------------------------------- originals


async def test_originals_start_once_per_job(chat: Chat) -> None:
    job = GenerationJob(id=JOB_ID, user_id=chat.user.id)
    chat.results.owned_job.return_value = job
    chat.originals.offer.return_value = OriginalsOffer(portraits=7, favourites=0)
    chat.originals.request.side_effect = [True, False]

    await chat.tap(ORIGINALS)
    await chat.tap(ORIGINALS)

    chat.results.owned_job.assert_awaited_with(JOB_ID, chat.user.id)
    assert chat.originals.request.call_args_list == [((job,), {"favourites_only": False})] * 2
    assert chat.answers() == [
        ("Preparing your originals — one moment.", None),
        ("Your originals are already on their way.", None),
    ]


async def test_a_pack_with_favourites_asks_which_originals_and_sends_the_choice(chat: Chat) -> None:
    job = GenerationJob(id=JOB_ID, user_id=chat.user.id)
    chat.results.owned_job.return_value = job
    chat.originals.offer.return_value = OriginalsOffer(portraits=7, favourites=2)
    chat.originals.request.return_value = True

    await chat.tap(ORIGINALS)
    chat.originals.request.assert_not_called()
    question = chat.bot.sent("sendMessage")[-1]
    assert question.text == "Which originals shall I send? Favourites are the portraits you put a ❤️ on."
    assert isinstance(question.reply_markup, InlineKeyboardMarkup)
    choices = [button.callback_data for row in question.reply_markup.inline_keyboard for button in row]
    assert choices == [
        ResultsCb(job_id=JOB_ID, action="orig_fav").pack(),
        ResultsCb(job_id=JOB_ID, action="orig_all").pack(),
    ]

    await chat.tap(choices[0])
    await chat.tap(choices[1])
    assert chat.originals.request.call_args_list == [
        ((job,), {"favourites_only": True}),
        ((job,), {"favourites_only": False}),
    ]

    chat.originals.offer.return_value = OriginalsOffer(portraits=7, favourites=0)  # the hearts taken away since
    await chat.tap(choices[0])
    assert chat.answers()[-1] == ("The originals of this session are no longer stored.", True)
    assert chat.originals.request.call_count == 2


async def test_originals_of_someone_elses_or_no_job(chat: Chat) -> None:
    chat.results.owned_job.return_value = None

    await chat.tap(ORIGINALS)

    assert chat.answers() == [("This button is no longer active.", None)]
    chat.originals.request.assert_not_called()


async def test_originals_removed_by_retention(chat: Chat) -> None:
    chat.results.owned_job.return_value = GenerationJob(id=JOB_ID, user_id=chat.user.id)
    chat.originals.offer.return_value = OriginalsOffer(portraits=0, favourites=0)

    await chat.tap(ORIGINALS)

    assert chat.answers() == [("The originals of this session are no longer stored.", True)]
    chat.originals.request.assert_not_called()


# ---------------------------------------------------------------- credits, resends


async def test_use_credits_spends_what_the_job_returned(chat: Chat) -> None:
    chat.credits.spend_returned.side_effect = [Spent(job_id=9, photos=3, balance_left=0), CreditsUnavailable("used")]
    tap = chat.updates.tap(ResultsCb(job_id=JOB_ID, action="credits").pack())

    await chat.feed(tap)
    await chat.tap(ResultsCb(job_id=JOB_ID, action="credits").pack())

    first = chat.credits.spend_returned.await_args_list[0]
    assert first.args == (JOB_ID, chat.user) and first.kwargs == {"tap": tap.callback_query.id}  # type: ignore[union-attr]
    assert chat.answers() == [(None, None), ("Those credits have already been used.", True)]


async def test_resend_asks_delivery_and_takes_the_button_away(chat: Chat) -> None:
    await chat.tap(ResendCb(job_id=JOB_ID, chunk=2).pack())

    chat.delivery.request_resend.assert_called_once_with(JOB_ID, 2, chat.user.id)
    assert chat.answers() == [("Sending them again.", None)]
    assert len(chat.bot.sent("editMessageReplyMarkup")) == 1


# ---------------------------------------------------------------- /forget


async def test_forget_asks_first(chat: Chat) -> None:
    await chat.feed(chat.updates.command("forget"))

    [question] = chat.bot.sent("sendMessage")
    assert question.text.startswith("Delete all your selfies and portraits")
    assert isinstance(question.reply_markup, InlineKeyboardMarkup)
    assert [row[0].callback_data for row in question.reply_markup.inline_keyboard] == [
        ForgetCb(confirm=True).pack(),
        ForgetCb(confirm=False).pack(),
    ]
    chat.results.forget.assert_not_awaited()


async def test_keep_deletes_nothing(chat: Chat) -> None:
    await chat.tap(ForgetCb(confirm=False).pack())

    assert chat.edits() == ["OK, nothing was deleted."]
    chat.results.forget.assert_not_awaited()


async def test_forget_deletes_and_ends_an_upload_in_progress(chat: Chat) -> None:
    context = chat.dispatcher.fsm.get_context(chat.bot, chat.updates.chat.id, chat.updates.user.id)
    await context.set_state("Intake:photos")
    chat.results.forget.return_value = Forgotten(busy=False, orders_cancelled=1, files=12)

    await chat.tap(ForgetCb(confirm=True).pack())

    chat.results.forget.assert_awaited_once_with(chat.user.id)
    [done] = chat.edits()
    assert done.startswith("Done: your selfies and portraits have been deleted")
    assert "Your unpaid orders are cancelled" in done
    assert await context.get_state() is None
    assert chat.answers() == [(None, None)]


async def test_forget_waits_for_a_pack_in_progress(chat: Chat) -> None:
    context = chat.dispatcher.fsm.get_context(chat.bot, chat.updates.chat.id, chat.updates.user.id)
    await context.set_state("Intake:photos")
    chat.results.forget.return_value = Forgotten(busy=True)

    await chat.tap(ForgetCb(confirm=True).pack())

    assert chat.answers() == [("Your photo session is in progress — you can delete your photos once it is done.", True)]
    assert chat.edits() == [] and await context.get_state() == "Intake:photos"


async def test_an_old_question_gets_a_new_message(chat: Chat) -> None:
    chat.results.forget.return_value = Forgotten(busy=False)
    chat.bot.answer("editMessageText", TelegramBadRequest(method=None, message="message can't be edited"))  # type: ignore[arg-type]

    await chat.tap(ForgetCb(confirm=True).pack())

    [sent] = chat.bot.sent("sendMessage")
    assert sent.text == "Done: your selfies and portraits have been deleted from our servers."


@pytest.mark.parametrize("data", ["r:4:explode", "r:four:originals", "forget:maybe", "rs:4"])
async def test_forged_results_data_is_not_handled(chat: Chat, data: str) -> None:
    assert await chat.tap(data) is UNHANDLED
    assert chat.results.mock_calls == [] and chat.credits.mock_calls == []
