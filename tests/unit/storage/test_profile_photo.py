"""The profile photo cut from a portrait: 640 × 640, around the face when its box is known."""

from __future__ import annotations

import io

from PIL import Image

from storage.images import profile_photo


def _portrait(width: int, height: int, face: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (width, height), (20, 20, 200))
    left, top, size = face
    image.paste((230, 30, 30), (left, top, left + size, top + size))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def test_cut_around_the_face_and_scaled_to_640() -> None:
    data = _portrait(1200, 1800, (100, 1300, 160))
    photo = _open(profile_photo(data, (100.0, 1300.0, 160.0)))
    assert photo.size == (640, 640)
    red, _, blue = photo.getpixel((320, 320))  # the face is in the middle of the square
    assert red > 180 and blue < 80
    assert photo.getpixel((5, 5))[2] > 150  # with background around it


def test_without_a_face_box_the_centre_is_used() -> None:
    data = _portrait(900, 1200, (0, 0, 10))
    photo = _open(profile_photo(data, None))
    assert photo.size == (640, 640)
    assert photo.getpixel((320, 320))[2] > 150
