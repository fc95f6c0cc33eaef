"""Long Telegram HTML texts cut only where Telegram can still parse every piece.

A cut at a fixed length can land inside ``&amp;`` or ``<a href="…">``, or leave a ``<b>`` open,
and Telegram then refuses the whole message ("can't parse entities"). Here texts are cut on line
boundaries; a tag open across a cut is closed at the end of one piece and reopened at the start of
the next; a single line longer than a piece is cut between characters, never inside a tag or an
entity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, Message

# Telegram's limit for a message text, counted after entity parsing; measuring the raw HTML is
# stricter, so a piece that fits here always fits there.
MESSAGE_LIMIT = 4096
MAX_PIECES = 4
_TOKEN = re.compile(r"<[^<>]*>|&#?[A-Za-z0-9]+;|[^<&]+|[<&]", re.DOTALL)
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9-]*)")


def _tokens(text: str) -> list[str]:
    """Tags, entities, then text cut into single characters so a long line can be cut anywhere."""
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if token.startswith(("<", "&")) and len(token) > 1:
            tokens.append(token)
        else:
            tokens.extend(token)
    return tokens


def _closing(open_tags: Sequence[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(open_tags))


def _reopening(open_tags: Sequence[tuple[str, str]]) -> str:
    return "".join(tag for _, tag in open_tags)


def split_html(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most ``limit`` characters, each valid on its own; lines are kept whole when they fit."""
    pieces: list[str] = []
    current = ""
    open_tags: list[tuple[str, str]] = []  # (name, the opening tag as written)

    def room(extra: str) -> bool:
        return len(current) + len(extra) + len(_closing(open_tags)) <= limit

    def flush() -> None:
        nonlocal current
        if current.strip():
            pieces.append(current + _closing(open_tags))
        current = _reopening(open_tags)

    for line in text.split("\n"):
        separator = "\n" if current and current != _reopening(open_tags) else ""
        if room(separator + line) and not _changes_tags(line):
            current += separator + line
            continue
        if not room(separator + line):
            flush()
            separator = ""
        for index, token in enumerate(_tokens(line)):
            addition = (separator if index == 0 else "") + token
            tag = _TAG.match(token) if token.startswith("<") else None
            # Closing tags are accounted for in room(); an opening tag needs its own closer too.
            closer = f"</{tag.group(2).lower()}>" if tag and not tag.group(1) else ""
            if not room(addition + closer):
                flush()
                addition = token
            current += addition
            if tag:
                name = tag.group(2).lower()
                if tag.group(1):
                    _close(open_tags, name)
                else:
                    open_tags.append((name, token))
    if current.strip() and current != _reopening(open_tags):
        pieces.append(current + _closing(open_tags))
    return pieces or [""]


def _changes_tags(line: str) -> bool:
    """Whether a line leaves a tag open or closes one opened earlier (then it must be tracked)."""
    depth: dict[str, int] = {}
    for match in _TAG.finditer(line):
        name = match.group(2).lower()
        depth[name] = depth.get(name, 0) + (-1 if match.group(1) else 1)
    return any(depth.values())


def _close(open_tags: list[tuple[str, str]], name: str) -> None:
    for index in range(len(open_tags) - 1, -1, -1):
        if open_tags[index][0] == name:
            del open_tags[index]
            return


def fit_lines(lines: Iterable[str], limit: int, more: str = "… +{count}") -> str:
    """Whole lines joined by newlines, as many as fit in ``limit``; the rest counted in ``more``."""
    items = list(lines)
    kept: list[str] = []
    length = 0
    for index, line in enumerate(items):
        left = len(items) - index
        # Room for this line, and for the note about the rest should the next one not fit.
        needed = len(line) + (0 if left == 1 else 1 + len(more.format(count=left - 1)))
        if length + needed > limit:
            kept.append(more.format(count=left))
            break
        kept.append(line)
        length += len(line) + 1
    return "\n".join(kept)


async def answer_html(message: Message, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> None:
    """Answer with ``text`` in as many valid pieces as it needs (the keyboard goes with the last);
    beyond a few pieces the chat would scroll for ever: the text goes as an HTML file instead."""
    pieces = split_html(text)
    if len(pieces) > MAX_PIECES:
        document = BufferedInputFile(text.encode("utf-8"), filename="pinglass-admin.html")
        await message.answer_document(document, reply_markup=reply_markup)
        return
    for index, piece in enumerate(pieces):
        await message.answer(piece, reply_markup=reply_markup if index == len(pieces) - 1 else None)
