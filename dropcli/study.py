"""A study folder: what it holds, who may write it, and how finished cells are committed.

    results/studies/<grid>-<hash>/      (or --out DIR)
      study.json    the grid and settings: a different study pointed at the folder is refused
      runs.csv      one row per finished cell;  history.csv  one row per cell and epoch
      summary.csv, ablation.png, curves.png   rebuilt from runs.csv and history.csv by `report`

A folder is claimed before any training: it must be new, empty, or this same study. Each lockstep
group is committed as it ends, history.csv first and runs.csv last (atomic rewrites), so a cell
listed in runs.csv always has its history, and a rerun of the same command skips it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from dropcli.config import AXES, GridSpec, TrainConfig, fmt_keep, fmt_max_norm
from dropcli.errors import StudyMismatch, UsageError
from dropcli.files import atomic_write_text, claim_folder
from dropcli.provenance import code_version, cpu_model
from dropcli.tables import HISTORY_SCHEMA, RUNS_SCHEMA, read_history, read_runs, row_cell_ids, write_csv

STUDY_FORMAT = "dropcli-study/2"
STUDY_FILE = "study.json"
OUTPUTS = ("runs.csv", "history.csv", "summary.csv", "ablation.png", "curves.png", STUDY_FILE)  # what --fresh removes
STUDIES = Path("results/studies")  # where new studies go by default; the committed ones live beside it


def study_identity(grid: GridSpec, base: TrainConfig) -> dict:
    """What makes two runs of `ablate` the same study: the grid's axes and every other setting."""
    settings = {k: v for k, v in base.to_dict().items() if k not in AXES}
    return {"format": STUDY_FORMAT, "settings": settings,
            "grid": {"keep_probs": [fmt_keep(k) for k in grid.keep_probs],
                     "input_keep_probs": [float(k) for k in grid.input_keep_probs],
                     "max_norms": [fmt_max_norm(c) for c in grid.max_norms],
                     "train_sizes": [base.replace(train_size=n).n_train for n in grid.train_sizes],
                     "seeds": list(grid.seeds)}}


def default_folder(identity: dict) -> Path:
    """results/studies/<cells>cells-<hash of the identity>: the same command resumes the same folder,
    and a new study never lands in a committed one."""
    grid = identity["grid"]
    cells = math.prod(len(v) for v in grid.values())
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return STUDIES / f"{cells}cells-{digest}"


def read_identity(out: Path) -> dict | None:
    try:
        data = json.loads((out / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and str(data.get("format", "")).startswith("dropcli-study/") else None


def _describe_difference(old: dict, new: dict) -> str:
    for section in ("settings", "grid"):
        for k in sorted(set(old.get(section, {})) | set(new.get(section, {}))):
            a, b = old.get(section, {}).get(k), new.get(section, {}).get(k)
            if json.dumps(a) != json.dumps(b):
                return f"{k} {json.dumps(a)} there, {json.dumps(b)} now"
    return f"format {old.get('format')} there, {new.get('format')} now"


def same_study(out: Path, identity: dict) -> bool:
    old = read_identity(out)
    return old is not None and json.dumps(old, sort_keys=True) == json.dumps(identity, sort_keys=True)


def tracked_by_git(path: Path) -> bool:
    """True when `path` is committed to a git repository (so --fresh would delete published results)."""
    try:
        return subprocess.run(["git", "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def remove_study(out: Path) -> bool:
    """--fresh: delete dropcli's own files of the study in `out`, and nothing else; True if there
    was a study."""
    if read_identity(out) is None:
        if any(p.name != ".lock" for p in out.iterdir()):
            raise UsageError(f"--fresh deletes only a dropcli study, and {out} holds no study.json; "
                             "use a new or empty --out")
        return False
    committed = [name for name in OUTPUTS if (out / name).exists() and tracked_by_git(out / name)]
    if committed:
        raise UsageError(f"{out / committed[0]} is committed to git; --fresh never deletes committed results, "
                         "use another --out")
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "shards", ignore_errors=True)
    return True


def claim(out: Path, identity: dict, fresh: bool) -> None:
    """Make `out` this study's folder, or refuse: another study, or a folder that is not a study."""
    claim_folder(out)
    was_study = remove_study(out) if fresh else False
    old = read_identity(out)
    if old is None:
        others = sorted(p.name for p in out.iterdir() if p.name not in (".lock", "shards"))
        if others and not was_study:
            raise StudyMismatch(f"{out} is not a dropcli study (it holds {others[0]} and no study.json); "
                                "use a new or empty --out")
        atomic_write_text(out / STUDY_FILE, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    elif json.dumps(old, sort_keys=True) != json.dumps(identity, sort_keys=True):
        raise StudyMismatch(f"{out} holds another study ({_describe_difference(old, identity)}); use another --out")


def done_keys(out: Path) -> set[str]:
    path = out / "runs.csv"
    return set(row_cell_ids(read_runs(path))) if path.exists() else set()


def check_tables(out: Path) -> None:
    """Refuse to resume into tables that are not dropcli's own (before any training)."""
    if (out / "runs.csv").exists():
        read_runs(out / "runs.csv")
    if (out / "history.csv").exists():
        read_history(out / "history.csv")


def cell_columns(c: TrainConfig) -> dict:
    return {"keep_prob": c.mean_keep, "keep_probs": c.keep_label, "input_keep_prob": c.input_keep_prob,
            "max_norm": c.max_norm, "train_size": c.n_train, "seed": c.seed}


def run_row(r, finished_at: str) -> dict:
    """One runs.csv row: a RunResult with the config and provenance that made it."""
    import torch

    c = r.config
    return {**cell_columns(c), "subset": c.sampling, "epochs": c.epochs, "epochs_run": len(r.history),
            "hidden": " ".join(map(str, c.hidden)), "init": c.init, "lr": c.lr, "batch_size": c.batch_size,
            "dataset": c.dataset, "final_cost": r.final_cost, "train_accuracy": r.train_accuracy,
            "validation_accuracy": r.validation_accuracy, "test_accuracy": r.test_accuracy,
            "generalization_gap": r.train_accuracy - r.test_accuracy, "test_loss": r.test_loss,
            "best_epoch": r.best_epoch, "test_accuracy_at_best": r.test_accuracy_at_best,
            "test_accuracy_mc": r.test_accuracy_mc, "mc_samples": c.mc_samples, "train_seconds": r.train_seconds,
            "parallel_models": r.parallel_models, "device": r.device, "cpu": cpu_model(), "engine": r.engine,
            "precision": c.precision, "status": r.status, "finished_at": finished_at,
            "dropcli_version": code_version(), "torch_version": torch.__version__}


def history_rows(r) -> list[dict]:
    head = cell_columns(r.config)
    return [{**head, **h} for h in r.history]


def frame(rows: list[dict], schema: dict) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(schema))
    for c, kind in schema.items():
        if kind.rstrip("?") in ("float", "exact") or kind == "int?":
            df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), None), errors="coerce").astype("float64")
    return df


def _append(path: Path, rows: list[dict], schema: dict, reader) -> None:
    """Add rows to a table, first dropping any rows of the same cells: history left by a commit
    that was cut off before its runs.csv rows were written."""
    new = frame(rows, schema)
    if path.exists():
        old = reader(path)
        old = old[~row_cell_ids(old).isin(set(row_cell_ids(new)))]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    write_csv(new, path, schema)


def commit_rows(out: Path, runs: list[dict], history: list[dict]) -> list[dict]:
    """Write finished cells' rows: history.csv first, runs.csv last (so a listed cell has its history)."""
    _append(out / "history.csv", history, HISTORY_SCHEMA, read_history)
    _append(out / "runs.csv", runs, RUNS_SCHEMA, read_runs)
    return runs


def commit(out: Path, results: list, finished_at: str) -> list[dict]:
    """Write finished RunResults; returns their runs.csv rows."""
    return commit_rows(out, [run_row(r, finished_at) for r in results], [h for r in results for h in history_rows(r)])




def cells_of(identity: dict) -> list[TrainConfig]:
    """The cells a study.json describes (the inverse of study_identity), in the grid's order."""
    from dropcli.ablate import expand
    from dropcli.config import TRAIN_SPLIT

    settings, grid = identity["settings"], identity["grid"]
    base = TrainConfig.from_dict(settings)
    part = TRAIN_SPLIT - base.validation_size
    spec = GridSpec(keep_probs=tuple(tuple(float(k) for k in label.split()) for label in grid["keep_probs"]),
                    input_keep_probs=tuple(grid["input_keep_probs"]),
                    max_norms=tuple(None if c == "none" else float(c) for c in grid["max_norms"]),
                    train_sizes=tuple(None if n == part else n for n in grid["train_sizes"]),
                    seeds=tuple(grid["seeds"]))
    return expand(spec, base)
