"""Texts that count something: key → (Russian forms one/few/many, English forms one/other).

The number that picks the form is always the placeholder ``{count}``; code asks for these through
``ngettext(key, key, count)`` (``bot.i18n.counted``), the notifier by the key alone.
"""

from __future__ import annotations

PLURAL_MESSAGES: dict[str, tuple[tuple[str, str, str], tuple[str, str]]] = {
    "faces.set.removed": (
        (
            "⚠️ Похоже, на {count} фото (№ {slots}) другой человек, не тот, что на остальных, — я убрал его из набора.",
            "⚠️ Похоже, на {count} фото (№ {slots}) другой человек, не тот, что на остальных, — я убрал их из набора.",
            "⚠️ Похоже, на {count} фото (№ {slots}) другой человек, не тот, что на остальных, — я убрал их из набора.",
        ),
        (
            "⚠️ {count} photo (no. {slots}) seems to show a different person from the others, "
            "so I took it out of the set.",
            "⚠️ {count} photos (nos. {slots}) seem to show a different person from the others, "
            "so I took them out of the set.",
        ),
    ),
    "button.use_credits": (
        ("🎁 Использовать {count} кредит", "🎁 Использовать {count} кредита", "🎁 Использовать {count} кредитов"),
        ("🎁 Use {count} credit", "🎁 Use {count} credits"),
    ),
    "pack.spend_label": (
        (
            "{count} фото — за {count} кредит, без оплаты",
            "{count} фото — за {count} кредита, без оплаты",
            "{count} фото — за {count} кредитов, без оплаты",
        ),
        ("{count} photo — use {count} credit, no payment", "{count} photos — use {count} credits, no payment"),
    ),
    "pack.balance": (
        (
            "На вашем балансе {count} кредит: пакет, который он покрывает, начнётся без оплаты.",
            "На вашем балансе {count} кредита: пакет, который они покрывают, начнётся без оплаты.",
            "На вашем балансе {count} кредитов: пакет, который они покрывают, начнётся без оплаты.",
        ),
        (
            "You have {count} credit: a pack it covers starts without payment.",
            "You have {count} credits: a pack they cover starts without payment.",
        ),
    ),
    "job.failed": (
        (
            "😔 К сожалению, не получилось сделать портреты: сервис генерации не справился. "
            "{count} кредит вернулся на ваш баланс — кнопка ниже запустит новый пакет без оплаты.",
            "😔 К сожалению, не получилось сделать портреты: сервис генерации не справился. "
            "{count} кредита вернулись на ваш баланс — кнопка ниже запустит новый пакет без оплаты.",
            "😔 К сожалению, не получилось сделать портреты: сервис генерации не справился. "
            "{count} кредитов вернулись на ваш баланс — кнопка ниже запустит новый пакет без оплаты.",
        ),
        (
            "😔 Sorry, we could not make your portraits: the generation service failed. "
            "{count} credit is back on your balance — the button below starts a new pack without payment.",
            "😔 Sorry, we could not make your portraits: the generation service failed. "
            "{count} credits are back on your balance — the button below starts a new pack without payment.",
        ),
    ),
    "job.failed_no_selfies": (
        (
            "😔 Не получилось начать фотосессию: ваших селфи больше нет на сервере. "
            "{count} кредит вернулся на баланс — пришлите новые селфи, и он оплатит пакет.",
            "😔 Не получилось начать фотосессию: ваших селфи больше нет на сервере. "
            "{count} кредита вернулись на баланс — пришлите новые селфи, и они оплатят пакет.",
            "😔 Не получилось начать фотосессию: ваших селфи больше нет на сервере. "
            "{count} кредитов вернулись на баланс — пришлите новые селфи, и они оплатят пакет.",
        ),
        (
            "😔 We could not start your photo session: your selfies are no longer stored. "
            "{count} credit is back on your balance — send new selfies and it pays for the pack.",
            "😔 We could not start your photo session: your selfies are no longer stored. "
            "{count} credits are back on your balance — send new selfies and they pay for the pack.",
        ),
    ),
    "job.cancelled": (
        (
            "Заказ отменён, {count} кредит вернулся на ваш баланс — кнопка ниже запустит новый пакет без оплаты.",
            "Заказ отменён, {count} кредита вернулись на ваш баланс — кнопка ниже запустит новый пакет без оплаты.",
            "Заказ отменён, {count} кредитов вернулись на ваш баланс — кнопка ниже запустит новый пакет без оплаты.",
        ),
        (
            "The order is cancelled; {count} credit is back on your balance — the button below starts a new "
            "pack without payment.",
            "The order is cancelled; {count} credits are back on your balance — the button below starts a new "
            "pack without payment.",
        ),
    ),
    "delivery.finished": (
        (
            "🎉 Фотосессия готова: {count} портрет. Спасибо, что выбрали PinGlass. /start — новая фотосессия.",
            "🎉 Фотосессия готова: {count} портрета. Спасибо, что выбрали PinGlass. /start — новая фотосессия.",
            "🎉 Фотосессия готова: {count} портретов. Спасибо, что выбрали PinGlass. /start — новая фотосессия.",
        ),
        (
            "🎉 Your {count} portrait is here! Thank you for choosing PinGlass. /start for a new session.",
            "🎉 All {count} portraits are here! Thank you for choosing PinGlass. /start for a new session.",
        ),
    ),
    # {credited} stands alone ("Не получилось: 2"), so only {count} meets a noun.
    "delivery.finished_partial": (
        (
            "Готов {count} портрет. Не получилось: {credited} — кредиты за них вернулись на баланс.",
            "Готово {count} портрета. Не получилось: {credited} — кредиты за них вернулись на баланс.",
            "Готово {count} портретов. Не получилось: {credited} — кредиты за них вернулись на баланс.",
        ),
        (
            "{count} portrait is ready; {credited} could not be made — their credits are back on your balance.",
            "{count} portraits are ready; {credited} could not be made — their credits are back on your balance.",
        ),
    ),
    "originals.caption": (
        (
            "Оригиналы в полном разрешении: {count} файл.",
            "Оригиналы в полном разрешении: {count} файла.",
            "Оригиналы в полном разрешении: {count} файлов.",
        ),
        ("Full-resolution originals: {count} file.", "Full-resolution originals: {count} files."),
    ),
    # фото does not change with the number in Russian; English does.
    "pack.label": (
        ("{count} фото — {prices}", "{count} фото — {prices}", "{count} фото — {prices}"),
        ("{count} photo — {prices}", "{count} photos — {prices}"),
    ),
    "pack.trial_label": (
        (
            "🎁 Пробный: {count} фото бесплатно",
            "🎁 Пробный: {count} фото бесплатно",
            "🎁 Пробный: {count} фото бесплатно",
        ),
        ("🎁 Trial: {count} photo for free", "🎁 Trial: {count} photos for free"),
    ),
    # /status of a pack being made: {count} is its size.
    "status.job_queued": (
        (
            "Заказ №{order_id}: {count} портрет в очереди, место {position}.",
            "Заказ №{order_id}: {count} портрета в очереди, место {position}.",
            "Заказ №{order_id}: {count} портретов в очереди, место {position}.",
        ),
        (
            "Order #{order_id}: {count} portrait queued, position {position}.",
            "Order #{order_id}: {count} portraits queued, position {position}.",
        ),
    ),
    # «из 21 портрета», «из 3 портретов», «из 7 портретов».
    "status.job_running": (
        (
            "Заказ №{order_id}: готово {done} из {count} портрета.",
            "Заказ №{order_id}: готово {done} из {count} портретов.",
            "Заказ №{order_id}: готово {done} из {count} портретов.",
        ),
        (
            "Order #{order_id}: {done} of {count} portrait ready.",
            "Order #{order_id}: {done} of {count} portraits ready.",
        ),
    ),
    # Gentle reminders (scheduler/reminders.py); each says how to turn them off.
    "reminder.unpaid_order": (
        (
            "Ваш заказ на {count} портрет ждёт оплаты. Если хотите продолжить — нажмите «Оплатить», "
            "стиль и фото сохранены. Передумали — ничего делать не нужно.\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
            "Ваш заказ на {count} портрета ждёт оплаты. Если хотите продолжить — нажмите «Оплатить», "
            "стиль и фото сохранены. Передумали — ничего делать не нужно.\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
            "Ваш заказ на {count} портретов ждёт оплаты. Если хотите продолжить — нажмите «Оплатить», "
            "стиль и фото сохранены. Передумали — ничего делать не нужно.\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
        ),
        (
            "Your order for {count} portrait is waiting for payment. To go on, tap Pay — your style and "
            "photos are saved. Changed your mind? Then there is nothing to do.\n\n"
            "<i>You can turn reminders off in /settings.</i>",
            "Your order for {count} portraits is waiting for payment. To go on, tap Pay — your style and "
            "photos are saved. Changed your mind? Then there is nothing to do.\n\n"
            "<i>You can turn reminders off in /settings.</i>",
        ),
    ),
    "reminder.idle_credits": (
        (
            "На вашем балансе {count} кредит — это {count} портрет без оплаты. "
            "Захотите новую фотосессию — нажмите кнопку ниже.\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
            "На вашем балансе {count} кредита — это {count} портрета без оплаты. "
            "Захотите новую фотосессию — нажмите кнопку ниже.\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
            "На вашем балансе {count} кредитов — это {count} портретов без оплаты. "
            "Захотите новую фотосессию — нажмите кнопку ниже.\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
        ),
        (
            "You have {count} credit on your balance — {count} portrait at no charge. "
            "Whenever you feel like a new session, tap the button below.\n\n"
            "<i>You can turn reminders off in /settings.</i>",
            "You have {count} credits on your balance — {count} portraits at no charge. "
            "Whenever you feel like a new session, tap the button below.\n\n"
            "<i>You can turn reminders off in /settings.</i>",
        ),
    ),
    "reminder.originals_expiring": (
        (
            "Оригиналы портретов вашей фотосессии будут удалены через {count} день — так мы храним фото. "
            "Если хотите сохранить их в полном качестве, нажмите «Оригиналы».\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
            "Оригиналы портретов вашей фотосессии будут удалены через {count} дня — так мы храним фото. "
            "Если хотите сохранить их в полном качестве, нажмите «Оригиналы».\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
            "Оригиналы портретов вашей фотосессии будут удалены через {count} дней — так мы храним фото. "
            "Если хотите сохранить их в полном качестве, нажмите «Оригиналы».\n\n"
            "<i>Напоминания можно выключить в /settings.</i>",
        ),
        (
            "The originals of your photo session's portraits will be deleted in {count} day, as our "
            "retention rules say. To keep them in full quality, tap Originals.\n\n"
            "<i>You can turn reminders off in /settings.</i>",
            "The originals of your photo session's portraits will be deleted in {count} days, as our "
            "retention rules say. To keep them in full quality, tap Originals.\n\n"
            "<i>You can turn reminders off in /settings.</i>",
        ),
    ),
    "examples.progress": (
        (
            "⏳ Примеры готовятся: готов {count} портрет из {total}.",
            "⏳ Примеры готовятся: готово {count} портрета из {total}.",
            "⏳ Примеры готовятся: готово {count} портретов из {total}.",
        ),
        (
            "⏳ Examples in the making: {count} portrait of {total} ready.",
            "⏳ Examples in the making: {count} portraits of {total} ready.",
        ),
    ),
    "examples.live": (
        (
            "🖼 Сейчас выбор стиля показывает {count} пример.",
            "🖼 Сейчас выбор стиля показывает {count} примера.",
            "🖼 Сейчас выбор стиля показывает {count} примеров.",
        ),
        ("🖼 The style picker shows {count} example now.", "🖼 The style picker shows {count} examples now."),
    ),
}
