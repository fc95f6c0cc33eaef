"""Per-user incoming throttle, so one flooding user cannot starve everyone else."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import TelegramObject, Update
from aiogram.utils.i18n import I18n
from aiolimiter import AsyncLimiter

from bot.i18n import pick_language

log = logging.getLogger(__name__)

# One "slow down" notice per user per this many seconds: a flood gets one answer, not one per update.
NOTICE_EVERY_SECONDS = 10.0


def is_payment_update(event: TelegramObject) -> bool:
    """A pre-checkout query or a completed payment: money is moving, so it is never dropped."""
    return isinstance(event, Update) and (
        event.pre_checkout_query is not None
        or (event.message is not None and event.message.successful_payment is not None)
    )


@dataclass
class _UserThrottle:
    limiter: AsyncLimiter
    noticed_at: float | None = None  # when this user was last told to slow down (monotonic)


class ThrottlingMiddleware(BaseMiddleware):
    """Drops updates above ``rate`` per second per user, allowing a burst (a 10-photo album fits).

    The first dropped update of a flood is answered with one clear notice (the ``throttled`` text, in
    the user's Telegram language), then nothing for ``notice_every`` seconds; every dropped button tap
    is answered (without words after the first), so the user's client does not spin. Other users are
    untouched: each user has a bucket of their own.

    Payment updates pass untouched and spend nothing: a dropped ``successful_payment`` is money
    taken and never credited, and a dropped pre-checkout fails a payment the user meant to make.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 12,
        max_users: int = 50_000,
        *,
        i18n: I18n | None = None,
        notice_every: float = NOTICE_EVERY_SECONDS,
    ) -> None:
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_users = max_users
        self.i18n = i18n
        self.notice_every = notice_every
        self._users: OrderedDict[int, _UserThrottle] = OrderedDict()  # least recently seen first
        self.dropped = 0
        self.notices = 0

    def _throttle_for(self, user_id: int) -> _UserThrottle:
        throttle = self._users.get(user_id)
        if throttle is None:
            throttle = _UserThrottle(AsyncLimiter(self.burst, self.burst / self.rate_per_second))
            self._users[user_id] = throttle
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user_id)
        return throttle

    def _notice_due(self, user_id: int) -> bool:
        throttle, now = self._throttle_for(user_id), time.monotonic()
        if throttle.noticed_at is not None and now - throttle.noticed_at < self.notice_every:
            return False
        throttle.noticed_at = now
        return True

    async def _answer_dropped(self, event: TelegramObject, user_id: int, language_code: str | None) -> None:
        if self.i18n is None or not isinstance(event, Update):
            return
        message, query = event.message, event.callback_query
        private = message is not None and message.chat.type == "private"
        if query is None and not private:
            return  # nothing to answer, or not in a chat of the user's own
        text = None
        if self._notice_due(user_id):
            text = self.i18n.gettext("throttled", locale=pick_language(language_code))
            self.notices += 1
        try:
            if query is not None:
                await query.answer(text)
            elif message is not None and text is not None:
                await message.answer(text)
        except TelegramAPIError as error:  # a notice that cannot go is no reason to fail the update
            log.info("throttle notice to user %s not sent: %s", user_id, error)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        from_user = data.get("event_from_user")
        if from_user is None or self.rate_per_second <= 0 or is_payment_update(event):
            return await handler(event, data)
        limiter = self._throttle_for(from_user.id).limiter
        if not limiter.has_capacity():
            self.dropped += 1
            await self._answer_dropped(event, from_user.id, from_user.language_code)
            return None
        await limiter.acquire()
        return await handler(event, data)
