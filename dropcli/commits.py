"""Committing finished cells to a study's tables: history.csv first, runs.csv last, each an atomic rewrite.

    >>> tables = StudyTables(out)            # one per study folder, for as long as a command writes it
    >>> tables.commit(runs, history)         # a finished group's rows (tables.run_row, tables.history_rows)

A cell listed in runs.csv always has its history, and a rerun of the same command skips it. A
commit first drops any history rows of the cells it adds: rows left by a commit that was cut off
before its runs.csv rows were written.

A study of hundreds of cells commits hundreds of times, so a commit must not read back and render
the whole table again: for an 8,000-row history.csv that took 1.1 s, and the study's 160 commits
114 s of the command's CPU, taken from the workers. StudyTables therefore keeps the text it last
wrote of each table: where the file still holds exactly that text (its SHA-256 and size, as the
folder's manifest records them) and the new rows are of new cells, the new text is that text
followed by the new rows' lines, which are what rendering the whole table would give (each value
is written on its own; tests/test_commits.py checks the texts are the same). The whole file is
still hashed and written, which is cheap. Otherwise (the first commit of a command, a file
changed since, a cut-off commit's rows) it reads the table through its reader, with every check
that reading makes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dropcli.owned import content_of
from dropcli.schemas import Content
from dropcli.study import history_of, study_folder
from dropcli.tables import HISTORY_SCHEMA, RUNS_SCHEMA, csv_text, frame, history_rows, read_runs, row_cell_ids, run_row


@dataclass(frozen=True)
class _Written:
    """A table's text as this process last wrote it, its Content, and the cells its rows belong to."""

    text: str
    content: Content
    cells: frozenset[str]


def _content(text: str) -> Content:
    """The Content of `text` as OwnedFolder.write_text writes it (UTF-8, surrogates as their bytes)."""
    data = text.encode("utf-8", errors="surrogateescape")
    return Content(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


class StudyTables:
    """The runs.csv and history.csv of the study folder `out`, written by this process: commit()
    adds finished cells' rows. Raises what OwnedFolder.write raises (a file changed by someone else,
    a link) and the readers' TableError (a table that is not the study's own)."""

    def __init__(self, out: Path):
        self.out, self.folder = Path(out), study_folder(out)
        self.written: dict[str, _Written] = {}

    def commit(self, runs: list[dict], history: list[dict]) -> list[dict]:
        """Write finished cells' rows (runs.csv rows, history.csv rows): history.csv first, runs.csv
        last (so a listed cell has its history); returns the runs rows."""
        self._append("history.csv", history, HISTORY_SCHEMA, history_of)
        self._append("runs.csv", runs, RUNS_SCHEMA, lambda out: read_runs(out / "runs.csv"))
        return runs

    def _append(self, name: str, rows: list[dict], schema: dict, reader) -> None:
        """Add rows to the table `name`, first dropping any rows of the same cells; reader(out) reads it."""
        path = self.folder.folder / name
        new = frame(rows, schema)
        cells = frozenset(row_cell_ids(new))
        text = csv_text(new, schema)
        last = self.written.get(name)
        if last is not None and not cells & last.cells and _holds(path, last.content):
            header, _, lines = text.partition("\n")
            if last.text.startswith(header + "\n"):
                self._write(name, last.text + lines, last.cells | cells)
                return
        if path.exists():
            old = reader(self.out)
            ids = row_cell_ids(old)
            old = old[~ids.isin(cells)]
            new = pd.concat([old, new], ignore_index=True) if len(old) else new
            cells = cells | frozenset(ids)
            text = csv_text(new, schema)
        self._write(name, text, cells)

    def _write(self, name: str, text: str, cells: frozenset[str]) -> None:
        self.written.pop(name, None)  # forgotten until the write is done: a failed write leaves nothing known
        self.folder.write_text(name, text)
        self.written[name] = _Written(text, _content(text), cells)


def _holds(path: Path, content: Content) -> bool:
    """Whether the file at `path` (no link: the folder's write refuses those) has this content."""
    try:
        return not path.is_symlink() and content_of(path) == content
    except OSError:
        return False


def commit_rows(out: Path, runs: list[dict], history: list[dict]) -> list[dict]:
    """StudyTables(out).commit(runs, history) once: for a single commit into a folder (a rescue folder)."""
    return StudyTables(out).commit(runs, history)


def result_rows(results: list, finished_at: str) -> tuple[list[dict], list[dict]]:
    """The runs.csv and history.csv rows of RunResults (train.RunResult) trained in this process."""
    return [run_row(r, finished_at) for r in results], [h for r in results for h in history_rows(r)]
