"""The style picker's example albums (bot/examples.py): a known picture is named by its file id, an
unknown one uploaded and its new file id remembered, a lone example sent as a photo, and a style whose
album Telegram refuses is left out without stopping the others, its file ids forgotten."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, create_autospec

from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMediaGroup
from aiogram.types import BufferedInputFile

from bot.examples import show_examples
from scheduler.examples import ExampleImage, ExampleService, StyleShowcase
from studio.catalogue import load_catalogue

CATALOGUE = load_catalogue()


def _sent(*file_ids: str) -> list[Any]:
    return [
        SimpleNamespace(photo=[SimpleNamespace(file_id=f"{f}-small"), SimpleNamespace(file_id=f)]) for f in file_ids
    ]


async def test_known_pictures_are_named_and_new_ones_uploaded_once_then_remembered() -> None:
    examples = create_autospec(ExampleService, instance=True)
    examples.showcase.return_value = [
        StyleShowcase("professional", [ExampleImage(1, "known-1"), ExampleImage(2, None, b"jpeg-2")]),
        StyleShowcase("lifestyle", [ExampleImage(3, "gone-3"), ExampleImage(4, None, b"jpeg-4")]),
        StyleShowcase("creative", [ExampleImage(5, None, b"jpeg-5")]),
    ]
    target = SimpleNamespace(
        answer_media_group=AsyncMock(
            side_effect=[_sent("known-1", "new-2"), TelegramBadRequest(SendMediaGroup(chat_id=1, media=[]), "no")]
        ),
        answer_photo=AsyncMock(return_value=_sent("new-5")[0]),
    )
    await show_examples(target, examples, CATALOGUE, "en")  # type: ignore[arg-type]

    first = target.answer_media_group.await_args_list[0].kwargs["media"]
    assert first[0].media == "known-1" and first[0].caption == "<b>Professional</b>"
    assert isinstance(first[1].media, BufferedInputFile) and first[1].caption is None
    photo_args = target.answer_photo.await_args
    assert isinstance(photo_args.args[0], BufferedInputFile) and photo_args.kwargs["caption"] == "<b>Creative</b>"
    # The known picture is not written again; the refused lifestyle album's file id is forgotten, so it
    # is uploaded next time instead of failing the album for good.
    examples.remember.assert_awaited_once_with({2: "new-2", 5: "new-5"}, [3])
