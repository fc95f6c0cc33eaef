"""Texts of style previews (/examples, the admin's side): key → (Russian, English)."""

from __future__ import annotations

EXAMPLE_MESSAGES: dict[str, tuple[str, str]] = {
    "examples.send_selfies": (
        "🖼 Примеры стилей. Пришлите {count} селфи модели, которая согласилась на показ своих портретов "
        "(фото или файлы изображений). Из них я сделаю по {per_style} портрета каждого стиля — их увидит "
        "каждый новый пользователь при выборе стиля.",
        "🖼 Style examples. Send {count} selfies of a model who agreed to have their portraits shown "
        "(photos or image files). I'll make {per_style} portraits of every style from them; every new user "
        "sees them when picking a style.",
    ),
    "examples.replaces": (
        "Нынешние примеры остаются, пока новые не будут готовы целиком.",
        "The current examples stay until the new ones are all ready.",
    ),
    "examples.none_yet": (
        "Примеров пока нет: выбор стиля показывает только текст.",
        "There are no examples yet: the style picker shows text only.",
    ),
    "examples.last_failed": (
        "⚠️ Прошлый набор не получился: для одного из стилей не вышло ни одного портрета.",
        "⚠️ The last set did not work out: one of the styles got no portrait at all.",
    ),
    "examples.taken": (
        "✅ Селфи {count} из {total} принято.",
        "✅ Selfie {count} of {total} taken.",
    ),
    "examples.started": (
        "🎨 Все {count} селфи на месте. Делаю по {per_style} портрета каждого стиля — они придут сюда "
        "для просмотра, а /examples покажет, сколько готово. Выбор стиля покажет их, когда будут готовы все.",
        "🎨 All {count} selfies are in. Making {per_style} portraits of every style: they arrive here as a "
        "preview, and /examples shows how many are ready. The style picker shows them once all are done.",
    ),
    "examples.not_collecting": (
        "Этот набор уже не принимает фото (примеры делаются или /examples начат заново): фото не использовано.",
        "This set takes no more photos (its examples are being made, or /examples started over): "
        "the photo was not used.",
    ),
    "examples.review_failed": (
        "⚠️ Проверка лиц не приняла эти селфи: на всех нужен один и тот же человек, хорошо видный. "
        "Пришлите ещё фото или начните заново с /examples.",
        "⚠️ The face check did not accept these selfies: every one must clearly show the same person. "
        "Send more photos, or start over with /examples.",
    ),
}
