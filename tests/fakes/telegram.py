"""A strict fake Telegram Bot API server for integration tests.

The real aiogram ``Bot`` talks to it over HTTP on 127.0.0.1, so every request goes through aiogram's own
encoding (form data, ``attach://`` multipart parts) and every answer through aiogram's own parsing and
error mapping (``TelegramBadRequest``, ``TelegramRetryAfter``, ...).

Typical use::

    async with FakeTelegram() as fake:
        bot = fake.create_bot()                      # Bot(token, session=AiohttpSession(api=...))
        user = fake.user(user_id=1001, language_code="ru")
        await user.send_command("/start")            # delivered by webhook or queued for getUpdates
        reply = await user.wait_reply()              # the next bot message in that chat
        message_id, data = fake.find_button(user.id, "Оплатить")
        await user.press_button(message_id, data)

The fake rejects what Telegram rejects (unknown chats, over-long texts and captions, bad HTML, callback
data over 64 bytes, albums outside 2-10 items, oversized photos, edits that change nothing, ...), with
Telegram's error JSON and HTTP status. Where Telegram's exact wording is not public the description
is a realistic stand-in; such places say so in a comment.

Deliberate deviations, all for tests: webhook URLs may be plain ``http`` on any port; files "sent by
URL" fail (the fake has no web to fetch from); photos keep the uploaded bytes as their largest size
(Telegram re-encodes); text length is counted in UTF-16 code units after entity parsing.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import hashlib
import io
import itertools
import json
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from PIL import Image

if TYPE_CHECKING:
    from aiogram import Bot

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_PHOTO_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_PHOTO_SIDES_SUM = 10_000
MAX_PHOTO_RATIO = 20
# Room for a 50 MB upload plus multipart overhead, so an oversized document gets Telegram's 413 JSON
# from the handler instead of aiohttp's plain-text 413.
_MAX_REQUEST_BYTES = 2 * MAX_UPLOAD_BYTES

QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
        "business_message", "edited_business_message", "deleted_business_messages", "inline_query",
        "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query",
        "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_join_request",
        "chat_boost", "removed_chat_boost",
    }
)  # fmt: skip
# The emoji a ReactionTypeEmoji may carry (Bot API, ReactionTypeEmoji), as Telegram sends them.
REACTION_EMOJI = frozenset(
    {
        "👍", "👎", "❤", "🔥", "🥰", "👏", "😁", "🤔", "🤯", "😱", "🤬", "😢", "🎉", "🤩", "🤮", "💩", "🙏",
        "👌", "🕊", "🤡", "🥱", "🥴", "😍", "🐳", "❤‍🔥", "🌚", "🌭", "💯", "🤣", "⚡", "🍌", "🏆", "💔", "🤨",
        "😐", "🍓", "🍾", "💋", "🖕", "😈", "😴", "😭", "🤓", "👻", "👨‍💻", "👀", "🎃", "🙈", "😇", "😨", "🤝",
        "✍", "🤗", "🫡", "🎅", "🎄", "☃", "💅", "🤪", "🗿", "🆒", "💘", "🙉", "🦄", "😘", "💊", "🙊", "😎",
        "👾", "🤷‍♂", "🤷", "🤷‍♀", "😡",
    }
)  # fmt: skip
CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
    }
)  # fmt: skip
_DEFAULT_ERRORS = {
    400: "Bad Request: injected error",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
# Fields Telegram reads as JSON, and as integers; used to decode recorded parameters for assertions.
_JSON_FIELDS = frozenset(
    {
        "reply_markup", "media", "entities", "caption_entities", "allowed_updates", "prices", "commands",
        "scope", "reply_parameters", "link_preview_options", "suggested_tip_amounts",
    }
)  # fmt: skip
_INT_FIELDS = frozenset(
    {"chat_id", "message_id", "user_id", "offset", "limit", "timeout", "max_connections", "cache_time"}
)
# Telegram's flood control as the fake enforces it by default, (global count, global window s, per-chat
# count, per-chat window s): about 30 messages a second overall and about one a second per chat with
# short bursts (Bot FAQ, ../shared/docs/telegram.md §1.2), as 30 per 1 s and 40 per chat per 30 s. The
# app's real budgets fit inside: per chat a burst of one album (10) then 0.9/s is at most 37 in 30 s;
# overall 10 + 25 × 0.75 is at most 29 in 1 s (bot/telegram_limits.py).
TELEGRAM_FLOOD_LIMITS: tuple[int, float, int, float] = (30, 1.0, 40, 30.0)
# Sends that count against flood control (edits and chat actions are limited separately by Telegram).
_FLOOD_COUNTED = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendInvoice"})
_TEXT_FIELDS = frozenset({"text", "caption", "payload", "title", "description", "error_message", "url"})


class BotApiError(Exception):
    """An error answer of the Bot API: ``{"ok": false, "error_code": status, "description": ...}``."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(detail: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {detail}")


# --------------------------------------------------------------------------------------------------------
# Text formatting: Telegram counts lengths and entity offsets in UTF-16 code units of the visible text.


class _EntityParseError(Exception):
    pass


def utf16_length(text: str) -> int:
    """Length of ``text`` as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode())


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}  # fmt: skip
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME_RE = re.compile(r"[a-zA-Z0-9-]*")
_ATTRIBUTE_RE = re.compile(r"""([a-zA-Z0-9_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def _html_unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _HTML_NAMED[name]

    return _HTML_ENTITY_RE.sub(replace, text)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram's HTML subset into (visible text, entities); errors use tdlib's wording."""
    output: list[str] = []
    position = 0  # UTF-16 length of ``output``
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char == "&" and (match := _HTML_ENTITY_RE.match(source, index)):
            decoded = _html_unescape(match.group())
            output.append(decoded)
            position += utf16_length(decoded)
            index = match.end()
            continue
        if char != "<":
            output.append(char)
            position += utf16_length(char)
            index += 1
            continue
        offset = _byte_offset(source, index)
        if source.startswith("</", index):
            end = source.find(">", index)
            if end < 0:
                raise _EntityParseError(f"Unclosed end tag at byte offset {offset}")
            name = source[index + 2 : end].strip().lower()
            if not stack:
                raise _EntityParseError(f"Unexpected end tag at byte offset {offset}")
            open_name, start, attributes = stack.pop()
            if name and name != open_name:
                raise _EntityParseError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{open_name}>", found "</{name}>"'
                )
            entity = _html_entity(open_name, start, position - start, attributes)
            if entity is not None:
                entities.append(entity)
            index = end + 1
            continue
        name_match = _TAG_NAME_RE.match(source, index + 1)
        assert name_match is not None  # the pattern matches the empty string
        name = name_match.group().lower()
        if name not in _HTML_TAGS:
            raise _EntityParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
        attributes: dict[str, str] = {}
        cursor = name_match.end()
        while True:
            while cursor < len(source) and source[cursor].isspace():
                cursor += 1
            if cursor >= len(source):
                raise _EntityParseError(f"Unclosed start tag at byte offset {offset}")
            if source[cursor] == ">":
                cursor += 1
                break
            attribute = _ATTRIBUTE_RE.match(source, cursor)
            if attribute is None:
                raise _EntityParseError(f"Unclosed start tag at byte offset {offset}")
            value = next((group for group in attribute.groups()[1:] if group is not None), "")
            attributes[attribute.group(1).lower()] = _html_unescape(value)
            cursor = attribute.end()
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise _EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        stack.append((name, position, attributes))
        index = cursor
    if stack:
        raise _EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(output), _merge_pre_code(entities)


def _merge_pre_code(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # <pre><code class="language-x"> is one "pre" entity with a language in Telegram, not two entities.
    spans = {(e["offset"], e["length"]) for e in entities if e["type"] == "pre"}
    merged = []
    for entity in entities:
        if entity["type"] == "code" and (entity["offset"], entity["length"]) in spans:
            language = entity.get("language")
            pre = next(e for e in entities if e["type"] == "pre" and e["offset"] == entity["offset"])
            if language:
                pre["language"] = language
            continue
        entity.pop("language", None)
        merged.append(entity)
    return sorted(merged, key=lambda entity: entity["offset"])


def _html_entity(tag: str, offset: int, length: int, attributes: dict[str, str]) -> dict[str, Any] | None:
    if length <= 0:
        return None
    entity: dict[str, Any] = {"type": _HTML_TAGS[tag], "offset": offset, "length": length}
    if tag == "a":
        if not attributes.get("href"):
            return None
        entity["url"] = attributes["href"]
    if tag == "tg-emoji":
        if not attributes.get("emoji-id"):
            return None
        entity["custom_emoji_id"] = attributes["emoji-id"]
    language = attributes.get("class", attributes.get("language", ""))
    if tag == "code" and language.startswith("language-"):
        entity["language"] = language.removeprefix("language-")
    if tag == "blockquote" and "expandable" in attributes:
        entity["type"] = "expandable_blockquote"
    return entity


_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MARKDOWN_V2_URL_RE = re.compile(r"\(((?:\\.|[^\\)])*)\)")
_MARKDOWN_V2_CODE_RE = re.compile(r"`(?P<body>(?:\\.|[^\\`])*)`", re.DOTALL)
_MARKDOWN_V2_PRE_RE = re.compile(r"```(?P<language>[^\s`]*)\n?(?P<body>(?:\\.|[^\\`]|`(?!``))*)```", re.DOTALL)
_MARKDOWN_V2_MARKERS = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}
_MARKDOWN_ENTITY_NAMES = {
    "bold": "Bold", "italic": "Italic", "underline": "Underline", "strikethrough": "Strikethrough",
    "spoiler": "Spoiler", "text_link": "TextUrl",
}  # fmt: skip


def parse_markdown_v2(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse MarkdownV2; unescaped reserved characters and unclosed entities fail as in Telegram."""
    output: list[str] = []
    position = 0
    stack: list[tuple[str, int, int]] = []  # (entity type, utf16 start, byte offset of the marker)
    entities: list[dict[str, Any]] = []

    def emit(text: str) -> None:
        nonlocal position
        output.append(text)
        position += utf16_length(text)

    index = 0
    quote_line = False  # inside a ">" blockquote line
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source) and 0 < ord(source[index + 1]) <= 126:
            emit(source[index + 1])
            index += 2
            continue
        marker = source[index : index + 2] if source[index : index + 2] in ("__", "||") else char
        line_end = index + 2 >= len(source) or source[index + 2] == "\n"
        if marker == "||" and quote_line and line_end and not (stack and stack[-1][0] == "spoiler"):
            index += 2  # "||" closing an expandable blockquote line
            continue
        if marker in _MARKDOWN_V2_MARKERS:
            kind = _MARKDOWN_V2_MARKERS[marker]
            if stack and stack[-1][0] == kind:
                _, start, _ = stack.pop()
                if position > start:
                    entities.append({"type": kind, "offset": start, "length": position - start})
            else:
                stack.append((kind, position, _byte_offset(source, index)))
            index += len(marker)
            continue
        if char == "`":
            fence = "```" if source.startswith("```", index) else "`"
            code = _MARKDOWN_V2_PRE_RE.match(source, index) if fence == "```" else None
            code = code or _MARKDOWN_V2_CODE_RE.match(source, index)
            if code is None:
                offset = _byte_offset(source, index)
                raise _EntityParseError(f"Can't find end of the entity starting at byte offset {offset}")
            # Any ASCII character may be escaped, inside code too; the first ``` line names a language.
            body = re.sub(r"\\([\x01-\x7e])", r"\1", code.group("body"))
            start = position
            emit(body)
            entity = {"type": "pre" if fence == "```" else "code", "offset": start, "length": position - start}
            if code.groupdict().get("language"):
                entity["language"] = code.group("language")
            if position > start:
                entities.append(entity)
            index = code.end()
            continue
        if char == "[":
            stack.append(("text_link", position, _byte_offset(source, index)))
            index += 1
            continue
        if char == "]" and stack and stack[-1][0] == "text_link":
            _, start, offset = stack.pop()
            url_match = _MARKDOWN_V2_URL_RE.match(source, index + 1)
            if url_match is None:
                raise _EntityParseError(f"Can't find end of a url at byte offset {offset}")
            url = re.sub(r"\\(.)", r"\1", url_match.group(1))
            if position > start:
                entities.append({"type": "text_link", "offset": start, "length": position - start, "url": url})
            index = url_match.end()
            continue
        if char == "\r":  # the documented separator for "___italic underline_\r__"; Telegram drops it
            index += 1
            continue
        if char == "\n":
            quote_line = False
        if char == ">" and (index == 0 or source[index - 1] == "\n"):
            quote_line = True
            index += 1  # a blockquote line; the fake keeps the text and skips the entity
            continue
        if char in _MARKDOWN_V2_RESERVED:
            raise _EntityParseError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
        emit(char)
        index += 1
    if stack:
        kind, _, offset = stack[-1]
        raise _EntityParseError(f"Can't find end of {_MARKDOWN_ENTITY_NAMES[kind]} entity at byte offset {offset}")
    entities.sort(key=lambda entity: entity["offset"])
    return "".join(output), entities


def parse_markdown(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse legacy Markdown (``*bold*``, ``_italic_``, backticks, ``[text](url)``)."""
    output: list[str] = []
    entities: list[dict[str, Any]] = []
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source) and source[index + 1] in "_*`[":
            output.append(source[index + 1])
            index += 2
            continue
        if char not in "_*`[":
            output.append(char)
            index += 1
            continue
        offset = _byte_offset(source, index)
        start = utf16_length("".join(output))
        fence = "```" if source.startswith("```", index) else ("]" if char == "[" else char)
        opening = 3 if fence == "```" else 1
        end = source.find(fence, index + opening)
        if end < 0:
            raise _EntityParseError(f"Can't find end of the entity starting at byte offset {offset}")
        body = source[index + opening : end]
        output.append(body)
        entity: dict[str, Any] = {"offset": start, "length": utf16_length(body)}
        index = end + len(fence)
        if char == "[":
            close = source.find(")", index) if source.startswith("(", index) else -1
            if close < 0:
                continue  # "[text]" without a url stays plain text
            entity |= {"type": "text_link", "url": source[index + 1 : close]}
            index = close + 1
        else:
            entity["type"] = "pre" if fence == "```" else kinds[char]
        if entity["length"] > 0:
            entities.append(entity)
    return "".join(output), entities


def format_text(text: str, parse_mode: str | None, entities: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """Turn a request's text + parse_mode/entities into what the user sees, or raise ``BotApiError``."""
    if not parse_mode:
        return text, list(entities or [])
    parsers = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}
    parser = parsers.get(parse_mode.lower())
    if parser is None:
        raise _bad_request(f"unsupported parse_mode {parse_mode!r}")
    try:
        return parser(text)
    except _EntityParseError as error:
        raise _bad_request(f"can't parse entities: {error}") from None


# --------------------------------------------------------------------------------------------------------
# Recorded state


@dataclass
class RecordedCall:
    """One Bot API request as the fake received and answered it.

    ``params`` holds the decoded form fields (JSON fields as objects, ids as ints, ``"true"`` as True);
    ``files`` holds multipart file parts by part name; ``time`` is ``time.monotonic()`` on arrival.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    time: float
    chat_id: int | None
    response_ok: bool = False
    status: int = 200
    description: str | None = None
    result: Any = None


@dataclass
class FaultRule:
    """An injected failure (or delay, when ``status`` is None); ``fired`` counts the answers it changed."""

    method: str | None
    status: int | None
    description: str | None
    retry_after: int | None
    times: int | None
    every: int | None
    chat_id: int | None
    delay: float = 0.0
    seen: int = 0
    fired: int = 0
    # Answer the error only after the call took effect (a 5xx from a proxy after Telegram accepted it).
    after_accepting: bool = False

    def matches(self, method: str, chat_id: int | None) -> bool:
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id

    def take(self) -> bool:
        """Count a matching call and say whether this rule fires for it."""
        if self.times is not None and self.fired >= self.times:
            return False
        self.seen += 1
        if self.every is not None and self.seen % self.every != 0:
            return False
        self.fired += 1
        return True


@dataclass
class AlbumFailure:
    """A sendMediaGroup that delivers items before ``failed_item`` and then fails like Telegram does."""

    failed_item: int
    retry_after: int
    chat_id: int | None
    times: int
    fired: int = 0


@dataclass
class WebhookDelivery:
    """One POST of an update to the bot's webhook: HTTP status (None when the connection failed)."""

    update: dict[str, Any]
    status: int | None
    secret_header: str | None
    error: str | None = None
    posted_at: float = 0.0  # time.monotonic() when the POST started and when it was answered (or failed)
    answered_at: float = 0.0


@dataclass
class StoredFile:
    """A file Telegram keeps: uploaded by the bot or sent by a user. ``data`` is None for a thumbnail
    not rendered yet (rendered from ``source`` on download)."""

    file_unique_id: str
    kind: str
    size: int
    data: bytes | None
    extension: str
    mime_type: str | None = None
    source: StoredFile | None = None
    box: int | None = None
    path: str | None = None


@dataclass
class ChatMessage:
    """A message in a private chat as the user sees it. ``raw`` is the Bot API ``Message`` JSON;
    ``data`` holds the photo/document bytes, ``invoice_payload`` the hidden payload of an invoice."""

    raw: dict[str, Any]
    from_bot: bool
    method: str | None
    sent_at: float
    data: bytes | None = None
    invoice_payload: str | None = None
    deleted: bool = False
    edits: int = 0

    @property
    def message_id(self) -> int:
        return int(self.raw["message_id"])

    @property
    def chat_id(self) -> int:
        return int(self.raw["chat"]["id"])

    @property
    def text(self) -> str | None:
        return self.raw.get("text")

    @property
    def caption(self) -> str | None:
        return self.raw.get("caption")

    @property
    def content(self) -> str:
        """Text or caption, whichever the message has ("" for neither)."""
        return self.raw.get("text") or self.raw.get("caption") or ""

    @property
    def kind(self) -> str:
        for kind in ("text", "photo", "document", "invoice", "sticker", "video", "voice", "successful_payment"):
            if kind in self.raw:
                return kind
        return "other"

    @property
    def media_group_id(self) -> str | None:
        return self.raw.get("media_group_id")

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.raw.get("reply_markup")

    @property
    def reply_to(self) -> int | None:
        """The id of the message this one replies to, if any."""
        replied = self.raw.get("reply_to_message")
        return None if replied is None else int(replied["message_id"])

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """All inline keyboard buttons, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    @property
    def file_id(self) -> str | None:
        """file_id of the largest photo size or of the document."""
        if "photo" in self.raw:
            return self.raw["photo"][-1]["file_id"]
        return self.raw.get("document", {}).get("file_id")

    @property
    def file_unique_id(self) -> str | None:
        if "photo" in self.raw:
            return self.raw["photo"][-1]["file_unique_id"]
        return self.raw.get("document", {}).get("file_unique_id")


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int


@dataclass
class _Charge:
    user_id: int
    currency: str
    total_amount: int
    refunded: bool = False
    invoice_payload: str = ""


# --------------------------------------------------------------------------------------------------------
# Request arguments


@dataclass
class _Args:
    """The fields of one request as strings, as Telegram reads them, plus multipart file parts."""

    values: dict[str, str]
    files: dict[str, bytes]
    filenames: dict[str, str]

    def text(self, name: str) -> str | None:
        return self.values.get(name)

    def required(self, name: str) -> str:
        value = self.values.get(name)
        if value is None:
            raise _bad_request(f'parameter "{name}" is required')
        return value

    def integer(self, name: str, default: int | None = None) -> int | None:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise _bad_request(f'field "{name}" must be of type Integer') from None

    def flag(self, name: str) -> bool:
        return self.values.get(name, "").lower() in ("true", "1")

    def json(self, name: str) -> Any:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            what = "reply keyboard markup" if name == "reply_markup" else name.replace("_", " ")
            raise _bad_request(f"can't parse {what} JSON object") from None

    def decoded(self) -> dict[str, Any]:
        """Fields decoded for assertions in tests (never used to answer the request)."""
        decoded: dict[str, Any] = {}
        for name, raw in self.values.items():
            value: Any = raw
            if name in _JSON_FIELDS:
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(raw)
            elif name in _INT_FIELDS and re.fullmatch(r"-?\d+", raw):
                value = int(raw)
            elif name not in _TEXT_FIELDS and raw in ("true", "false"):
                value = raw == "true"
            decoded[name] = value
        return decoded


def _unique_id(key: bytes) -> str:
    # Deterministic like Telegram's: the same content always gets the same file_unique_id.
    return "AQAD" + base64.urlsafe_b64encode(hashlib.sha256(key).digest()[:12]).decode().rstrip("=")


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except Exception:  # any unreadable content is "not an image" for Telegram
        return None


def _render_thumbnail(data: bytes, box: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((box, box))
        output = io.BytesIO()
        image.convert("RGB").save(output, format="JPEG", quality=80)
        return output.getvalue()


# --------------------------------------------------------------------------------------------------------
# Simulated users


class FakeUser:
    """A Telegram user chatting with the bot. Every ``send_*`` builds a realistic Update, delivers it
    (webhook POST or getUpdates queue) and returns it."""

    def __init__(
        self,
        fake: FakeTelegram,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
        is_premium: bool,
    ) -> None:
        self._fake = fake
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.is_premium = is_premium
        self._reply_mark = 0

    def as_json(self) -> dict[str, Any]:
        """The Bot API ``User`` object of this user."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        optional = {"last_name": self.last_name, "username": self.username, "language_code": self.language_code}
        user |= {key: value for key, value in optional.items() if value is not None}
        if self.is_premium:
            user["is_premium"] = True
        return user

    def chat_json(self) -> dict[str, Any]:
        """The Bot API ``Chat`` object of the private chat with this user (chat id = user id)."""
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        optional = {"last_name": self.last_name, "username": self.username}
        return chat | {key: value for key, value in optional.items() if value is not None}

    @property
    def blocked(self) -> bool:
        return self.id in self._fake._blocked

    # -- messages -------------------------------------------------------------------------------------

    async def send_text(
        self, text: str, *, entities: list[dict[str, Any]] | None = None, reply_to: int | None = None
    ) -> dict[str, Any]:
        """``reply_to``: the id of a message of this chat the text replies to (Telegram then includes
        that message, without its own reply, as ``reply_to_message``)."""
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        if reply_to is not None:
            content["reply_to_message"] = self._fake._replied_message(self.id, reply_to)
        return await self._send_message(content)

    async def send_command(
        self, command: str, args: str | None = None, *, reply_to: int | None = None
    ) -> dict[str, Any]:
        """Send ``/command [args]`` with the ``bot_command`` entity Telegram adds."""
        command = command if command.startswith("/") else f"/{command}"
        text = f"{command} {args}" if args else command
        entity = {"type": "bot_command", "offset": 0, "length": utf16_length(command)}
        return await self.send_text(text, entities=[entity], reply_to=reply_to)

    async def send_photo(self, image: bytes, caption: str | None = None) -> dict[str, Any]:
        """Send a compressed photo; ``message.photo`` lists several sizes, the largest holds ``image``."""
        return await self._send_message(self._photo_content(image, caption))

    async def send_album(self, images: list[bytes], caption: str | None = None) -> list[dict[str, Any]]:
        """Send 2-10 photos as one album: one update per photo sharing a ``media_group_id``, back-to-back
        (in webhook mode they are POSTed concurrently, as Telegram does with several connections)."""
        if not 2 <= len(images) <= 10:
            raise ValueError("a Telegram client sends albums of 2-10 items")
        media_group_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        self._reply_mark = len(self._fake._sent)
        updates = []
        for position, image in enumerate(images):
            content = self._photo_content(image, caption if position == 0 else None)
            content["media_group_id"] = media_group_id
            updates.append(self._fake._enqueue("message", self._fake._new_user_message(self, content)))
        await self._fake.flush_webhook()
        return updates

    async def send_document(
        self,
        data: bytes,
        file_name: str,
        mime_type: str | None = None,
        caption: str | None = None,
        *,
        file_size: int | None = None,
    ) -> dict[str, Any]:
        """Send a file ("send as file"). ``file_size`` overrides the reported size, e.g. to test the
        20 MB getFile limit without allocating 20 MB."""
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = self._fake._store_file(data, "document", _extension(file_name), mime_type, size=file_size)
        document = {
            "file_id": self._fake._register_file_id(stored),
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.size,
        }
        content: dict[str, Any] = {"document": document}
        if caption:
            content["caption"] = caption
        return await self._send_message(content)

    async def send_sticker(self, emoji: str = "😀") -> dict[str, Any]:
        stored = self._fake._store_file(b"RIFF-fake-webp-sticker", "sticker", "webp", "image/webp")
        sticker = {
            "file_id": self._fake._register_file_id(stored),
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.size,
        }
        return await self._send_message({"sticker": sticker})

    async def send_video(self, duration: int = 5) -> dict[str, Any]:
        stored = self._fake._store_file(b"\x00\x00\x00\x18ftypmp42-fake-video", "video", "mp4", "video/mp4")
        video = {
            "file_id": self._fake._register_file_id(stored),
            "file_unique_id": stored.file_unique_id,
            "width": 720,
            "height": 1280,
            "duration": duration,
            "mime_type": "video/mp4",
            "file_size": stored.size,
        }
        return await self._send_message({"video": video})

    async def send_voice(self, duration: int = 3) -> dict[str, Any]:
        stored = self._fake._store_file(b"OggS-fake-voice", "voice", "oga", "audio/ogg")
        voice = {
            "file_id": self._fake._register_file_id(stored),
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": stored.size,
        }
        return await self._send_message({"voice": voice})

    # -- buttons --------------------------------------------------------------------------------------

    async def press_button(self, message_id: int, callback_data: str, *, answered: bool = False) -> str:
        """Press an inline button and return the callback query id. The data is not checked against
        the keyboard, so tests can forge it; use :meth:`click` to press a button that exists.
        ``answered``: the query was answered already (a redelivered update): answering it again fails."""
        message = self._fake._chats.get(self.id, {}).get(message_id)
        if message is not None and message.from_bot and not message.deleted:
            message_json = copy.deepcopy(message.raw)
        else:  # Telegram sends an InaccessibleMessage (date 0) for a message the bot can't see anymore
            message_json = {"chat": self.chat_json(), "message_id": message_id, "date": 0}
        query_id = str(next(self._fake._query_ids))
        if not answered:
            self._fake._callback_queries[query_id] = self.id
        payload = {
            "id": query_id,
            "from": self.as_json(),
            "message": message_json,
            "chat_instance": self._fake._chat_instance(self.id),
            "data": callback_data,
        }
        self._reply_mark = len(self._fake._sent)
        await self._fake._deliver("callback_query", payload)
        return query_id

    async def click(self, text_substring: str) -> str:
        """Press the newest inline button whose text contains ``text_substring``; returns the query id."""
        message_id, callback_data = self._fake.find_button(self.id, text_substring)
        return await self.press_button(message_id, callback_data)

    # -- payments -------------------------------------------------------------------------------------

    async def pre_checkout(self, invoice_payload: str, currency: str, total_amount: int) -> dict[str, Any]:
        """Deliver a ``pre_checkout_query``; the bot must answer it with answerPreCheckoutQuery."""
        query_id = str(next(self._fake._query_ids))
        self._fake._pre_checkout_queries[query_id] = self.id
        payload = {
            "id": query_id,
            "from": self.as_json(),
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": invoice_payload,
        }
        self._reply_mark = len(self._fake._sent)
        return await self._fake._deliver("pre_checkout_query", payload)

    async def successful_payment(
        self,
        invoice_payload: str,
        currency: str,
        total_amount: int,
        telegram_payment_charge_id: str | None = None,
    ) -> dict[str, Any]:
        """Deliver the service message of a completed payment; the charge becomes refundable."""
        charge_id = self.charge(invoice_payload, currency, total_amount, telegram_payment_charge_id)
        payment = {
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": invoice_payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "" if currency == "XTR" else f"provider-{secrets.token_hex(6)}",
        }
        return await self._send_message({"successful_payment": payment})

    def charge(
        self, invoice_payload: str, currency: str, total_amount: int, telegram_payment_charge_id: str | None = None
    ) -> str:
        """Telegram takes the money: the charge is refundable and listed by getStarTransactions, whether
        or not its ``successful_payment`` update ever reaches the bot. Returns the charge id."""
        charge_id = telegram_payment_charge_id or f"stxFAKE{secrets.token_hex(12)}"
        if charge_id not in self._fake._charges:
            self._fake._charges[charge_id] = _Charge(self.id, currency, total_amount, invoice_payload=invoice_payload)
            if currency == "XTR":
                self._fake._star_transactions.append(
                    {
                        "id": charge_id,
                        "amount": total_amount,
                        "date": int(time.time()),
                        "source": {
                            "type": "user",
                            "transaction_type": "invoice_payment",
                            "user": self.as_json(),
                            "invoice_payload": invoice_payload,
                        },
                    }
                )
        return charge_id

    async def pay(self, message_id: int | None = None, *, timeout: float = 5.0) -> dict[str, Any] | None:  # noqa: ASYNC109
        """Pay an invoice the bot sent (the newest one when ``message_id`` is None) like a client does:
        pre-checkout query, wait for the bot's answer, then the successful payment. Returns the payment
        update, or None when the bot declined the pre-checkout query."""
        invoices = [m for m in self._fake.chat_messages(self.id) if m.kind == "invoice"]
        if message_id is not None:
            invoices = [m for m in invoices if m.message_id == message_id]
        if not invoices:
            raise LookupError(f"no invoice from the bot in chat {self.id}")
        invoice, payload = invoices[-1].raw["invoice"], invoices[-1].invoice_payload or ""
        query = await self.pre_checkout(payload, invoice["currency"], invoice["total_amount"])
        query_id = query["pre_checkout_query"]["id"]
        answer = await self._fake.wait_for(
            lambda call: (
                call.method == "answerPreCheckoutQuery"
                and call.response_ok
                and str(call.params.get("pre_checkout_query_id")) == query_id
            ),
            timeout=timeout,
        )
        if not answer.params.get("ok"):
            return None
        return await self.successful_payment(payload, invoice["currency"], invoice["total_amount"])

    # -- reactions ------------------------------------------------------------------------------------

    async def react(self, message_id: int, *emojis: str) -> dict[str, Any]:
        """Set this user's reactions on a message of the chat to ``emojis`` (none: take them away), as a
        client does, and deliver the ``message_reaction`` update (MessageReactionUpdated: the old and
        the new list). Telegram sends it only to a bot that asked for it in ``allowed_updates``; like
        the client, the fake refuses an emoji that is not a reaction, a message that is not in the chat,
        and more reactions than the user may set (one, three with Premium)."""
        message = self._fake._chats.get(self.id, {}).get(message_id)
        if message is None or message.deleted:
            raise ValueError(f"no message {message_id} in chat {self.id} to react to")
        unknown = [emoji for emoji in emojis if emoji not in REACTION_EMOJI]
        if unknown:
            raise ValueError(f"not a reaction emoji: {unknown}")
        if len(set(emojis)) != len(emojis) or len(emojis) > (3 if self.is_premium else 1):
            raise ValueError("a user sets each reaction once, at most one (three with Premium)")
        key = (self.id, message_id, self.id)
        old = self._fake._reactions.get(key, [])
        self._fake._reactions[key] = list(emojis)
        payload = {
            "chat": self.chat_json(),
            "message_id": message_id,
            "user": self.as_json(),
            "date": int(time.time()),
            "old_reaction": [{"type": "emoji", "emoji": emoji} for emoji in old],
            "new_reaction": [{"type": "emoji", "emoji": emoji} for emoji in emojis],
        }
        self._reply_mark = len(self._fake._sent)
        return await self._fake._deliver("message_reaction", payload)

    # -- blocking -------------------------------------------------------------------------------------

    async def block_bot(self) -> dict[str, Any]:
        """Block the bot: sends to this user fail with 403; the bot gets a ``my_chat_member`` update."""
        self._fake._blocked.add(self.id)
        return await self._fake._deliver("my_chat_member", self._membership("member", "kicked"))

    async def unblock_bot(self) -> dict[str, Any]:
        self._fake._blocked.discard(self.id)
        return await self._fake._deliver("my_chat_member", self._membership("kicked", "member"))

    # -- reading the chat -----------------------------------------------------------------------------

    @property
    def messages(self) -> list[ChatMessage]:
        """The bot's messages in this chat as they are now (edits applied, deleted ones gone)."""
        return self._fake.chat_messages(self.id)

    async def wait_reply(
        self,
        predicate: Callable[[ChatMessage], bool] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> ChatMessage:
        """Wait for a bot message in this chat sent after this user's last action (and matching
        ``predicate`` when given); returns it as it was sent."""
        mark = self._reply_mark

        def find() -> ChatMessage | None:
            for message in self._fake._sent[mark:]:
                if message.chat_id == self.id and (predicate is None or predicate(message)):
                    return message
            return None

        await self._fake.wait_until(lambda: find() is not None, timeout=timeout)
        found = find()
        assert found is not None
        return found

    # -- internals ------------------------------------------------------------------------------------

    def _photo_content(self, image: bytes, caption: str | None) -> dict[str, Any]:
        size = _image_size(image)
        if size is None:
            raise ValueError("a Telegram client sends only images as photos")
        content: dict[str, Any] = {"photo": self._fake._store_photo(image, size)}
        if caption:
            content["caption"] = caption
        return content

    async def _send_message(self, content: dict[str, Any]) -> dict[str, Any]:
        self._reply_mark = len(self._fake._sent)
        return await self._fake._deliver("message", self._fake._new_user_message(self, content))

    def _membership(self, old: str, new: str) -> dict[str, Any]:
        def member(status: str) -> dict[str, Any]:
            state: dict[str, Any] = {"status": status, "user": self._fake.me}
            return state | ({"until_date": 0} if status == "kicked" else {})

        return {
            "chat": self.chat_json(),
            "from": self.as_json(),
            "date": int(time.time()),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }


def _extension(file_name: str) -> str:
    return file_name.rsplit(".", 1)[-1].lower() if "." in file_name else "bin"


# --------------------------------------------------------------------------------------------------------
# The server


class FakeTelegram:
    """A fake Bot API server on 127.0.0.1 (ephemeral port) for one bot token.

    Use it as ``async with FakeTelegram() as fake`` (or ``await start()`` / ``await close()``), point the
    bot at :attr:`base_url` (or use :meth:`create_bot`), create users with :meth:`user`, inspect what the
    bot did with :meth:`calls`, :meth:`sent_messages`, :meth:`chat_messages`, and await it with
    :meth:`wait_for`, :meth:`wait_for_message`, :meth:`wait_until` or :meth:`FakeUser.wait_reply`.
    Inject faults with :meth:`inject`, :meth:`delay` and :meth:`inject_album_failure`.

    ``flood_limits``: Telegram's flood control (see :data:`TELEGRAM_FLOOD_LIMITS`, the default); each
    429 it provokes is counted in :attr:`flood_429s`. ``None`` turns it off.

    ``strict_album_minimum``: reject 1-item albums, as the Bot API documents ("must include 2-10
    items"). Telegram's server in fact sends a single item as a plain message; pass False for that.
    """

    def __init__(
        self,
        token: str = "123456789:AAFakeTokenForPinGlassTests_0123456789",
        *,
        bot_username: str = "pinglass_test_bot",
        bot_first_name: str = "PinGlass",
        strict_album_minimum: bool = True,
        flood_limits: tuple[int, float, int, float] | None = TELEGRAM_FLOOD_LIMITS,
    ) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like '<digits>:<secret>'")
        self.token = token
        self.strict_album_minimum = strict_album_minimum
        # Telegram's flood control, (global count, global window s, per-chat count, per-chat window s): more
        # messages than that in any window (album items count one by one) get 429. On by default with
        # Telegram's limits (TELEGRAM_FLOOD_LIMITS); None: off.
        self.flood_limits = flood_limits
        self.flood_429s = 0
        self._flood_global: collections.deque[float] = collections.deque()
        self._flood_chats: dict[int, collections.deque[float]] = {}
        self.me: dict[str, Any] = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.dropped_updates: list[dict[str, Any]] = []  # filtered out by allowed_updates
        self.downloads: list[str] = []  # file paths the bot downloaded
        self.waiting_polls = 0  # getUpdates requests waiting for updates right now
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.pre_checkout_answers: dict[str, dict[str, Any]] = {}
        self._calls: list[RecordedCall] = []
        self._sent: list[ChatMessage] = []  # snapshots of bot messages as delivered
        self._chats: dict[int, dict[int, ChatMessage]] = {}
        self._users: dict[int, FakeUser] = {}
        self._blocked: set[int] = set()
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._update_ids = itertools.count(secrets.randbelow(10**8) + 10**8)
        self._query_ids = itertools.count(4_000_000_000_000_000_000 + secrets.randbelow(10**15))
        self._user_ids = itertools.count(100_001)
        self._pending: list[dict[str, Any]] = []
        self._allowed_updates: list[str] | None = None
        self._webhook: _Webhook | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._poll_generation = 0
        self._files: dict[str, StoredFile] = {}  # file_id -> file
        self._paths: dict[str, StoredFile] = {}
        self._photo_sets: dict[str, list[dict[str, Any]]] = {}  # any size's file_id -> PhotoSize list
        self._file_numbers = itertools.count(1)
        self._callback_queries: dict[str, int] = {}  # unanswered query id -> user id
        self._pre_checkout_queries: dict[str, int] = {}
        self._charges: dict[str, _Charge] = {}
        self._star_transactions: list[dict[str, Any]] = []  # chronological, as getStarTransactions lists them
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._faults: list[FaultRule] = []
        self._album_failures: list[AlbumFailure] = []
        self._reactions: dict[tuple[int, int, int], list[str]] = {}  # (chat, message, user) -> emoji
        self._changed = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._bots: list[Bot] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._base_url: str | None = None
        self._handlers: dict[str, tuple[str, Callable[[_Args], Any]]] = {
            method.lower(): (method, handler)
            for method, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "editMessageCaption": self._edit_message_caption,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "sendMediaGroup": self._send_media_group,
                "sendChatAction": self._send_chat_action,
                "answerCallbackQuery": self._answer_callback_query,
                "getFile": self._get_file,
                "sendInvoice": self._send_invoice,
                "answerPreCheckoutQuery": self._answer_pre_checkout_query,
                "refundStarPayment": self._refund_star_payment,
                "getStarTransactions": self._get_star_transactions,
            }.items()
        }

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        self._closing = True
        self._notify()  # long polls return at once
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for bot in self._bots:
            await _close_bot_session(bot)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``TelegramAPIServer.from_base`` / ``TELEGRAM_API_URL``."""
        if self._base_url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._base_url

    def create_bot(self, **bot_kwargs: Any) -> Bot:
        """A real aiogram ``Bot`` for this token talking to this fake; closed by :meth:`close`."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        bot = Bot(self.token, session=session, **bot_kwargs)
        self._bots.append(bot)
        return bot

    # -- users ----------------------------------------------------------------------------------------

    def user(
        self,
        user_id: int | None = None,
        first_name: str = "Test",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ru",
        is_premium: bool = False,
    ) -> FakeUser:
        """Create (or return the existing) simulated user; from now on the bot can reach its chat."""
        if user_id is not None and user_id in self._users:
            return self._users[user_id]
        user_id = user_id if user_id is not None else next(self._user_ids)
        created = FakeUser(
            self,
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_premium=is_premium,
        )
        self._users[user_id] = created
        self._chats.setdefault(user_id, {})
        return created

    # -- inspection -----------------------------------------------------------------------------------

    def calls(self, method: str | None = None, chat_id: int | None = None) -> list[RecordedCall]:
        """Recorded Bot API calls (in order of completion), filtered by method name and chat."""
        return [
            call
            for call in self._calls
            if (method is None or call.method.lower() == method.lower())
            and (chat_id is None or call.chat_id == chat_id)
        ]

    def sent_messages(self, chat_id: int | None = None) -> list[ChatMessage]:
        """Bot messages as they were delivered (one per album item), in order; later edits and
        deletions do not change these snapshots."""
        return [message for message in self._sent if chat_id is None or message.chat_id == chat_id]

    def chat_messages(self, chat_id: int, *, include_user: bool = False) -> list[ChatMessage]:
        """The chat as it is now: edits applied, deleted messages gone; bot messages only unless
        ``include_user``."""
        return [
            message
            for message in self._chats.get(chat_id, {}).values()
            if not message.deleted and (include_user or message.from_bot)
        ]

    def find_button(self, chat_id: int, text_substring: str) -> tuple[int, str]:
        """(message_id, callback_data) of the newest inline button whose text contains
        ``text_substring`` (case-insensitive) in the bot's current messages of this chat."""
        wanted = text_substring.casefold()
        for message in reversed(self.chat_messages(chat_id)):
            for button in message.buttons:
                if wanted in button.get("text", "").casefold() and "callback_data" in button:
                    return message.message_id, button["callback_data"]
        available = [button.get("text") for message in self.chat_messages(chat_id) for button in message.buttons]
        raise LookupError(f"no inline button with {text_substring!r} in chat {chat_id}; buttons: {available}")

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, Any]]:
        """Commands set with setMyCommands for ``scope`` (default scope when None) and language."""
        return copy.deepcopy(self._commands.get((_scope_key(scope), language_code), []))

    @property
    def webhook_info(self) -> dict[str, Any]:
        """What getWebhookInfo answers now."""
        info: dict[str, Any] = {
            "url": self._webhook.url if self._webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook is not None:
            info |= {"max_connections": self._webhook.max_connections, "ip_address": "127.0.0.1"}
            if self._allowed_updates is not None:
                info["allowed_updates"] = list(self._allowed_updates)
        if self._webhook_error is not None:
            info |= {"last_error_date": self._webhook_error[0], "last_error_message": self._webhook_error[1]}
        return info

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by getUpdates (or not yet accepted by the webhook)."""
        return copy.deepcopy(self._pending)

    def file_bytes(self, file_id: str) -> bytes:
        """The content behind a file_id (photo sizes below the largest are rendered on demand)."""
        stored = self._files.get(file_id)
        if stored is None:
            raise KeyError(file_id)
        return _materialize(stored)

    def _chat_instance(self, chat_id: int) -> str:
        # Stable per (bot, chat), as Telegram's chat_instance is.
        digest = hashlib.sha256(f"{self.me['id']}:{chat_id}".encode()).hexdigest()
        return str(int(digest[:15], 16))

    def expire_callback_query(self, query_id: str) -> None:
        """Make a callback query too old to answer, as Telegram does after some seconds."""
        self._callback_queries.pop(query_id, None)

    # -- waiting --------------------------------------------------------------------------------------

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` holds; re-checked on every change of the fake (no polling)."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._changed.wait()
        except TimeoutError:
            recent = [f"{call.method}({call.chat_id}) ok={call.response_ok}" for call in self._calls[-10:]]
            raise TimeoutError(f"condition not met in {timeout}s; last calls: {recent}") from None

    async def wait_for(
        self,
        predicate: Callable[[RecordedCall], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        include_past: bool = True,
    ) -> RecordedCall:
        """Wait for a recorded call matching ``predicate`` (also among earlier calls, unless
        ``include_past`` is False) and return it."""
        start = 0 if include_past else len(self._calls)

        def find() -> RecordedCall | None:
            return next((call for call in self._calls[start:] if predicate(call)), None)

        await self.wait_until(lambda: find() is not None, timeout=timeout)
        found = find()
        assert found is not None
        return found

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[ChatMessage], bool] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        include_past: bool = True,
    ) -> ChatMessage:
        """Wait for a bot message to ``chat_id`` (matching ``predicate``) and return its snapshot."""
        start = 0 if include_past else len(self._sent)

        def find() -> ChatMessage | None:
            candidates = (m for m in self._sent[start:] if m.chat_id == chat_id)
            return next((m for m in candidates if predicate is None or predicate(m)), None)

        await self.wait_until(lambda: find() is not None, timeout=timeout)
        found = find()
        assert found is not None
        return found

    def _notify(self) -> None:
        # Swap the event so waiters that re-check after waking wait for the *next* change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- fault injection ------------------------------------------------------------------------------

    def inject(
        self,
        method: str | None,
        *,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int | None = None,
        every: int | None = None,
        chat_id: int | None = None,
        delay: float = 0.0,
        after_accepting: bool = False,
    ) -> FaultRule:
        """Make matching calls fail (``method`` None = any method, including getUpdates).

        ``after_accepting``: the call takes effect (an album reaches the chat) and the error is answered
        anyway, as when a gateway answers 502 after Telegram accepted the request.

        ``times``: number of failures; by default 1, or unlimited with ``every``. ``every=3``: every
        third matching call fails. ``retry_after`` adds ``parameters.retry_after`` (a 429 gets 1 by
        default), which aiogram raises as ``TelegramRetryAfter``. ``delay`` seconds pass before the answer.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else _DEFAULT_ERRORS.get(status, f"Error {status}")
            )
        if times is None and every is None:
            times = 1
        rule = FaultRule(
            method, status, description, retry_after, times, every, chat_id, delay, after_accepting=after_accepting
        )
        self._faults.append(rule)
        return rule

    def delay(
        self, method: str | None, seconds: float, *, times: int | None = 1, chat_id: int | None = None
    ) -> FaultRule:
        """Answer matching calls normally but only after ``seconds`` (for client timeout tests)."""
        rule = FaultRule(method, None, None, None, times, None, chat_id, seconds)
        self._faults.append(rule)
        return rule

    def inject_album_failure(
        self, failed_item: int, *, retry_after: int = 8, chat_id: int | None = None, times: int = 1
    ) -> AlbumFailure:
        """Next matching sendMediaGroup delivers items 1..failed_item-1, then answers HTTP 400
        ``failed to send message #k with the error message "Too Many Requests: retry after N"`` without
        ``parameters`` (so aiogram raises TelegramBadRequest, not TelegramRetryAfter) — what Telegram
        does when flood control hits inside an album."""
        if failed_item < 1:
            raise ValueError("album items are numbered from 1")
        failure = AlbumFailure(failed_item, retry_after, chat_id, times)
        self._album_failures.append(failure)
        return failure

    def clear_faults(self) -> None:
        self._faults.clear()
        self._album_failures.clear()

    # -- update delivery ------------------------------------------------------------------------------

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), kind: payload}
        allowed = set(self._allowed_updates) if self._allowed_updates else DEFAULT_ALLOWED_UPDATES
        if kind not in allowed:
            self.dropped_updates.append(update)
        else:
            self._pending.append(update)
            self._notify()
        return copy.deepcopy(update)

    async def _deliver(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = self._enqueue(kind, payload)
        await self.flush_webhook()
        return update

    async def redeliver(self, update: dict[str, Any]) -> None:
        """Post an update again, as Telegram does when the bot died before answering its POST."""
        self._pending.append(copy.deepcopy(update))
        self._notify()
        await self.flush_webhook()

    async def flush_webhook(self) -> None:
        """POST all pending updates to the webhook (no-op in polling mode). Updates the webhook did not
        accept with 2xx stay pending and are retried on the next flush, as Telegram retries."""
        if self._webhook is None:
            return
        async with self._flush_lock:
            webhook, batch = self._webhook, list(self._pending)
            if webhook is None or not batch:
                return
            limit = asyncio.Semaphore(webhook.max_connections)
            accepted = await asyncio.gather(*(self._post_update(webhook, update, limit) for update in batch))
            done = {update["update_id"] for update, ok in zip(batch, accepted, strict=True) if ok}
            self._pending = [update for update in self._pending if update["update_id"] not in done]
            self._notify()

    async def _post_update(self, webhook: _Webhook, update: dict[str, Any], limit: asyncio.Semaphore) -> bool:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        headers = {"X-Telegram-Bot-Api-Secret-Token": webhook.secret_token} if webhook.secret_token else {}
        delivery = WebhookDelivery(copy.deepcopy(update), None, webhook.secret_token)
        async with limit:
            delivery.posted_at = time.monotonic()
            try:
                async with self._client.post(webhook.url, json=update, headers=headers) as response:
                    await response.read()
                    delivery.status = response.status
                    if not 200 <= response.status < 300:
                        delivery.error = f"Wrong response from the webhook: {response.status} {response.reason}"
            except (aiohttp.ClientError, TimeoutError) as error:
                delivery.error = f"Connection failed: {type(error).__name__}"
            delivery.answered_at = time.monotonic()
        if delivery.error is not None:
            self._webhook_error = (int(time.time()), delivery.error)
        self.webhook_deliveries.append(delivery)
        return delivery.error is None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- HTTP plumbing --------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(BotApiError(401, "Unauthorized").to_json(), status=401)
        arrived = time.monotonic()
        try:
            args = await _read_args(request)
        except BotApiError as error:
            return web.json_response(error.to_json(), status=error.status)
        known = self._handlers.get(request.match_info["method"].lower())
        method = known[0] if known else request.match_info["method"]
        call = RecordedCall(method, args.decoded(), dict(args.files), arrived, self._call_chat_id(method, args))
        try:
            if known is None:
                raise BotApiError(404, "Not Found: method not found")
            await self._apply_faults(method, call.chat_id)
            self._apply_flood_control(method, call.chat_id, args)
            call.result = await known[1](args)
            call.response_ok = True
            await self._apply_faults(method, call.chat_id, accepted=True)
            body: dict[str, Any] = {"ok": True, "result": call.result}
        except BotApiError as error:
            call.response_ok = False
            call.status, call.description, body = error.status, error.description, error.to_json()
        self._calls.append(call)
        self._notify()
        return web.json_response(body, status=call.status)

    async def _apply_faults(self, method: str, chat_id: int | None, *, accepted: bool = False) -> None:
        for rule in self._faults:
            if rule.after_accepting == accepted and rule.matches(method, chat_id) and rule.take():
                if rule.delay:
                    await asyncio.sleep(rule.delay)
                if rule.status is not None:
                    raise BotApiError(rule.status, rule.description or "", rule.retry_after)
                return

    def _apply_flood_control(self, method: str, chat_id: int | None, args: _Args) -> None:
        if self.flood_limits is None or chat_id is None or method not in _FLOOD_COUNTED:
            return
        global_limit, global_window, chat_limit, chat_window = self.flood_limits
        media = args.json("media") if method == "sendMediaGroup" else None
        items = len(media) if isinstance(media, list) else 1
        now = time.monotonic()
        chat = self._flood_chats.setdefault(chat_id, collections.deque())
        for sent, window in ((self._flood_global, global_window), (chat, chat_window)):
            while sent and sent[0] <= now - window:
                sent.popleft()
        if len(self._flood_global) + items > global_limit or len(chat) + items > chat_limit:
            self.flood_429s += 1
            # Like Telegram, say how long until the request fits: until enough of the oldest sends in the
            # full window(s) have left it (at least 1 s, whole seconds).
            wait = 0.0
            for sent, limit, window in (
                (self._flood_global, global_limit, global_window),
                (chat, chat_limit, chat_window),
            ):
                excess = len(sent) + items - limit
                if excess > 0:
                    wait = max(wait, sent[min(excess, len(sent)) - 1] + window - now)
            retry_after = max(1, math.ceil(wait))
            raise BotApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        for sent in (self._flood_global, chat):
            sent.extend([now] * items)

    def _call_chat_id(self, method: str, args: _Args) -> int | None:
        if method == "answerCallbackQuery":
            return self._callback_queries.get(args.text("callback_query_id") or "")
        if method == "answerPreCheckoutQuery":
            return self._pre_checkout_queries.get(args.text("pre_checkout_query_id") or "")
        raw = args.text("chat_id") or args.text("user_id")
        return int(raw) if raw is not None and re.fullmatch(r"-?\d+", raw) else None

    async def _handle_download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        stored = self._paths.get(path)
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response(BotApiError(404, "Not Found").to_json(), status=404)
        data = stored.data if stored.data is not None else await asyncio.to_thread(_materialize, stored)
        self.downloads.append(path)
        self._notify()
        return web.Response(body=data, content_type=stored.mime_type or "application/octet-stream")

    # -- chats and messages ---------------------------------------------------------------------------

    def _chat(self, args: _Args, *, sending: bool = True) -> int:
        raw = args.text("chat_id")
        if not raw:
            raise _bad_request("chat_id is empty")
        chat_id = int(raw) if re.fullmatch(r"-?\d+", raw) else None
        if chat_id is None or chat_id not in self._users:
            raise _bad_request("chat not found")
        if sending and chat_id in self._blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _new_user_message(self, user: FakeUser, content: dict[str, Any]) -> dict[str, Any]:
        raw = {
            "message_id": self._next_message_id(user.id),
            "from": user.as_json(),
            "chat": user.chat_json(),
            "date": int(time.time()),
            **content,
        }
        message = ChatMessage(copy.deepcopy(raw), from_bot=False, method=None, sent_at=time.monotonic())
        self._chats[user.id][message.message_id] = message
        return raw

    def _replied_message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The ``reply_to_message`` of a reply to ``message_id``: that message as it stands, without
        its own reply (Telegram does not nest them). A message that does not exist cannot be replied to."""
        message = self._chats.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            raise ValueError(f"message {message_id} is not in chat {chat_id}")
        replied = copy.deepcopy(message.raw)
        replied.pop("reply_to_message", None)
        return replied

    def _reply_parameters(self, chat_id: int, args: _Args) -> dict[str, Any]:
        """``reply_parameters`` of a send, strictly: a ReplyParameters object whose ``message_id`` names a
        message of this chat (or ``allow_sending_without_reply``). Returns what the sent message shows."""
        if "reply_parameters" not in args.values:
            return {}
        parameters = args.json("reply_parameters")
        if not isinstance(parameters, dict) or not isinstance(parameters.get("message_id"), int):
            raise _bad_request("can't parse reply parameters JSON object")
        if parameters.get("chat_id") not in (None, chat_id):
            raise _bad_request("replies to other chats are not supported by the fake")
        message = self._chats[chat_id].get(parameters["message_id"])
        if message is None or message.deleted:
            if parameters.get("allow_sending_without_reply"):
                return {}
            raise _bad_request("message to be replied not found")
        return {"reply_to_message": self._replied_message(chat_id, parameters["message_id"])}

    def _new_bot_message(
        self,
        chat_id: int,
        content: dict[str, Any],
        *,
        method: str,
        data: bytes | None = None,
        invoice_payload: str | None = None,
    ) -> dict[str, Any]:
        raw = {
            "message_id": self._next_message_id(chat_id),
            "from": self.me,
            "chat": self._users[chat_id].chat_json(),
            "date": int(time.time()),
            **{key: value for key, value in content.items() if value not in (None, [], "")},
        }
        message = ChatMessage(raw, True, method, time.monotonic(), data, invoice_payload)
        self._chats[chat_id][message.message_id] = message
        self._sent.append(copy.deepcopy(message))
        self._notify()
        return copy.deepcopy(raw)

    def _bot_message(self, args: _Args, action: str) -> ChatMessage:
        if args.text("inline_message_id"):
            raise _bad_request(f"message to {action} not found")  # the fake has no inline mode
        chat_id = self._chat(args, sending=action == "edit")
        message = self._chats[chat_id].get(args.integer("message_id") or 0)
        if message is None or message.deleted:
            raise _bad_request(f"message to {action} not found")
        if action == "edit" and not message.from_bot:
            raise _bad_request("message can't be edited")
        return message

    def _text(
        self, text: str | None, parse_mode: str | None, entities: Any, *, caption: bool
    ) -> tuple[str, list[dict[str, Any]]]:
        visible, parsed = format_text(text or "", parse_mode, entities)
        if caption:
            if utf16_length(visible) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
            return (visible, parsed) if visible.strip() else ("", [])
        if not visible.strip():
            raise _bad_request("message text is empty")
        if utf16_length(visible) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return visible, parsed

    def _caption(self, args: _Args) -> dict[str, Any]:
        caption, entities = self._text(
            args.text("caption"), args.text("parse_mode"), args.json("caption_entities"), caption=True
        )
        return {"caption": caption, "caption_entities": entities}

    # -- files ----------------------------------------------------------------------------------------

    def _store_file(
        self, data: bytes, kind: str, extension: str, mime_type: str | None, *, size: int | None = None
    ) -> StoredFile:
        return StoredFile(_unique_id(kind.encode() + data), kind, size or len(data), data, extension, mime_type)

    def _register_file_id(self, stored: StoredFile) -> str:
        # A fresh file_id per message, as Telegram gives; all of them lead to the same file.
        prefixes = {"photo": "AgAC", "document": "BQAC", "sticker": "CAAC", "video": "BAAC", "voice": "AwAC"}
        file_id = prefixes.get(stored.kind, "BQAC") + secrets.token_urlsafe(48)
        self._files[file_id] = stored
        return file_id

    def _store_photo(self, data: bytes, size: tuple[int, int]) -> list[dict[str, Any]]:
        """Register a photo as Telegram's PhotoSize list: thumbnails (rendered lazily) + the original."""
        width, height = size
        original = self._store_file(data, "photo", "jpg", "image/jpeg")
        longest = max(width, height)
        sizes: list[dict[str, Any]] = []
        for tag, box in (("s", 90), ("m", 320), ("x", 800)):
            if box >= longest:
                break
            scale = box / longest
            thumbnail = StoredFile(
                _unique_id(f"{tag}:".encode() + data), "photo", 0, None, "jpg", "image/jpeg", original, box
            )
            sizes.append(
                {
                    "file_id": self._register_file_id(thumbnail),
                    "file_unique_id": thumbnail.file_unique_id,
                    "width": max(1, round(width * scale)),
                    "height": max(1, round(height * scale)),
                }
            )
        sizes.append(
            {
                "file_id": self._register_file_id(original),
                "file_unique_id": original.file_unique_id,
                "width": width,
                "height": height,
                "file_size": len(data),
            }
        )
        for photo_size in sizes:
            self._photo_sets[photo_size["file_id"]] = sizes
        return copy.deepcopy(sizes)

    def _upload(self, reference: str | None, args: _Args, field_name: str) -> tuple[bytes, str] | None:
        """The uploaded bytes and file name for a file field, or None when it names a file_id."""
        if reference is None:
            if field_name in args.files:
                return args.files[field_name], args.filenames.get(field_name, field_name)
            raise _bad_request(f'parameter "{field_name}" is required')
        if reference.startswith("attach://"):
            part = reference.removeprefix("attach://")
            if part not in args.files:
                raise _bad_request("wrong file identifier/HTTP URL specified")
            return args.files[part], args.filenames.get(part, part)
        if reference.startswith(("http://", "https://")):
            raise _bad_request("failed to get HTTP URL content")  # the fake has no web to fetch from
        return None

    def _photo(self, reference: str | None, args: _Args, field_name: str) -> tuple[list[dict[str, Any]], bytes]:
        upload = self._upload(reference, args, field_name)
        if upload is None:
            assert reference is not None
            sizes = self._photo_sets.get(reference)
            if sizes is None:
                if reference in self._files:
                    raise _bad_request("type of file mismatch")
                raise _bad_request("wrong file identifier/HTTP URL specified")
            return copy.deepcopy(sizes), _materialize(self._files[sizes[-1]["file_id"]])
        data = upload[0]
        return self._store_photo(data, _check_photo(data)), data

    def _document(self, reference: str | None, args: _Args, field_name: str) -> tuple[dict[str, Any], bytes]:
        upload = self._upload(reference, args, field_name)
        if upload is None:
            assert reference is not None
            stored = self._files.get(reference)
            if stored is None:
                raise _bad_request("wrong file identifier/HTTP URL specified")
            if stored.kind != "document":
                raise _bad_request("type of file mismatch")
            document = next(
                (m.raw["document"] for c in self._chats.values() for m in c.values() if m.file_id == reference),
                {"file_id": reference, "file_unique_id": stored.file_unique_id, "file_size": stored.size},
            )
            return copy.deepcopy(document), _materialize(stored)
        data, file_name = upload
        if not data:
            raise _bad_request("file must be non-empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise BotApiError(413, "Request Entity Too Large")
        mime_type = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = self._store_file(data, "document", _extension(file_name), mime_type)
        document = {
            "file_id": self._register_file_id(stored),
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        return document, data

    # -- Bot API methods ------------------------------------------------------------------------------

    async def _get_me(self, args: _Args) -> dict[str, Any]:
        return dict(self.me)

    async def _get_updates(self, args: _Args) -> list[dict[str, Any]]:
        self._reject_polling_with_webhook()
        offset = args.integer("offset", 0) or 0
        limit = min(max(args.integer("limit", 100) or 100, 1), 100)
        timeout = min(max(args.integer("timeout", 0) or 0, 0), 50)
        allowed = args.json("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(allowed)
        # A new getUpdates terminates the one still waiting, exactly like Telegram (HTTP 409 there).
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        if offset < 0:
            self._pending = self._pending[offset:]
        elif offset > 0:
            self._pending = [update for update in self._pending if update["update_id"] >= offset]

        def ready() -> bool:
            return bool(self._pending) or self._closing or generation != self._poll_generation

        self.waiting_polls += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while not ready():
                        await self._changed.wait()
        finally:
            self.waiting_polls -= 1
        if generation != self._poll_generation:
            raise BotApiError(409, _DEFAULT_ERRORS[409])
        self._reject_polling_with_webhook()
        return [] if self._closing else copy.deepcopy(self._pending[:limit])

    def _reject_polling_with_webhook(self) -> None:
        if self._webhook is not None:
            raise BotApiError(
                409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                "delete the webhook first"
            )  # fmt: skip

    async def _set_webhook(self, args: _Args) -> bool:
        url = args.text("url") or ""
        if not url:
            self._webhook = None
            return True
        if not url.startswith(("http://", "https://")):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret_token = args.text("secret_token")
        if secret_token is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret_token):
            raise _bad_request("secret token contains unallowed characters")  # wording unconfirmed
        max_connections = args.integer("max_connections", 40) or 40
        if not 1 <= max_connections <= 100:
            raise _bad_request("bad webhook: max_connections must be between 1 and 100")  # wording unconfirmed
        allowed = args.json("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(allowed)
        if args.flag("drop_pending_updates"):
            self._pending.clear()
        self._webhook = _Webhook(url, secret_token, max_connections)
        self._webhook_error = None
        self._poll_generation += 1  # a waiting getUpdates ends with the webhook conflict
        self._notify()
        if self._pending:
            self._spawn(self.flush_webhook())  # Telegram pushes the backlog to the new webhook
        return True

    async def _delete_webhook(self, args: _Args) -> bool:
        self._webhook = None
        self._webhook_error = None
        if args.flag("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _get_webhook_info(self, args: _Args) -> dict[str, Any]:
        return self.webhook_info

    async def _set_my_commands(self, args: _Args) -> bool:
        commands = args.json("commands")
        if not isinstance(commands, list):
            raise _bad_request('parameter "commands" is required')
        if len(commands) > 100:
            raise _bad_request("too many commands")  # wording unconfirmed
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")  # wording unconfirmed
        key = (_scope_key(args.json("scope")), args.text("language_code") or "")
        self._commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    async def _get_my_commands(self, args: _Args) -> list[dict[str, Any]]:
        return self.commands(args.json("scope"), args.text("language_code") or "")

    async def _delete_my_commands(self, args: _Args) -> bool:
        self._commands.pop((_scope_key(args.json("scope")), args.text("language_code") or ""), None)
        return True

    async def _send_message(self, args: _Args) -> dict[str, Any]:
        chat_id = self._chat(args)
        text, entities = self._text(args.text("text"), args.text("parse_mode"), args.json("entities"), caption=False)
        markup = _check_markup(args.json("reply_markup"))
        content = {"text": text, "entities": entities, "reply_markup": _visible_markup(markup)}
        content |= self._reply_parameters(chat_id, args)
        return self._new_bot_message(chat_id, content, method="sendMessage")

    async def _send_photo(self, args: _Args) -> dict[str, Any]:
        chat_id = self._chat(args)
        caption = self._caption(args)
        markup = _check_markup(args.json("reply_markup"))
        sizes, data = self._photo(args.text("photo"), args, "photo")
        content = {"photo": sizes, **caption, "reply_markup": _visible_markup(markup)}
        content |= self._reply_parameters(chat_id, args)
        if args.flag("has_spoiler"):
            content["has_media_spoiler"] = True
        return self._new_bot_message(chat_id, content, method="sendPhoto", data=data)

    async def _send_document(self, args: _Args) -> dict[str, Any]:
        chat_id = self._chat(args)
        caption = self._caption(args)
        markup = _check_markup(args.json("reply_markup"))
        document, data = self._document(args.text("document"), args, "document")
        content = {"document": document, **caption, "reply_markup": _visible_markup(markup)}
        content |= self._reply_parameters(chat_id, args)
        return self._new_bot_message(chat_id, content, method="sendDocument", data=data)

    async def _send_media_group(self, args: _Args) -> list[dict[str, Any]]:
        media = args.json("media")
        if "media" not in args.values:
            raise _bad_request('parameter "media" is required')
        if not isinstance(media, list) or not media:
            raise _bad_request("there are no messages to send")
        if len(media) > 10:
            raise _bad_request("too many messages to send as an album")
        if len(media) < 2 and self.strict_album_minimum:
            # The Bot API documents 2-10 items; the wording is the fake's own (strictness option).
            raise _bad_request("too few messages to send as an album")
        kinds = [item.get("type") if isinstance(item, dict) else None for item in media]
        for kind in kinds:
            if kind not in ("photo", "video", "document", "audio"):
                raise _bad_request(f"can't parse InputMedia: type \"{kind}\" can't be used in sendMediaGroup")
        for exclusive in ("document", "audio"):
            if exclusive in kinds and set(kinds) != {exclusive}:
                raise _bad_request(f"{exclusive} can't be mixed with other media types")
        chat_id = self._chat(args)
        reply = self._reply_parameters(chat_id, args)
        prepared: list[tuple[dict[str, Any], bytes | None]] = []
        for position, item in enumerate(media, start=1):
            caption, entities = self._text(
                item.get("caption"), item.get("parse_mode"), item.get("caption_entities"), caption=True
            )
            content: dict[str, Any] = {"caption": caption, "caption_entities": entities, **reply}
            try:
                data = self._album_item(item, args, content)
            except BotApiError as error:
                if error.description.startswith("Bad Request: PHOTO") or "IMAGE" in error.description:
                    reason = error.description.removeprefix("Bad Request: ")
                    raise _bad_request(
                        f'failed to send message #{position} with the error message "{reason}"'
                    ) from None
                raise
            prepared.append((content, data))
        media_group_id = str(secrets.randbelow(9 * 10**17) + 10**17) if len(prepared) > 1 else None
        failure = self._take_album_failure(chat_id, len(prepared))
        delivered = prepared if failure is None else prepared[: failure.failed_item - 1]
        messages = [
            self._new_bot_message(
                chat_id, content | {"media_group_id": media_group_id}, method="sendMediaGroup", data=data
            )
            for content, data in delivered
        ]
        if failure is not None:
            raise _bad_request(
                f"failed to send message #{failure.failed_item} with the error message "
                f'"Too Many Requests: retry after {failure.retry_after}"'
            )
        return messages

    def _album_item(self, item: dict[str, Any], args: _Args, content: dict[str, Any]) -> bytes | None:
        reference = item.get("media")
        if not isinstance(reference, str) or not reference:
            raise _bad_request("can't parse InputMedia: media not found")
        if item["type"] == "photo":
            content["photo"], data = self._photo(reference, args, "media")
            if item.get("has_spoiler"):
                content["has_media_spoiler"] = True
            return data
        if item["type"] == "document":
            content["document"], data = self._document(reference, args, "media")
            return data
        upload = self._upload(reference, args, "media")
        if upload is None:
            stored = self._files.get(reference)
            if stored is None:
                raise _bad_request("wrong file identifier/HTTP URL specified")
            data = _materialize(stored)
        else:
            data = upload[0]
            stored = self._store_file(data, item["type"], "mp4" if item["type"] == "video" else "mp3", None)
        file_json = {"file_id": self._register_file_id(stored), "file_unique_id": stored.file_unique_id}
        if item["type"] == "video":
            file_json |= {"width": item.get("width", 720), "height": item.get("height", 1280), "duration": 0}
        else:
            file_json |= {"duration": 0}
        content[item["type"]] = file_json
        return data

    def _take_album_failure(self, chat_id: int, items: int) -> AlbumFailure | None:
        for failure in self._album_failures:
            usable = failure.fired < failure.times and failure.failed_item <= items
            if usable and failure.chat_id in (None, chat_id):
                failure.fired += 1
                return failure
        return None

    async def _edit_message_text(self, args: _Args) -> dict[str, Any]:
        message = self._bot_message(args, "edit")
        if "text" not in message.raw:
            raise _bad_request("there is no text in the message to edit")
        text, entities = self._text(args.text("text"), args.text("parse_mode"), args.json("entities"), caption=False)
        return self._apply_edit(message, {"text": text, "entities": entities}, args)

    async def _edit_message_caption(self, args: _Args) -> dict[str, Any]:
        message = self._bot_message(args, "edit")
        if not any(kind in message.raw for kind in ("photo", "document", "video", "audio")):
            raise _bad_request("there is no caption in the message to edit")
        return self._apply_edit(message, self._caption(args), args)

    async def _edit_message_reply_markup(self, args: _Args) -> dict[str, Any]:
        message = self._bot_message(args, "edit")
        return self._apply_edit(message, {}, args)

    def _apply_edit(self, message: ChatMessage, changes: dict[str, Any], args: _Args) -> dict[str, Any]:
        markup = _check_markup(args.json("reply_markup"))
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad_request("inline keyboard expected")
        # Like Telegram: an edit without reply_markup removes the inline keyboard.
        changes = changes | {"reply_markup": _visible_markup(markup)}
        fields = ("text", "entities", "caption", "caption_entities", "reply_markup")
        before = {name: message.raw.get(name) or None for name in fields}
        after = before | {name: value or None for name, value in changes.items()}
        if before == after:
            raise _bad_request(NOT_MODIFIED)
        for name, value in after.items():
            if value is None:
                message.raw.pop(name, None)
            else:
                message.raw[name] = value
        message.raw["edit_date"] = int(time.time())
        message.edits += 1
        self._notify()
        return copy.deepcopy(message.raw)

    async def _delete_message(self, args: _Args) -> bool:
        self._bot_message(args, "delete").deleted = True
        self._notify()
        return True

    async def _send_chat_action(self, args: _Args) -> bool:
        self._chat(args)
        if args.text("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    async def _answer_callback_query(self, args: _Args) -> bool:
        query_id = args.required("callback_query_id")
        if self._callback_queries.pop(query_id, None) is None:
            raise _bad_request(QUERY_TOO_OLD)
        self.callback_answers[query_id] = args.decoded()
        return True

    async def _get_file(self, args: _Args) -> dict[str, Any]:
        file_id = args.required("file_id")
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad_request("invalid file_id")
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        if stored.path is None:  # Telegram assigns the download path on the first getFile
            folders = {"photo": "photos", "document": "documents", "video": "videos", "sticker": "stickers"}
            folder = folders.get(stored.kind, stored.kind)
            stored.path = f"{folder}/file_{next(self._file_numbers)}.{stored.extension}"
            self._paths[stored.path] = stored
        size = stored.size or len(_materialize(stored))
        return {
            "file_id": file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": size,
            "file_path": stored.path,
        }

    async def _send_invoice(self, args: _Args) -> dict[str, Any]:
        chat_id = self._chat(args)
        title, description = args.required("title"), args.required("description")
        payload, currency = args.required("payload"), args.required("currency")
        prices = args.json("prices")
        if not isinstance(prices, list) or not prices:
            raise _bad_request('parameter "prices" is required')
        if not 1 <= len(payload.encode()) <= 128:
            raise _bad_request("INVOICE_PAYLOAD_INVALID")  # wording unconfirmed
        provider_token = args.text("provider_token") or ""
        # The error codes below are realistic stand-ins; Telegram's exact descriptions are not documented.
        if currency == "XTR":
            if provider_token:
                raise _bad_request("PAYMENT_PROVIDER_INVALID")
            if len(prices) != 1:
                raise _bad_request("STARS_INVOICE_INVALID")
        elif not provider_token:
            raise _bad_request("PAYMENT_PROVIDER_INVALID")
        amounts = [price.get("amount") for price in prices if isinstance(price, dict)]
        if len(amounts) != len(prices) or not all(isinstance(a, int) and a > 0 for a in amounts):
            raise _bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
        markup = _check_markup(args.json("reply_markup"))
        invoice = {
            "title": title,
            "description": description,
            "start_parameter": args.text("start_parameter") or "",
            "currency": currency,
            "total_amount": sum(amounts),
        }
        content = {"invoice": invoice, "reply_markup": _visible_markup(markup)}
        return self._new_bot_message(chat_id, content, method="sendInvoice", invoice_payload=payload)

    async def _answer_pre_checkout_query(self, args: _Args) -> bool:
        query_id = args.required("pre_checkout_query_id")
        if "ok" not in args.values:
            raise _bad_request('parameter "ok" is required')
        if self._pre_checkout_queries.pop(query_id, None) is None:
            raise _bad_request(QUERY_TOO_OLD)
        self.pre_checkout_answers[query_id] = args.decoded()
        return True

    async def _refund_star_payment(self, args: _Args) -> bool:
        user_id = args.integer("user_id")
        charge = self._charges.get(args.required("telegram_payment_charge_id"))
        if charge is None or charge.user_id != user_id or charge.currency != "XTR":
            raise _bad_request("CHARGE_NOT_FOUND")
        if charge.refunded:
            raise _bad_request("CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        user = self._users.get(charge.user_id)
        # A refund is an outgoing transaction with the original payment's id (transaction_type of a
        # refund: "invoice_payment" assumed, unconfirmed).
        self._star_transactions.append(
            {
                "id": args.required("telegram_payment_charge_id"),
                "amount": charge.total_amount,
                "date": int(time.time()),
                "receiver": {
                    "type": "user",
                    "transaction_type": "invoice_payment",
                    "user": user.as_json()
                    if user is not None
                    else {"id": charge.user_id, "is_bot": False, "first_name": "?"},
                    "invoice_payload": charge.invoice_payload,
                },
            }
        )
        return True

    async def _get_star_transactions(self, args: _Args) -> dict[str, Any]:
        offset = args.integer("offset", 0) or 0
        limit = args.integer("limit", 100) or 100
        if offset < 0:
            raise _bad_request("OFFSET_INVALID")
        if not 1 <= limit <= 100:
            raise _bad_request("LIMIT_INVALID")
        return {"transactions": copy.deepcopy(self._star_transactions[offset : offset + limit])}

    @property
    def star_transactions(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._star_transactions)

    def is_refunded(self, telegram_payment_charge_id: str) -> bool:
        """Whether the bot refunded this Stars charge with refundStarPayment."""
        charge = self._charges.get(telegram_payment_charge_id)
        return charge is not None and charge.refunded


# --------------------------------------------------------------------------------------------------------
# Helpers


async def _read_args(request: web.Request) -> _Args:
    """Read fields like Telegram does: query string, then JSON, form or multipart body."""
    values: dict[str, str] = dict(request.query)
    files: dict[str, bytes] = {}
    filenames: dict[str, str] = {}
    try:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise _bad_request("JSON object expected")  # wording unconfirmed
            values |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        elif request.can_read_body:
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files[name] = value.file.read()
                    filenames[name] = value.filename
                elif isinstance(value, str):
                    values[name] = value
                else:
                    values[name] = bytes(value).decode()
    except web.HTTPRequestEntityTooLarge:
        raise BotApiError(413, "Request Entity Too Large") from None
    except ValueError:  # also bad JSON and undecodable text
        raise _bad_request("can't parse request body") from None  # wording unconfirmed
    return _Args(values, files, filenames)


def _check_photo(data: bytes) -> tuple[int, int]:
    if not data:
        raise _bad_request("file must be non-empty")
    if len(data) > MAX_PHOTO_UPLOAD_BYTES:
        # tdlib's wording (check_full_local_location); some docs summarise it as PHOTO_INVALID_DIMENSIONS.
        raise _bad_request(
            f"file of size {len(data)} bytes is too big for a photo; the maximum size is {MAX_PHOTO_UPLOAD_BYTES} bytes"
        )
    size = _image_size(data)
    if size is None:
        raise _bad_request("IMAGE_PROCESS_FAILED")
    width, height = size
    if width + height > MAX_PHOTO_SIDES_SUM or max(width, height) > MAX_PHOTO_RATIO * min(width, height):
        raise _bad_request("PHOTO_INVALID_DIMENSIONS")
    return size


def _check_markup(markup: Any) -> dict[str, Any] | None:
    """Validate reply_markup as Telegram does; callback_data must be 1-64 bytes."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("object expected as reply markup")
    if "inline_keyboard" not in markup:
        return markup  # reply keyboards, removal and force_reply are accepted as they are
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not button.get("text"):
            raise _bad_request('can\'t find field "text"')
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
        elif set(button) <= {"text", "style", "icon_custom_emoji_id"}:
            raise _bad_request("text buttons are unallowed in the inline keyboard")
    return markup


def _visible_markup(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    # A Message echoes only inline keyboards; an empty one means "no keyboard".
    if markup is None or not markup.get("inline_keyboard") or not any(markup["inline_keyboard"]):
        return None
    return {"inline_keyboard": markup["inline_keyboard"]}


def _scope_key(scope: dict[str, Any] | None) -> str:
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


def _materialize(stored: StoredFile) -> bytes:
    if stored.data is None:
        assert stored.source is not None and stored.box is not None
        stored.data = _render_thumbnail(_materialize(stored.source), stored.box)
        stored.size = len(stored.data)
    return stored.data


async def _close_bot_session(bot: Bot) -> None:
    # AiohttpSession.close() sleeps 250 ms for TLS shutdown; plain HTTP to 127.0.0.1 needs none, and the
    # tests stay fast closing the underlying aiohttp session directly.
    client = getattr(bot.session, "_session", None)
    if isinstance(client, aiohttp.ClientSession):
        await client.close()
    else:
        await bot.session.close()
