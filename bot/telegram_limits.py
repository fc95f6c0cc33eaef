"""Outgoing Telegram limits for every send (delivery, progress, replies): a session middleware.

Telegram allows about 30 messages/s overall and about 1 message/s per chat, and counts album
items one by one. A leaky bucket per chat (a burst of one album, then 1/s) and a global one keep
us under that; a 429 is honoured by waiting ``retry_after`` and repeating the same request; a 5xx
is retried with backoff. The partial-album 400 ("failed to send message #k … retry after N")
becomes :class:`PartialAlbumError`, because only the caller knows which items to send again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiolimiter import AsyncLimiter

log = logging.getLogger(__name__)

PARTIAL_ALBUM = re.compile(r"failed to send message #(\d+).*?retry after (\d+)", re.IGNORECASE | re.DOTALL)
SENDING_METHODS = {
    "SendMessage": 1,
    "SendPhoto": 1,
    "SendDocument": 1,
    "SendInvoice": 1,
    "EditMessageText": 1,
    "EditMessageReplyMarkup": 1,
}


class PartialAlbumError(Exception):
    """Items before ``failed_item`` (1-based) arrived; the rest may be sent after ``retry_after``."""

    def __init__(self, failed_item: int, retry_after: int) -> None:
        super().__init__(f"album item #{failed_item} failed; retry after {retry_after}s")
        self.failed_item = failed_item
        self.retry_after = retry_after


class OutgoingLimits(BaseRequestMiddleware):
    def __init__(
        self,
        global_rate: float = 25.0,
        chat_rate: float = 1.0,
        chat_burst: int = 10,
        max_retries: int = 5,
        on_retry_after: Any = None,
        on_send: Any = None,
    ) -> None:
        self.global_limiter = AsyncLimiter(global_rate, 1.0)
        self.chat_rate = chat_rate
        self.chat_burst = chat_burst
        self.max_retries = max_retries
        self.on_retry_after = on_retry_after
        self.on_send = on_send
        self._chats: OrderedDict[int | str, AsyncLimiter] = OrderedDict()

    def _chat_limiter(self, chat_id: int | str) -> AsyncLimiter:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            limiter = AsyncLimiter(self.chat_burst, self.chat_burst / self.chat_rate)
            self._chats[chat_id] = limiter
            if len(self._chats) > 100_000:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return limiter

    @staticmethod
    def _cost(method: TelegramMethod[Any]) -> int:
        name = type(method).__name__
        if name == "SendMediaGroup":
            return len(getattr(method, "media", []) or [])
        return SENDING_METHODS.get(name, 0)

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        cost = self._cost(method)
        chat_id = getattr(method, "chat_id", None)
        for attempt in range(self.max_retries + 1):
            if cost:
                if chat_id is not None:
                    await self._chat_limiter(chat_id).acquire(min(cost, self.chat_burst))
                await self.global_limiter.acquire(min(cost, 25))
                if self.on_send:
                    self.on_send(type(method).__name__)
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if self.on_retry_after:
                    self.on_retry_after()
                if attempt == self.max_retries:
                    raise
                log.info("Telegram 429 on %s: waiting %ss", type(method).__name__, error.retry_after)
                await asyncio.sleep(error.retry_after)
            except TelegramServerError:
                if attempt == self.max_retries:
                    raise
                await asyncio.sleep(min(2**attempt * 0.5, 10))
            except TelegramBadRequest as error:
                match = PARTIAL_ALBUM.search(error.message)
                if match is not None:
                    if self.on_retry_after:
                        self.on_retry_after()
                    raise PartialAlbumError(int(match.group(1)), int(match.group(2))) from error
                raise
        raise AssertionError("unreachable")
