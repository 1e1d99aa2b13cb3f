"""Output locations: claimed exclusively, written atomically, locked while a study writes them.

An interrupted or killed command never leaves a half-written file: every file is written to a
uniquely named temporary file beside it, fsynced and renamed into place. Any OS failure (a
read-only or full disk, a name too long, a path below a regular file) becomes one DropcliError
that names the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from dropcli.errors import DropcliError, UsageError


def os_problem(e: OSError, path: Path | str) -> str:
    """A one-line description of an OSError on `path`, with the usual fix."""
    fixes = {errno.EACCES: "choose a folder you can write", errno.EROFS: "the disk is read-only; choose another folder",
             errno.ENOSPC: "the disk is full; free some space or choose another disk",
             errno.EDQUOT: "your disk quota is full; free some space",
             errno.ENAMETOOLONG: "the name is too long; choose a shorter one",
             errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
             errno.EISDIR: "it is a folder; give a file name", errno.EEXIST: "it exists already"}
    return f"cannot write {path}: {e.strerror or e}; {fixes.get(e.errno, 'check the path and try again')}"


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into one DropcliError line."""
    try:
        yield
    except OSError as e:
        raise DropcliError(os_problem(e, getattr(e, "filename", None) or path)) from None


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a uniquely named temporary file beside `path`, fsync it, then rename it
    over `path`. Nothing is left behind on failure."""
    path = Path(path)
    with writing(path):
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give a file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp)
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def claim_folder(folder: Path) -> Path:
    """Create `folder` (and its parents) if needed and check that files can be written in it."""
    with writing(folder):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--out {folder} is a file, not a folder; choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    return folder


def new_run_folder(folder: Path, exclusive_name: bool) -> Path:
    """Claim a run folder that no other run uses. With exclusive_name (a default name), a taken
    name gets a suffix -2, -3, ...; a name the user chose must be new or an empty folder."""
    with writing(folder):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--out {folder} is a file, not a folder; choose another --out")
        folder.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = folder if n == 1 else folder.with_name(f"{folder.name}-{n}")
            try:
                candidate.mkdir()  # atomic: of two runs started at once, one gets each name
                return claim_folder(candidate)
            except FileExistsError:
                if not exclusive_name:
                    if candidate.is_dir() and not any(candidate.iterdir()):
                        return claim_folder(candidate)
                    raise UsageError(f"--out {folder} is not empty; a run folder is never reused, choose a new --out") from None
    raise DropcliError(f"cannot find a free run folder beside {folder}; clean up old runs")


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder/.lock; a second holder is refused, a crash releases it."""
    import fcntl

    claim_folder(folder)
    with writing(folder / ".lock"):
        f = open(folder / ".lock", "a+")
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise DropcliError(
                f"another dropcli ablate (pid {pid}) is writing to {folder}; wait for it to finish or use another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
