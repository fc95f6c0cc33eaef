"""Texts of generation and delivery: key → (Russian, English)."""

from __future__ import annotations

ENGINE_MESSAGES: dict[str, tuple[str, str]] = {
    "job.failed": (
        "😔 К сожалению, не получилось сделать портреты: сервис генерации не справился. "
        "{photos} кредитов вернулись на ваш баланс — можно попробовать ещё раз через /start.",
        "😔 Sorry, we could not make your portraits: the generation service failed. "
        "{photos} credits are back on your balance — you can try again with /start.",
    ),
}
