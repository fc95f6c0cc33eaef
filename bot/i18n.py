"""Languages: gettext catalogues through aiogram's i18n tools; Russian first, English too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject
from aiogram.utils.i18n import I18n, I18nMiddleware, ngettext

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
SUPPORTED_LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"
# Telegram clients in these languages usually read Russian better than English.
_RUSSIAN_READERS = frozenset({"ru", "uk", "be", "kk", "uz", "ky", "tg", "hy", "az", "ka", "tk", "mo"})


def pick_language(language_code: str | None) -> str:
    if not language_code:
        return DEFAULT_LANGUAGE
    base = language_code.split("-")[0].lower()
    if base in SUPPORTED_LANGUAGES:
        return base
    return "ru" if base in _RUSSIAN_READERS else "en"


def build_i18n() -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=DEFAULT_LANGUAGE, domain="messages")


class UserLanguageMiddleware(I18nMiddleware):
    """The language stored with the user (set at registration) decides the catalogue."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user = data.get("user")
        if user is not None and user.language in SUPPORTED_LANGUAGES:
            return str(user.language)
        from_user = getattr(event, "from_user", None)
        return pick_language(getattr(from_user, "language_code", None))


def counted(key: str, count: int, **values: Any) -> str:
    """A text of bot/locales/messages_plural.py in the active language, its form chosen by ``count``."""
    return ngettext(key, key, count).format(count=count, **values)
