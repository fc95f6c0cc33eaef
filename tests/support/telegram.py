"""Handler unit tests in aiogram's own style: ``Dispatcher.feed_update`` with a bot whose session
records every request and answers it in memory (no server, no network, milliseconds per update).

``MockedBot`` answers each method with the smallest plausible result of the method's declared return
type (a ``Message`` that echoes the request's chat and text, ``True``, a list of messages for an
album); a test may queue a specific answer or error for a method with ``bot.answer(...)``.
Files "downloaded" through the bot come from ``bot.files`` (file_id → bytes).

The update builders make the updates Telegram sends a private chat: texts, commands, photos,
documents, button taps, pre-checkout queries and successful payments.
"""

from __future__ import annotations

import datetime
import io
import itertools
import typing
from collections import defaultdict, deque
from collections.abc import AsyncGenerator
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.base import BaseSession
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.methods import TelegramMethod
from aiogram.types import (
    CallbackQuery,
    Chat,
    Document,
    File,
    Message,
    MessageEntity,
    MessageReactionUpdated,
    PhotoSize,
    PreCheckoutQuery,
    ReactionType,
    SuccessfulPayment,
    Update,
)
from aiogram.types import User as TelegramUser

from bot.i18n import UserLanguageMiddleware, build_i18n
from storage.models import User

TOKEN = "4242:AAF6bFwJ1mGs2Jk8EiWt4Hh9PQvA0Zs1x2c"  # well-formed, never sent anywhere
NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
BOT_USER = TelegramUser(id=42, is_bot=True, first_name="PinGlass", username="pinglass_bot")


class MockedSession(BaseSession):
    """Records requests; answers each from a queued answer for its method, else a default."""

    def __init__(self, chat_id_of: typing.Callable[[TelegramMethod[Any]], int]) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []
        self.queued: defaultdict[str, deque[Any]] = defaultdict(deque)
        self._message_ids = itertools.count(10_000)
        self._chat_id_of = chat_id_of

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:  # noqa: ASYNC109  # aiogram's signature
        self.requests.append(method)
        queued = self.queued[method.__api_method__]
        if queued:
            answer = queued.popleft()
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return self._default_answer(method)

    def _default_answer(self, method: TelegramMethod[Any]) -> Any:
        returning = method.__returning__
        if returning is bool:
            return True
        if returning is File:
            file_id = getattr(method, "file_id", "file")
            return File(file_id=file_id, file_unique_id=f"u{file_id}", file_path=f"photos/{file_id}.jpg")
        if typing.get_origin(returning) is list:
            media = getattr(method, "media", [])
            return [self._message(method, caption=getattr(item, "caption", None)) for item in media]
        if returning is int:
            return 1
        # Message, or Message | bool (edits): a message that says what the request said.
        return self._message(method, text=getattr(method, "text", None), caption=getattr(method, "caption", None))

    def _message(self, method: TelegramMethod[Any], text: str | None = None, caption: str | None = None) -> Message:
        chat_id = self._chat_id_of(method)
        message_id = getattr(method, "message_id", None) or next(self._message_ids)
        return Message(
            message_id=message_id,
            date=NOW,
            chat=Chat(id=chat_id, type="private"),
            from_user=BOT_USER,
            text=text,
            caption=caption,
        )

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109  # aiogram's signature
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise AssertionError("handler tests download through MockedBot.download, not a URL")
        yield b""  # pragma: no cover

    async def close(self) -> None:
        pass


def _chat_id_of(method: TelegramMethod[Any]) -> int:
    chat_id = getattr(method, "chat_id", None)
    return int(chat_id) if isinstance(chat_id, int | str) and str(chat_id).lstrip("-").isdigit() else 1


class MockedBot(Bot):
    """A real ``Bot`` over ``MockedSession``: what handlers sent is in ``requests``."""

    def __init__(self) -> None:
        super().__init__(TOKEN, session=MockedSession(_chat_id_of))
        self.files: dict[str, bytes] = {}
        self._me = BOT_USER

    @property
    def mocked(self) -> MockedSession:
        return typing.cast(MockedSession, self.session)

    @property
    def requests(self) -> list[TelegramMethod[Any]]:
        return self.mocked.requests

    def answer(self, api_method: str, result: Any) -> None:
        """Queue ``result`` (or an exception to raise) as the next answer to ``api_method``."""
        self.mocked.queued[api_method].append(result)

    def sent(self, api_method: str) -> list[Any]:
        """The requests of one method, in order (e.g. ``bot.sent("sendMessage")``)."""
        return [request for request in self.requests if request.__api_method__ == api_method]

    def texts(self) -> list[str]:
        """Every text and caption the bot sent or edited, in order."""
        found = (getattr(request, "text", None) or getattr(request, "caption", None) for request in self.requests)
        return [text for text in found if text]

    async def download(self, file: Any, destination: Any = None, timeout: int = 30, **_: Any) -> Any:  # noqa: ASYNC109  # Bot.download's signature
        file_id = file if isinstance(file, str) else getattr(file, "file_id", file)
        if file_id not in self.files:
            raise OSError(f"no such file in the test: {file_id}")
        data = self.files[file_id]
        if destination is None:
            return io.BytesIO(data)
        destination.write(data)
        return destination


class Updates:
    """Updates from one user in their private chat, numbered in order."""

    def __init__(self, user_id: int = 500_001, first_name: str = "Anna", language: str = "en") -> None:
        self.user = TelegramUser(id=user_id, is_bot=False, first_name=first_name, language_code=language)
        self.chat = Chat(id=user_id, type="private")
        self._numbers = itertools.count(1)

    def _message(self, **fields: Any) -> Update:
        number = next(self._numbers)
        message = Message(message_id=number, date=NOW, chat=self.chat, from_user=self.user, **fields)
        return Update(update_id=number, message=message)

    def text(self, text: str) -> Update:
        return self._message(text=text)

    def command(self, command: str, args: str = "") -> Update:
        text = f"/{command}" + (f" {args}" if args else "")
        entity = MessageEntity(type="bot_command", offset=0, length=len(command) + 1)
        return self._message(text=text, entities=[entity])

    def photo(self, file_id: str, media_group_id: str | None = None, caption: str | None = None) -> Update:
        sizes = [PhotoSize(file_id=file_id, file_unique_id=f"u{file_id}", width=1024, height=1024, file_size=200_000)]
        return self._message(photo=sizes, media_group_id=media_group_id, caption=caption)

    def document(self, file_id: str, mime_type: str = "image/jpeg", file_name: str = "selfie.jpg") -> Update:
        document = Document(file_id=file_id, file_unique_id=f"u{file_id}", mime_type=mime_type, file_name=file_name)
        return self._message(document=document)

    def tap(self, data: str, on_message_id: int = 9_000, message_text: str = "…") -> Update:
        number = next(self._numbers)
        shown = Message(message_id=on_message_id, date=NOW, chat=self.chat, from_user=BOT_USER, text=message_text)
        query = CallbackQuery(id=f"cb{number}", from_user=self.user, chat_instance="ci", data=data, message=shown)
        return Update(update_id=number, callback_query=query)

    def reaction(self, message_id: int, new: list[ReactionType], old: list[ReactionType] | None = None) -> Update:
        number = next(self._numbers)
        reaction = MessageReactionUpdated(
            chat=self.chat, message_id=message_id, user=self.user, date=NOW, old_reaction=old or [], new_reaction=new
        )
        return Update(update_id=number, message_reaction=reaction)

    def pre_checkout(self, payload: str, amount: int, currency: str = "XTR") -> Update:
        number = next(self._numbers)
        query = PreCheckoutQuery(
            id=f"pc{number}", from_user=self.user, currency=currency, total_amount=amount, invoice_payload=payload
        )
        return Update(update_id=number, pre_checkout_query=query)

    def paid(self, payload: str, amount: int, charge_id: str, currency: str = "XTR") -> Update:
        payment = SuccessfulPayment(
            currency=currency,
            total_amount=amount,
            invoice_payload=payload,
            telegram_payment_charge_id=charge_id,
            provider_payment_charge_id="",
        )
        return self._message(successful_payment=payment)


def handler_dispatcher(*routers: Router, **services: Any) -> Dispatcher:
    """A dispatcher with the app's language middleware and ``routers``; ``services`` become handler
    arguments (the app passes its services the same way). Conversation steps live in memory."""
    dispatcher = Dispatcher(storage=MemoryStorage(), i18n=build_i18n(), **services)
    UserLanguageMiddleware(dispatcher["i18n"]).setup(dispatcher)
    for router in routers:
        dispatcher.include_router(router)
    return dispatcher


def chat_user(updates: Updates, user_id: int = 1, language: str = "en") -> User:
    """The stored user the app's UserMiddleware would hand the handlers for ``updates``' sender."""
    return User(
        id=user_id,
        telegram_id=updates.user.id,
        first_name=updates.user.first_name,
        language=language,
        is_banned=False,
        is_blocked=False,
        max_active_jobs=1,
    )
