"""Every text exists in Russian and English, with the same placeholders; the .po/.mo are current."""

from __future__ import annotations

import re
import string
from pathlib import Path

from bot.locales.catalogue import all_messages
from bot.locales.compile import LANGUAGES, build_catalog

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
    known = all_messages()
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


def test_compiled_catalogues_are_current() -> None:
    from io import BytesIO

    from babel.messages.mofile import write_mo

    for language in LANGUAGES:
        expected = BytesIO()
        write_mo(expected, build_catalog(language), use_fuzzy=False)
        actual = (LOCALES / language / "LC_MESSAGES" / "messages.mo").read_bytes()
        assert actual == expected.getvalue(), f"run `make locales` ({language})"
