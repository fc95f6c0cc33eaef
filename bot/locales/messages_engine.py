"""Texts of generation and delivery: key → (Russian, English)."""

from __future__ import annotations

ENGINE_MESSAGES: dict[str, tuple[str, str]] = {
    "progress.raw": ("{text}", "{text}"),
    "progress.running": (
        "🎨 Создаём ваши портреты: {done} / {total} ✓\n{bar}{eta}",
        "🎨 Generating your portraits: {done} / {total} ✓\n{bar}{eta}",
    ),
    "progress.eta": ("\nОсталось примерно {minutes} мин.", "\nAbout {minutes} min left."),
    "progress.done": (
        "✅ Готово: доставлено {delivered} из {total}. Возвращено кредитов: {credited}.",
        "✅ Done: {delivered} of {total} delivered. Credits returned: {credited}.",
    ),
    "delivery.caption": ("Ваша фотосессия — стиль «{style}»", "Your photo session — {style} style"),
    "delivery.finished": (
        "🎉 Все {delivered} портретов готовы! Спасибо, что выбрали PinGlass. /start — новая фотосессия.",
        "🎉 All {delivered} portraits are here! Thank you for choosing PinGlass. /start for a new session.",
    ),
    "delivery.finished_partial": (
        "Готово {delivered} портретов. {credited} не получились — кредиты за них вернулись на баланс.",
        "{delivered} portraits are ready. {credited} could not be made — their credits are back on your balance.",
    ),
    "job.failed": (
        "😔 К сожалению, не получилось сделать портреты: сервис генерации не справился. "
        "{photos} кредитов вернулись на ваш баланс — можно попробовать ещё раз через /start.",
        "😔 Sorry, we could not make your portraits: the generation service failed. "
        "{photos} credits are back on your balance — you can try again with /start.",
    ),
}
