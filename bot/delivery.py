"""The Telegram side of delivery: :class:`TelegramAlbumSender` implements scheduler.delivery's
AlbumSender port with aiogram, and turns Telegram's answers into the port's four outcomes."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile, Message, ReplyParameters
from aiogram.utils.media_group import MediaGroupBuilder

from bot.notifier import TelegramNotifier
from bot.telegram_limits import PartialAlbumError
from scheduler.delivery import ArrivalUnknown, Blocked, Portrait, Refused, SendOutcome, Sent
from scheduler.notices import ProgressShown
from studio.delivery import split_albums

__all__ = ["TelegramAlbumSender", "split_albums"]

log = logging.getLogger(__name__)

# "failed to send message #3 with the error message "PHOTO_INVALID_DIMENSIONS"": the 1-based item Telegram names.
FAILED_ITEM = re.compile(r"failed to send message #(\d+)", re.IGNORECASE)


class TelegramAlbumSender:
    def __init__(self, bot: Bot, notifier: TelegramNotifier) -> None:
        self.bot = bot
        self.notifier = notifier

    def text(self, key: str, language: str, **values: Any) -> str:
        return self.notifier.text(key, language, **values)

    async def send(
        self, chat_id: int, items: Sequence[Portrait], caption: str | None, reply_to: int | None = None
    ) -> SendOutcome:
        try:
            messages = await self._send(chat_id, items, caption, reply_to)
        except PartialAlbumError as partial:
            # Telegram delivered the items before #k; their ids are unknown, the rest is planned again.
            arrived = max(partial.failed_item - 1, 0)
            return Sent([None] * arrived, [])
        except TelegramForbiddenError:
            return Blocked()
        except TelegramBadRequest as error:
            match = FAILED_ITEM.search(error.message)
            return Refused(error.message, int(match.group(1)) - 1 if match else None)
        except (TelegramServerError, TelegramNetworkError) as error:
            return ArrivalUnknown(str(error))
        except TelegramRetryAfter as error:  # the limiter gave up after its retries: nothing arrived
            return Refused(str(error), transient=True)
        except TelegramAPIError as error:
            return Refused(str(error))
        except TimeoutError as error:
            return ArrivalUnknown(f"timeout: {error}")
        return Sent([_file_id(message) for message in messages], [message.message_id for message in messages])

    async def _send(
        self, chat_id: int, items: Sequence[Portrait], caption: str | None, reply_to: int | None
    ) -> list[Message]:
        # A reply to a message the user deleted meanwhile still goes, as a plain message.
        reply = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None
        if len(items) == 1:
            item = items[0]
            if item.as_document:
                return [await self.bot.send_document(chat_id, _input(item), caption=caption, reply_parameters=reply)]
            return [await self.bot.send_photo(chat_id, _input(item), caption=caption, reply_parameters=reply)]
        album = MediaGroupBuilder(caption=caption)  # the caption goes on the first item
        for item in items:
            if item.as_document:
                album.add_document(_input(item))
            else:
                album.add_photo(_input(item))
        # build()'s list type predates InputMediaLivePhoto in send_media_group's (list is invariant)
        return await self.bot.send_media_group(chat_id, media=album.build(), reply_parameters=reply)  # type: ignore[arg-type]  # see above

    async def edit_progress(self, chat_id: int, message_id: int, language: str, progress: ProgressShown) -> SendOutcome:
        text, buttons = self.notifier.render(progress, language)
        try:
            await self.bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id, reply_markup=buttons)
        except TelegramForbiddenError:
            return Blocked()
        except TelegramBadRequest as error:
            if "not modified" not in error.message:
                return Refused(error.message)
        except TelegramAPIError as error:
            return Refused(str(error))
        return Sent([], [message_id])


def _input(item: Portrait) -> BufferedInputFile | str:
    if item.file_id is not None:
        return item.file_id
    return BufferedInputFile(item.data or b"", filename=item.filename)


def _file_id(message: Message) -> str | None:
    if message.photo:
        return message.photo[-1].file_id
    if message.document:
        return message.document.file_id
    return None
