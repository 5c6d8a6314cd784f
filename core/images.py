"""Reading images: any mode PIL opens becomes 8-bit RGB, or a UserError naming the file."""
from __future__ import annotations

import logging

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)

# Decompression-bomb guard: refuse absurd sizes rather than exhaust memory.
MAX_PIXELS = 12_000 * 12_000


class ImageReadError(UserError):
    pass


def read_image(path: str, exif_transpose: bool = False) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB.

    Grayscale, palette, RGBA (composited on white: transparent pixels are background) and
    16-bit images are converted. ``exif_transpose`` turns camera photos upright, as
    viewers show them; dataset annotations refer to the stored pixels, so the training
    and evaluation pipelines leave it off.
    """
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        return _decode(path, exif_transpose, truncated_ok=False)
    except ImageReadError as exc:
        if "truncated" not in str(exc).lower():
            raise
    # Cut short (an interrupted copy, a few bytes missing): decode what is there, as
    # OpenCV and image viewers do; only an image that cannot be decoded at all fails.
    arr = _decode(path, exif_transpose, truncated_ok=True)
    log.warning("%s: image file is truncated; decoded what is there", path)
    return arr


def _decode(path: str, exif_transpose: bool, truncated_ok: bool) -> np.ndarray:
    from PIL import Image, ImageFile, ImageOps
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok
    try:
        with Image.open(path) as im:
            im.load()
            if exif_transpose:
                im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                top = arr.max() if arr.size else 1
                im = Image.fromarray((arr * (255.0 / max(top, 1))).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: image too large (over {MAX_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(f"{path}: empty image")
    return arr
