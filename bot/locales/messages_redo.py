"""Texts of redo by reply and the likeness guarantee: key → (Russian, English)."""

from __future__ import annotations

REDO_MESSAGES: dict[str, tuple[str, str]] = {
    "redo.queued.free": (
        "🔁 Делаю новый кадр этого портрета — пришлю его ответом на него. "
        "Бесплатных переделок в этом пакете осталось: {free_left}.",
        "🔁 Making a new take of this portrait — it will come as a reply to it. "
        "Free redos left in this pack: {free_left}.",
    ),
    "redo.queued.paid": (
        "🔁 Делаю новый кадр этого портрета за 1 кредит — пришлю его ответом на него. Кредитов на балансе: {balance}.",
        "🔁 Making a new take of this portrait for 1 credit — it will come as a reply to it. "
        "Credits left on your balance: {balance}.",
    ),
    "redo.confirm": (
        "Бесплатные переделки этого пакета закончились. Новый кадр стоит 1 кредит, на балансе: {balance}.",
        "The free redos of this pack are used up. A new take costs 1 credit; on your balance: {balance}.",
    ),
    "button.redo_paid": ("🔁 Переделать за 1 кредит", "🔁 Redo for 1 credit"),
    "redo.no_credits": (
        "Бесплатные переделки этого пакета закончились, а на балансе нет кредитов. "
        "Кредиты приходят с каждым пакетом: /start → стиль → пакет. Неиспользованные кредиты "
        "пакета (портреты, которые не получились) тоже остаются на балансе.",
        "The free redos of this pack are used up and your balance has no credits. "
        "Credits come with every pack: /start → style → pack. The credits a pack gives back "
        "(portraits that failed) stay on your balance too.",
    ),
    "redo.already": (
        "Этот запрос уже принят: новый кадр в работе или уже пришёл.",
        "This request is taken already: the new take is on its way or already here.",
    ),
    "redo.not_portrait": (
        "🔁 переделывает портреты: ответьте так на портрет из вашей фотосессии. Это сообщение — не портрет.",
        "🔁 redoes portraits: reply like this to a portrait from your photo session. That message isn't one.",
    ),
    "redo.no_reply": (
        "Чтобы переделать портрет, ответьте на него (смахните влево или «Ответить») — 🔁, «ещё» или /redo.",
        "To redo a portrait, reply to it (swipe left or tap Reply) with 🔁, “redo” or /redo.",
    ),
    "redo.photos_gone": (
        "Фото этой фотосессии уже удалены, и новый кадр сделать не из чего. Новая фотосессия: /start.",
        "The photos of this session are deleted, so there is nothing to make a new take from. New session: /start.",
    ),
    "redo.caption.free": ("🔁 Новый кадр", "🔁 A new take"),
    "redo.caption.paid": ("🔁 Новый кадр", "🔁 A new take"),
    "redo.caption.guarantee": (
        "🎯 Гарантия сходства: новые кадры портретов, которые вышли непохожими",
        "🎯 Likeness guarantee: new takes of the portraits that didn't look like you",
    ),
    "redo.failed.free": (
        "😔 Новый кадр не получился. Бесплатная переделка вернулась в пакет — можно попробовать ещё раз.",
        "😔 The new take didn't work out. The free redo is back in your pack — you can try again.",
    ),
    "redo.failed.paid": (
        "😔 Новый кадр не получился. Кредит вернулся на баланс.",
        "😔 The new take didn't work out. The credit is back on your balance.",
    ),
    "redo.guarantee.settled": (
        "🎯 Гарантия сходства: новых кадров — {delivered}. "
        "Кредитов за портреты, которые так и не вышли похожими, возвращено на баланс: {credited}.",
        "🎯 Likeness guarantee: new takes sent: {delivered}. "
        "Credits back on your balance for portraits that still didn't look like you: {credited}.",
    ),
    "redo.guarantee.started": (
        "🎯 Похожих на вас портретов меньше обещанных {promised}: непохожие переделываю бесплатно "
        "(портретов: {count}), пришлю следом.",
        "🎯 Fewer than the promised {promised} portraits look like you: I'm redoing the unlike ones free "
        "(portraits: {count}); they follow shortly.",
    ),
    "redo.closing_hint": (
        "🔁 Портрет не нравится? Ответьте на него «🔁» — бесплатных переделок в пакете: {free}.",
        "🔁 Don't like a portrait? Reply 🔁 to it — free redos in this pack: {free}.",
    ),
    "redo.guarantee.promise": (
        "🎯 Гарантия сходства: похожих на вас портретов — не меньше {promised} из {total}, "
        "иначе недостающие переделаю бесплатно.",
        "🎯 Likeness guarantee: at least {promised} of {total} portraits look like you, "
        "or I redo the missing ones free.",
    ),
    "admin.stats.redos": (
        "Переделки по ответу и по гарантии сходства: {redos}; кредитов возвращено гарантией: {credited}",
        "Redos by reply and by the likeness guarantee: {redos}; credits back from the guarantee: {credited}",
    ),
    "redo.picker": (
        "🎯 Гарантия сходства: не меньше {share}% портретов пакета похожи на вас — иначе недостающие "
        "переделаем бесплатно. 🔁 Бесплатных переделок по ответу на портрет в каждом пакете: {free}.",
        "🎯 Likeness guarantee: at least {share}% of a pack's portraits look like you — or we redo the "
        "missing ones free. 🔁 Free redos by replying to a portrait, in every pack: {free}.",
    ),
}
