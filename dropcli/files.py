"""Output locations: claimed exclusively, written atomically, locked while a study writes them.

An interrupted or killed command never leaves a half-written file: every file is written to a
uniquely named temporary file beside it, fsynced and renamed into place. Any OS failure (a
read-only or full disk, a name too long, a path below a regular file) and any library's write
error (safetensors, matplotlib) becomes one WriteError (a DropcliError) that names the path and
the fix. Folders dropcli claimed and their manifests are owned.py's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from dropcli.errors import DropcliError, UsageError, WriteError


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
    """Turn an OSError raised while writing `path` into one WriteError line (a DropcliError)."""
    try:
        yield
    except OSError as e:
        raise WriteError(os_problem(e, getattr(e, "filename", None) or path)) from None


_OS_ERROR = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")  # Rust's io::Error (Display, Debug), as safetensors reports it


def write_problem(e: BaseException, path: Path | str) -> str:
    """A one-line description of any library's failure to write `path`: the OSError it wraps (as
    __cause__ or __context__), else the errno its message quotes ("os error 28"), else its type and
    first line, with the usual fix."""
    seen = e
    for _ in range(10):  # a chain of causes, never a cycle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno is not None:
            return os_problem(seen, path)
        seen = seen.__cause__ or seen.__context__
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    match = _OS_ERROR.search(str(e))
    if match:
        code = int(match.group(1) or match.group(2))
        return os_problem(OSError(code, os.strerror(code)), path)
    return f"cannot write {path}: {type(e).__name__}: {text}; check the disk and the path, and try again"


def atomic_write(path: str | Path, write: Callable[[Path], None], mode: int = 0o644,
                 before_replace: Callable[[Path], None] | None = None) -> Path:
    """Call write(tmp) on a uniquely named temporary file beside `path`, fsync it, give it `mode`,
    call before_replace(tmp) if given (owned.OwnedFolder records the new content there), then rename
    it over `path`; returns `path`. The one write path of every file dropcli writes (CSV, JSON,
    safetensors, PNG): whatever `write` raises, except a DropcliError (passed on as it is) and
    KeyboardInterrupt/SystemExit, becomes one WriteError line naming the path and the fix (a full
    disk raises OSError from Python, SafetensorError from safetensors, ValueError from some
    matplotlib backends). Nothing is left behind on failure. Raises UsageError when `path` is a folder."""
    path = Path(path)
    with writing(path):
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give a file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp)
        try:
            try:
                write(tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.chmod(tmp, mode)
                if before_replace is not None:
                    before_replace(tmp)
                os.replace(tmp, path)
            except (DropcliError, MemoryError):
                raise
            except Exception as e:  # every library's write error: OSError, SafetensorError, ValueError, ...
                raise WriteError(write_problem(e, path)) from None
        finally:
            tmp.unlink(missing_ok=True)
    return path


TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp|\.write-check\.[a-z0-9_]{8}")  # atomic_write's and writable()'s names


def is_temporary(name: str) -> bool:
    """Whether `name` is one of the temporary files dropcli writes beside a file (left behind only by
    a process killed mid-write, e.g. '.study.json.k3j_a9x2.tmp'); a folder holding only these and the
    lock holds nothing of a user's."""
    return TEMPORARY.fullmatch(name) is not None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """atomic_write of `text` as UTF-8; returns `path`; raises WriteError as atomic_write does. A
    file name's bytes that the locale could not decode (held as surrogates, as under a C locale) are
    written back as those bytes, so a path in the text stays that path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"))


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


def new_output_file(path: Path, what: str) -> Path:
    """Check that `path`, a file a command is about to create outside any folder it claimed (e.g.
    evaluate --csv), does not exist yet, not even as a dangling link: no command writes over a file
    it did not make. Raises UsageError naming the option; returns the path."""
    if os.path.lexists(path):
        raise UsageError(f"{what} {path} exists already; dropcli never writes over a file, choose a new name")
    return path


def regular_file(path: Path, what: str, fix: str) -> Path:
    """`path` itself if it is a regular file and no symbolic link (every reader checks this first: a
    link would read another file, a FIFO would hang). Raises DropcliError naming the file and fix."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        raise DropcliError(f"cannot read {path}: {e.strerror}; {fix}") from None
    if stat.S_ISLNK(mode):
        raise DropcliError(f"{path} is a symbolic link; dropcli never reads a {what} through a link; {fix}")
    if not stat.S_ISREG(mode):
        raise DropcliError(f"{path} is not a regular file, so not a {what}; {fix}")
    return path


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder/.lock (filelock, which opens it without following a link);
    a second holder is refused at once with DropcliError, a crash releases it."""
    from filelock import FileLock, Timeout

    claim_folder(folder)
    if (folder / ".lock").is_symlink():
        raise DropcliError(f"{folder / '.lock'} is a symbolic link; dropcli never follows links inside {folder}, "
                           "remove the link or use another folder")
    lock = FileLock(folder / ".lock", blocking=False)
    with writing(folder / ".lock"):
        try:
            lock.acquire()
        except Timeout:  # a TimeoutError, so an OSError: caught before writing() sees it
            raise DropcliError(f"another dropcli command is writing to {folder}; wait for it to finish or use "
                               "another --out") from None
    try:
        yield
    finally:
        lock.release()


def tracked_by_git(path: Path) -> bool:
    """True when `path` (a file, or a folder holding one) is committed to a git repository, so that
    --fresh would delete published results."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def rescue_folder(prefix: str = "dropcli-rescued-cells-") -> Path:
    """A new temporary folder for finished results that their own folder could not take."""
    return Path(tempfile.mkdtemp(prefix=prefix))
