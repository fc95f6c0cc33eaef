"""Texts of generation and delivery: key → (Russian, English)."""

from __future__ import annotations

ENGINE_MESSAGES: dict[str, tuple[str, str]] = {
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
    # after the pack
    "button.originals": ("📁 Оригиналы", "📁 Originals"),
    "button.same_photos": ("🔁 Новый пакет с этими же фото", "🔁 New pack with the same photos"),
    "button.new_photos": ("📸 Новые фото", "📸 New photos"),
    "originals.preparing": ("Готовим оригиналы — пришлём через минуту.", "Preparing your originals — one moment."),
    "originals.on_the_way": ("Оригиналы уже отправляются.", "Your originals are already on their way."),
    "originals.not_sent": (
        "Не получилось отправить оригиналы. Нажмите «📁 Оригиналы» ещё раз через минуту.",
        "I couldn't send the originals. Please tap “📁 Originals” again in a minute.",
    ),
    "originals.gone": (
        "Оригиналы этой фотосессии больше не хранятся.",
        "The originals of this session are no longer stored.",
    ),
    "credits.used": (
        "Эти кредиты уже использованы.",
        "Those credits have already been used.",
    ),
    "credits.photos_gone": (
        "Фото для этой фотосессии уже удалены — загрузите новые через /start.",
        "The photos of this session have been deleted — send new ones with /start.",
    ),
    "credits.not_enough": (
        "На балансе уже не хватает кредитов на этот пакет.",
        "Your balance no longer covers this pack.",
    ),
    "credits.unknown": ("Эта кнопка больше не действует.", "This button no longer works."),
    "reuse.gone": (
        "Этих фото больше нет — они удалены по сроку хранения или по вашей просьбе. Пришлите новые через /start.",
        "Those photos are gone — deleted after the retention period or at your request. Send new ones with /start.",
    ),
    # /forget
    "forget.confirm": (
        "Удалить все ваши селфи и портреты с наших серверов? Это нельзя отменить. "
        "Уже полученные в чате фото останутся у вас.",
        "Delete all your selfies and portraits from our servers? This cannot be undone. "
        "Photos already in this chat stay with you.",
    ),
    "button.forget_confirm": ("🗑 Да, удалить", "🗑 Yes, delete them"),
    "button.forget_keep": ("Оставить", "Keep them"),
    "forget.kept": ("Хорошо, ничего не удалено.", "OK, nothing was deleted."),
    "forget.busy": (
        "Сейчас идёт ваша фотосессия — удалить фото можно, когда она закончится.",
        "Your photo session is in progress — you can delete your photos once it is done.",
    ),
    "forget.done": (
        "Готово: ваши селфи и портреты удалены с наших серверов.",
        "Done: your selfies and portraits have been deleted from our servers.",
    ),
    # a crash hid whether an album arrived
    "delivery.uncertain": (
        "⚠️ Возможно, часть портретов ({count}) не дошла из-за сбоя. Если их нет в чате — нажмите «Отправить ещё раз».",
        "⚠️ Some portraits ({count}) may not have arrived because of a glitch. If they are missing, tap Resend.",
    ),
    "button.resend": ("📤 Отправить ещё раз", "📤 Resend"),
    "delivery.resending": ("Отправляем ещё раз.", "Sending them again."),
}
