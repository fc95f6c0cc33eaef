"""Every text exists in Russian and English, with the same placeholders; the .po/.mo are current."""

from __future__ import annotations

import gettext
import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.locales.catalogue import all_messages
from bot.locales.compile import LANGUAGES

ROOT = Path(__file__).resolve().parents[3]
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


def _russian_form(count: int) -> int:
    """CLDR's Russian cardinal rule: one (1, 21, 101…), few (2–4, 22–24…), many (the rest)."""
    if count % 10 == 1 and count % 100 != 11:
        return 0
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return 1
    return 2


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_counted_text_meets_its_noun_in_the_right_form(language: str) -> None:
    from aiogram.utils.i18n import I18n

    from bot.i18n import build_i18n, counted
    from bot.locales.catalogue import plural_messages

    i18n: I18n = build_i18n()
    with i18n.context(), i18n.use_locale(language):
        for key, (russian, english) in plural_messages().items():
            for count in (1, 2, 5, 11, 21, 22, 25):
                values = {name: "·" for name in _placeholders(english[1]) if name != "count"}
                rendered = counted(key, count, **values)
                if language == "ru":
                    expected = russian[_russian_form(count)]
                else:
                    expected = english[0 if count == 1 else 1]
                assert rendered == expected.format(count=count, **values), (key, language, count)
    # The forms themselves, spot-checked where a wrong one reads worst.
    with i18n.context(), i18n.use_locale("ru"):
        assert "23 кредита" in counted("button.use_credits", 23)
        assert "11 кредитов" in counted("button.use_credits", 11)
        assert "21 кредит " in counted("button.use_credits", 21) + " "
        assert "23 портрета." in counted("delivery.finished", 23)
        assert "Готово 5 портретов." in counted("delivery.finished_partial", 5, credited=2)
    with i18n.context(), i18n.use_locale("en"):
        assert counted("button.use_credits", 1).endswith("1 credit")
        assert counted("pack.trial_label", 1) == "🎁 Trial: 1 photo for free"
        assert "23 portraits are here" in counted("delivery.finished", 23)
