import dataclasses
import math

import pytest
import torch
from conftest import small_config
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from dropcli.checkpoint import load_run, output_bound, save_checkpoint
from dropcli.config import TrainConfig
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


@pytest.mark.parametrize("layer, value", [(0, 3e38), (2, 3e38), (1, 1e37), (1, 1e33)])
def test_weights_whose_outputs_can_overflow_are_refused(tmp_path, layer, value):
    """Finite float32 weights can still make every logit inf (a loss of inf, exit 0, before); a trained
    network's bound is far below float32's largest value."""
    c = small_config()
    params = init_params(c.sizes, c.init, 1)
    assert output_bound(params, c) < 1e6
    params[layer][0].fill_(value)
    save_checkpoint(tmp_path / "model.safetensors", params, c, {})
    with pytest.raises(DropcliError, match="has weights so large that the network's outputs can reach .*, which float32"):
        load_run(tmp_path)


@pytest.mark.parametrize("dtype, value", [(torch.float32, 3e38), (torch.float64, 1e300)])
def test_outputs_whose_difference_overflows_are_refused(tmp_path, dtype, value):
    """Each output below float32's largest value, their difference (the loss's softmax) above it:
    a bias of +-3e38 gave 'Loss: inf'; a float64 1e300 is refused as too large, not as infinite."""
    c = small_config()
    params = init_params(c.sizes, c.init, 1)
    W, b = params[-1]
    b = b.to(dtype)
    b[0], b[1:] = value, -value
    params[-1] = (W.to(dtype), b)
    save_checkpoint(tmp_path / "model.safetensors", params, c, {})
    with pytest.raises(DropcliError, match="has weights so large"):
        load_run(tmp_path)


@pytest.mark.parametrize("name, dtype", [("weight", torch.int32), ("bias", torch.int32), ("bias", torch.bool)])
def test_non_float_tensors_are_named(tmp_path, name, dtype):
    c = small_config()
    params = init_params(c.sizes, c.init, 1)
    W, b = params[2]
    params[2] = (W.to(dtype), b) if name == "weight" else (W, b.to(dtype))
    save_checkpoint(tmp_path / "model.safetensors", params, c, {})
    with pytest.raises(DropcliError, match=rf"holds layers\.2\.{name} as {str(dtype)[6:]}, not floats"):
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
    r = RunResult(c, [{"epoch": 1, "step": 20, "cost": math.inf, "train_batch_accuracy": 0.1, "validation_accuracy": math.nan,
                       "seconds": 1.0}], init_params(c.sizes, c.init, 1), status="diverged")
    save_run(tmp_path, r, {"metrics": r.metrics()}, {"history": r.history, "metrics": r.metrics()})

    def refuse(constant):
        raise ValueError(f"bare {constant} in run.json")

    run = json.loads((tmp_path / "run.json").read_text(), parse_constant=refuse)
    assert run["metrics"]["test_accuracy"] is None and run["history"][0]["cost"] is None


# Metadata: one strict schema, bounded before parsing

def tensors_of(c):
    params = init_params(c.sizes, c.init, 1)
    return {f"layers.{i}.{n}": t for i, (W, b) in enumerate(params) for n, t in (("weight", W), ("bias", b))}


def with_metadata(path, config: str, info: str = "{}"):
    c = small_config()
    save_file(tensors_of(c), str(path), metadata={"format": "dropcli-checkpoint/1", "config": config, "info": info})
    return path


def config_with(**changes) -> str:
    import json

    return json.dumps({**small_config().to_dict(), **changes})


DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("config, info, fragment", [
    ('{"hidden": [64, 64], "seed": ' + DEEP + "}", "{}", "config is 400,030 characters long, more than the 65,536"),
    ('{"hidden": [64, 64], "seed": ' + "[" * 30_000 + "]" * 30_000 + "}", "{}", "config is nested deeper than 32"),
    (config_with(seed=5.5), "{}", "config.seed: Input should be a valid integer"),
    (config_with(data_dir=123), "{}", "config.data_dir: Input should be a valid string"),
    (config_with(validation_size=200.5), "{}", "config.validation_size: Input should be a valid integer"),
    (config_with(seed=True), "{}", "config.seed: Input should be a valid integer"),
    (config_with(hidden=[64, "64"]), "{}", "config.hidden.1: Input should be a valid integer"),
    (config_with(wider=True), "{}", "config.wider: Extra inputs are not permitted"),
    (config_with(lr=1e400), "{}", "config holds Infinity, which JSON does not allow"),
    (config_with(lr=0.5).replace('"lr": 0.5', '"lr": 1e-400'), "{}", "config holds 1e-400, a number a float cannot hold"),
    (config_with(lr=0.5).replace('"lr": 0.5', '"lr": 1e400'), "{}", "config holds 1e400, a number a float cannot hold"),
    (config_with(), '{"x": -2.5e-999}', "info holds -2.5e-999, a number a float cannot hold"),
    (config_with(), '{"x": NaN}', "info holds NaN, which JSON does not allow"),  # had been kept as a record
    (config_with(lr=0.5).replace('"lr": 0.5', '"lr": -Infinity'), "{}", "config holds -Infinity, which JSON does not allow"),
    (config_with(seed=-1), "{}", "--seed must be a whole number from 0"),
    (config_with(), '{"x": ' + DEEP + "}", "info is nested deeper than 32 levels"),
    (config_with(), "[1]", "info: Input should be an object"),
    (config_with(), '{"data": {"name": "mnist", "sha256": "00", "train_images": 1, "test_images": 1, "files": {}}}',
     "info.data.sha256: String should match pattern"),
    (config_with(), '{"data": {"name": "kmnist", "sha256": "' + "0" * 64 + '", "train_images": 1, "test_images": 1, '
     '"files": {}}}', "info.data names 'kmnist', the config 'mnist'"),
    ("x" * 70_000, "{}", "config is 70,000 characters long, more than the 65,536 allowed"),
])
def test_bad_metadata_is_refused_in_one_line(tmp_path, config, info, fragment):
    path = with_metadata(tmp_path / "m.safetensors", config, info)
    with pytest.raises(DropcliError) as e:
        load_run(path)
    assert "has unreadable dropcli metadata" in str(e.value) and fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_metadata_is_one_line_on_the_command_line(tmp_path):
    from conftest import check_error
    from typer.testing import CliRunner

    from dropcli.cli import app

    for config in ('{"seed": ' + DEEP + "}", config_with(seed=5.5), config_with(data_dir=123)):
        path = with_metadata(tmp_path / "m.safetensors", config)
        for command in (["evaluate", str(path)], ["predict", str(path), "--index", "1"]):
            check_error(CliRunner().invoke(app, command), 1, "has unreadable dropcli metadata")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from([f.name for f in dataclasses.fields(TrainConfig)] + ["unknown"]), value=json_values,
       depth=st.integers(0, 100))
def test_hostile_metadata_is_refused_or_read_exactly(field, value, depth):
    """Any JSON value in any config field (or nested in one, or in info): refused with a ValueError
    (one line), or read back as exactly that value of the field's own type."""
    import json

    from dropcli.fieldtypes import check_types
    from dropcli.run_schema import parse_metadata

    nested = json.loads("[" * depth + json.dumps(value) + "]" * depth) if depth < 40 else value
    config = {**small_config().to_dict(), field: nested}
    for meta in ({"config": json.dumps(config)}, {"config": small_config().to_json(), "info": json.dumps({field: nested})},
                 {"config": small_config().to_json(), "info": json.dumps({"data": {field: nested}})}):
        try:
            got, info = parse_metadata(meta)
        except ValueError as e:
            assert "\n" not in str(e)
            continue
        check_types(got)
        if "info" not in meta:
            expected = tuple(nested) if isinstance(nested, list) else nested
            assert getattr(got, field) == expected or field == "keep_prob"  # one keep probability is spread
        elif field != "data":
            assert json.dumps(info[field]) == json.dumps(nested)  # a record, kept as it is


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_metadata_is_refused_or_read(text):
    from dropcli.run_schema import parse_metadata

    for meta in ({"config": text}, {"config": small_config().to_json(), "info": text}):
        try:
            parse_metadata(meta)
        except ValueError as e:
            assert "\n" not in str(e)
