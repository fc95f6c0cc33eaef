"""Every text exists in Russian and English, with the same placeholders; the .po/.mo are current."""

from __future__ import annotations

import gettext
import re
import string
from pathlib import Path

from babel.messages.pofile import read_po

from bot.locales.catalogue import all_messages
from bot.locales.compile import LANGUAGES

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "bot" / "locales"
LITERAL_KEY = re.compile(r"""(?<![A-Za-z0-9_])_\(\s*["']([a-z0-9_.]+)["']\s*\)""")
NOTIFIER_KEY = re.compile(r"""["']((?:payment|job|delivery|progress|photo|upload|order)\.[a-z0-9_.]+)["']""")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_are_complete_and_agree_on_placeholders() -> None:
    for key, (russian, english) in all_messages().items():
        assert russian.strip() and english.strip(), key
        assert _placeholders(russian) == _placeholders(english), key


def test_every_key_used_in_code_exists() -> None:
    from bot.locales.catalogue import plural_messages

    known = all_messages().keys() | plural_messages().keys()
    used: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        if "locales" in path.parts:
            continue
        used |= set(LITERAL_KEY.findall(path.read_text()))
    for path in [*(ROOT / "scheduler").rglob("*.py"), ROOT / "bot" / "notifier.py"]:
        used |= {key for key in NOTIFIER_KEY.findall(path.read_text()) if key.count(".") >= 1}
    missing = sorted(key for key in used if key not in known and not key.endswith("."))
    assert missing == []


def test_dynamic_key_families_are_complete() -> None:
    from storage.images import RejectReason
    from studio.states import OrderStatus

    known = all_messages()
    for reason in RejectReason:
        assert f"photo.rejected.{reason.value}" in known
    for status in OrderStatus:
        assert f"order.status.{status.value}" in known
    for kind in ("sticker", "video", "voice", "text"):
        assert f"upload.wrong.{kind}" in known


def _compiled(language: str) -> dict[str, str]:
    """The messages of the committed .mo as gettext reads them (what aiogram's I18n loads)."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.mo").open("rb") as mo_file:
        translations = gettext.GNUTranslations(mo_file)
    # The "" key is the header; plural texts are keyed (msgid, form index) and checked on their own.
    return {key: text for key, text in translations._catalog.items() if key and isinstance(key, str)}


def _reviewed(language: str) -> dict[str, str]:
    """The messages of the committed .po, which translators review."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    return {str(message.id): str(message.string) for message in catalog if message.id and not message.pluralizable}


def test_compiled_catalogues_hold_every_text_of_the_tables() -> None:
    """The committed catalogues say what the Python tables say: same keys, same texts, same
    placeholders, in both languages. Compared message by message, not byte by byte, so a new
    Babel release that formats headers differently changes nothing here."""
    tables = all_messages()
    for column, language in enumerate(LANGUAGES):
        for committed in (_compiled(language), _reviewed(language)):
            hint = f"run `make locales` ({language})"
            assert sorted(committed) == sorted(tables), hint
            for key, texts in tables.items():
                assert committed[key] == texts[column], f"{key}: {hint}"
                assert _placeholders(committed[key]) == _placeholders(texts[1 - column]), key


def test_plural_texts_have_every_form_of_their_language_and_agree_on_placeholders() -> None:
    from bot.locales.catalogue import plural_messages

    for key, (russian, english) in plural_messages().items():
        assert len(russian) == 3 and len(english) == 2, key  # ru: one / few / many; en: one / other
        placeholders = _placeholders(english[1])
        assert "count" in placeholders, key
        assert all(_placeholders(form) == placeholders for form in (*russian, *english)), key
        for column, language in enumerate(LANGUAGES):
            with (LOCALES / language / "LC_MESSAGES" / "messages.mo").open("rb") as mo_file:
                translations = gettext.GNUTranslations(mo_file)
            forms = (russian, english)[column]
            for index, form in enumerate(forms):
                assert translations._catalog[(key, index)] == form, f"{key}: run `make locales` ({language})"
            chosen = {1: forms[0], 3: forms[1 % len(forms)], 5: forms[-1], 21: forms[0] if column == 0 else forms[1]}
            for count, form in chosen.items():
                assert translations.ngettext(key, key, count) == form, (key, language, count)
