"""Predictions on digits in photo-like frames, against the same digits given as 28x28 images.

    $ .venv/bin/python benchmarks/predict_frames.py                     # trains a 3-epoch run first
    $ .venv/bin/python benchmarks/predict_frames.py --run results/runs/<run> --digits 500

The first N MNIST test digits are each put into a generated frame (tests/frames.py: 4:3 frames
640x480 to 160x120, landscape or portrait; margins up to half the frame; anywhere in it; dark ink
on light paper or the reverse; a lighting gradient and noise), saved as PNG or JPEG (quality 90,
every other one) and read back through `dropcli predict`'s own path (images.load_image). Printed:
accuracy on the 28x28 tensors, on the same digits as 28x28 PNG files, on the frames (all, and by
polarity, frame size and margin), and on the frames with the whole frame resized to 28x28 (what
predict did before digits.py), all from one model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from frames import place, random_frame  # noqa: E402

from dropcli.config import TrainConfig  # noqa: E402
from dropcli.data import load_dataset  # noqa: E402
from dropcli.evaluation import probabilities  # noqa: E402
from dropcli.images import load_image  # noqa: E402


def model(run: str | None, epochs: int, data):
    """A run's weights, or a model trained here for `epochs` epochs (tutorial settings otherwise)."""
    if run:
        from dropcli.checkpoint import load_run

        return load_run(run)[0]
    from dropcli.train import train

    t0 = time.perf_counter()
    result = train(TrainConfig(epochs=epochs), data)
    print(f"trained {epochs} epochs in {time.perf_counter() - t0:.0f} s: test accuracy {result.test_accuracy:.4f}")
    return result.params


def old_path(path: Path) -> np.ndarray:
    """What predict did before: the whole frame resized to 28x28, inverted when its border is light."""
    with Image.open(path) as im:
        x = np.asarray(im.convert("L").resize((28, 28), Image.Resampling.LANCZOS), dtype=np.float32) / 255
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    return 1 - x if border.mean() > 0.5 else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a run folder to use (default: train one here)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the model trained here (default 3)")
    ap.add_argument("--digits", type=int, default=500, help="MNIST test digits (default 500)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the frames (default 0)")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = load_dataset("mnist")
    params = model(args.run, args.epochs, data)
    n = args.digits
    digits = (data.test.x[:n].reshape(n, 28, 28).numpy() * 255).round().astype(np.uint8)
    labels = data.test.y[:n].numpy()
    rng = np.random.default_rng(args.seed)
    rows = {"plain": [], "png": [], "frame": [], "old": []}
    conditions, noted = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, digit in enumerate(digits):
            f = random_frame(rng)
            png, frame = Path(tmp) / f"{i}.png", Path(tmp) / (f"{i}.jpg" if i % 2 else f"{i}f.png")
            Image.fromarray(digit).save(png)
            Image.fromarray(place(digit, f, seed=i)).save(frame, quality=90)
            rows["plain"].append(digit.astype(np.float32) / 255)
            rows["png"].append(load_image(png).x)
            framed = load_image(frame)
            rows["frame"].append(framed.x)
            noted += [f"{frame.name}: {note}" for note in framed.notes]
            rows["old"].append(old_path(frame))
            conditions.append(f)
    seconds = (time.perf_counter() - t0) / n
    pred = {k: probabilities(params, torch.from_numpy(np.stack(v).reshape(n, 784)))[0].argmax(1).numpy()
            for k, v in rows.items()}
    right = {k: p == labels for k, p in pred.items()}
    print(f"{n} MNIST test digits; {seconds * 1000:.0f} ms per digit to generate, save and read back")
    print(f"{'input':44s} {'accuracy':>9s} {'digits':>7s}")
    for name, label in (("plain", "28x28 tensors"), ("png", "28x28 PNG files, through predict's path"),
                        ("frame", "frames, through predict's path"), ("old", "frames, whole frame resized (before)")):
        print(f"{label:44s} {right[name].mean():9.4f} {n:7d}")
    groups = {"dark ink on light paper": [f.dark_ink for f in conditions],
              "light ink on dark": [not f.dark_ink for f in conditions],
              "margin < 0.25": [f.margin < 0.25 for f in conditions],
              "margin 0.25-0.5": [f.margin >= 0.25 for f in conditions]}
    for size in sorted({(f.width, f.height) for f in conditions}):
        groups[f"{size[0]}x{size[1]} frame"] = [(f.width, f.height) == size for f in conditions]
    for name, mask in groups.items():
        m = np.array(mask)
        print(f"  frames, {name:36s} {right['frame'][m].mean():9.4f} {m.sum():7d}   (28x28: {right['plain'][m].mean():.4f})")
    print(f"notes on the frames (tiny digit, ambiguous polarity, no ink): {len(noted)}" + "".join(f"\n  {x}" for x in noted[:5]))
    print(f"frames predicted as the 28x28 tensors: {(pred['frame'] == pred['plain']).mean():.4f}")
    print(f"gap, 28x28 tensors minus frames: {100 * (right['plain'].mean() - right['frame'].mean()):+.1f} points")


if __name__ == "__main__":
    main()
