"""Your own digit images, from a photo's 640x480 frame or a drawing, as MNIST inputs: 28x28, white ink on black.

    $ dropcli predict results/runs/<run> photo.jpg drawing.png

Pillow reads the file; the photo's EXIF orientation is applied (phones store portrait photos
rotated, with a tag); transparency is composited onto a background that contrasts with the ink
(paint programs draw the digit in the alpha channel); the image is converted to gray and
made into an MNIST digit as MNIST made its own (digits.py: cropped to the ink, fitted into 20x20
keeping the aspect ratio, centred by its centre of mass in 28x28). MNIST digits are white on
black: dark ink on light paper is inverted, by default when the image's border is mostly light
(--invert / --no-invert decide instead).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dropcli.digits import Digit, to_mnist
from dropcli.errors import UsageError

MAX_PIXELS = 50_000_000  # far beyond any digit photo, far below a decompression bomb's memory
MAX_SIDE = 2048  # larger images are scaled down first: a digit needs far fewer pixels, numpy's arrays stay small


def _flatten_alpha(im):
    """RGBA/LA/P-with-transparency onto a solid background that contrasts with the ink's colour."""
    from PIL import Image

    rgba = im.convert("RGBA")
    arr = np.asarray(rgba, dtype=np.float64)
    alpha = arr[..., 3] / 255.0
    if alpha.min() >= 1.0:
        return rgba.convert("RGB")
    gray = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    ink = (gray * alpha).sum() / max(alpha.sum(), 1e-9)  # the mean colour of what is drawn
    background = (255, 255, 255) if ink < 128 else (0, 0, 0)
    canvas = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def read_gray(path: Path) -> np.ndarray:
    """An image file as gray levels: (H, W) float64 in [0, 1], 0 black, upright (EXIF applied),
    transparency composited onto a contrasting background, 16-bit and float images scaled to
    their range, and an image larger than MAX_SIDE pixels on a side scaled down (anti-aliased).
    Raises UsageError for a file that is not an image (a FIFO or a device is refused before it is
    opened: a pipe would block the read forever), one with pixels that are not numbers (NaN or
    infinite, in a float image), or one too large to be a digit."""
    import os
    import stat

    from PIL import Image, ImageOps, UnidentifiedImageError

    hint = "give a PNG or JPEG of a digit"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a link to a regular file is the user's choice
            raise UsageError(f"{path} is not a regular file, so not an image; {hint}")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise UsageError(f"{path} is {im.width}x{im.height} pixels, too large for a digit; "
                                     f"scale it below {MAX_PIXELS // 1_000_000} megapixels")
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    if not np.isfinite(arr).all():  # one NaN would make every scaled pixel NaN
                        raise UsageError(f"{path} has pixels that are not numbers (NaN or infinite); {hint}")
                    span = arr.max() - arr.min()
                    im = Image.fromarray(((arr - arr.min()) / (span or 1) * 255).astype(np.uint8))
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    im = _flatten_alpha(im)
                im = im.convert("L")
                if max(im.size) > MAX_SIDE:
                    scale = MAX_SIDE / max(im.size)
                    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                                   Image.Resampling.BOX)
                return np.asarray(im, dtype=np.float64) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(f"{path} is too large to be a digit image (a decompression bomb?); {hint}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UsageError(f"{path} is not a readable image; {hint}") from None


def load_image(path: Path, invert: bool | None = None) -> Digit:
    """A digit image file as an MNIST input: read_gray, then digits.to_mnist (crop to the ink, fit
    20x20 keeping the aspect ratio, centre of mass at the centre of 28x28). Returns a Digit: x
    (28, 28) float32 in [0, 1], white on black; `inverted`; `notes` saying why the image is far
    from MNIST (tiny digit, ambiguous polarity, no ink). invert None decides the polarity from the
    image's border; True/False say it. Raises UsageError as read_gray does, and for an image
    without a digit (uniform, or nothing standing out from its paper): no prediction is made of it."""
    digit = to_mnist(read_gray(path), invert)
    if not digit.found:
        raise UsageError(f"{path}: {digit.notes[0]}")
    return digit
