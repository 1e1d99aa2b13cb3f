"""study.json through its one reader, with generated hostile versions: any JSON value in any field,
any shape, any nesting; and tables whose rows are not cells of the study. Each is refused with one
DropcliError (one line), or read as a study whose cells can be built; nothing else escapes."""

import json
import math
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropcli.config import TrainConfig
from dropcli.errors import DropcliError
from dropcli.grid import GridSpec, cells_of, study_identity
from dropcli.schemas import read_study_json
from dropcli.study import check_rows
from dropcli.tables import TableError

VALID = study_identity(GridSpec(keep_probs=((0.5,), (1.0,)), train_sizes=(500,), seeds=(1, 2)),
                       TrainConfig(hidden=(32, 32), epochs=1, validation_size=500, batch_size=50),
                       {"name": "mnist", "sha256": "0" * 64})
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)


def paths(d, prefix=()):
    """Every key path of a nested dict."""
    for k, v in d.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from paths(v, (*prefix, k))


PATHS = list(paths(VALID))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(PATHS), value=json_values, drop=st.booleans())
def test_a_study_json_with_any_field_replaced_is_read_or_refused_in_one_line(tmp_path, where, value, drop):
    data = json.loads(json.dumps(VALID))
    node = data
    for k in where[:-1]:
        node = node[k]
    if drop:
        node.pop(where[-1])
    else:
        node[where[-1]] = value
    path = tmp_path / "study.json"
    path.write_text(json.dumps(data))
    try:
        identity = read_study_json(path)
    except DropcliError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert len(cells_of(identity)) >= 1  # what is accepted describes a grid


@pytest.mark.parametrize("number", ["1e-400", "1e400", "-2.4703282292062327e-324"])
def test_a_number_a_float_cannot_hold_in_a_json_file_is_named_not_read_as_0_or_inf(tmp_path, number):
    """json reads 1e-400 as 0.0 and 1e400 as inf; the check of the options (config.not_held) said
    "--lrs must be a positive number (got 0.0)" of a file field nobody typed as 0."""
    text = json.dumps({**VALID, "settings": {**VALID["settings"], "lr": 0.5}}).replace('"lr": 0.5', f'"lr": {number}')
    (tmp_path / "study.json").write_text(text)
    with pytest.raises(DropcliError, match=f"holds {re.escape(number)}, a number a float cannot hold; restore it"):
        read_study_json(tmp_path / "study.json")


@pytest.mark.parametrize("field, number, said", [
    ("lr", "1" + "0" * 400, "100000000000000000000000...000000000000 (401 characters), a whole number of more than 30 digits"),
    ("lr", "0." + "0" * 400 + "1", "0.0000000000000000000000...000000000001 (403 characters), a number a float cannot hold"),
    ("seed", "-" + "9" * 31, "-9999999999999999999999999999999, a whole number of more than 30 digits"),
])
def test_a_number_too_long_for_a_setting_is_named_shortened(tmp_path, field, number, said):
    """A whole number of 401 digits in a float field was an OverflowError traceback (grid_of's
    float()); in study.json and a checkpoint's metadata it is refused, and a long number is shown
    by its ends: cut at 40 characters, 0.000...1 had read as '0.0000...', a number floats hold."""
    from dropcli.run_schema import parse_metadata

    settings = {**VALID["settings"], "lr": 0.5, "seed": 7}
    text = json.dumps({**VALID, "settings": settings}).replace(f'"{field}": {settings[field]}', f'"{field}": {number}')
    (tmp_path / "study.json").write_text(text)
    with pytest.raises(DropcliError, match=f"holds {re.escape(said)}; restore it"):
        read_study_json(tmp_path / "study.json")
    config = json.dumps({"lr": 0.5, "seed": 7}).replace(f'"{field}": {settings[field]}', f'"{field}": {number}')
    with pytest.raises(ValueError, match=f"^config holds {re.escape(said)}$"):
        parse_metadata({"config": config})


@settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_study_json_is_read_or_refused_in_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("j") / "study.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DropcliError):
        read_study_json(path)


cells = cells_of(VALID)
keys = st.tuples(st.sampled_from(["0.5", "1", "0.7", "0.5 0.5"]), st.sampled_from([1.0, 0.8]),
                 st.sampled_from([math.nan, 3.0]), st.sampled_from([500, 1000]), st.integers(0, 3),
                 st.sampled_from([0.001, 0.003]), st.sampled_from(["32 32", "64 64", "32"]))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(keys, min_size=1, max_size=6))
def test_rows_outside_the_grid_are_refused_by_name(rows):
    table = pd.DataFrame([{"keep_probs": k, "input_keep_prob": ik, "max_norm": mn, "train_size": n, "seed": s, "lr": lr,
                           "hidden": h} for k, ik, mn, n, s, lr, h in rows])
    inside = [k == ("0.5", 1.0) or k == ("1", 1.0) for k in ((r[0], r[1]) for r in rows)]
    inside = [i and math.isnan(r[2]) and r[3] == 500 and r[4] in (1, 2) and r[5] == 0.001 and r[6] == "32 32"
              for i, r in zip(inside, rows)]
    if all(inside):
        assert len(check_rows(table, "runs.csv", cells)) == len(rows)
    else:
        first = inside.index(False)
        with pytest.raises(TableError, match=f"runs.csv row {first + 2} holds the cell .* not in the grid of the folder's study.json"):
            check_rows(table, "runs.csv", cells)
