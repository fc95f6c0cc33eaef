"""`python -m scheduler`: the scheduler and the web app without the Telegram bot (scale-out)."""

import sys

from bot.cli import main

sys.exit(main(with_bot=False))
