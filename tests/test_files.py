"""Output locations: atomic writes with unique temporary names, exclusive run folders, one-line OS errors."""

import errno
import os
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropcli.errors import DropcliError, UsageError, WriteError
from dropcli.files import atomic_write, atomic_write_text, claim_folder, new_run_folder, study_lock


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "t.txt", "old")

    def half(tmp):
        tmp.write_text("half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_writers_at_once_use_their_own_temporary_files(tmp_path):
    seen, barrier = [], threading.Barrier(4)

    def write(tmp):
        seen.append(tmp.name)
        barrier.wait(timeout=10)  # all four temporaries exist at the same time
        tmp.write_text(tmp.name)

    threads = [threading.Thread(target=atomic_write, args=(tmp_path / "same.txt", write)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4 and (tmp_path / "same.txt").read_text() in seen
    assert [p.name for p in tmp_path.iterdir()] == ["same.txt"]


def test_default_run_folders_started_at_once_get_their_own_folders(tmp_path):
    name = tmp_path / "runs" / "20261128-120000-keep0.7-seed777"
    got = []
    threads = [threading.Thread(target=lambda: got.append(new_run_folder(name, exclusive_name=True))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 5 and name in got and name.with_name(name.name + "-2") in got


def test_a_chosen_run_folder_must_be_new_or_empty(tmp_path):
    assert new_run_folder(tmp_path / "a", exclusive_name=False) == tmp_path / "a"
    assert new_run_folder(tmp_path / "a", exclusive_name=False) == tmp_path / "a"  # still empty
    (tmp_path / "a" / "runs.csv").write_text("a study's")
    with pytest.raises(UsageError, match="is not empty; a run folder is never reused"):
        new_run_folder(tmp_path / "a", exclusive_name=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        new_run_folder(tmp_path / "file", exclusive_name=False)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "file" / "below", "a part of the path is a file, not a folder"),
    (lambda p: p / ("x" * 300), "the name is too long"),
])
def test_os_errors_are_one_line_naming_the_fix(tmp_path, make, fragment):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DropcliError) as e:
        claim_folder(make(tmp_path))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_full_disk_is_one_line(tmp_path, monkeypatch):
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DropcliError, match="the disk is full; free some space"):
        atomic_write(tmp_path / "x.csv", full)
    assert not list(tmp_path.iterdir())


def test_writing_onto_a_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="is a folder; give a file name"):
        atomic_write_text(tmp_path, "x")


def test_the_study_lock_is_exclusive_and_released(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(DropcliError, match=r"another dropcli command is writing to"):
            with study_lock(tmp_path):
                pass
    with study_lock(tmp_path):
        pass


# One write path: every library's write error becomes one line

def safetensor_full_disk(debug: bool = False):
    """What safetensors raises on a full disk (seen on a 300 KB tmpfs), or its Rust Debug form."""
    from safetensors import SafetensorError

    if debug:
        return SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                               '"No space left on device" })')
    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


class LibraryError(Exception):
    """Some library's own error class, as matplotlib or pandas might raise."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["safetensors", "safetensors-debug", "os", "value", "runtime", "library", "chained"]),
       code=st.sampled_from([errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO]),
       text=st.text(max_size=60))
def test_every_write_error_becomes_one_line_and_leaves_nothing(tmp_path, kind, code, text):
    def fail(tmp):
        tmp.write_bytes(b"half a file")
        if kind.startswith("safetensors"):
            raise safetensor_full_disk(debug=kind.endswith("debug"))
        if kind == "os":
            raise OSError(code, os.strerror(code))
        if kind == "chained":
            try:
                raise OSError(code, os.strerror(code))
            except OSError as e:
                raise RuntimeError(text) from e
        raise {"value": ValueError, "runtime": RuntimeError, "library": LibraryError}[kind](text)

    folder = tmp_path / str(uuid.uuid4())
    with pytest.raises(WriteError) as e:
        atomic_write(folder / "out.bin", fail)
    message = str(e.value)
    assert message.startswith(f"cannot write {folder / 'out.bin'}: ") and "\n" not in message and "\r" not in message
    if kind.startswith("safetensors"):
        assert "the disk is full; free some space" in message
    elif kind in ("os", "chained"):
        assert os.strerror(code) in message
    assert not list(folder.iterdir())


def test_a_dropcli_error_inside_a_writer_passes_unchanged(tmp_path):
    def refuse(tmp):
        raise UsageError("the writer's own words")

    with pytest.raises(UsageError, match="^the writer's own words$"):
        atomic_write(tmp_path / "x", refuse)
    assert not list(tmp_path.iterdir())


def test_the_mnist_cache_on_a_full_disk_names_the_variable(tmp_path, monkeypatch):
    import dropcli.files
    from dropcli.data import prepare_bundled_mnist

    real = dropcli.files.os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dropcli.files.os, "fsync", full)
    with pytest.raises(WriteError, match="the disk is full.*set DROPCLI_DATA_DIR to a writable folder"):
        prepare_bundled_mnist(tmp_path / "cache")
    monkeypatch.setattr(dropcli.files.os, "fsync", real)
    assert not [p for p in (tmp_path / "cache" / "MNIST" / "raw").iterdir() if p.name.endswith(".tmp")]


WRITERS = {"write_text", "write_bytes", "savefig", "save_file", "to_csv", "tofile", "dump"}


def writer_calls(tree, inside="module"):
    """(innermost enclosing function's name, or 'lambda', line) of every call that writes a file."""
    import ast

    for node in ast.iter_child_nodes(tree):
        here = getattr(node, "name", "lambda") if isinstance(node, (ast.FunctionDef, ast.Lambda)) else inside
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            mode = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else "r"
            to_text = name == "to_csv" and not node.args and "path_or_buf" not in {k.arg for k in node.keywords}
            owned = name == "write_text" and len(node.args) == 2  # OwnedFolder.write_text(name, text): atomic_write
            if (name in WRITERS and not to_text and not owned) or (name in ("open", "fdopen") and any(m in str(mode) for m in "wax+")):
                yield inside, node.lineno
        yield from writer_calls(node, here)


def test_every_writer_goes_through_atomic_write():
    """No module writes a file but through files.atomic_write: every call of a writer (write_text,
    savefig, safetensors' save_file, ...) or open() for writing is in a lambda on the line that
    calls atomic_write (or OwnedFolder.write, which calls it), or in one of the few writer
    functions atomic_write is handed."""
    import ast
    from pathlib import Path

    import dropcli

    handed = {("files.py", "atomic_write"), ("files.py", "study_lock"), ("idx.py", "write")}  # fsync; the lock; a writer
    for path in sorted(Path(dropcli.__file__).parent.glob("*.py")):
        lines = path.read_text().splitlines()
        for fn, line in writer_calls(ast.parse(path.read_text())):
            if fn == "lambda":  # handed to atomic_write, or to OwnedFolder.write (which calls it) on that line
                assert any(call in lines[line - 1] for call in ("atomic_write(", "self.write(", ".write(name")), \
                    f"{path.name}:{line} writes outside atomic_write"
            else:
                assert (path.name, fn) in handed, f"{path.name}:{line} ({fn}) writes outside atomic_write"
