"""Process entry: load settings (one clear line when they are wrong), then run until a signal."""

from __future__ import annotations

import asyncio
import sys

from bot.app import Application, configure_logging
from bot.settings import SettingsError, load_settings
from bot.startup import StartRefused


def main(*, with_bot: bool) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"pinglass: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    application = Application(settings, with_bot=with_bot)
    try:
        return asyncio.run(application.run_until_signalled())
    except StartRefused as refusal:
        print(f"pinglass: {refusal}", file=sys.stderr)
        return refusal.exit_code
    except KeyboardInterrupt:
        return 0
