"""The Telegram side of originals: :class:`TelegramDocumentSender` implements scheduler.originals'
DocumentSender port with aiogram (uploads, document groups, the archive's caption in the user's
language)."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BufferedInputFile
from aiogram.utils.media_group import MediaGroupBuilder

from bot.notifier import TelegramNotifier
from scheduler.originals import NamedFile, NotUploaded, Uploaded, UploadOutcome


class TelegramDocumentSender:
    def __init__(self, bot: Bot, notifier: TelegramNotifier) -> None:
        self.bot = bot
        self.notifier = notifier

    async def send_zip(self, chat_id: int, archive: NamedFile, *, portraits: int, language: str) -> UploadOutcome:
        caption = self.notifier.text("originals.caption", language, count=portraits)
        try:
            await self.bot.send_document(chat_id, _upload(archive), caption=caption)
        except TelegramAPIError as error:
            return NotUploaded(str(error))
        return Uploaded()

    async def send_documents(self, chat_id: int, files: Sequence[NamedFile]) -> UploadOutcome:
        try:
            if len(files) == 1:
                await self.bot.send_document(chat_id, _upload(files[0]))
            else:
                group = MediaGroupBuilder()
                for file in files:
                    group.add_document(media=_upload(file))
                await self.bot.send_media_group(chat_id, media=list(group.build()))
        except TelegramAPIError as error:
            return NotUploaded(str(error))
        return Uploaded()


def _upload(file: NamedFile) -> BufferedInputFile:
    return BufferedInputFile(file.data, filename=file.name)
