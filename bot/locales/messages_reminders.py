"""Texts of /settings: key → (Russian, English). The reminders themselves count something, so they
live with the plural forms (bot/locales/messages_plural.py, keys ``reminder.*``)."""

from __future__ import annotations

REMINDER_MESSAGES: dict[str, tuple[str, str]] = {
    "settings.text": (
        "<b>Настройки</b>\n\n"
        "Напоминания — не чаще раза по каждому поводу и никогда ночью: если заказ ждёт оплаты, "
        "если на балансе остались кредиты, если скоро будут удалены оригиналы портретов.",
        "<b>Settings</b>\n\n"
        "Reminders — at most once per occasion and never at night: when an order waits for payment, "
        "when credits are left on your balance, when your portraits' originals are about to be deleted.",
    ),
    "button.reminders_on": ("🔔 Напоминания: включены", "🔔 Reminders: on"),
    "button.reminders_off": ("🔕 Напоминания: выключены", "🔕 Reminders: off"),
    "settings.reminders_on": ("Напоминания включены.", "Reminders are on."),
    "settings.reminders_off": ("Напоминания выключены.", "Reminders are off."),
    # /stats: reminders that reached the chat, per cause (unpaid_order, idle_credits, originals_expiring).
    "admin.stats.reminders": ("Напоминания отправлены: {reminders}", "Reminders sent: {reminders}"),
}
