"""Your own digit images as MNIST inputs: 28x28, white ink on black, values in [0, 1].

    $ dropcli predict results/runs/<run> photo.jpg drawing.png

Pillow reads the file; the photo's EXIF orientation is applied (phones store portrait photos
rotated, with a tag); transparency is composited onto a background that contrasts with the ink
(paint programs draw the digit in the alpha channel); the image is converted to gray and
resized. MNIST digits are white on black: dark ink on light paper is inverted, by default when
the image's border is mostly light (--invert / --no-invert decide instead).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from dropcli.errors import UsageError

MAX_PIXELS = 50_000_000  # far beyond any digit photo, far below a decompression bomb's memory


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


def load_image(path: Path, invert: bool | None = None):
    """A (1, 784) float tensor in [0, 1], white digit on black; raises UsageError for a file that
    is not an image, or one too large to be a digit."""
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    hint = "give a PNG or JPEG of a digit"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise UsageError(f"{path} is {im.width}x{im.height} pixels, too large for a digit; "
                                     f"scale it below {MAX_PIXELS // 1_000_000} megapixels")
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    span = arr.max() - arr.min()
                    im = Image.fromarray(((arr - arr.min()) / (span or 1) * 255).astype(np.uint8))
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    im = _flatten_alpha(im)
                im = im.convert("L")
                x = np.asarray(im.resize((28, 28), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(f"{path} is too large to be a digit image (a decompression bomb?); {hint}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UsageError(f"{path} is not a readable image; {hint}") from None
    if invert is None:
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
        invert = bool(border.mean() > 0.5)  # MNIST's border is black
    x = 1.0 - x if invert else x
    return torch.from_numpy(x.reshape(1, 784).copy()), invert
