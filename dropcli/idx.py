"""MNIST-format files: find the four IDX files, read them, know them by their SHA-256.

    >>> files = find_files(Path("~/mnist").expanduser(), "MNIST")
    >>> images, labels = (parse_idx(read_bytes(f), f) for f in files[:2])

The bundled MNIST (the four gzipped IDX files of Y. LeCun, C. Cortes and C. J. C. Burges) lives in
dropcli/mnist with the SHA-256 sums of its files, gzipped (SHA256SUMS) and decompressed
(SHA256SUMS.uncompressed). On first use the sums are checked and the files are decompressed into
a cache ($DROPCLI_DATA_DIR, else ~/.cache/dropcli), from which data.py reads them. A file's digest is
always that of its decompressed bytes, so a copy gzipped or not has one identity.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

from dropcli.errors import DropcliError, WriteError
from dropcli.files import atomic_write, atomic_write_text

BUNDLE = Path(__file__).parent / "mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
REINSTALL = "reinstall dropcli (pip install --force-reinstall .) to restore it"


def cache_dir() -> Path:
    """Where the bundled MNIST is decompressed and downloaded data sets are kept: $DROPCLI_DATA_DIR,
    else $XDG_CACHE_HOME/dropcli, else ~/.cache/dropcli."""
    env = os.environ.get("DROPCLI_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dropcli"


def read_sums(path: Path) -> dict[str, str]:
    """A SHA256SUMS file as {file name: hex digest}; the sha256sum format, '*' (binary mode) ignored."""
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes as stored (not decompressed), read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def combined_digest(digests: dict[str, str]) -> str:
    """One SHA-256 for a data set: that of its sums file, `<digest>  <name>` lines in FILES order,
    names without .gz (so `sha256sum` over the four decompressed files, in that order, hashed again,
    gives it). `digests` maps each name of FILES to the hex SHA-256 of its decompressed bytes."""
    text = "".join(f"{digests[name]}  {name}\n" for name in FILES)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(paths: list[Path]) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def _decompress_checked(src: Path, digest: str):
    """A writer for atomic_write: src's decompressed bytes into tmp, refused unless they hash to
    `digest`. Reading errors are the bundle's fault; writing errors go to atomic_write."""
    def write(tmp: Path) -> None:
        h = hashlib.sha256()
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            while True:
                try:
                    chunk = fin.read(1 << 20)
                except (OSError, EOFError, zlib.error) as e:
                    raise DropcliError(f"cannot decompress {src} ({e}); {REINSTALL}") from None
                if not chunk:
                    break
                h.update(chunk)
                fout.write(chunk)
        if h.hexdigest() != digest:
            raise DropcliError(f"{src} decompresses to the wrong bytes; {REINSTALL}")
    return write


def prepare_bundled_mnist(root: Path | None = None, bundle: Path = BUNDLE) -> Path:
    """Verify the bundled .gz files and decompress them once into root/MNIST/raw; return root.

    root defaults to cache_dir(). A cache verified before and untouched since (same sizes and
    modification times, recorded in .verified.json) is trusted without hashing again. Raises
    DropcliError naming the fix when a bundled file is missing or fails its SHA-256, or when the
    cache cannot be written (set DROPCLI_DATA_DIR)."""
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
    try:
        for name, target in zip(FILES, targets):
            if target.exists() and sha256(target) == raw_sums[name]:
                continue
            src = bundle / f"{name}.gz"
            if not src.exists():
                raise DropcliError(f"bundled file {src} is missing; {REINSTALL}")
            if sha256(src) != gz_sums[f"{name}.gz"]:
                raise DropcliError(f"bundled file {src} fails its SHA-256 check (corrupt or truncated); {REINSTALL}")
            atomic_write(target, _decompress_checked(src, raw_sums[name]))
        atomic_write_text(stamp_file, json.dumps(_stamp(targets)))
    except WriteError as e:
        raise WriteError(f"{e}, or set DROPCLI_DATA_DIR to a writable folder for the MNIST cache") from None
    return root


def bundled_digests() -> dict[str, str]:
    """{name: hex SHA-256} of the bundled MNIST's decompressed files, from SHA256SUMS.uncompressed."""
    sums = read_sums(BUNDLE / "SHA256SUMS.uncompressed")
    return {name: sums[name] for name in FILES}


def read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when its name ends in .gz; DropcliError if it cannot be read."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DropcliError(f"cannot read {path}: {e}; replace it with a good copy") from None


def idx_count(buf: bytes, path: Path) -> int:
    """The first dimension of an IDX file (its number of images or labels), from the header alone."""
    if len(buf) < 8 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08 or not 1 <= buf[3] <= 3:
        raise DropcliError(f"{path} is not a uint8 IDX file; give the four MNIST-format files")
    return int.from_bytes(buf[4:8], "big")


def parse_idx(buf: bytes, path: Path) -> np.ndarray:
    """A uint8 IDX file's bytes (decompressed) as a uint8 array of its dimensions, e.g. (N, 28, 28)
    images or (N,) labels. Raises DropcliError for a file that is not uint8 IDX or is truncated."""
    idx_count(buf, path)
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(buf[3])]
    offset, count = 4 + 4 * len(dims), int(np.prod(dims))
    if len(buf) != offset + count:
        raise DropcliError(f"{path} is truncated ({len(buf)} bytes, expected {offset + count}); replace it")
    return np.frombuffer(buf, dtype=np.uint8, offset=offset).reshape(dims).copy()


def read_idx(path: Path):
    """Read one IDX file (gzipped or not) into a uint8 torch tensor, refusing truncated files."""
    import torch

    return torch.from_numpy(parse_idx(read_bytes(path), path))


def find_files(data_dir: Path, class_name: str) -> list[Path] | None:
    """The four files of FILES (each plain or .gz) in data_dir/class_name/raw, data_dir/raw or
    data_dir itself (the first folder that holds all four), in FILES order; None if none does.
    """
    for folder in (data_dir / class_name / "raw", data_dir / "raw", data_dir):
        if (found := files_in(folder)) is not None:
            return found
    return None


def files_in(folder: Path) -> list[Path] | None:
    """The four files of FILES (each plain or .gz) in `folder` itself, in FILES order; None unless
    all four are there."""
    found = []
    for name in FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
    return found if len(found) == len(FILES) else None
