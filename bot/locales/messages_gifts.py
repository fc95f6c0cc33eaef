"""Texts of gifts, promo codes and invitations: key → (Russian, English); counted ones below."""

from __future__ import annotations

GIFT_MESSAGES: dict[str, tuple[str, str]] = {
    "button.gift": ("🎁 Подарить фотосессию", "🎁 Gift a photo session"),
    "button.gift_share": ("📤 Отправить подарок", "📤 Send the gift"),
    "button.gift_refund": ("↩️ Вернуть деньги", "↩️ Refund"),
    "gift.choose_pack": (
        "🎁 Какой пакет подарить? Получатель найдёт его кредиты на своём балансе и сам выберет стиль. "
        "Пока подарок не открыт, деньги можно вернуть в течение 14 дней.",
        "🎁 Which pack would you like to give? The recipient finds its credits on their balance and picks "
        "the style themselves. While the gift is unopened, you can get the money back within 14 days.",
    ),
    "gift.refunded": (
        "↩️ Подарок отменён, деньги возвращаются на ваш счёт. Ссылка больше не работает.",
        "↩️ The gift is cancelled and the money is on its way back to you. The link no longer works.",
    ),
    "gift.refused.unknown": (
        "Такого подарка нет. Проверьте ссылку или код.",
        "There is no such gift. Please check the link or the code.",
    ),
    "gift.refused.not_paid": (
        "Этот подарок ещё не оплачен. Попросите отправителя завершить оплату.",
        "This gift has not been paid for yet. Ask the sender to finish paying.",
    ),
    "gift.refused.own": (
        "Это ваш собственный подарок — перешлите ссылку тому, кому он предназначен. "
        "Передумали? Под сообщением с подарком есть кнопка «Вернуть деньги» (14 дней).",
        "This is your own gift: forward the link to the person it is for. Changed your mind? "
        "The message with the gift has a Refund button (14 days).",
    ),
    "gift.refused.taken": (
        "Этот подарок уже открыл другой человек.",
        "Someone else has already opened this gift.",
    ),
    "gift.refused.already_yours": (
        "Вы уже открыли этот подарок — его кредиты на вашем балансе.",
        "You have already opened this gift: its credits are on your balance.",
    ),
    "gift.refused.refunded": (
        "Отправитель отменил этот подарок.",
        "The sender has cancelled this gift.",
    ),
    "gift.refund.unknown": ("Этот подарок не найден.", "This gift was not found."),
    "gift.refund.not_paid": ("Этот подарок ещё не оплачен.", "This gift has not been paid for yet."),
    "gift.refund.redeemed": (
        "Подарок уже открыт — вернуть его нельзя.",
        "The gift has already been opened, so it cannot be refunded.",
    ),
    "gift.refund.refunded": ("Деньги за этот подарок уже возвращены.", "This gift has already been refunded."),
    "gift.refund.too_late": (
        "Вернуть подарок можно только в течение 14 дней после оплаты.",
        "A gift can be refunded only within 14 days of paying for it.",
    ),
    "status.gift_order": (
        "Подарок №{order_id}: {photos} фото. Оплаченные подарки и их ссылки — в /gift.",
        "Gift #{order_id}: {photos} photos. Paid gifts and their links are in /gift.",
    ),
    "promo.usage": (
        "Пришлите код так: /promo КОД",
        "Send the code like this: /promo CODE",
    ),
    "promo.refused.unknown": (
        "Такого промокода нет. Проверьте, как он написан.",
        "There is no such promo code. Please check how it is spelled.",
    ),
    "promo.refused.used": ("Вы уже использовали этот промокод.", "You have already used this promo code."),
    "promo.refused.exhausted": (
        "Этот промокод уже использовали все, кому он был предназначен.",
        "This promo code has been used up.",
    ),
    "promo.refused.expired": ("Срок действия этого промокода истёк.", "This promo code has expired."),
    "invite.text_no_bonus": (
        "Ваша ссылка для друзей:\n{link}\nПо ней пришли: {invited}.",
        "Your link for friends:\n{link}\nPeople who came by it: {invited}.",
    ),
    "admin.promo.minted": (
        "Промокод <code>{code}</code>: {photos} фото, до {uses} пользователей, до {expires} UTC.\n"
        "Ссылка: {link}\nИли командой: /promo {code}",
        "Promo code <code>{code}</code>: {photos} photos, up to {uses} users, until {expires} UTC.\n"
        "Link: {link}\nOr by command: /promo {code}",
    ),
    "admin.stats.gifts": (
        "Подарки: куплено {bought}, открыто {redeemed}; промокоды: {promos}; бонусы за приглашения: {referrals}",
        "Gifts: bought {bought}, opened {redeemed}; promo codes: {promos}; referral bonuses: {referrals}",
    ),
}

GIFT_PLURAL_MESSAGES: dict[str, tuple[tuple[str, str, str], tuple[str, str]]] = {
    "gift.pay": (
        (
            "🎁 Подарок: {count} фото. Как удобнее оплатить?",
            "🎁 Подарок: {count} фото. Как удобнее оплатить?",
            "🎁 Подарок: {count} фото. Как удобнее оплатить?",
        ),
        (
            "🎁 A gift of {count} photo. How would you like to pay?",
            "🎁 A gift of {count} photos. How would you like to pay?",
        ),
    ),
    "gift.paid": (
        (
            "🎁 Подарок оплачен: {count} фото. Перешлите эту ссылку — подарок получит тот, кто откроет её первым:\n"
            "{link}\nКод: <code>{code}</code>. Пока подарок не открыт, деньги можно вернуть в течение 14 дней.",
            "🎁 Подарок оплачен: {count} фото. Перешлите эту ссылку — подарок получит тот, кто откроет её первым:\n"
            "{link}\nКод: <code>{code}</code>. Пока подарок не открыт, деньги можно вернуть в течение 14 дней.",
            "🎁 Подарок оплачен: {count} фото. Перешлите эту ссылку — подарок получит тот, кто откроет её первым:\n"
            "{link}\nКод: <code>{code}</code>. Пока подарок не открыт, деньги можно вернуть в течение 14 дней.",
        ),
        (
            "🎁 Your gift of {count} photo is paid. Forward this link: whoever opens it first gets the gift:\n"
            "{link}\nCode: <code>{code}</code>. While it is unopened, you can get the money back within 14 days.",
            "🎁 Your gift of {count} photos is paid. Forward this link: whoever opens it first gets the gift:\n"
            "{link}\nCode: <code>{code}</code>. While it is unopened, you can get the money back within 14 days.",
        ),
    ),
    "gift.waiting": (
        (
            "🎁 Ваш подарок на {count} фото ещё не открыт: {link}\nКод: <code>{code}</code>",
            "🎁 Ваш подарок на {count} фото ещё не открыт: {link}\nКод: <code>{code}</code>",
            "🎁 Ваш подарок на {count} фото ещё не открыт: {link}\nКод: <code>{code}</code>",
        ),
        (
            "🎁 Your gift of {count} photo is not opened yet: {link}\nCode: <code>{code}</code>",
            "🎁 Your gift of {count} photos is not opened yet: {link}\nCode: <code>{code}</code>",
        ),
    ),
    "gift.redeemed": (
        (
            "🎁 Вам подарили фотосессию: {count} кредит на вашем балансе (всего {balance}). "
            "Нажмите «Новая фотосессия» и пришлите селфи — пакет начнётся без оплаты.",
            "🎁 Вам подарили фотосессию: {count} кредита на вашем балансе (всего {balance}). "
            "Нажмите «Новая фотосессия» и пришлите селфи — пакет начнётся без оплаты.",
            "🎁 Вам подарили фотосессию: {count} кредитов на вашем балансе (всего {balance}). "
            "Нажмите «Новая фотосессия» и пришлите селфи — пакет начнётся без оплаты.",
        ),
        (
            "🎁 Someone gave you a photo session: {count} credit is on your balance ({balance} in all). "
            "Tap New photo session and send your selfies: the pack starts without a payment.",
            "🎁 Someone gave you a photo session: {count} credits are on your balance ({balance} in all). "
            "Tap New photo session and send your selfies: the pack starts without a payment.",
        ),
    ),
    "promo.redeemed": (
        (
            "✅ Промокод принят: +{count} кредит (на балансе {balance}).",
            "✅ Промокод принят: +{count} кредита (на балансе {balance}).",
            "✅ Промокод принят: +{count} кредитов (на балансе {balance}).",
        ),
        (
            "✅ Promo code accepted: +{count} credit ({balance} on your balance).",
            "✅ Promo code accepted: +{count} credits ({balance} on your balance).",
        ),
    ),
    "referral.paid": (
        (
            "🎉 Ваш друг получил свою первую фотосессию — вам +{count} кредит. Спасибо, что рассказали о нас!",
            "🎉 Ваш друг получил свою первую фотосессию — вам +{count} кредита. Спасибо, что рассказали о нас!",
            "🎉 Ваш друг получил свою первую фотосессию — вам +{count} кредитов. Спасибо, что рассказали о нас!",
        ),
        (
            "🎉 A friend you invited got their first photo session: +{count} credit for you. Thanks for telling them!",
            "🎉 A friend you invited got their first photo session: +{count} credits for you. Thanks for telling them!",
        ),
    ),
    "invite.text": (
        (
            "Ваша ссылка для друзей:\n{link}\nКогда приглашённый получит свою первую оплаченную фотосессию, "
            "вам начислится {count} кредит. По ссылке пришли: {invited}, бонусов получено: {paid}.",
            "Ваша ссылка для друзей:\n{link}\nКогда приглашённый получит свою первую оплаченную фотосессию, "
            "вам начислится {count} кредита. По ссылке пришли: {invited}, бонусов получено: {paid}.",
            "Ваша ссылка для друзей:\n{link}\nКогда приглашённый получит свою первую оплаченную фотосессию, "
            "вам начислится {count} кредитов. По ссылке пришли: {invited}, бонусов получено: {paid}.",
        ),
        (
            "Your link for friends:\n{link}\nWhen someone you invited gets their first paid photo session, "
            "you get {count} credit. People who came by it: {invited}; bonuses paid: {paid}.",
            "Your link for friends:\n{link}\nWhen someone you invited gets their first paid photo session, "
            "you get {count} credits. People who came by it: {invited}; bonuses paid: {paid}.",
        ),
    ),
}
