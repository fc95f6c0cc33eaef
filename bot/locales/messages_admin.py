"""Texts of the admin commands (only ADMIN_IDS see them): key → (Russian, English)."""

from __future__ import annotations

ADMIN_MESSAGES: dict[str, tuple[str, str]] = {
    # ---- usage and common answers
    "admin.usage": (
        "Команды: /stats [today|7d|30d], /queue, /job &lt;id&gt;, /user &lt;id|@username&gt;, "
        "/grant &lt;user&gt; &lt;фото&gt; [причина], /refund &lt;платёж&gt; [фото], /retry &lt;job&gt;, "
        "/cancel &lt;job&gt;, /ban &lt;user&gt;, /unban &lt;user&gt;, /provider, /broadcast, /examples, "
        "/promo new &lt;фото&gt; &lt;использований&gt; &lt;дней&gt;",
        "Commands: /stats [today|7d|30d], /queue, /job &lt;id&gt;, /user &lt;id|@username&gt;, "
        "/grant &lt;user&gt; &lt;photos&gt; [reason], /refund &lt;payment&gt; [photos], /retry &lt;job&gt;, "
        "/cancel &lt;job&gt;, /ban &lt;user&gt;, /unban &lt;user&gt;, /provider, /broadcast, /examples, "
        "/promo new &lt;photos&gt; &lt;uses&gt; &lt;days&gt;",
    ),
    "admin.bad_args": ("Формат: {usage}", "Usage: {usage}"),
    "admin.no_user": ("Пользователь {ref} не найден.", "User {ref} not found."),
    "admin.no_job": ("Задание #{job_id} не найдено.", "Job #{job_id} not found."),
    "admin.no_payment": (
        "Платёж #{payment_id} не найден или его нельзя вернуть.",
        "Payment #{payment_id} not found or cannot be refunded.",
    ),
    "admin.error": ("Не получилось: {error}", "Failed: {error}"),
    "admin.none": ("—", "—"),
    # ---- /stats
    "admin.stats": (
        "<b>Статистика: {period}</b> (с {since} UTC)\n"
        "Новые пользователи: {new_users}\n"
        "Оплаченные заказы: {paid_orders}; выручка: {revenue}; возвраты: {refunded}\n"
        "Задания: {jobs}\n"
        "Фото: готово {photos_done}, пропущено {photos_skipped}, успех {success_rate}\n"
        "До первого фото p50/p95: {first_p50} / {first_p95}\n"
        "До всего пакета p50/p95: {pack_p50} / {pack_p95}\n"
        "Провайдеры: {providers}\n"
        "Старты заданий по провайдерам: {started}\n"
        "Сбои по типам: {failures}\n"
        "Отклонённые селфи: {rejected}\n"
        "Кредиты: начислено {granted}, возвращено {returned}, списано возвратами {refund_credits}\n"
        "Стоимость у провайдеров: {cost}; на один готовый портрет: {cost_per_portrait}\n"
        "Выручка минус возвраты и стоимость у провайдеров: {margin}\n"
        "Сходство лица, среднее: {identity}; переделано портретов: {redo_share}",
        "<b>Stats: {period}</b> (since {since} UTC)\n"
        "New users: {new_users}\n"
        "Paid orders: {paid_orders}; revenue: {revenue}; refunds: {refunded}\n"
        "Jobs: {jobs}\n"
        "Photos: done {photos_done}, skipped {photos_skipped}, success {success_rate}\n"
        "Time to first image p50/p95: {first_p50} / {first_p95}\n"
        "Time to full pack p50/p95: {pack_p50} / {pack_p95}\n"
        "Providers: {providers}\n"
        "Jobs started by provider: {started}\n"
        "Failures by type: {failures}\n"
        "Rejected selfies: {rejected}\n"
        "Credits: granted {granted}, returned {returned}, taken by refunds {refund_credits}\n"
        "Provider cost: {cost}; per delivered portrait: {cost_per_portrait}\n"
        "Revenue minus refunds and provider cost: {margin}\n"
        "Identity score, average: {identity}; portraits redone: {redo_share}",
    ),
    "admin.stats.provider": (
        "{name} — {done} готово ({share}), сбоев {failure_rate}, ретраев {retried}, fallback {fell_back}, "
        "стоимость {cost} ({cost_per_portrait} за портрет), выручка минус стоимость {margin}",
        "{name} — {done} done ({share}), failures {failure_rate}, retried {retried}, fell back {fell_back}, "
        "cost {cost} ({cost_per_portrait} per portrait), revenue minus cost {margin}",
    ),
    # Revenue is in roubles and Stars, provider prices in USD: a currency without a rate is left out.
    "admin.stats.unconverted": (
        "(без {currencies}: курс не задан, RUB_PER_USD / STARS_PER_USD)",
        "(without {currencies}: no rate set, RUB_PER_USD / STARS_PER_USD)",
    ),
    # ---- /queue
    "admin.queue": (
        "<b>Очередь</b>\nЗадания: {jobs}\nДольше всех ждёт: {oldest}\nЗадачи у провайдеров: {tasks}\n{providers}",
        "<b>Queue</b>\nJobs: {jobs}\nOldest waiting: {oldest}\nTasks at providers: {tasks}\n{providers}",
    ),
    "admin.queue.empty": ("пусто", "empty"),
    # ---- /job
    "admin.job": (
        "<b>Задание #{job_id}</b> — {status}\n"
        "Пользователь: {user} (tg {telegram_id})\n"
        "Стиль: {style}; пакет: {pack}; фото {done}/{total}, пропущено {failed}\n"
        "Создано {created}; старт {started}; первое фото {first_image}; готово {finished}\n"
        "{tasks}",
        "<b>Job #{job_id}</b> — {status}\n"
        "User: {user} (tg {telegram_id})\n"
        "Style: {style}; pack: {pack}; photos {done}/{total}, skipped {failed}\n"
        "Created {created}; started {started}; first image {first_image}; finished {finished}\n"
        "{tasks}",
    ),
    "admin.button.retry": ("🔁 Повторить пропущенные", "🔁 Retry failed photos"),
    "admin.button.cancel": ("✖️ Отменить", "✖️ Cancel"),
    "admin.button.resend": ("📤 Отправить снова", "📤 Resend to user"),
    "admin.retried": (
        "Задание #{job_id}: {count} фото снова в очереди (возвращённые кредиты остаются у пользователя).",
        "Job #{job_id}: {count} photos queued again (the credits already returned stay with the user).",
    ),
    "admin.retry_nothing": ("Задание #{job_id}: повторять нечего.", "Job #{job_id}: nothing to retry."),
    "admin.cancelled": (
        "Задание #{job_id} отменено, кредиты возвращены.",
        "Job #{job_id} cancelled, credits returned.",
    ),
    "admin.stopped_rest": (
        "Задание #{job_id}: остановлено {count} фото (кредиты за них возвращены); готовые будут доставлены.",
        "Job #{job_id}: {count} photos stopped (their credits returned); finished ones will be delivered.",
    ),
    "admin.cancel_nothing": (
        "Задание #{job_id} ({status}) отменить нельзя.",
        "Job #{job_id} ({status}) cannot be cancelled.",
    ),
    "admin.resent": ("Задание #{job_id}: отправлено снова {count} фото.", "Job #{job_id}: {count} photos resent."),
    # ---- /user
    "admin.user": (
        "<b>{name}</b> @{username} — tg {telegram_id}, id {user_id}\n"
        "Язык {language}; источник {source}; с {created}; заблокировал бота: {blocked}; бан: {banned}\n"
        "<b>Баланс: {balance}</b>\nДвижения: {ledger}\nЗаказы: {orders}\nПлатежи: {payments}\nЗадания: {jobs}",
        "<b>{name}</b> @{username} — tg {telegram_id}, id {user_id}\n"
        "Language {language}; source {source}; since {created}; blocked the bot: {blocked}; banned: {banned}\n"
        "<b>Balance: {balance}</b>\nLedger: {ledger}\nOrders: {orders}\nPayments: {payments}\nJobs: {jobs}",
    ),
    "admin.yes": ("да", "yes"),
    "admin.no": ("нет", "no"),
    "admin.button.grant": ("🎁 Начислить {photos} фото", "🎁 Grant {photos} photos"),
    "admin.button.ban": ("🚫 Забанить", "🚫 Ban"),
    "admin.button.unban": ("✅ Разбанить", "✅ Unban"),
    "admin.granted": (
        "Начислено {photos} фото пользователю {user}. Баланс: {balance}.",
        "Granted {photos} photos to {user}. Balance: {balance}.",
    ),
    "admin.grant_repeated": (
        "Это начисление уже сделано. Баланс {user}: {balance}.",
        "This grant was already made. Balance of {user}: {balance}.",
    ),
    "admin.banned": ("Пользователь {user} забанен.", "User {user} is banned."),
    "admin.unbanned": ("Пользователь {user} разбанен.", "User {user} is unbanned."),
    "admin.ban_unchanged": ("Пользователь {user} уже в этом состоянии.", "User {user} already is in that state."),
    # ---- /refund
    "admin.refunded": (
        "Платёж #{payment_id} возвращён ({amount}); списано кредитов: {photos}.",
        "Payment #{payment_id} refunded ({amount}); credits taken back: {photos}.",
    ),
    "admin.refunded_short": (
        "Платёж #{payment_id} возвращён ({amount}); списано кредитов: {photos}. "
        "Ещё {spent} уже превратились в портреты или потрачены — их не вернуть.",
        "Payment #{payment_id} refunded ({amount}); credits taken back: {photos}. "
        "{spent} more were already turned into portraits or spent and cannot be taken back.",
    ),
    "admin.refund_repeated": (
        "Платёж #{payment_id} уже возвращён; повторно ничего не списано.",
        "Payment #{payment_id} was already refunded; nothing was taken twice.",
    ),
    "admin.refund_pending": (
        "Возврат по платежу #{payment_id} в обработке ({status}); повторите /refund позже.",
        "The refund of payment #{payment_id} is in progress ({status}); repeat /refund later.",
    ),
    # ---- /provider
    "admin.providers": ("<b>Провайдеры</b>\n{lines}", "<b>Providers</b>\n{lines}"),
    "admin.provider.line": (
        "{marker} <b>{name}</b>: {state}; breaker {breaker}; за час успешно {success} из {tried}; "
        "задержка p50 {latency}",
        "{marker} <b>{name}</b>: {state}; breaker {breaker}; last hour {success} of {tried} succeeded; "
        "latency p50 {latency}",
    ),
    "admin.provider.primary": ("основной", "primary"),
    "admin.provider.fallback": ("резервный", "fallback"),
    "admin.provider.paused": ("на паузе", "paused"),
    "admin.provider.none": ("Провайдеры не настроены.", "No provider is configured."),
    "admin.provider.unknown": ("Нет провайдера «{name}».", "No provider named “{name}”."),
    "admin.provider.probe": ("   ↳ {parts} (проверено {checked} UTC)", "   ↳ {parts} (checked {checked} UTC)"),
    "admin.provider.balance": ("баланс {balance}", "balance {balance}"),
    "admin.provider.balance_low": ("⚠️ баланс {balance}, ниже {threshold}", "⚠️ balance {balance}, below {threshold}"),
    "admin.provider.model_ok": ("модель {model} доступна", "model {model} available"),
    "admin.provider.model_missing": ("⚠️ модели {model} больше нет", "⚠️ model {model} is gone"),
    "admin.provider.probe_failed": ("проверка не удалась: {error}", "probe failed: {error}"),
    "admin.provider_alert.balance_low.on": (
        "⚠️ Баланс {provider}: {balance}, ниже порога {threshold}. Пополните счёт: когда он кончится, "
        "портреты пойдут через резервного провайдера.",
        "⚠️ {provider} balance is {balance}, below {threshold}. Top it up: when it runs out, portraits "
        "move to the fallback provider.",
    ),
    "admin.provider_alert.balance_low.off": (
        "✅ Баланс {provider} снова {balance} (порог {threshold}).",
        "✅ {provider} balance is back at {balance} (alert below {threshold}).",
    ),
    "admin.provider_alert.model_missing.on": (
        "⚠️ {provider}: модели {model} больше нет. Задания уходят резервному провайдеру; смените модель в настройках.",
        "⚠️ {provider}: model {model} is gone. Tasks go to the fallback provider; configure another model.",
    ),
    "admin.provider_alert.model_missing.off": (
        "✅ {provider}: модель {model} снова доступна.",
        "✅ {provider}: model {model} is available again.",
    ),
    "admin.button.pause": ("⏸ Пауза {name}", "⏸ Pause {name}"),
    "admin.button.resume": ("▶️ Включить {name}", "▶️ Resume {name}"),
    "admin.button.primary": ("⭐ Сделать основным {name}", "⭐ Make {name} primary"),
    "admin.provider.done": ("Готово. {summary}", "Done. {summary}"),
    # ---- /broadcast
    "admin.broadcast.prompt": (
        "Пришлите текст рассылки (можно фото с подписью). /broadcast stop — остановить идущую.",
        "Send the broadcast text (a photo with a caption works too). /broadcast stop stops a running one.",
    ),
    "admin.broadcast.preview": (
        "Так увидят рассылку ↑. Кому отправить?",
        "This is how the broadcast will look ↑. Who should get it?",
    ),
    "admin.broadcast.segment.all": ("Всем", "Everyone"),
    "admin.broadcast.segment.paid": ("Платившим", "Paid"),
    "admin.broadcast.segment.never_paid": ("Не платившим", "Never paid"),
    "admin.broadcast.segment.lang_ru": ("Русский язык", "Russian language"),
    "admin.broadcast.segment.lang_en": ("Английский язык", "English language"),
    "admin.broadcast.confirm": (
        "Рассылка #{broadcast_id}: {segment}, получателей {total}. Отправить?",
        "Broadcast #{broadcast_id}: {segment}, {total} recipients. Send it?",
    ),
    "admin.button.send": ("✅ Отправить", "✅ Send"),
    "admin.button.stop": ("⏹ Остановить", "⏹ Stop"),
    "admin.button.discard": ("✖️ Отмена", "✖️ Cancel"),
    "admin.broadcast.started": (
        "Рассылка #{broadcast_id} пошла. Отчёт пришлю по окончании.",
        "Broadcast #{broadcast_id} is on its way. I'll report when it is done.",
    ),
    "admin.broadcast.discarded": ("Рассылка отменена.", "Broadcast discarded."),
    "admin.broadcast.not_draft": (
        "Эта рассылка уже запущена или отменена.",
        "This broadcast was already started or discarded.",
    ),
    "admin.broadcast.stopped": (
        "Рассылка #{broadcast_id} остановлена: отправлено {sent}, заблокировали {blocked}, ошибок {failed}.",
        "Broadcast #{broadcast_id} stopped: sent {sent}, blocked {blocked}, failed {failed}.",
    ),
    "admin.broadcast.nothing_running": ("Сейчас рассылок нет.", "No broadcast is running."),
    "admin.broadcast.report": (
        "Рассылка #{broadcast_id} завершена: отправлено {sent}, заблокировали {blocked}, ошибок {failed} (из {total}).",
        "Broadcast #{broadcast_id} finished: sent {sent}, blocked {blocked}, failed {failed} (of {total}).",
    ),
}
