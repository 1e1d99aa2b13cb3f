import os

import pytest
import torch

from dropcli.config import TrainConfig
from dropcli.data import Dataset, Split
from dropcli.provenance import flush_denormals

flush_denormals()  # as every dropcli command does, before torch starts its threads (tests train in-process too)


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Decompress the bundled MNIST once per session into a private cache (never ~/.cache)."""
    path = tmp_path_factory.mktemp("dropcli-cache")
    old = os.environ.get("DROPCLI_DATA_DIR")
    os.environ["DROPCLI_DATA_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DROPCLI_DATA_DIR", None)
    else:
        os.environ["DROPCLI_DATA_DIR"] = old


def synthetic(n_train=1200, n_test=400, seed=0) -> Dataset:
    """Ten learnable classes: each a fixed random 784-pixel prototype plus noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 784, generator=g)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = (0.7 * protos[y] + 0.3 * torch.rand(n, 784, generator=g)).clamp_(0, 1)
        return Split(x, y)

    # 60,000 "training" rows are not needed: Dataset.split only slices, so a short file works
    return Dataset("mnist", make(n_train), make(n_test), "synthetic")


@pytest.fixture
def tiny_data():
    return synthetic()


def small_config(**kw) -> TrainConfig:
    base = dict(hidden=(64, 64), keep_prob=(0.7,), epochs=2, batch_size=50, validation_size=200, train_size=1000)
    base.update(kw)
    return TrainConfig(**base)


def check_error(result, code: int, fragment: str) -> None:
    """A CLI failure: the exit code, no traceback, and stderr ending in one line 'Error: ...' that
    holds fragment. A usage error (exit 2) is refused before any work, so it is stderr's only line;
    a failure (exit 1) may follow the plain progress lines a log gets (stderr is not a terminal)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert not [line for line in lines[:-1] if line.startswith(("Error", "Interrupted"))], result.stderr
    if code == 2:
        assert len(lines) == 1, result.stderr
    assert fragment in lines[-1], result.stderr


MEASURED = ["epochs_run", "final_cost", "train_accuracy", "validation_accuracy", "test_accuracy", "generalization_gap",
            "test_loss", "best_epoch", "test_accuracy_at_best"]  # equal to the last digit wherever a cell runs


def assert_same_measured_rows(a, b) -> None:
    """Two study folders hold the same cells with the same measured columns, to the last digit
    (timing, finish time, device and CPU names, group size may differ)."""
    import pandas as pd

    key = ["keep_probs", "input_keep_prob", "max_norm", "train_size", "seed"]
    x, y = (pd.read_csv(p / "runs.csv").sort_values(key).reset_index(drop=True) for p in (a, b))
    assert x[key].astype(str).equals(y[key].astype(str)), (x[key], y[key])
    for col in MEASURED:
        assert x[col].equals(y[col]), (col, x[col].tolist(), y[col].tolist())


def engine_required(reason: str) -> None:
    """A real engine (Slurm, a Ray cluster) cannot start: where CI=true the test fails, never skips;
    elsewhere it is skipped with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def console_script(folder) -> list[str]:
    """The `dropcli` script pip writes from pyproject's [project.scripts] (its entry point, whatever
    the installed one says), written into `folder`; run it with this Python."""
    import re
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    [(module, func)] = re.findall(r'^dropcli = "([\w.]+):(\w+)"', text, re.M)
    script = Path(folder) / "dropcli-script.py"
    script.write_text(f"import sys\nfrom {module} import {func}\nif __name__ == '__main__':\n    sys.exit({func}())\n")
    return [sys.executable, str(script)]
