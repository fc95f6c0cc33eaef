"""Texts of the payment conversation: key → (Russian, English)."""

from __future__ import annotations

PAYMENT_MESSAGES: dict[str, tuple[str, str]] = {
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
    "payment.refused.banned": (
        "Оплата недоступна: доступ к боту ограничен.",
        "Payment is not available: your access to the bot is restricted.",
    ),
    "payment.refused.photos_gone": (
        "Фото для этого заказа удалены — начните новую фотосессию.",
        "The photos for this order were deleted — please start a new photo session.",
    ),
    "payment.returned.duplicate": (
        "Вы оплатили заказ №{order_id} дважды. Второй платёж ({amount}) возвращается вам; "
        "портреты по первому платежу уже в работе.",
        "You paid twice for order #{order_id}. The second payment of {amount} is being returned to you; "
        "your portraits from the first payment are on their way.",
    ),
    "payment.returned.banned": (
        "Доступ к боту ограничен, поэтому платёж {amount} за заказ №{order_id} возвращается вам.",
        "Your access to the bot is restricted, so the payment of {amount} for order #{order_id} "
        "is being returned to you.",
    ),
    "payment.returned.avatar_gone": (
        "Фото для заказа №{order_id} удалены, поэтому платёж {amount} возвращается вам.",
        "The photos for order #{order_id} were deleted, so the payment of {amount} is being returned to you.",
    ),
    "payment.returned.amount": (
        "Сумма платежа ({amount}) не совпадает с ценой заказа №{order_id}; платёж возвращается вам. "
        "Откройте заказ заново.",
        "The amount paid ({amount}) does not match the price of order #{order_id}; the payment is being "
        "returned to you. Please open the order again.",
    ),
    "forget.orders_cancelled": (
        "Неоплаченные заказы отменены: оплатить их больше нельзя, а пришедший платёж будет возвращён.",
        "Your unpaid orders are cancelled: they can no longer be paid, and any payment that still arrives is returned.",
    ),
    "admin.refund_canceled": (
        "⚠️ Возврат {refund_id} (YooKassa {provider_id}) платежа {payment_id} на {amount} ОТМЕНЁН: деньги не вернулись.",
        "⚠️ Refund {refund_id} (YooKassa {provider_id}) of payment {payment_id}, {amount}, was CANCELED: "
        "the money was not returned.",
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
    "job.cancel_too_late": (
        "Первые портреты уже готовы — заказ больше нельзя отменить.",
        "Your first portraits are already made — the order can no longer be cancelled.",
    ),
}
