"""Folders dropcli claimed, and the manifest of what it wrote there: each name with its content.

    DIR/.dropcli-manifest.json   {"format": "dropcli-manifest/2",
                                  "files": {"runs.csv": [{"sha256": "9f2c...", "size": 48213}], "shards/": []}}

dropcli replaces or deletes a file in an OwnedFolder only when its current content is the content
dropcli recorded when it wrote it (SHA-256 and size), and creates only names that do not exist
yet. So a manifest received with a folder, or edited by hand, cannot make dropcli replace or
delete a file of the user's: that file does not hash to what the manifest records, and a manifest
that lists a name dropcli never writes (.gitkeep, notes.txt: schemas.MANIFEST_NAMES) is refused. A write
records the new content beside the old before it renames the new file into place, and alone
after, so a write cut off at any moment leaves a file its manifest vouches for. Names a manifest
lists without content (an earlier dropcli's manifest, a plain list of names, or a study's outputs
in a folder written before manifests) are never replaced or deleted: dropcli cannot tell that
they are still its files. No link is followed below the folder. A folder ("name/") is dropcli's
when listed; it has a manifest of its own and is removed only once nothing else is left in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from dropcli.errors import DropcliError, UsageError
from dropcli.files import atomic_write, writing
from dropcli.schemas import Content, read_manifest_file

MANIFEST = ".dropcli-manifest.json"
FORMAT = "dropcli-manifest/2"  # schemas.ManifestModel
MOVE = "move it away or use another folder"
Entries = dict  # name -> tuple[Content, ...] (files: 1 or 2; folders: ()), or None: listed without content


def content_of(path: Path) -> Content:
    """The Content (SHA-256, size in bytes) of the file at `path`; OSError as open() raises it."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return Content(sha256=digest.hexdigest(), size=f.tell())


def no_links(folder: Path, name: str) -> Path:
    """folder/name, refusing (DropcliError) a link at any step below `folder` (dropcli never follows
    a link inside a folder it claimed: a received study could point its files anywhere)."""
    path = folder
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            raise DropcliError(f"{path} is a symbolic link; dropcli never follows links inside {folder}, "
                               "remove the link or use another folder")
    return path


def read_manifest(folder: Path) -> Entries | None:
    """folder's manifest as Entries (schemas.read_manifest_file), None where there is none; a link
    in its place raises DropcliError."""
    path = no_links(folder, MANIFEST)
    return read_manifest_file(path) if os.path.lexists(path) else None


@contextlib.contextmanager
def _folder_locked(folder: Path):
    """An exclusive flock on the folder itself while its manifest is read and rewritten (no lock
    file; where flock is missing or refused, as on some network file systems, none)."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _matching(path: Path, versions: tuple[Content, ...]) -> Content | None:
    """The recorded version the file at `path` has now, or None."""
    with writing(path):
        now = content_of(path)
    return now if now in versions else None


class OwnedFolder:
    """A folder dropcli claimed and its manifest (MANIFEST; see the module docstring). `legacy`
    names a study's outputs, listed without content where a folder has no manifest (written before
    manifests existed). Raises DropcliError for a link, UsageError for a name it must not write."""

    def __init__(self, folder: Path, legacy: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self.legacy = legacy

    def entries(self) -> Entries:
        """The manifest's entries (read_manifest), or the legacy names that exist, without content."""
        found = read_manifest(self.folder)
        if found is None:
            return {n: None for n in self.legacy if os.path.lexists(self.folder / n)}
        return found

    def owned(self) -> set[str]:
        """Names (relative paths; folders end in '/') the manifest lists."""
        return set(self.entries())

    def _save(self, entries: Entries) -> None:
        files = {n: None if v is None else [c.model_dump() for c in v] for n, v in sorted(entries.items())}
        text = json.dumps({"format": FORMAT, "files": files}, indent=1) + "\n"
        atomic_write(no_links(self.folder, MANIFEST), lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _update(self, change: Callable[[Entries], Entries]) -> None:
        """Save change(entries as they are now), read and written under an exclusive lock on the
        folder, so that two commands writing here at once (a report during a run) lose no entry."""
        with _folder_locked(self.folder):
            self._save(change(self.entries()))

    def problem(self, name: str, entries: Entries | None = None) -> str | None:
        """Why dropcli must not write (replace) `name` here, in one line naming the fix; None when it
        may: the name is free, or it is a file dropcli wrote and nobody changed since, or a folder it
        made. A link on the way raises DropcliError."""
        entries = self.entries() if entries is None else entries
        path = no_links(self.folder, name.rstrip("/"))
        if not os.path.lexists(path):
            return None
        if name not in entries:
            return f"{path} exists and was not written by dropcli; {MOVE}"
        versions = entries[name]
        if name.endswith("/"):
            return None if path.is_dir() else f"{path} is not the folder dropcli made; {MOVE}"
        if versions is None:
            return (f"{path} was written by an earlier dropcli that did not record its content, so dropcli cannot "
                    f"tell it is still that file and never replaces or deletes it; check the folder's files, then "
                    f"record them with 'dropcli adopt {self.folder}', or {MOVE}")
        if not path.is_file() or _matching(path, versions) is None:
            return f"{path} has changed since dropcli wrote it; dropcli replaces or deletes only its own files, {MOVE}"
        return None

    def check(self, names) -> None:
        """Refuse (UsageError, the first conflict) before anything is written: each of `names` that
        dropcli could not write here (problem)."""
        entries = self.entries()
        for name in names:
            why = self.problem(name, entries)
            if why:
                raise UsageError(why)

    def write(self, name: str, write: Callable[[Path], None], mode: int = 0o644) -> Path:
        """atomic_write(folder/name, write) under the rules above, the new content recorded beside the
        old before the rename and alone after it; returns the path. mode: the file's permissions."""
        entries = self.entries()
        why = self.problem(name, entries)
        if why:
            raise UsageError(why)
        path = no_links(self.folder, name)
        old = _matching(path, entries[name]) if os.path.lexists(path) else None
        new = []

        def record(tmp: Path) -> None:
            with writing(tmp):
                new.append(content_of(tmp))
            self._update(lambda now: {**now, name: (*([old] if old else []), new[0])})

        atomic_write(path, write, mode=mode, before_replace=record)
        self._update(lambda now: {**now, name: (new[0],)})
        return path

    def write_text(self, name: str, text: str, mode: int = 0o644) -> Path:
        """write() of UTF-8 text (a path's undecodable bytes, held as surrogates, written back as
        those bytes); returns the path."""
        return self.write(name, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"), mode)

    def subfolder(self, name: str) -> OwnedFolder:
        """A folder dropcli creates inside this one (listed as 'name/'), with a manifest of its own."""
        key = name.rstrip("/") + "/"
        entries = self.entries()
        why = self.problem(key, entries)
        if why:
            raise UsageError(why)
        path = no_links(self.folder, key.rstrip("/"))
        if key not in entries:
            self._update(lambda now: {**now, key: ()})
        with writing(path):
            path.mkdir(parents=True, exist_ok=True)
        return OwnedFolder(path)

    def remove(self, name: str) -> None:
        """Delete the file `name` if dropcli wrote it and it is unchanged (UsageError otherwise), and
        drop it from the manifest."""
        entries = self.entries()
        why = self.problem(name, entries)
        if why:
            raise UsageError(why)
        with writing(self.folder / name):
            no_links(self.folder, name).unlink(missing_ok=True)
        self._update(lambda now: {n: v for n, v in now.items() if n != name})

    def adopt(self) -> list[Path]:
        """Record the current content of every file listed without content (an earlier dropcli's
        manifest, or a study's legacy outputs), here and in owned subfolders, so that dropcli may
        replace them from now on: the user's word, after checking them, that they are dropcli's.
        Returns the paths recorded. A link on the way raises DropcliError."""
        recorded = []
        for name, versions in sorted(self.entries().items()):
            path = no_links(self.folder, name.rstrip("/"))
            if name.endswith("/") and path.is_dir():
                recorded += OwnedFolder(path).adopt()
            elif versions is None and path.is_file():
                with writing(path):
                    now = content_of(path)
                self._update(lambda entries: {**entries, name: (now,)})
                recorded.append(path)
        return recorded

    def blockers(self) -> list[str]:
        """Why remove_all would leave a listed file in place, one reason per file (here and in owned
        subfolders): changed since dropcli wrote it, or listed without content."""
        found, entries = [], self.entries()
        for name in sorted(entries):
            path = no_links(self.folder, name.rstrip("/"))
            if name.endswith("/"):
                found += OwnedFolder(path).blockers() if path.is_dir() and not path.is_symlink() else []
            elif os.path.lexists(path):
                why = self.problem(name, entries)
                found += [why] if why else []
        return found

    def check_removable(self) -> None:
        """Refuse (DropcliError naming the first file and the fix) when remove_all would have to leave a
        listed file in place (blockers): it then deletes nothing."""
        blocked = self.blockers()
        if blocked:
            more = f" ({len(blocked)} files in all)" if len(blocked) > 1 else ""
            raise DropcliError(f"nothing was deleted{more}: {blocked[0].split('; ')[0]}; delete by hand the files "
                               f"you no longer need ({MANIFEST} lists them), or use another folder")

    def remove_all(self) -> None:
        """Delete every file the manifest lists (and owned subfolders, by their own manifests), then
        empty the manifest; files dropcli did not write stay, and so does a folder that holds them.
        Deletes nothing, raising DropcliError naming the first file and the fix, when any listed file
        has changed since dropcli wrote it or is listed without content (blockers)."""
        self.check_removable()
        for name in sorted(self.entries(), reverse=True):
            path = no_links(self.folder, name.rstrip("/"))
            with writing(path):
                if name.endswith("/"):
                    if path.is_dir():
                        OwnedFolder(path).remove_all()
                        if os.listdir(path) == [MANIFEST]:  # nothing but its (now empty) manifest: dropcli's alone
                            (path / MANIFEST).unlink()
                        with contextlib.suppress(OSError):
                            path.rmdir()
                else:
                    path.unlink(missing_ok=True)
        self._update(lambda now: {})  # kept, empty: the legacy names are no one's now
