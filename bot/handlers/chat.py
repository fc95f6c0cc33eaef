"""What a button's message can be: Telegram sends an InaccessibleMessage for one older than ~48 h.

Both can be answered with a new message (``answer``); only a ``Message`` can be edited. Handlers
take a ``ChatTarget`` wherever they only reply, so an old button still works.
"""

from __future__ import annotations

from aiogram.types import InaccessibleMessage, Message

ChatTarget = Message | InaccessibleMessage
