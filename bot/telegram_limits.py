"""Outgoing Telegram limits for every send (delivery, progress, replies): a session middleware.

Telegram allows about 30 messages/s overall and about 1 message/s per chat, and counts album
items one by one. Each chat's budget is :class:`studio.delivery.ChatBudgets` (a burst of one album,
then 1/s), shared with delivery, which plans its albums against the same numbers; a global bucket
of the same kind (a burst of one album, then ``global_rate`` less a quarter, so no 1 s window carries
more than 30) keeps the total under Telegram's 30/s. A 429 is honoured by emptying the chat's budget for
``retry_after`` and repeating the same request. A 5xx is retried with backoff, except for sends of
portraits: Telegram may have accepted the album before the error, so the caller gets the error and
treats the arrival as unknown instead of sending it twice. The partial-album 400 ("failed to send
message #k … retry after N") becomes :class:`PartialAlbumError`, because only the caller knows which
items to send again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from studio.delivery import ALBUM_MAX, ChatBudget, ChatBudgets

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
# Sends whose 5xx may follow an accepted request: repeating them could put the same portraits in the chat twice.
NOT_REPEATED_ON_5XX = frozenset({"SendMediaGroup", "SendPhoto", "SendDocument"})


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
        budgets: ChatBudgets | None = None,
    ) -> None:
        # 10 + 25 × 0.75 ≈ 29 messages in any second; a plain leaky bucket of 25 lets 50 through in one.
        self.global_budget = ChatBudget(ALBUM_MAX, global_rate, time.monotonic(), margin=0.25)
        self.budgets = budgets if budgets is not None else ChatBudgets(chat_burst, chat_rate)
        self.max_retries = max_retries
        self.on_retry_after = on_retry_after
        self.on_send = on_send

    async def _wait_for_budget(self, chat_id: int | str | None, cost: int) -> None:
        # The chat's turn first, then the global one: a send waiting on its chat holds no global share.
        if chat_id is not None:
            await _sleep_until(self.budgets.of(chat_id, time.monotonic()).reserve(cost, time.monotonic()))
        await _sleep_until(self.global_budget.reserve(cost, time.monotonic()))

    def _honour_429(self, chat_id: int | str | None, retry_after: float) -> None:
        if chat_id is not None:
            self.budgets.of(chat_id, time.monotonic()).penalize(retry_after, time.monotonic())

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
                await self._wait_for_budget(chat_id, cost)
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
                self._honour_429(chat_id, error.retry_after)
                if not cost or chat_id is None:
                    await asyncio.sleep(error.retry_after)
            except TelegramServerError:
                if attempt == self.max_retries or type(method).__name__ in NOT_REPEATED_ON_5XX:
                    raise
                await asyncio.sleep(min(2**attempt * 0.5, 10))
            except TelegramBadRequest as error:
                match = PARTIAL_ALBUM.search(error.message)
                if match is not None:
                    if self.on_retry_after:
                        self.on_retry_after()
                    self._honour_429(chat_id, int(match.group(2)))
                    raise PartialAlbumError(int(match.group(1)), int(match.group(2))) from error
                raise
        raise AssertionError("unreachable")


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# Telegram's answer when a callback query was already answered or has expired.
QUERY_GONE = re.compile(r"query is too old|query id is invalid", re.IGNORECASE)
QUERY_ANSWERS = frozenset({"AnswerCallbackQuery", "AnswerPreCheckoutQuery"})


class ResponseTypesKept(BaseRequestMiddleware):
    """Holds each method's ``Response[...]`` type for the life of the bot.

    aiogram parses every answer as ``Response[method.__returning__]``; pydantic keeps such generic
    types only weakly, so each garbage collection drops them and the next call builds the type again:
    11 ms of CPU on average, 220 ms for ``Response[Message]`` (measured: 740 of 1,194 Telegram calls
    in test_payments + test_delivery rebuilt their type, 8.3 s of CPU). One strong reference each ends it.
    """

    def __init__(self) -> None:
        self._kept: dict[type[TelegramMethod[Any]], type[Response[Any]]] = {}

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        kind = type(method)
        if kind not in self._kept:
            self._kept[kind] = Response[method.__returning__]  # type: ignore[name-defined]  # a runtime type
        return await make_request(bot, method)


class ForgivingCallbackAnswers(BaseRequestMiddleware):
    """Answering a button tap only stops its spinner; a handler must go on when that answer is refused.

    A process killed mid-handler leaves the tap answered but the update unacknowledged: Telegram sends
    it again and the second answer is refused as too old. Raising there would stop the handler and the
    user's step with it (the chaos kills scenario: 17 conversations stalled this way). A pre-checkout
    query delivered again is the same: the user's client already has its answer, and a refusal raised
    here would fail the webhook POST, which Telegram would then repeat for as long as it retries.
    """

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as error:
            if type(method).__name__ not in QUERY_ANSWERS or not QUERY_GONE.search(error.message):
                raise
            log.info("query already answered or expired: %s", error.message)
            # A query answer's result is True; mypy cannot see that TelegramType is bool for these methods.
            return Response[TelegramType](ok=True, result=True)  # type: ignore[arg-type]  # bool for query answers
