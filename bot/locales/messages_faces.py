"""Texts of the face checks (selfies and the set as a whole): key → (Russian, English)."""

from __future__ import annotations

FACE_MESSAGES: dict[str, tuple[str, str]] = {
    "photo.rejected.face_none": (
        "❌ На этом фото не видно лица. Нужен снимок, где лицо смотрит в камеру и хорошо освещено.",
        "❌ I can't find a face in this photo. Please send one where your face looks at the camera in good light.",
    ),
    "photo.rejected.face_many": (
        "❌ На фото несколько человек. Пришлите снимок, где в кадре только вы.",
        "❌ There is more than one person in this photo. Please send one with only you in the frame.",
    ),
    "photo.rejected.face_small": (
        "❌ Лицо на фото слишком маленькое. Подойдите ближе или обрежьте снимок, чтобы лицо было крупнее.",
        "❌ The face in this photo is too small. Take it closer, or crop it so your face fills more of the frame.",
    ),
    "photo.rejected.face_blurry": (
        "❌ Лицо на фото размыто. Пришлите чёткий снимок, без движения и не в расфокусе.",
        "❌ The face in this photo is blurry. Please send a sharp one, without motion blur or soft focus.",
    ),
    "photo.rejected.face_mismatch": (
        "❌ Похоже, на этом фото другой человек, не тот, что на остальных. Нужны фото одного человека.",
        "❌ This one looks like a different person from the other photos. All photos must show the same person.",
    ),
    "faces.set.no_majority": (
        "⚠️ На этих фото, похоже, разные люди, и я не могу понять, кто из них вы. "
        "Начните новую фотосессию через /start и пришлите {min}–{max} фото только себя.",
        "⚠️ These photos seem to show different people, and I can't tell which one is you. "
        "Please start a new session with /start and send {min}–{max} photos of just yourself.",
    ),
}
