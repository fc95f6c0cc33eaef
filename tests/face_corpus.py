"""Real faces for the face checks, read from installed packages (never copied into this repository).

- scikit-image: ``astronaut()`` (Eileen Collins, public domain), ``coffee()`` and ``chelsea()`` (no face);
- matplotlib's sample data: ``grace_hopper.jpg``;
- the insightface wheel's ``data/images``: ``t1.jpg`` (a group of six) and ``Tom_Hanks_54745.png`` (aligned, 112 px).
  insightface is only a file source: its files are located through the installed distribution's
  metadata, the package itself is never imported (that would load onnxruntime and OpenCV).

None of them has a second photo of the same person, so "same person" means an augmented copy
(flip, scale, small rotation, JPEG recompression, crop) and "different people" pairs two sources.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from importlib import metadata

from PIL import Image, ImageFilter

Augment = Callable[[Image.Image], Image.Image]


@cache
def _insightface_image(name: str) -> bytes:
    path = metadata.distribution("insightface").locate_file(f"insightface/data/images/{name}")
    return path.read_bytes()  # type: ignore[union-attr]


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def grace_hopper() -> Image.Image:
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


def group_photo() -> Image.Image:
    return Image.open(io.BytesIO(_insightface_image("t1.jpg"))).convert("RGB")


def tom_hanks() -> Image.Image:
    return Image.open(io.BytesIO(_insightface_image("Tom_Hanks_54745.png"))).convert("RGB")


def coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


# ---------------------------------------------------------------- people as selfies (short side ≥ 512)


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


def astronaut_selfie() -> Image.Image:
    """The astronaut cropped to head and shoulders, 2x: the face fills a selfie-like share of the frame."""
    return _scaled(astronaut().crop((120, 20, 420, 320)), 2.0)


def hanks_selfie() -> Image.Image:
    """The aligned 112 px crop framed with a margin (so a crop still leaves the whole face), scaled to 512."""
    framed = Image.new("RGB", (144, 144), (120, 120, 120))
    framed.paste(tom_hanks(), (16, 16))
    return framed.resize((512, 512), Image.Resampling.LANCZOS)


PEOPLE: dict[str, Callable[[], Image.Image]] = {
    "hopper": grace_hopper,
    "astronaut": astronaut_selfie,
    "hanks": hanks_selfie,
}


# ---------------------------------------------------------------- augmentations (same person)


def _rotate(degrees: float) -> Augment:
    return lambda image: image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))


def _recompress(quality: int) -> Augment:
    def apply(image: Image.Image) -> Image.Image:
        return Image.open(io.BytesIO(jpeg(image, quality))).convert("RGB")

    return apply


def _centre_crop(share: float) -> Augment:
    def apply(image: Image.Image) -> Image.Image:
        width, height = image.size
        keep_w, keep_h = round(width * share), round(height * share)
        left, top = (width - keep_w) // 2, (height - keep_h) // 2
        return _scaled(image.crop((left, top, left + keep_w, top + keep_h)), 1 / share)

    return apply


AUGMENTATIONS: dict[str, Augment] = {
    "flip": lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "scale_up": lambda image: _scaled(image, 1.5),
    "scale_down": lambda image: _scaled(image, 0.8),
    "rotate_left": _rotate(8),
    "rotate_right": _rotate(-10),
    "jpeg_q35": _recompress(35),
    "crop": _centre_crop(0.85),
    "flip_rotate_jpeg": lambda image: _recompress(50)(_rotate(5)(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))),
}


def variant(person: str, augmentation: str | None = None) -> Image.Image:
    image = PEOPLE[person]()
    return AUGMENTATIONS[augmentation](image) if augmentation else image


# ---------------------------------------------------------------- bad selfies


def blurred(image: Image.Image, radius: float = 3.0) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def tiny_face(image: Image.Image, canvas: int = 1024, share: float = 0.5) -> Image.Image:
    """The photo shrunk and placed in a large plain frame: a real face, far too small in the picture."""
    small = _scaled(image, share)
    frame = Image.new("RGB", (canvas, canvas), (96, 110, 120))
    frame.paste(small, ((canvas - small.width) // 2, (canvas - small.height) // 3))
    return frame


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def selfie_set(person: str, count: int) -> list[bytes]:
    """``count`` distinct JPEG selfies of one person (each a different augmentation, all ≥ 512 px)."""
    names = [None, "flip", "scale_up", "rotate_left", "jpeg_q35", "crop", "rotate_right", "flip_rotate_jpeg"]
    photos = []
    for name in names[:count]:
        image = variant(person, name)
        if min(image.size) < 512:
            image = _scaled(image, 512 / min(image.size))
        photos.append(jpeg(image))
    return photos
