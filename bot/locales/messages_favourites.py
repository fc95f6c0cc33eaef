"""Texts of favourites and the profile photo: key → (Russian, English)."""

from __future__ import annotations

FAVOURITE_MESSAGES: dict[str, tuple[str, str]] = {
    "button.profile_photo": ("🖼 Сделать аватарку", "🖼 Make a profile photo"),
    "button.originals_all": ("📁 Все портреты", "📁 All portraits"),
    "button.originals_favourites": ("❤️ Только избранные", "❤️ Favourites only"),
    "originals.choose": (
        "Какие оригиналы прислать? Избранные — портреты, на которые вы поставили ❤️.",
        "Which originals shall I send? Favourites are the portraits you put a ❤️ on.",
    ),
    "favourites.none": (
        "Избранных пока нет. Поставьте на портрет реакцию ❤️ (или 👍, 🔥) — он попадёт в избранное, "
        "а /favourites пришлёт все избранные снова. Уберёте реакцию — портрет уйдёт из избранного.",
        "No favourites yet. React to a portrait with ❤️ (or 👍, 🔥) and it becomes a favourite; "
        "/favourites sends all of them again. Take the reaction away and it is no longer one.",
    ),
    "favourites.sending": ("Отправляю ваши избранные портреты…", "Sending your favourite portraits…"),
    "profile.preparing": ("Делаю аватарку — одну минуту.", "Making your profile photo — one moment."),
    "profile.busy": ("Аватарка уже готовится.", "Your profile photo is already being made."),
    "profile.gone": (
        "Портретов этой фотосессии больше нет — аватарку сделать не из чего.",
        "The portraits of this session are gone, so there is nothing to make a profile photo from.",
    ),
    "profile.caption": (
        "Ваша аватарка 640×640: лицо в центре. Выше — она же файлом, без сжатия.",
        "Your 640×640 profile photo, face in the middle. The file above is the same picture, uncompressed.",
    ),
    "admin.stats.favourites": (
        "❤️ Избранное: добавлено {added}; по стилям: {styles}",
        "❤️ Favourites: {added} added; by style: {styles}",
    ),
}
