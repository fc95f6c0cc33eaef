"""`python -m bot`: web app, Telegram bot and scheduler in one process."""

import sys

from bot.cli import main

sys.exit(main(with_bot=True))
