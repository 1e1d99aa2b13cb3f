"""Output locations: atomic writes with unique temporary names, exclusive run folders, one-line OS errors."""

import errno
import threading

import pytest

from dropcli.errors import DropcliError, UsageError
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
