"""Write the gettext catalogues from bot/locales/messages*.py: `python -m bot.locales.compile`.

Produces <lang>/LC_MESSAGES/messages.po (for translators and review) and the compiled .mo that
aiogram's I18n loads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po

from bot.locales.catalogue import all_messages, plural_messages

LOCALES_DIR = Path(__file__).resolve().parent
LANGUAGES = ("ru", "en")


def build_catalog(language: str) -> Catalog:
    column = LANGUAGES.index(language)
    # Fixed dates keep the output byte-for-byte reproducible (a test compares it with the files).
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    catalog = Catalog(
        locale=language,
        project="PinGlass",
        version="1",
        fuzzy=False,
        creation_date=fixed,
        revision_date=fixed,
        copyright_holder="PinGlass",
    )
    for key, texts in all_messages().items():
        catalog.add(key, texts[column])
    for key, forms in plural_messages().items():
        # msgid and msgid_plural are both the key: the code asks ngettext(key, key, count).
        catalog.add((key, key), forms[column])
    return catalog


def compile_catalogues(locales_dir: Path = LOCALES_DIR) -> list[Path]:
    written: list[Path] = []
    for language in LANGUAGES:
        folder = locales_dir / language / "LC_MESSAGES"
        folder.mkdir(parents=True, exist_ok=True)
        catalog = build_catalog(language)
        with (folder / "messages.po").open("wb") as po_file:
            write_po(po_file, catalog, omit_header=False, width=0)
        with (folder / "messages.mo").open("wb") as mo_file:
            write_mo(mo_file, catalog, use_fuzzy=False)
        written += [folder / "messages.po", folder / "messages.mo"]
    return written


if __name__ == "__main__":
    for path in compile_catalogues():
        print(path)
