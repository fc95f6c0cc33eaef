"""All texts of the bot, merged from one module per conversation area."""

from __future__ import annotations

from bot.locales.messages import CORE_MESSAGES
from bot.locales.messages_admin import ADMIN_MESSAGES
from bot.locales.messages_engine import ENGINE_MESSAGES
from bot.locales.messages_examples import EXAMPLE_MESSAGES
from bot.locales.messages_faces import FACE_MESSAGES
from bot.locales.messages_favourites import FAVOURITE_MESSAGES
from bot.locales.messages_gifts import GIFT_MESSAGES, GIFT_PLURAL_MESSAGES
from bot.locales.messages_payment import PAYMENT_MESSAGES
from bot.locales.messages_plural import PLURAL_MESSAGES
from bot.locales.messages_redo import REDO_MESSAGES
from bot.locales.messages_reminders import REMINDER_MESSAGES


def all_messages() -> dict[str, tuple[str, str]]:
    merged: dict[str, tuple[str, str]] = {}
    for part in (
        CORE_MESSAGES,
        PAYMENT_MESSAGES,
        ENGINE_MESSAGES,
        ADMIN_MESSAGES,
        FACE_MESSAGES,
        FAVOURITE_MESSAGES,
        REMINDER_MESSAGES,
        EXAMPLE_MESSAGES,
        REDO_MESSAGES,
        GIFT_MESSAGES,
    ):
        duplicated = merged.keys() & part.keys()
        if duplicated:
            raise ValueError(f"text keys defined twice: {sorted(duplicated)}")
        merged.update(part)
    return merged


def plural_messages() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Texts with a count: key → (Russian forms, English forms), in each language's plural order."""
    merged: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for part in (PLURAL_MESSAGES, GIFT_PLURAL_MESSAGES):
        duplicated = (all_messages().keys() | merged.keys()) & part.keys()
        if duplicated:
            raise ValueError(f"text keys defined twice: {sorted(duplicated)}")
        merged.update(part)
    return merged
