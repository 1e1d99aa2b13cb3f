import math

import pytest
import torch
from conftest import small_config
from safetensors.torch import save_file

from dropcli.checkpoint import load_run, save_checkpoint
from dropcli.errors import DropcliError
from dropcli.model import init_params


def test_round_trip(tmp_path):
    c = small_config(keep_prob=(0.8, 0.5))
    params = init_params(c.sizes, c.init, 1)
    save_checkpoint(tmp_path / "model.safetensors", params, c, {"metrics": {"test_accuracy": 0.5}})
    loaded, config, info = load_run(tmp_path)  # a run directory works too
    assert config == c and info["metrics"]["test_accuracy"] == 0.5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(params, loaded))
    assert not list(tmp_path.glob("*.tmp"))


def test_missing(tmp_path):
    with pytest.raises(DropcliError, match="no checkpoint at"):
        load_run(tmp_path / "nope")


def test_corrupt_and_pickled_files_are_refused_not_unpickled(tmp_path):
    c = small_config()
    path = save_checkpoint(tmp_path / "model.safetensors", init_params(c.sizes, c.init, 1), c, {})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DropcliError, match="not a readable safetensors file"):
        load_run(path)
    pickled = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(2)}, pickled)
    with pytest.raises(DropcliError, match="not a readable safetensors file"):
        load_run(pickled)


def test_foreign_and_other_architecture_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(foreign))
    with pytest.raises(DropcliError, match="not written by dropcli"):
        load_run(foreign)
    c = small_config()
    other = small_config(hidden=(32, 32))
    path = save_checkpoint(tmp_path / "m.safetensors", init_params(other.sizes, "tutorial", 1), c, {})
    with pytest.raises(DropcliError, match=r"does not hold the 784-64-64-10 network.*layer 0"):
        load_run(path)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_refused(tmp_path, bad):
    c = small_config()
    params = init_params(c.sizes, c.init, 1)
    params[1][0][3, 4] = bad
    save_checkpoint(tmp_path / "model.safetensors", params, c, {})
    with pytest.raises(DropcliError, match="has NaN or infinite weights in layer 1"):
        load_run(tmp_path)


def test_extra_tensors_and_hand_made_metadata_are_refused(tmp_path):
    c = small_config()
    params = init_params(c.sizes, c.init, 1)
    tensors = {f"layers.{i}.{n}": t for i, (W, b) in enumerate(params) for n, t in (("weight", W), ("bias", b))}
    meta = {"format": "dropcli-checkpoint/1", "config": c.to_json()}
    save_file({**tensors, "layers.9.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(DropcliError, match="holds tensors of another architecture"):
        load_run(tmp_path / "extra.safetensors")
    for config in ("null", "[1, 2]", '{"hidden": "wide"}', '{"keep_prob": [2.0]}'):
        save_file(tensors, str(tmp_path / "meta.safetensors"), metadata={**meta, "config": config})
        with pytest.raises(DropcliError, match="has unreadable dropcli metadata"):
            load_run(tmp_path / "meta.safetensors")


def test_run_json_is_strict_json_even_for_a_diverged_run(tmp_path):
    import json

    from dropcli.checkpoint import save_run
    from dropcli.train import RunResult

    c = small_config()
    r = RunResult(c, [{"epoch": 1, "cost": math.inf, "train_batch_accuracy": 0.1, "validation_accuracy": math.nan,
                       "seconds": 1.0}], init_params(c.sizes, c.init, 1), status="diverged")
    save_run(tmp_path, r, {"metrics": r.metrics()}, {"history": r.history, "metrics": r.metrics()})

    def refuse(constant):
        raise ValueError(f"bare {constant} in run.json")

    run = json.loads((tmp_path / "run.json").read_text(), parse_constant=refuse)
    assert run["metrics"]["test_accuracy"] is None and run["history"][0]["cost"] is None
