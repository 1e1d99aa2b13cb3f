"""The one config: defaults as the tutorial, exact keep probabilities, one syntax, values refused at the edge."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropcli.config import TrainConfig, fmt_keep, fmt_number, parse_keep
from dropcli.fieldtypes import check_types
from dropcli.grid import cell_id, cell_id_of, parse_keep_list, parse_max_norms


def test_defaults_are_the_tutorials():
    c = TrainConfig()
    assert c.sizes == (784, 512, 512, 512, 512, 10) and c.keep_prob == (0.7,) * 4 and c.input_keep_prob == 1.0
    assert (c.lr, c.batch_size, c.epochs, c.seed, c.init) == (0.001, 100, 15, 777, "tutorial")
    assert c.n_train == 55_000 and c.steps_per_epoch == 550 and c.sampling == "all" and c.max_norm is None
    assert TrainConfig(train_size=1000).sampling == "random"


@given(st.floats(min_value=1e-12, max_value=1.0))
def test_numbers_print_exactly_and_read_back(x):
    text = fmt_number(x)
    assert float(text) == x and "e" not in text.lower()


def test_values_that_print_alike_are_different_cells():
    a, b = TrainConfig(keep_prob=(0.9999999,)), TrainConfig(keep_prob=(1.0,))
    assert a.keep_label == "0.9999999" and b.keep_label == "1" and cell_id_of(a) != cell_id_of(b)
    assert cell_id("0.5", 1.0, None, 1000, 1, 0.001, "512") != cell_id("0.5", 1.0, 3.0, 1000, 1, 0.001, "512")
    assert cell_id("0.5", 1.0, None, 1000, 1, 0.001, (512,)) != cell_id("0.5", 1.0, None, 1000, 1, 0.0010000001, (512,))
    assert cell_id("0.5", 1.0, None, 1000, 1, 0.001, "512 512") != cell_id("0.5", 1.0, None, 1000, 1, 0.001, (1024, 512))
    assert cell_id("0.5", 1.0, None, 1000, 1, 0.001, "512 512") == cell_id("0.5", 1.0, None, 1000, 1, 0.001, (512, 512))


def test_one_syntax_for_per_layer_keep_probabilities():
    assert parse_keep("0.8:0.7:0.7:0.5") == (0.8, 0.7, 0.7, 0.5)
    assert parse_keep_list("0.5,0.8:0.7:0.7:0.5,1") == ((0.5,), (0.8, 0.7, 0.7, 0.5), (1.0,))
    assert fmt_keep((0.8, 0.7, 0.7, 0.5)) == "0.8 0.7 0.7 0.5"  # the files' form: no spreadsheet reads it as a time
    assert parse_max_norms("none,3,NONE") == (None, 3.0, None)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(lr=math.inf), "--lr must be a positive number"), (dict(lr=math.nan), "--lr must be a positive number"),
    (dict(epochs=10**23), "--epochs asks for 55,000,000,000,000,000,000,000,000 Adam steps, more than 100,000,000"),
    (dict(steps=10**8 + 1), "--steps asks for 100,000,001 Adam steps, more than 100,000,000"),
    (dict(max_norm=0.0), "--max-norm takes positive numbers"), (dict(max_norm=math.inf), "--max-norm"),
    (dict(keep_prob=(math.nan,)), "outside (0, 1]"), (dict(seed=-1), "--seed must be a whole number from 0"),
    (dict(subset="last"), "--subset must be one of random, first"), (dict(keep_prob=(0.5, 0.5)), "joined by ':'"),
])
def test_bad_values_are_refused_naming_the_option(kwargs, fragment):
    with pytest.raises(ValueError, match=None) as e:
        TrainConfig(**kwargs)
    assert fragment in str(e.value)


@pytest.mark.parametrize("text", ["0.5:", "half", "0.5:inf", "1.5", "0", "1e-300"])
def test_bad_keep_text(text):
    with pytest.raises(ValueError):
        parse_keep(text)


def test_from_dict_round_trips_and_refuses_what_is_not_a_config():
    c = TrainConfig(keep_prob=(0.8, 0.7, 0.7, 0.5), max_norm=3, train_size=2000, subset="first")
    import json

    assert TrainConfig.from_dict(json.loads(c.to_json())) == c
    for bad in (None, [1, 2], {"hidden": 5}):
        with pytest.raises(ValueError):
            TrainConfig.from_dict(bad)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from([f.name for f in dataclasses.fields(TrainConfig)]),
       value=st.none() | st.booleans() | st.integers(-10, 70_000) | st.floats() | st.text(max_size=8)
       | st.integers(0, 2**40).map(np.int64) | st.lists(st.integers(1, 600) | st.floats(0, 1), max_size=5))
def test_a_config_holds_values_of_its_own_types_or_is_refused(field, value):
    """seed 5.5, validation_size 200.5, data_dir 123, a bool for a number: refused, never converted."""
    try:
        c = TrainConfig(**{field: value})
    except ValueError:
        return
    check_types(c)
    got = getattr(c, field)
    if field not in ("keep_prob", "hidden"):
        assert got == value and type(got) in (int, float, str, type(None))  # numpy's int64 as a plain int


@pytest.mark.parametrize("changes, fragment", [
    ({"seed": 5.5}, "--seed takes whole numbers"), ({"validation_size": 200.5}, "--validation-size takes whole numbers"),
    ({"data_dir": 123}, "--data-dir takes text or none"), ({"epochs": True}, "--epochs takes whole numbers"),
    ({"hidden": (64, 6.5)}, "--hidden takes a list of whole numbers"), ({"lr": "0.1"}, "--lr takes numbers"),
])
def test_non_integers_and_wrong_types_are_refused(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig(**changes)


def test_a_network_has_at_most_max_layers_hidden_layers():
    from dropcli.config import MAX_LAYERS, TrainConfig

    assert len(TrainConfig(hidden=(16,) * MAX_LAYERS).hidden) == MAX_LAYERS
    with pytest.raises(ValueError, match=f"--hidden has 65 layers; give at most {MAX_LAYERS}"):
        TrainConfig(hidden=(16,) * 65)
