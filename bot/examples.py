"""The style picker's examples in the chat: an album per style, each picture uploaded once.

A picture Telegram has seen is named by its file id; one never sent yet is uploaded and its file id
remembered (scheduler.examples.ExampleService.remember), so nothing is uploaded twice.
"""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import BufferedInputFile, InaccessibleMessage, InputMediaPhoto, Message

from scheduler.examples import ExampleImage, ExampleService
from studio.catalogue import Catalogue

log = logging.getLogger(__name__)


def _media(image: ExampleImage, caption: str | None) -> InputMediaPhoto:
    if image.file_id is not None:
        return InputMediaPhoto(media=image.file_id, caption=caption)
    assert image.data is not None
    return InputMediaPhoto(media=BufferedInputFile(image.data, f"example-{image.example_id}.jpg"), caption=caption)


async def show_examples(
    target: Message | InaccessibleMessage, examples: ExampleService, catalogue: Catalogue, language: str
) -> None:
    """Each style's examples as an album captioned with its name (nothing before any set is live).
    The picker follows whatever happens here: a failed send leaves it text only."""
    learned: dict[int, str] = {}
    stale: list[int] = []
    for showcase in await examples.showcase():
        caption = f"<b>{catalogue.style(showcase.style).name.get(language)}</b>"
        media = [_media(image, caption if index == 0 else None) for index, image in enumerate(showcase.images)]
        try:
            if len(media) == 1:  # an album needs two: one example goes as a photo
                sent: list[Message] = [await target.answer_photo(media[0].media, caption=caption)]
            else:
                sent = await target.answer_media_group(media=list(media))
        except TelegramBadRequest:
            # A file id Telegram no longer takes would fail this album for good: upload them next time.
            log.warning("the examples of %s were refused", showcase.style, exc_info=True)
            stale += [image.example_id for image in showcase.images if image.file_id is not None]
            continue
        except TelegramAPIError:
            log.warning("the examples of %s could not be sent", showcase.style, exc_info=True)
            continue
        for image, message in zip(showcase.images, sent, strict=False):
            if image.file_id is None and message.photo:
                learned[image.example_id] = message.photo[-1].file_id
    await examples.remember(learned, stale)
