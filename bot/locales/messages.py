"""The source of both gettext catalogues: key → (Russian, English). `make locales` writes .po/.mo.

Keeping both languages side by side makes a missing translation impossible to overlook; the
.po files stay the format translators and gettext tools use.
"""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "start.greeting": (
        "Привет, {name}! 👋 Я PinGlass — делаю профессиональные AI-портреты по вашим селфи.\n\n"
        "<b>Что вы получите:</b> до 23 портретов в выбранном стиле — деловом, лайфстайл или креативном. "
        "Первые фото приходят через пару минут после оплаты, весь пакет — обычно за 5–15 минут.\n\n"
        "<b>Какие селфи подходят:</b> 5–8 фото, лицо хорошо видно, вы одни в кадре, без солнечных очков, "
        "разные ракурсы и освещение.",
        "Hi, {name}! 👋 I'm PinGlass: I turn your selfies into professional AI portraits.\n\n"
        "<b>What you get:</b> up to 23 portraits in the style you choose: professional, lifestyle or "
        "creative. The first ones arrive a couple of minutes after payment, the whole pack usually in "
        "5–15 minutes.\n\n"
        "<b>Good selfies:</b> 5–8 photos, face clearly visible, only you in the frame, no sunglasses, "
        "different angles and light.",
    ),
    "help.text": (
        "<b>Как это работает</b>\n1. Пришлите 5–8 селфи: лицо хорошо видно, вы одни в кадре, без очков, "
        "разные ракурсы и свет. Можно фото, альбомом или файлами (JPEG, PNG, WebP, HEIC).\n"
        "2. Выберите стиль: Деловой, Лайфстайл или Креатив.\n"
        "3. Выберите пакет и оплатите (карта или Telegram Stars).\n"
        "4. Портреты приходят альбомами по мере готовности — обычно за несколько минут.\n\n"
        "Команды: /start — начать, /status — где мой заказ, /cancel — выйти из текущего шага, "
        "/paysupport — вопросы по оплате.",
        "<b>How it works</b>\n1. Send 5–8 selfies: face clearly visible, only you in the frame, no "
        "sunglasses, different angles and light. Photos, an album or files (JPEG, PNG, WebP, HEIC) all work.\n"
        "2. Pick a style: Professional, Lifestyle or Creative.\n"
        "3. Pick a pack and pay (card or Telegram Stars).\n"
        "4. Portraits arrive as albums as soon as they are ready, usually within minutes.\n\n"
        "Commands: /start to begin, /status to see your order, /cancel to leave the current step, "
        "/paysupport for payment questions.",
    ),
    "banned": (
        "Извините, доступ к сервису для вас ограничен. Если это ошибка, напишите в поддержку.",
        "Sorry, your access to the service is restricted. If you think this is a mistake, please contact support.",
    ),
    "button.new_session": ("📸 Новая фотосессия", "📸 New photo session"),
    "button.reuse_photos": ("🔁 Использовать прошлые фото", "🔁 Use my previous photos"),
    "button.done": ("✅ Готово — продолжить с {count} фото", "✅ Done — continue with {count} photos"),
    "button.pay": ("💳 Оплатить", "💳 Pay"),
    "button.start_free": ("🎁 Начать бесплатно", "🎁 Start for free"),
    "button.change": ("✏️ Изменить", "✏️ Change"),
    "button.cancel": ("✖️ Отмена", "✖️ Cancel"),
    "upload.instructions": (
        "Пришлите {min}–{max} селфи — по одному, альбомом или файлами.\n"
        "Лицо хорошо видно, вы одни в кадре, без солнечных очков, разные ракурсы и свет.",
        "Send {min}–{max} selfies: one by one, as an album, or as files.\n"
        "Face clearly visible, only you in the frame, no sunglasses, different angles and light.",
    ),
    "upload.progress": (
        "📸 Получено {count} из {min}–{max} фото.",
        "📸 {count} of {min}–{max} photos received.",
    ),
    "upload.need_more": ("Пришлите ещё минимум {need}.", "Send at least {need} more."),
    "upload.can_finish": (
        "Можно прислать ещё (до {max}) или нажать «Готово».",
        "You can send more (up to {max}) or tap Done.",
    ),
    "upload.album_received": (
        "Из альбома принято {accepted} из {total} фото.",
        "{accepted} of the {total} photos in the album were accepted.",
    ),
    "upload.full": (
        "Все {max} фото получены — переходим к выбору стиля.",
        "All {max} photos received — on to the style.",
    ),
    "upload.wrong.sticker": (
        "Стикер не подойдёт 🙂 Пришлите, пожалуйста, своё фото (селфи).",
        "A sticker won't work 🙂 Please send a photo of yourself (a selfie).",
    ),
    "upload.wrong.video": (
        "Видео не подойдёт — нужны фотографии. Пришлите селфи как фото или файл.",
        "Videos won't work — we need photos. Send a selfie as a photo or a file.",
    ),
    "upload.wrong.voice": (
        "Голосовые и аудио не подойдут — пришлите, пожалуйста, фото.",
        "Voice and audio messages won't work — please send a photo.",
    ),
    "upload.wrong.text": (
        "Сейчас я жду фотографии: пришлите {min}–{max} селфи.",
        "I'm waiting for photos: please send {min}–{max} selfies.",
    ),
    "photo.rejected.not_an_image": (
        "❌ Это не изображение. Пришлите фото в JPEG, PNG, WebP или HEIC.",
        "❌ That is not an image. Please send a JPEG, PNG, WebP or HEIC photo.",
    ),
    "photo.rejected.unreadable": (
        "❌ Не получилось прочитать фото — файл повреждён или загружен не полностью. Пришлите другое.",
        "❌ I couldn't read that photo: the file is damaged or incomplete. Please send another one.",
    ),
    "photo.rejected.too_large_file": (
        "❌ Файл больше 20 МБ. Пришлите фото поменьше или отправьте его как фото, а не файл.",
        "❌ The file is over 20 MB. Send a smaller one, or send it as a photo instead of a file.",
    ),
    "photo.rejected.too_small": (
        "❌ Фото слишком маленькое (меньше 512 пикселей по короткой стороне). Нужен снимок получше.",
        "❌ The photo is too small (under 512 pixels on the short side). Please send a sharper one.",
    ),
    "photo.rejected.absurd_dimensions": (
        "❌ У фото странные пропорции или размер. Пришлите обычное селфи.",
        "❌ That picture has unusual proportions or size. Please send a normal selfie.",
    ),
    "photo.rejected.decompression_bomb": (
        "❌ Это изображение слишком большое для обработки. Пришлите обычное фото.",
        "❌ That image is too large to process. Please send a normal photo.",
    ),
    "photo.rejected.animated": (
        "❌ Анимация не подойдёт — нужно обычное фото.",
        "❌ Animations won't work — please send a still photo.",
    ),
    "photo.rejected.unsupported_format": (
        "❌ Этот формат не поддерживается. Подойдут JPEG, PNG, WebP и HEIC.",
        "❌ That format isn't supported. JPEG, PNG, WebP and HEIC work.",
    ),
    "photo.rejected.duplicate": (
        "↩️ Это фото уже есть в наборе — пришлите другое.",
        "↩️ That photo is already in your set — send a different one.",
    ),
    "photo.rejected.too_many": (
        "✋ В наборе уже {max} фото — больше не нужно.",
        "✋ Your set already has {max} photos — no more are needed.",
    ),
    "photo.rejected.download_failed": (
        "⚠️ Не удалось загрузить фото из Telegram. Попробуйте отправить его ещё раз.",
        "⚠️ I couldn't fetch that photo from Telegram. Please send it again.",
    ),
    "reuse.none": (
        "Прошлых фото не нашлось — давайте загрузим новые. Нажмите «Новая фотосессия» в /start.",
        "I found no previous photos — let's upload new ones. Tap New photo session in /start.",
    ),
    "style.prompt": ("Выберите стиль фотосессии:", "Choose the style of your photo session:"),
    "pack.prompt": ("Стиль: {style}. Сколько портретов сделать?", "Style: {style}. How many portraits?"),
    "pack.label": ("{photos} фото — {prices}", "{photos} photos — {prices}"),
    "pack.trial_label": ("🎁 Пробный: {photos} фото бесплатно", "🎁 Trial: {photos} photos for free"),
    "summary.text": (
        "<b>Ваш заказ</b>\nСелфи: {selfies}\nСтиль: {style}\nПортретов: {photos}\nЦена: {price}",
        "<b>Your order</b>\nSelfies: {selfies}\nStyle: {style}\nPortraits: {photos}\nPrice: {price}",
    ),
    "summary.free": ("бесплатно", "free"),
    "cancel.done": (
        "Хорошо, отменил. Когда захотите продолжить — /start.",
        "OK, cancelled. Whenever you want to continue — /start.",
    ),
    "cancel.nothing": (
        "Сейчас нечего отменять. /start — начать.",
        "There is nothing to cancel. /start to begin.",
    ),
    "stale.button": ("Эта кнопка уже неактивна.", "This button is no longer active."),
    "stray.use_buttons": ("Пожалуйста, воспользуйтесь кнопками.", "Please use the buttons."),
    "step.uploading": ("Сейчас мы собираем ваши селфи.", "We are collecting your selfies."),
    "step.pack": (
        "Сейчас нужно выбрать пакет — кнопки выше.",
        "Next: choose a pack with the buttons above.",
    ),
    "step.summary": (
        "Заказ собран — подтвердите его кнопками выше.",
        "Your order is ready — confirm it with the buttons above.",
    ),
    "step.none": (
        "Сейчас ничего не происходит. /start — новая фотосессия.",
        "Nothing is in progress. /start for a new photo session.",
    ),
    "status.nothing": (
        "У вас пока нет заказов. /start — начать фотосессию.",
        "You have no orders yet. /start to begin a photo session.",
    ),
    "status.order": (
        "Заказ №{order_id}: {photos} фото, стиль {style} — {status}.",
        "Order #{order_id}: {photos} photos, {style} style — {status}.",
    ),
    "order.status.awaiting_payment": ("ожидает оплаты", "awaiting payment"),
    "order.status.paid": ("оплачен", "paid"),
    "order.status.ready": ("готов к запуску", "ready to start"),
    "order.status.cancelled": ("отменён", "cancelled"),
    "unknown.message": (
        "Я не понял сообщение. /start — новая фотосессия, /help — помощь.",
        "I didn't get that. /start for a new photo session, /help for help.",
    ),
    "button.pay_again": ("💳 Оплатить снова", "💳 Pay again"),
    "button.cancel_job": ("✖️ Отменить заказ", "✖️ Cancel the order"),
    "button.pay_card": ("💳 Картой — {price}", "💳 By card — {price}"),
    "button.pay_stars": ("⭐ Telegram Stars — {price}", "⭐ Telegram Stars — {price}"),
    "button.pay_link": ("💳 Оплатить {price}", "💳 Pay {price}"),
    "button.check_payment": ("🔄 Проверить оплату", "🔄 Check payment"),
    "payment.choose_method": ("Как удобнее оплатить?", "How would you like to pay?"),
    "payment.no_methods": (
        "Оплата сейчас недоступна. Попробуйте позже или напишите в /paysupport.",
        "Payments are not available right now. Please try later or write to /paysupport.",
    ),
    "payment.link": (
        "Нажмите «Оплатить» — откроется страница ЮKassa. После оплаты я сам пришлю подтверждение; "
        "если нет — нажмите «Проверить оплату».",
        "Tap Pay to open the YooKassa page. I'll confirm as soon as the payment arrives; if I don't, "
        "tap Check payment.",
    ),
    "payment.order_not_payable": (
        "Этот заказ уже оплачен или отменён. /status — посмотреть статус.",
        "This order is already paid or cancelled. /status shows where it is.",
    ),
    "payment.unavailable_retry": (
        "Платёжный сервис сейчас не отвечает. Нажмите «Оплатить» ещё раз через минуту — повторного списания не будет.",
        "The payment service is not answering right now. Tap Pay again in a minute — you will not be charged twice.",
    ),
    "payment.unavailable": (
        "Не получилось создать платёж. Попробуйте Telegram Stars или напишите в /paysupport.",
        "The payment could not be created. Try Telegram Stars or write to /paysupport.",
    ),
    "payment.ask_email": (
        "Для чека по 54-ФЗ пришлите, пожалуйста, ваш e-mail (один раз).",
        "For the fiscal receipt, please send your e-mail address (only once).",
    ),
    "payment.bad_email": (
        "Похоже, в адресе ошибка. Пришлите e-mail в виде name@example.com.",
        "That address looks wrong. Please send an e-mail like name@example.com.",
    ),
    "payment.invoice_description": (
        "{photos} AI-портретов по вашим селфи. Первые придут через пару минут после оплаты.",
        "{photos} AI portraits made from your selfies. The first arrive minutes after payment.",
    ),
    "payment.check_failed": (
        "Не удалось проверить оплату прямо сейчас. Попробуйте через минуту.",
        "I couldn't check the payment right now. Please try again in a minute.",
    ),
    "payment.check.succeeded": ("Оплата получена ✅", "Payment received ✅"),
    "payment.check.pending": (
        "Оплата ещё не поступила. Если вы уже оплатили, подождите минуту.",
        "The payment has not arrived yet. If you have paid, please wait a minute.",
    ),
    "payment.check.canceled": (
        "Платёж не завершён. Можно оплатить заново.",
        "The payment was not completed. You can pay again.",
    ),
    "payment.check.refunded": ("Этот платёж возвращён.", "This payment was refunded."),
    "payment.succeeded": (
        "✅ Оплата получена! {photos} портретов поставлены в очередь (место: {position}). "
        "Я пришлю их сюда, как только будут готовы.",
        "✅ Payment received! {photos} portraits are queued (position {position}). "
        "I'll send them here as soon as they are ready.",
    ),
    "job.queued": (
        "🎁 Запускаем! {photos} портретов в очереди (место: {position}).",
        "🎁 Here we go! {photos} portraits are queued (position {position}).",
    ),
    "payment.canceled.expired": (
        "⌛ Время на оплату истекло, платёж отменён. Можно оплатить заново.",
        "⌛ The payment expired and was cancelled. You can pay again.",
    ),
    "payment.canceled.other": (
        "Платёж не прошёл. Можно попробовать ещё раз или выбрать другой способ.",
        "The payment did not go through. You can try again or choose another method.",
    ),
    "payment.refused.unknown_order": ("Заказ не найден.", "Order not found."),
    "payment.refused.not_payable": (
        "Этот заказ уже оплачен или отменён.",
        "This order is already paid or cancelled.",
    ),
    "payment.refused.price_changed": (
        "Цена изменилась — откройте заказ заново.",
        "The price has changed — please open the order again.",
    ),
    "payment.trial_used": (
        "Пробный пакет уже использован. Выберите другой пакет.",
        "The trial pack has already been used. Please choose another pack.",
    ),
    "payment.support": (
        "Вопросы по оплате: напишите нам, указав номер заказа из /status — ответим в течение дня. "
        "Если портреты не получены, кредиты за них возвращаются автоматически; возврат денег — по запросу.",
        "Payment questions: write to us with the order number from /status — we answer within a day. "
        "Credits for portraits that could not be made are returned automatically; refunds on request.",
    ),
    "job.cancelled": (
        "Заказ отменён, {photos} кредитов вернулись на ваш баланс.",
        "The order is cancelled; {photos} credits are back on your balance.",
    ),
    "job.cancel_too_late": (
        "Генерация уже началась — отменить нельзя.",
        "Generation has already started — it can no longer be cancelled.",
    ),
    "status.job_queued": (
        "Заказ №{order_id}: {photos} портретов в очереди, место {position}.",
        "Order #{order_id}: {photos} portraits queued, position {position}.",
    ),
    "status.job_running": (
        "Заказ №{order_id}: готово {done} из {photos} портретов.",
        "Order #{order_id}: {done} of {photos} portraits ready.",
    ),
}
