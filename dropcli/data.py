"""Find, verify and load MNIST-format datasets as tensors on the chosen device, known by their content.

    $ dropcli train                        # bundled MNIST, checksummed, works offline
    $ dropcli train --data-dir ~/mnist     # your own four IDX files (.gz or not)
    $ dropcli train --dataset fashion-mnist --data-dir ~/fashion

A data set's identity is the SHA-256 of its four files (data_identity; idx.combined_digest says
how): every run records it, and `evaluate`/`predict` score a run's recorded data only after
finding the same hash (data_for_run). Sizes come from the files: a training file of another size
than MNIST's 60,000 images is used as the user says (--train-size), never silently cut.
Every split is one float32 tensor in [0, 1] of shape (N, 784) on the device: batches are taken
by indexing, never through a DataLoader. A little over 250 lines on purpose: finding, verifying,
identifying and loading a data set are one path, and each step checks what the next relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dropcli.config import TRAIN_SPLIT, Stream, stream_seed
from dropcli.errors import DropcliError
from dropcli.idx import (  # noqa: F401  (BUNDLE, cache_dir, ...: this module's public names since before idx.py)
    BUNDLE,
    FILES,
    bundled_digests,
    cache_dir,
    combined_digest,
    files_in,
    find_files,
    idx_count,
    parse_idx,
    prepare_bundled_mnist,
    read_bytes,
    read_idx,
    read_sums,
    sha256,
)
from dropcli.provenance import flush_denormals

CLASS_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "kmnist": "KMNIST"}
MNIST_SHA256 = combined_digest(bundled_digests())  # the identity of the bundled MNIST (and of any exact copy)
SHORT = 12  # hex digits of a data set's SHA-256 shown on the terminal


@dataclass
class Split:
    """Images and labels of one split, on one device."""

    x: torch.Tensor  # (N, 784) float32 in [0, 1], on the device
    y: torch.Tensor  # (N,) int64 labels, on the device

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    """A whole MNIST-format data set as loaded (load_dataset): its training file, its test file,
    where they came from and what they are (data_identity)."""

    name: str
    train_full: Split  # every image of the training file, in file order
    test: Split
    source: str  # where the files came from, recorded with every result
    identity: dict | None = None  # data_identity of the files read; None for data made in memory (tests)

    def part(self, validation_size: int, n_train: int = 1, whole: bool = False) -> tuple[Split, Split | None]:
        """The tutorial's split: the first `validation_size` images validate, the rest (the
        training part) train. Raises DropcliError when the data set holds fewer than validation +
        n_train images, or, with `whole` (a config without --train-size, which trains on all of
        an MNIST-sized part), when the training file does not hold MNIST's 60,000 images."""
        v, have = validation_size, len(self.train_full)
        if have < v + n_train:
            raise DropcliError(f"{self.name} from {self.source} holds {have:,} training images, fewer than "
                               f"--validation-size {v:,} plus {n_train:,} to train on; "
                               f"use --train-size {max(have - v, 0):,} or less, or a smaller --validation-size")
        if whole and have != TRAIN_SPLIT:
            raise DropcliError(f"{self.name} from {self.source} holds {have:,} training images, not MNIST's "
                               f"{TRAIN_SPLIT:,}; give --train-size {have - v:,} to train on all of them after "
                               f"--validation-size {v:,} (or a smaller --train-size)")
        x, y = self.train_full.x, self.train_full.y
        return Split(x[v:], y[v:]), (Split(x[:v], y[:v]) if v else None)

    def splits(self, config) -> tuple[Split, Split | None]:
        """A config's training images (its subset of the training part) and validation images;
        raises DropcliError as part() does."""
        part, val = self.part(config.validation_size, config.n_train, whole=config.train_size is None)
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


def _to_split(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> Split:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
        raise DropcliError("the IDX files do not hold 28x28 images with one label each; check --data-dir")
    if len(labels) and int(labels.max()) > 9:
        raise DropcliError(f"the label file holds label {int(labels.max())}, but MNIST-format labels are 0-9; "
                           "check that --data-dir holds the right label files")
    x = images.to(device).reshape(len(images), 784).float().div_(255)
    return Split(x, labels.to(device=device, dtype=torch.int64))


def _identity(name: str, digests: dict[str, str], counts: list[int]) -> dict:
    return {"name": name, "sha256": combined_digest(digests), "train_images": counts[0], "test_images": counts[2],
            "files": dict(digests)}


_identities: dict[tuple, dict] = {}  # per process: (name, file stamps) -> identity


def _stamps(files: list[Path]) -> tuple:
    return tuple((str(f.resolve()), s.st_size, s.st_mtime_ns, s.st_ino) for f in files for s in [f.stat()])


def _read_files(name: str, files: list[Path]) -> tuple[list, dict]:
    """The four files' arrays and their identity, both from the same bytes (so the hash is that
    of the data used)."""
    import hashlib

    bufs = [read_bytes(f) for f in files]
    digests = {n: hashlib.sha256(b).hexdigest() for n, b in zip(FILES, bufs)}
    arrays = [parse_idx(b, f) for b, f in zip(bufs, files)]
    identity = _identity(name, digests, [len(a) for a in arrays])
    _identities[(name, _stamps(files))] = identity
    return arrays, identity


def _files_in(name: str, folder: Path, flag: str) -> list[Path]:
    files = find_files(folder, CLASS_NAMES[name])
    if files is None:
        raise DropcliError(f"{folder} does not hold the four {TITLES[name]} IDX files ({', '.join(FILES)}, gzipped "
                           f"or not); put them in {folder} or {folder / CLASS_NAMES[name] / 'raw'}{flag}")
    return files


def data_identity(dataset: str = "mnist", data_dir: str | Path | None = None) -> dict:
    """What a data set is, by content: {"name": dataset, "sha256": 64 hex digits over its four
    files (idx.combined_digest), "train_images": N, "test_images": M, "files": {file name: hex
    SHA-256 of its decompressed bytes}}. data_dir None means the bundled MNIST (its sums are
    shipped; nothing is hashed) or, for another dataset, its copy in cache_dir()/<class name>/raw
    (downloaded if absent).
    Computed once per process for files whose size, time and inode are unchanged. Raises
    DropcliError when the folder does not hold the four files or one cannot be read."""
    if dataset not in CLASS_NAMES:
        raise DropcliError(f"unknown dataset {dataset!r}; use one of {', '.join(CLASS_NAMES)}")
    if data_dir is None and dataset == "mnist":
        import gzip

        counts = []
        for f in FILES:
            with gzip.open(BUNDLE / f"{f}.gz", "rb") as g:
                counts.append(idx_count(g.read(8), BUNDLE / f"{f}.gz"))
        return _identity(dataset, bundled_digests(), counts)
    if data_dir is None:  # the downloaded copy load_dataset reads (downloaded now if absent)
        files = _downloaded(dataset)
    else:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DropcliError(f"--data-dir {folder} is not a folder; give the folder that holds the four IDX files")
        files = _files_in(dataset, folder, "")
    cached = _identities.get((dataset, _stamps(files)))
    return {**cached, "files": dict(cached["files"])} if cached else _read_files(dataset, files)[1]


def describe(identity: dict | None, source: str | None = None) -> str:
    """A data set as the terminal names it: 'MNIST (sha256 0b1a2c3d4e5f)' for MNIST's own files
    wherever they are, '<title>-format data in <source> (sha256 ...)' otherwise."""
    if identity is None:
        return f"data in {source} (no SHA-256 recorded)"
    short = identity["sha256"][:SHORT]
    title = TITLES.get(identity["name"], identity["name"])
    if identity["sha256"] == MNIST_SHA256:
        return f"MNIST (sha256 {short})"
    where = f" in {source}" if source else ""
    return f"{title}-format data{where} (sha256 {short}; not the MNIST files)" if identity["name"] == "mnist" \
        else f"{title}{where} (sha256 {short})"


def load_dataset(name: str = "mnist", data_dir: str | None = None, device: str | torch.device = "cpu") -> Dataset:
    """Load a whole MNIST-format dataset onto `device`, with its identity (data_identity, from the
    bytes loaded); never downloads MNIST. data_dir None: the bundled MNIST, or the copy of another
    dataset in cache_dir() (downloaded by torchvision if absent). Every file is read by idx.py's
    reader (torchvision's import alone takes about 3 s). Raises DropcliError naming the fix for a
    missing, truncated or malformed file, or a dataset that cannot be downloaded. Like every command, it
    first starts torch's threads flushing denormals (provenance.flush_denormals): it is the library's
    first parallel work (`data = load_dataset(); train(config, data)`)."""
    flush_denormals()
    device = torch.device(device)
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        if not d.is_dir():
            raise DropcliError(f"--data-dir {d} is not a folder; give the folder that holds the four IDX files")
        arrays, identity = _read_files(name, _files_in(name, d, ""))
        source = str(d.resolve())
    elif name == "mnist":  # verified against the shipped sums (prepare_bundled_mnist): its identity is theirs
        files = [prepare_bundled_mnist() / "MNIST" / "raw" / f for f in FILES]
        arrays, identity = [parse_idx(read_bytes(f), f) for f in files], data_identity(name)
        source = "bundled MNIST (SHA-256 verified)"
    else:  # read by dropcli's own IDX reader, as --data-dir is; torchvision only downloads
        arrays, identity = _read_files(name, _downloaded(name))
        source = str(_cache_raw(name).parent)
    train, test = (_to_split(torch.from_numpy(a), torch.from_numpy(b), device) for a, b in (arrays[:2], arrays[2:]))
    return Dataset(name, train, test, source, identity)


def _cache_raw(name: str) -> Path:
    """Where a data set other than MNIST is kept: cache_dir()/<class name>/raw, as torchvision lays it out."""
    return cache_dir() / CLASS_NAMES[name] / "raw"


def _downloaded(name: str) -> list[Path]:
    """The four files of a data set other than MNIST in _cache_raw(name), fetched there with
    torchvision first where they are not all there. Raises DropcliError naming where to put the
    files when they cannot be fetched."""
    if (files := files_in(_cache_raw(name))) is not None:
        return files
    from torchvision import datasets  # a 3 s import: only where a download is needed

    why = "its files are not all there after it"
    try:
        for train in (True, False):
            getattr(datasets, CLASS_NAMES[name])(cache_dir(), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError, URLError, ... when offline
        why = type(e).__name__
    files = files_in(_cache_raw(name))
    if files is None:
        raise DropcliError(f"{TITLES[name]} is not on this machine and could not be downloaded ({why}); "
                           f"put its four IDX files in {_cache_raw(name)} or pass --data-dir DIR")
    return files


def data_for_run(config, recorded: dict | None, data_dir: str | None, device) -> tuple[Dataset, str | None]:
    """The data to score a trained run on, and a note when it is not the run's own.

    `recorded` is the run's recorded data_identity (None for a run from before they were
    recorded); `data_dir` the user's --data-dir (None: the run's own data, config.data_dir, which
    is None for the bundled MNIST). Data the user names is used as named, with a note when its
    hash differs from the recorded one. The run's own folder is used only when its files hash to
    the recorded SHA-256. Raises DropcliError naming --data-dir as the fix otherwise (a folder
    that is gone, holds other files, or was recorded without a hash)."""
    if data_dir is not None:
        data = load_dataset(config.dataset, data_dir, device)
        note = None
        if recorded is not None and recorded["sha256"] != data.identity["sha256"]:
            note = (f"this run was trained on {describe(recorded)}; scoring {describe(data.identity, data.source)} "
                    "as --data-dir asks")
        return data, note
    own = config.data_dir
    fix = "give --data-dir DIR to score the data in DIR"
    if own is not None and recorded is None:
        raise DropcliError(f"the run names its data folder {own} but records no SHA-256 of it, so its test set "
                           f"cannot be checked; {fix}")
    if own is not None and not Path(own).is_dir():
        raise DropcliError(f"the run's data folder {own} is not on this machine; {fix} (the run's data has sha256 "
                           f"{recorded['sha256'][:SHORT]})")
    data = load_dataset(config.dataset, own, device)
    if recorded is not None and recorded["sha256"] != data.identity["sha256"]:
        changed = [n for n in FILES if recorded["files"].get(n) != data.identity["files"][n]] if recorded.get("files") \
            else []
        what = f" ({', '.join(changed)} differ)" if changed else ""
        raise DropcliError(f"{own or 'the bundled ' + TITLES[config.dataset]} does not hold the data this run was "
                           f"trained on: sha256 {data.identity['sha256'][:SHORT]} found, "
                           f"{recorded['sha256'][:SHORT]} recorded{what}; {fix}")
    return data, None
