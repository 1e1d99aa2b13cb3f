"""MNIST digits put into photo-like frames: the inputs of test_digits.py and benchmarks/predict_frames.py.

A frame is 4:3 (640x480, 320x240, ... or portrait), plain paper with a gentle lighting gradient
and noise; the 28x28 digit is scaled up (bicubic, as a pen stroke photographed is smooth) to a
square of side (1 - margin) x the frame's shorter side, margin in [0, 0.5], and placed anywhere
in the frame: dark ink on light paper, or light ink on a dark board.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZES = ((640, 480), (480, 640), (320, 240), (160, 120))  # width, height: 4:3 frames


@dataclass(frozen=True)
class Frame:
    width: int = 640
    height: int = 480
    margin: float = 0.25  # 0: the digit's 28x28 square fills the shorter side; 0.5: half of it
    x: float = 0.5  # where the square sits in the room left: 0 left edge, 1 right edge
    y: float = 0.5
    dark_ink: bool = True  # dark ink on light paper (else light ink on a dark board)
    paper: float = 0.85  # paper's gray level for dark ink (its mirror 1 - paper for light ink)
    ink: float = 0.15
    gradient: float = 0.05  # lighting: the paper's level varies by this much across the frame
    noise: float = 0.02  # std of gaussian noise, of the full range


def place(digit: np.ndarray, f: Frame, seed: int = 0) -> np.ndarray:
    """digit (28, 28) uint8, white on black (MNIST's own) -> a frame (height, width) uint8."""
    rng = np.random.default_rng(seed)
    side = max(1, round((1 - f.margin) * min(f.width, f.height)))
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    left, top = round(f.x * (f.width - side)), round(f.y * (f.height - side))
    stroke = np.zeros((f.height, f.width))
    stroke[top : top + side, left : left + side] = np.clip(big, 0, 1)
    paper, ink = (f.paper, f.ink) if f.dark_ink else (1 - f.paper, 1 - f.ink)
    ramp = np.linspace(-f.gradient / 2, f.gradient / 2, f.width)[None, :]
    frame = paper + ramp + (ink - paper) * stroke + rng.normal(0, f.noise, (f.height, f.width))
    return (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)


def random_frame(rng: np.random.Generator) -> Frame:
    """A frame drawn as the benchmark draws them: any of SIZES, margin uniform in [0, 0.5], any
    position, either polarity, paper 0.7-0.95, ink 0.0-0.3."""
    width, height = SIZES[rng.integers(len(SIZES))]
    return Frame(int(width), int(height), float(rng.uniform(0, 0.5)), float(rng.uniform()), float(rng.uniform()),
                 bool(rng.integers(2)), float(rng.uniform(0.7, 0.95)), float(rng.uniform(0.0, 0.3)),
                 float(rng.uniform(0, 0.1)), float(rng.uniform(0, 0.03)))
