"""Find, verify and load MNIST-format datasets as tensors on the chosen device.

    $ dropcli train                        # bundled MNIST, checksummed, works offline
    $ dropcli train --data-dir ~/mnist     # your own four IDX files (.gz or not)
    $ dropcli train --dataset fashion-mnist --data-dir ~/fashion

The bundled MNIST (the four gzipped IDX files of Y. LeCun, C. Cortes and C. J. C. Burges) lives
beside this module with its SHA-256 sums. On first use the sums are checked and the files are
decompressed into a cache ($DROPCLI_DATA_DIR, else ~/.cache/dropcli), which
torchvision.datasets.MNIST(root, download=False) then reads. Nothing is downloaded for MNIST.
Every split is one float32 tensor in [0, 1] of shape (N, 784) on the device: batches are taken
by indexing, never through a DataLoader.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from dropcli.config import Stream, stream_seed
from dropcli.errors import DropcliError
from dropcli.files import atomic_write_text

BUNDLE = Path(__file__).parent / "mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASS_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "kmnist": "KMNIST"}


@dataclass
class Split:
    x: torch.Tensor  # (N, 784) float32 in [0, 1], on the device
    y: torch.Tensor  # (N,) int64 labels, on the device

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train_full: Split  # all 60,000 training images, in file order
    test: Split
    source: str  # where the files came from, recorded with every result

    def part(self, validation_size: int, n_train: int = 1) -> tuple[Split, Split | None]:
        """The tutorial's split: the first `validation_size` images validate, the rest (the
        training part) train; refused when the data set holds fewer than validation + n_train."""
        v, have = validation_size, len(self.train_full)
        if have < v + n_train:
            raise DropcliError(f"{self.name} from {self.source} holds {have:,} training images, fewer than "
                               f"--validation-size {v:,} plus {n_train:,} to train on; "
                               f"use --train-size {max(have - v, 0):,} or less, or a smaller --validation-size")
        x, y = self.train_full.x, self.train_full.y
        return Split(x[v:], y[v:]), (Split(x[:v], y[:v]) if v else None)

    def splits(self, config) -> tuple[Split, Split | None]:
        """A config's training images (its subset of the training part) and validation images."""
        part, val = self.part(config.validation_size, config.n_train)
        idx = subset_indices(config, len(part))
        if idx is None:
            return Split(part.x[: config.n_train], part.y[: config.n_train]), val
        idx = idx.to(part.x.device)
        return Split(part.x[idx], part.y[idx]), val


def subset_indices(config, part_size: int) -> torch.Tensor | None:
    """Which images of the training part a config trains on, ascending; None for the first
    n_train (all of them without --train-size, or with --subset first). A random subset is drawn
    from the config's seed alone, so cells of one seed share it across keep probabilities."""
    if config.train_size is None or config.subset == "first":
        return None

    g = torch.Generator().manual_seed(stream_seed(config.seed, Stream.SUBSET))
    return torch.randperm(part_size, generator=g)[: config.train_size].sort().values


def cache_dir() -> Path:
    env = os.environ.get("DROPCLI_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dropcli"


def read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(paths: list[Path]) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def prepare_bundled_mnist(root: Path | None = None, bundle: Path = BUNDLE) -> Path:
    """Verify the bundled .gz files and decompress them once into root/MNIST/raw; return root."""
    root = Path(root or cache_dir())
    raw = root / "MNIST" / "raw"
    stamp_file = raw / ".verified.json"
    targets = [raw / f for f in FILES]
    try:
        if json.loads(stamp_file.read_text()) == _stamp(targets):
            return root  # verified on an earlier run and untouched since
    except (OSError, ValueError):
        pass
    gz_sums, raw_sums = read_sums(bundle / "SHA256SUMS"), read_sums(bundle / "SHA256SUMS.uncompressed")
    fix = "reinstall dropcli (pip install --force-reinstall .) to restore it"
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DropcliError(f"cannot write the MNIST cache {raw}: {e.strerror}; set DROPCLI_DATA_DIR to a writable folder") from None
    for name, target in zip(FILES, targets):
        if target.exists() and sha256(target) == raw_sums[name]:
            continue
        src = bundle / f"{name}.gz"
        if not src.exists():
            raise DropcliError(f"bundled file {src} is missing; {fix}")
        if sha256(src) != gz_sums[f"{name}.gz"]:
            raise DropcliError(f"bundled file {src} fails its SHA-256 check (corrupt or truncated); {fix}")
        fd, tmp_name = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".tmp")  # unique: two commands may fill the cache at once
        tmp = Path(tmp_name)
        try:
            with gzip.open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            if sha256(tmp) != raw_sums[name]:
                raise DropcliError(f"{src} decompresses to the wrong bytes; {fix}")
            os.replace(tmp, target)
        except (OSError, EOFError) as e:
            raise DropcliError(f"cannot decompress {src} into {raw} ({e}); {fix}, or set DROPCLI_DATA_DIR "
                               "to a writable folder") from None
        finally:
            tmp.unlink(missing_ok=True)
    atomic_write_text(stamp_file, json.dumps(_stamp(targets)))
    return root


def read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file (gzipped or not) into a uint8 tensor, refusing truncated files."""
    import numpy as np

    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        raise DropcliError(f"cannot read {path}: {e}; replace it with a good copy") from None
    if len(buf) < 8 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08 or not 1 <= buf[3] <= 3:
        raise DropcliError(f"{path} is not a uint8 IDX file; give the four MNIST-format files")
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(buf[3])]
    offset, count = 4 + 4 * len(dims), int(np.prod(dims))
    if len(buf) != offset + count:
        raise DropcliError(f"{path} is truncated ({len(buf)} bytes, expected {offset + count}); replace it")
    return torch.from_numpy(np.frombuffer(buf, dtype=np.uint8, offset=offset).reshape(dims).copy())


def _find_user_files(data_dir: Path, class_name: str) -> list[Path] | None:
    for folder in (data_dir / class_name / "raw", data_dir / "raw", data_dir):
        found = []
        for name in FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.exists():
                    found.append(candidate)
                    break
        if len(found) == len(FILES):
            return found
    return None


def _to_split(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> Split:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
        raise DropcliError("the IDX files do not hold 28x28 images with one label each; check --data-dir")
    if len(labels) and int(labels.max()) > 9:
        raise DropcliError(f"the label file holds label {int(labels.max())}, but MNIST-format labels are 0-9; "
                           "check that --data-dir holds the right label files")
    x = images.to(device).reshape(len(images), 784).float().div_(255)
    return Split(x, labels.to(device=device, dtype=torch.int64))


def load_dataset(name: str = "mnist", data_dir: str | None = None, device: str | torch.device = "cpu") -> Dataset:
    """Load a whole MNIST-format dataset onto `device`; never downloads MNIST."""
    device = torch.device(device)
    class_name = CLASS_NAMES[name]
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        if not d.is_dir():
            raise DropcliError(f"--data-dir {d} is not a folder; give the folder that holds the four IDX files")
        files = _find_user_files(d, class_name)
        if files is None:
            raise DropcliError(
                f"{d} does not hold the four {TITLES[name]} IDX files ({', '.join(FILES)}, gzipped or not); "
                f"put them in {d} or {d / class_name / 'raw'}"
            )
        tr_x, tr_y, te_x, te_y = (read_idx(f) for f in files)
        return Dataset(name, _to_split(tr_x, tr_y, device), _to_split(te_x, te_y, device), str(d.resolve()))
    from torchvision import datasets

    if name == "mnist":
        root = prepare_bundled_mnist()
        source = "bundled MNIST (SHA-256 verified)"
    else:
        root = cache_dir()
        source = str(root / class_name)
    cls = getattr(datasets, class_name)
    try:
        try:
            train, test = cls(root, train=True, download=False), cls(root, train=False, download=False)
        except RuntimeError:
            if name == "mnist":
                raise
            train, test = cls(root, train=True, download=True), cls(root, train=False, download=True)
    except Exception as e:  # torchvision raises RuntimeError, URLError, ... when offline
        raise DropcliError(
            f"{TITLES[name]} is not on this machine and could not be downloaded ({type(e).__name__}); "
            f"put its four IDX files in {root / class_name / 'raw'} or pass --data-dir DIR"
        ) from None
    return Dataset(name, _to_split(train.data, train.targets, device), _to_split(test.data, test.targets, device), source)
