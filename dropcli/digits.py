"""A digit in any frame made into an MNIST input, the way MNIST made its own.

    >>> digit = to_mnist(gray)          # gray: (H, W) floats in [0, 1], e.g. a 640x480 photo
    >>> digit.x.shape, digit.inverted, digit.notes
    ((28, 28), True, [])

MNIST's digits were cropped to their ink, scaled to fit a 20x20 box keeping their aspect ratio
(with anti-aliasing), and placed in a 28x28 field so that their centre of mass is at its centre
(pixel 14, 14: the mean over MNIST's training digits is 13.99, 14.00). to_mnist does the same to
a photo or drawing: it decides the ink's polarity from the border (MNIST is white ink on black),
removes the paper's level and noise, crops to the ink, scales and centres. An MNIST digit goes
through unchanged. It says, in `notes`, when an image is far from what the model saw: a tiny
digit, ambiguous polarity, no ink at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOX = 20  # MNIST: each digit fits a 20x20 box, aspect ratio kept
FIELD = 28  # MNIST: placed in a 28x28 field
CENTRE = 14.0  # MNIST: centre of mass at pixel (14, 14) (pixel centres at 0..27)
MIN_INK_PIXELS = 10  # an ink box smaller than this (its longer side, in the image's pixels) is enlarged into a blur
MIN_CONTRAST = 0.08  # ink and paper closer than this (of the full range) are no digit at all
STRONG = 0.15  # a pixel this far from the paper (of the full range; 5 sigma of its noise if more) is surely ink
AMBIGUOUS = 0.4  # a border with more than this fraction far from its median is no single paper
QUANTUM = 1 / 255  # one gray level of an 8-bit image: the least noise a photographed paper has
DRAW = "give a photo, scan or drawing of one digit"  # the fix for an image without one
SPECK = 0.05  # ink components smaller than this fraction of the largest are noise, not strokes


@dataclass
class Digit:
    """An image made into an MNIST input by to_mnist, with what the user should know about it."""

    x: np.ndarray  # (28, 28) float32 in [0, 1], white ink on black, as MNIST
    inverted: bool  # True when the image was dark ink on light paper
    notes: list[str] = field(default_factory=list)  # why the prediction may be unreliable, one sentence each
    ink_size: tuple[int, int] = (0, 0)  # the ink's box (height, width) in the image's pixels

    @property
    def found(self) -> bool:
        """Whether the image held a digit at all (ink that stands out from the paper); an image
        without one is all zeros, which no prediction should be made of."""
        return self.ink_size != (0, 0)


def _border(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image's border, a ring 2% of the shorter side wide: (its pixels, the differences of
    neighbouring pixels along it, which see the paper's noise but not its lighting or a second paper)."""
    r = max(1, round(0.02 * min(gray.shape)))
    strips = [gray[:r], gray[-r:], gray[:, :r].T, gray[:, -r:].T]
    return (np.concatenate([s.ravel() for s in strips]),
            np.concatenate([np.diff(s, axis=1).ravel() for s in strips]))


@dataclass
class Paper:
    """What paper() finds the paper to be."""

    level: float  # the median of the image's border
    step: float  # how far from `level` a pixel is surely ink: STRONG, or 5 sigma of the border's noise
    dark_ink: bool  # more pixels are surely darker than the paper than surely lighter
    mixed: float  # the fraction of the border far from `level`: near 0 for one paper, 0.5 for two


def paper(gray: np.ndarray) -> Paper:
    """What the paper is, from the image's border (the paper shows around a digit) and what
    differs from it: gray (H, W) in [0, 1]."""
    border, steps = _border(gray)
    level = float(np.median(border))
    sigma = 1.4826 * float(np.median(np.abs(steps))) / np.sqrt(2) if steps.size else 0.0
    step = max(STRONG, 5 * sigma)
    dark, light = int((gray < level - step).sum()), int((gray > level + step).sum())
    return Paper(level, step, dark > light, float((np.abs(border - level) > step).mean()))


def _paper_plane(x: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's level as a plane a + b*col + c*row (a photo's lighting varies across the frame)
    fitted to the paper pixels by least squares, twice more without those over 3 sigma off, and the
    paper's noise (a robust sigma, at least one 8-bit gray level). A drawn paper (most of its
    pixels at one exact level, none below it: a drawing, an MNIST digit) gives that level and 0."""
    h, w = x.shape
    rows, cols = np.nonzero(paper)
    stride = max(1, rows.size // 20_000)  # a sample is enough for three numbers
    rows, cols = rows[::stride], cols[::stride]
    values = x[rows, cols]
    if values.size < 3:
        return np.full(x.shape, float(np.median(x))), QUANTUM
    levels, counts = np.unique(values, return_counts=True)
    mode = levels[np.argmax(counts)]
    if counts.max() > 0.8 * values.size and not (values < mode).any():
        return np.full(x.shape, mode), 0.0  # drawn, not photographed: every pixel above the paper is ink
    A = np.stack([np.ones(rows.size), cols / max(w - 1, 1), rows / max(h - 1, 1)], axis=1)
    keep = np.ones(rows.size, dtype=bool)
    sigma = QUANTUM
    for _ in range(3):
        coef = np.linalg.lstsq(A[keep], values[keep], rcond=None)[0]
        residual = values - A @ coef
        centre = np.median(residual)
        sigma = max(1.4826 * float(np.median(np.abs(residual - centre))), QUANTUM)
        keep = np.abs(residual - centre) <= 3 * sigma
    col, row = np.arange(w) / max(w - 1, 1), np.arange(h) / max(h - 1, 1)
    return coef[0] + coef[1] * col[None, :] + coef[2] * row[:, None], sigma


def _ink_only(x: np.ndarray, level: float, step: float) -> np.ndarray:
    """Ink as 1, paper as exactly 0 (x with the ink bright, the paper at about `level`): the
    paper's plane plus three times its noise maps to 0, the sure ink's full level (95th
    percentile) to 1; only ink connected to sure ink (over level + step) is kept, so the paper's
    noise never becomes ink (hysteresis)."""
    from scipy import ndimage

    strong = x > level + step
    plane, sigma = _paper_plane(x, ~strong & (x < level + step / 2))
    x = x - plane
    low = 3 * sigma
    high = float(np.percentile(x[strong], 95))
    x = np.clip((x - low) / max(high - low, 1e-6), 0.0, 1.0)
    labels, _ = ndimage.label(x > 0, structure=np.ones((3, 3)))
    touching = np.unique(labels[strong & (labels > 0)])
    return np.where(np.isin(labels, touching), x, 0.0)


def _without_specks(x: np.ndarray) -> np.ndarray:
    """x with ink components (8-connected) smaller than SPECK of the largest set to 0."""
    from scipy import ndimage

    labels, n = ndimage.label(x > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return x
    sizes = ndimage.sum_labels(np.ones_like(x), labels, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], sizes >= SPECK * sizes.max()])
    return np.where(keep[labels], x, 0.0)


def _fit_box(crop: np.ndarray) -> np.ndarray:
    """The crop scaled so that its longer side is BOX pixels, aspect ratio kept, anti-aliased."""
    from PIL import Image

    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return crop.astype(np.float32)
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _centre(patch: np.ndarray) -> np.ndarray:
    """The patch in a FIELD x FIELD field, shifted by whole pixels so that its centre of mass
    lands on (CENTRE, CENTRE), kept inside the field."""
    from scipy import ndimage

    h, w = patch.shape
    cy, cx = ndimage.center_of_mass(patch) if patch.sum() > 0 else ((h - 1) / 2, (w - 1) / 2)
    oy = min(max(int(round(CENTRE - cy)), 0), FIELD - h)
    ox = min(max(int(round(CENTRE - cx)), 0), FIELD - w)
    out = np.zeros((FIELD, FIELD), dtype=np.float32)
    out[oy : oy + h, ox : ox + w] = patch
    return out


def to_mnist(gray: np.ndarray, invert: bool | None = None) -> Digit:
    """An image as MNIST would have made it: gray (H, W) floats in [0, 1] (0 black) in, a Digit
    with x (28, 28) float32, white ink on black, out. `invert` None decides the polarity from the
    paper (dark ink on light paper is inverted); True/False say it. Never raises for a valid
    array: an image with no ink gives zeros and a note."""
    gray = np.asarray(gray, dtype=np.float64)
    blank = Digit(np.zeros((FIELD, FIELD), dtype=np.float32), False)
    if gray.ndim != 2 or gray.size == 0 or float(gray.max() - gray.min()) < MIN_CONTRAST:
        blank.notes.append(f"no digit found: the image is almost uniform; {DRAW}")
        return blank
    p = paper(gray)
    inverted = p.dark_ink if invert is None else invert
    notes = []
    if invert is None and p.mixed > AMBIGUOUS:
        notes.append(f"the ink's polarity is ambiguous ({p.mixed:.0%} of the border is unlike the rest: no "
                     f"single paper); {'inverted' if inverted else 'not inverted'} as a guess, say --invert "
                     "(dark ink on light paper) or --no-invert")
    x, level = (1.0 - gray, 1.0 - p.level) if inverted else (gray, p.level)
    if not (x > level + p.step).any():
        blank.inverted = inverted
        blank.notes.append("no digit found: nothing stands out from the paper; "
                           + ("is --invert/--no-invert right?" if invert is not None else DRAW))
        return blank
    x = _without_specks(_ink_only(x, level, p.step))
    rows, cols = np.nonzero(x.any(axis=1))[0], np.nonzero(x.any(axis=0))[0]
    crop = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if max(crop.shape) < MIN_INK_PIXELS:
        notes.append(f"the digit is only {crop.shape[0]}x{crop.shape[1]} pixels, too small to read reliably; "
                     "crop the image closer or photograph the digit larger")
    return Digit(_centre(_fit_box(crop)), inverted, notes, crop.shape)
