"""The source of both gettext catalogues: key → (Russian, English). `make locales` writes .po/.mo.

Keeping both languages side by side makes a missing translation impossible to overlook; the
.po files stay the format translators and gettext tools use.
"""

from __future__ import annotations

CORE_MESSAGES: dict[str, tuple[str, str]] = {
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
        "4. Портреты приходят альбомами по мере готовности — обычно за несколько минут.\n"
        "5. Поставьте ❤️ на портрет, который нравится, — он попадёт в избранное. Не похоже? Ответьте на "
        "портрет 🔁 — я сделаю его заново (несколько раз в каждом пакете бесплатно).\n\n"
        "Команды: /start — начать, /status — где мой заказ, /cancel — выйти из текущего шага, "
        "/paysupport — вопросы по оплате, /favourites — избранные портреты, /forget — удалить мои фото, "
        "/settings — напоминания, /gift — подарить фотосессию, /invite — пригласить друзей, "
        "/promo — ввести промокод.\n"
        "Селфи хранятся {reference_days} дн. после последней фотосессии, портреты — {result_days} дн.",
        "<b>How it works</b>\n1. Send 5–8 selfies: face clearly visible, only you in the frame, no "
        "sunglasses, different angles and light. Photos, an album or files (JPEG, PNG, WebP, HEIC) all work.\n"
        "2. Pick a style: Professional, Lifestyle or Creative.\n"
        "3. Pick a pack and pay (card or Telegram Stars).\n"
        "4. Portraits arrive as albums as soon as they are ready, usually within minutes.\n"
        "5. Put a ❤️ on the portraits you like: they become your favourites. Not quite you? Reply 🔁 to a "
        "portrait and I'll make it again (a few times free in every pack).\n\n"
        "Commands: /start to begin, /status to see your order, /cancel to leave the current step, "
        "/paysupport for payment questions, /favourites for your favourite portraits, /forget to delete my photos, "
        "/settings for reminders, /gift to give a photo session, /invite to invite friends, "
        "/promo to enter a promo code.\n"
        "Selfies are kept {reference_days} days after your last session, portraits {result_days} days.",
    ),
    "banned": (
        "Извините, доступ к сервису для вас ограничен. Если это ошибка, напишите в поддержку.",
        "Sorry, your access to the service is restricted. If you think this is a mistake, please contact support.",
    ),
    "throttled": (
        "Вы отправляете сообщения слишком быстро, поэтому часть из них я пропустил. "
        "Подождите несколько секунд и отправьте ещё раз.",
        "You are sending messages too fast, so I skipped some of them. Please wait a few seconds and send again.",
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
    "photo.rejected.over_budget": (
        "⏸ За последний час было слишком много фото, которые не подошли. Сделайте перерыв и пришлите "
        "селфи через час — лучше при дневном свете, лицо крупно и в фокусе.",
        "⏸ Too many photos that didn't pass in the last hour. Please take a break and send selfies again "
        "in an hour — ideally in daylight, your face large and in focus.",
    ),
    "photo.rejected.failed": (
        "⚠️ Что-то пошло не так с этим фото. Попробуйте отправить его ещё раз.",
        "⚠️ Something went wrong with that photo. Please send it again.",
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
}
