"""Process entry: load settings (one clear line when they are wrong), then run until a signal."""

from __future__ import annotations

import asyncio
import sys

from bot.settings import SettingsError, load_settings


def main(*, with_bot: bool) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"pinglass: {exc}", file=sys.stderr)
        return 2
    # Imported once the settings hold: the application pulls in aiogram and the rest (about 5 s of
    # CPU on a small machine), and a wrong setting should get its one line at once.
    from bot.app import Application, configure_logging
    from bot.startup import StartRefused

    configure_logging(settings)
    application = Application(settings, with_bot=with_bot)
    try:
        return asyncio.run(application.run_until_signalled())
    except StartRefused as refusal:
        print(f"pinglass: {refusal}", file=sys.stderr)
        return refusal.exit_code
    except KeyboardInterrupt:
        return 0
