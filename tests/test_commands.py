"""train, evaluate and predict as a user runs them: the tutorial's lines, the files, the errors."""

import re

import numpy as np
import pytest
import torch
from conftest import check_error
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from dropcli.cli import app

runner = CliRunner()
FAST = ["--train-size", "1000", "--epochs", "2", "--hidden", "64,64", "--validation-size", "1000"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run1"
    result = invoke("train", *FAST, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    return out, result


def test_train_prints_the_tutorial_lines_and_writes_every_file(trained):
    out, result = trained
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Epoch: 0001 cost = \d+\.\d{9}  validation accuracy = 0\.\d{4}", lines[0])
    assert lines[1].startswith("Epoch: 0002 cost = ")
    assert lines[2] == "Learning Finished!"
    assert re.fullmatch(r"Accuracy: 0\.\d{4}", lines[3])
    assert re.fullmatch(r"Label: \d", lines[4]) and re.fullmatch(r"Prediction: \d", lines[5])
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "history.csv", "run.json"}
    import json

    import pandas as pd

    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "step", "cost", "train_batch_accuracy", "validation_accuracy", "seconds"]
    assert len(history) == 2 and all(history.dtypes[c].kind == "f" for c in history.columns[2:])
    assert list(history["step"]) == [10, 20]  # 1,000 images in batches of 100: 10 steps an epoch
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["train_size"] == 1000 and run["metrics"]["status"] == "ok"
    assert run["split"] == {"validation_size": 1000, "train_size": 1000, "subset": "random", "test_size": 10000}
    assert "torch" in run["versions"]
    assert run["cpu"] and run["versions"]["dropcli"].startswith("0.1.0")
    assert run["command"] == f"dropcli train --hidden 64,64 --epochs 2 --validation-size 1000 --train-size 1000 --device cpu --out {out}"


def test_evaluate_matches_train(trained, tmp_path):
    out, result = trained
    accuracy = re.search(r"Accuracy: (0\.\d{4})", result.stdout).group(1)
    ev = invoke("evaluate", out, "--csv", tmp_path / "eval.csv", "--mc-samples", "3")
    assert ev.exit_code == 0, ev.output
    assert f"Accuracy: {accuracy}" in ev.stdout
    assert re.search(r"MC dropout accuracy \(3 passes\): 0\.\d{4}", ev.stdout)
    assert "Per-class accuracy" in ev.stdout
    import pandas as pd

    table = pd.read_csv(tmp_path / "eval.csv")
    assert len(table) == 10 and table["images"].sum() == 10_000
    assert table[[f"predicted_{i}" for i in range(10)]].to_numpy().sum() == 10_000
    assert np.allclose(table["accuracy"], table["correct"] / table["images"])
    assert table["correct"].sum() / 10_000 == pytest.approx(float(accuracy), abs=5e-5)


def test_evaluate_validation_split(trained):
    ev = invoke("evaluate", trained[0], "--split", "validation")
    assert ev.exit_code == 0 and "1,000 images" in ev.stdout


def test_predict_index_zero_is_a_seven(trained):
    from dropcli.data import MNIST_SHA256

    result = invoke("predict", trained[0], "--index", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Data: MNIST (sha256 {MNIST_SHA256[:12]}), test image 0"
    assert result.stdout.splitlines()[1] == "Label: 7"
    assert re.fullmatch(r"Prediction: \d \(probability [01]\.\d{4}\)", result.stdout.splitlines()[2])


def test_predict_mc_dropout_reports_std_and_entropy(trained):
    result = invoke("predict", trained[0], "--index", "0", "--mc-samples", "10")
    assert result.exit_code == 0
    assert re.search(r"mean probability [01]\.\d{4} ± 0\.\d{4}, entropy \d\.\d{4} nats over 10 passes", result.stdout)


def test_predict_png_files(trained, tmp_path):
    from dropcli.data import load_dataset

    test = load_dataset("mnist").test
    digit = (test.x[0].reshape(28, 28).numpy() * 255).astype(np.uint8)  # a 7, white on black
    Image.fromarray(digit).resize((56, 56)).save(tmp_path / "seven.png")
    Image.fromarray(255 - digit).convert("RGB").save(tmp_path / "paper.jpg")
    expected = invoke("predict", trained[0], "--index", "0").stdout.splitlines()[2].split()[1]
    result = invoke("predict", trained[0], tmp_path / "seven.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("seven.png:")
    assert result.stdout.splitlines()[1].split()[1] == expected
    inverted = invoke("predict", trained[0], "--invert", tmp_path / "paper.jpg")
    assert inverted.exit_code == 0 and inverted.stdout.splitlines()[1].split()[1] == expected


@pytest.mark.parametrize("args, fragment", [
    (["--keep-prob", "1.5"], "keep probability 1.5 is outside (0, 1]"),
    (["--keep-prob", "0"], "outside (0, 1]"),
    (["--keep-prob", "-0.2"], "outside (0, 1]"),
    (["--keep-prob", "0.5,0.5"], "give one value or exactly 4"),
    (["--keep-prob", "abc"], "--keep-prob takes numbers"),
    (["--keep-prob", "0.5,"], "joined by ':'"),
    (["--keep-prob", "0.5:0.5"], "give one value or exactly 4"),
    (["--keep-prob", "nan"], "takes finite numbers"),
    (["--max-norm", "0"], "--max-norm takes positive numbers"),
    (["--input-keep-prob", "0"], "--input-keep-prob: keep probability 0 is outside (0, 1]"),
    (["--keep-prob", "abc"], "--keep-prob takes numbers (got 'abc')"),
    (["--max-norm", "-inf"], "takes finite numbers"),
    (["--lr", "inf"], "--lr must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--lr", "1e-50"], "--lr 1e-50 is below 1.2e-38, float32's smallest normal number, so every step would be 0"),
    (["--max-norm", "1e-50"], "--max-norm 1e-50 is below 1.2e-38, float32's smallest normal number; give e.g. 3"),
    (["--seed", "-1"], "--seed must be at least 0 (got -1)"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--input-keep-prob", "0"], "outside (0, 1]"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "many"], "--epochs takes a whole number (got 'many')"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--hidden", "512,0"], "--hidden takes widths of at least 1"),
    (["--hidden", "wide"], "--hidden takes whole numbers"),
    (["--train-size", "60000"], "--train-size must be in 1..55000"),
    (["--train-size", "0"], "--train-size must be in 1..55000"),
    (["--train-size", "50", "--batch-size", "100"], "lower --batch-size or raise --train-size"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--validation-size", "-1"], "--validation-size must be in"),
    (["--init", "zeros"], "'zeros' is not one of"),
])
def test_train_usage_errors(args, fragment):
    check_error(invoke("train", *args), 2, fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_one_line_error(tmp_path):
    check_error(invoke("train", *FAST, "--device", "cuda", "--out", tmp_path / "r"), 2, "no CUDA GPU is available here")
    check_error(invoke("train", *FAST, "--device", "cpu", "--precision", "tf32", "--out", tmp_path / "r"), 2,
                "use --precision float32")
    check_error(invoke("ablate", "--keep-probs", "0.5,1", "--device", "cpu", "--precision", "tf32", "--dry-run",
                       "--out", tmp_path / "s"), 2, "use --precision float32")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_existing_run_directory_is_not_overwritten(trained):
    check_error(invoke("train", *FAST, "--out", trained[0]), 2, "is not empty; a run folder is never reused")


def test_bad_checkpoints(tmp_path, trained):
    check_error(invoke("evaluate", tmp_path / "missing"), 2, "no checkpoint at")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((trained[0] / "model.safetensors").read_bytes()[:500])
    check_error(invoke("evaluate", bad), 1, "not a readable safetensors file")
    other = tmp_path / "other.safetensors"
    save_file({"layers.0.weight": torch.zeros(3, 3)}, str(other))
    check_error(invoke("predict", other, "--index", "0"), 1, "not written by dropcli")


def test_predict_bad_input(trained, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    check_error(invoke("predict", trained[0], notes), 2, "is not a readable image")
    check_error(invoke("predict", trained[0], "--index", "10000"), 2, "--index must be at most 9,999 (got 10000)")
    check_error(invoke("predict", trained[0], tmp_path / "absent.png"), 2,
                f"{tmp_path / 'absent.png'} does not exist; give PNG or JPEG files of digits")
    check_error(invoke("predict", trained[0], tmp_path), 2, f"{tmp_path} is a folder; give PNG or JPEG")
    Image.new("L", (40, 30), 255).save(tmp_path / "blank.png")  # white paper, no ink: refused, not predicted
    check_error(invoke("predict", trained[0], tmp_path / "blank.png"), 2, "no digit found: the image is almost uniform")
    noise = np.random.default_rng(0).integers(120, 136, (60, 60), dtype=np.uint8)  # paper grain, nothing on it
    Image.fromarray(noise).save(tmp_path / "grain.png")
    check_error(invoke("predict", trained[0], tmp_path / "grain.png"), 2, "no digit found")


def test_no_temporary_files_left(trained):
    assert not [p for p in trained[0].iterdir() if p.name.endswith(".tmp")]


def test_phone_photos_and_transparent_drawings_predict_as_the_plain_digits(trained, tmp_path):
    from dropcli.data import load_dataset

    test = load_dataset("mnist").test
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated, shown upright
    files, plain = [], []
    for i in range(5):
        digit = (test.x[i].reshape(28, 28).numpy() * 255).astype(np.uint8)
        Image.fromarray(digit).resize((84, 84)).save(tmp_path / f"plain{i}.png")
        Image.fromarray(255 - digit).resize((84, 84)).transpose(Image.Transpose.ROTATE_90).convert("RGB").save(
            tmp_path / f"phone{i}.jpg", exif=exif, quality=95)
        rgba = np.zeros((28, 28, 4), dtype=np.uint8)
        rgba[..., 3] = digit
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"drawn{i}.png")
        plain.append(tmp_path / f"plain{i}.png")
        files += [tmp_path / f"phone{i}.jpg", tmp_path / f"drawn{i}.png"]

    def predictions(paths):
        result = invoke("predict", trained[0], *paths)
        assert result.exit_code == 0, result.output
        return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Prediction:")]

    expected = predictions(plain)
    got = predictions(files)
    assert got[0::2] == expected and got[1::2] == expected


def test_non_finite_weights_are_refused_by_evaluate_and_predict(trained, tmp_path):
    from dropcli.checkpoint import load_run, save_checkpoint

    params, config, info = load_run(trained[0])
    params[2][1][0] = float("nan")
    save_checkpoint(tmp_path / "model.safetensors", params, config, info)
    check_error(invoke("evaluate", tmp_path), 1, "has NaN or infinite weights in layer 2")
    check_error(invoke("predict", tmp_path, "--index", "3"), 1, "has NaN or infinite weights in layer 2")


def test_a_diverged_train_saves_the_run_and_exits_1(tmp_path):
    result = invoke("train", *FAST, "--lr", "1e30", "--device", "cpu", "--out", tmp_path / "r")
    check_error(result, 1, "training diverged")
    import json

    assert json.loads((tmp_path / "r" / "run.json").read_text())["metrics"]["status"] == "diverged"


def test_a_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    import gzip
    import json
    import shutil

    from dropcli.data import BUNDLE, FILES

    data = tmp_path / "mydata"
    data.mkdir()
    for name in FILES:
        with gzip.open(BUNDLE / f"{name}.gz") as fin, open(data / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    monkeypatch.chdir(tmp_path)
    result = invoke("train", *FAST, "--device", "cpu", "--data-dir", "mydata", "--out", "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["data_dir"] == str(data)
    monkeypatch.chdir(tmp_path.parent)
    assert invoke("evaluate", tmp_path / "run").exit_code == 0  # from another folder


def test_a_run_records_its_data_and_evaluate_names_it(trained):
    import json

    from dropcli.data import MNIST_SHA256, data_identity

    run = json.loads((trained[0] / "run.json").read_text())
    assert run["data"] == data_identity("mnist") and run["data"]["sha256"] == MNIST_SHA256
    ev = invoke("evaluate", trained[0])
    assert ev.stdout.splitlines()[0] == f"Data: MNIST (sha256 {MNIST_SHA256[:12]}), test split, 10,000 images"


def received_checkpoint(tmp_path, recorded_from: str | None):
    """A checkpoint from someone else: its data_dir points at a folder whose test labels were made
    to match its predictions; it records the honest folder's hash, the doctored one's, or none."""
    from dropcli.checkpoint import save_checkpoint
    from dropcli.config import TrainConfig
    from dropcli.data import FILES, data_identity, load_dataset
    from dropcli.evaluation import probabilities
    from dropcli.model import init_params

    honest, doctored = tmp_path / "honest", tmp_path / "doctored"
    doctored.mkdir()
    config = TrainConfig(hidden=(8,), data_dir=str(doctored), train_size=10, batch_size=5, validation_size=0)
    params = init_params(config.sizes, config.init, 1)
    test = load_dataset("mnist").test
    predictions = probabilities(params, test.x)[0].argmax(1).numpy().astype(np.uint8)
    for name in FILES:
        (doctored / name).write_bytes((honest / name).read_bytes())
    (doctored / FILES[3]).write_bytes((honest / FILES[3]).read_bytes()[:8] + predictions.tobytes())
    info = {} if recorded_from is None else {"data": data_identity("mnist", tmp_path / recorded_from)}
    save_checkpoint(tmp_path / "received" / "model.safetensors", params, config, info)
    return tmp_path / "received"


@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory):
    import gzip

    from dropcli.data import BUNDLE, FILES

    folder = tmp_path_factory.mktemp("data") / "honest"
    folder.mkdir()
    for name in FILES:
        with gzip.open(BUNDLE / f"{name}.gz") as f:
            (folder / name).write_bytes(f.read())
    return folder


@pytest.mark.parametrize("recorded, fragment", [
    (None, "records no SHA-256 of it, so its test set cannot be checked; give --data-dir DIR"),
    ("honest", "does not hold the data this run was trained on"),
])
def test_a_received_checkpoint_never_scores_on_doctored_labels(tmp_path, mnist_copy, recorded, fragment):
    import shutil

    shutil.copytree(mnist_copy, tmp_path / "honest")
    received = received_checkpoint(tmp_path, recorded)
    for command in (["evaluate", received], ["predict", received, "--index", "0"]):
        result = invoke(*command)
        check_error(result, 1, fragment)
        assert "Accuracy: 1.0000" not in result.output
    ok = invoke("evaluate", received, "--data-dir", tmp_path / "honest")  # the data the user names
    assert ok.exit_code == 0, ok.output
    assert "Data: MNIST (sha256 " in ok.stdout and "Accuracy: 1.0000" not in ok.stdout


def test_a_forged_hash_still_says_the_data_is_not_mnist(tmp_path, mnist_copy):
    import shutil

    shutil.copytree(mnist_copy, tmp_path / "honest")
    received = received_checkpoint(tmp_path, "doctored")  # the sender recorded the doctored folder's own hash
    result = invoke("evaluate", received)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"Data: MNIST-format data in {tmp_path / 'doctored'} (sha256 ") and "not the MNIST files" in first


def test_seventy_thousand_training_images_are_never_silently_cut(tmp_path):
    import json

    from dropcli.data import FILES, data_identity

    folder = tmp_path / "big"
    folder.mkdir()
    header = lambda n, *dims: bytes([0, 0, 8, 1 + len(dims)]) + b"".join(d.to_bytes(4, "big") for d in (n, *dims))  # noqa: E731
    rng = np.random.default_rng(0)
    (folder / FILES[0]).write_bytes(header(70_000, 28, 28) + rng.integers(0, 256, 70_000 * 784, dtype=np.uint8).tobytes())
    (folder / FILES[1]).write_bytes(header(70_000) + rng.integers(0, 10, 70_000, dtype=np.uint8).tobytes())
    (folder / FILES[2]).write_bytes(header(100, 28, 28) + bytes(100 * 784))
    (folder / FILES[3]).write_bytes(header(100) + bytes(100))
    check_error(invoke("train", "--data-dir", folder, "--out", tmp_path / "r1"), 1,
                "holds 70,000 training images, not MNIST's 60,000; give --train-size 65,000")
    assert not (tmp_path / "r1").exists()
    ok = invoke("train", "--data-dir", folder, "--validation-size", "69000", "--train-size", "1000", "--epochs", "1",
                "--hidden", "8", "--device", "cpu", "--out", tmp_path / "r2")
    assert ok.exit_code == 0, ok.output
    run = json.loads((tmp_path / "r2" / "run.json").read_text())
    assert run["split"] == {"validation_size": 69_000, "train_size": 1_000, "subset": "all", "test_size": 100}
    assert run["data"] == data_identity("mnist", folder) and run["data"]["train_images"] == 70_000


def full_disk_under(folder, monkeypatch, how: str):
    """Writes below `folder` fail as on a full disk: safetensors' own error, or ENOSPC from Python."""
    import errno
    from pathlib import Path

    import safetensors.torch
    from safetensors import SafetensorError

    if how == "safetensors":
        real = safetensors.torch.save_file

        def save_file(tensors, filename, metadata=None):
            if str(filename).startswith(str(folder)):
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
            return real(tensors, filename, metadata=metadata)

        monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    else:
        real_text = Path.write_text

        def write_text(self, *args, **kwargs):
            if str(self).startswith(str(folder)):
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            return real_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("how", ["safetensors", "enospc"])
def test_train_on_a_full_disk_is_one_line_and_the_run_is_rescued(tmp_path, monkeypatch, how):
    from dropcli import checkpoint
    from dropcli.checkpoint import load_run

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setattr(checkpoint, "RESCUE_PLACES", (tmp_path / "elsewhere",))
    full_disk_under(tmp_path / "full", monkeypatch, how)
    result = invoke("train", *FAST, "--device", "cpu", "--out", tmp_path / "full" / "run")
    check_error(result, 1, "the disk is full; free some space or choose another disk")
    rescued = re.search(r"the trained run \(weights, history.csv, run.json\) is saved in (\S+)$", result.stderr.strip())
    assert rescued, result.stderr
    folder = tmp_path / "elsewhere" / rescued.group(1).rsplit("/", 1)[1]
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "history.csv", "run.json"}
    params, config, info = load_run(folder)
    assert config.train_size == 1000 and info["data"]["name"] == "mnist"
    assert not (tmp_path / "full" / "run").exists()  # the run is in one place, the one the error names


def test_train_when_no_folder_can_take_the_run_says_so(tmp_path, monkeypatch):
    from dropcli import checkpoint

    (tmp_path / "full" / "elsewhere").mkdir(parents=True)
    monkeypatch.setattr(checkpoint, "RESCUE_PLACES", (tmp_path / "full" / "elsewhere",))
    full_disk_under(tmp_path / "full", monkeypatch, "safetensors")
    result = invoke("train", *FAST, "--device", "cpu", "--out", tmp_path / "full" / "run")
    check_error(result, 1, "the trained run could not be saved elsewhere either")
    assert not list((tmp_path / "full" / "elsewhere").iterdir())  # no half rescue left behind


def _number_options():
    """(command, option, type) for every option whose --help names the type int or float, read from
    each command's help, so an option added later is covered too."""
    found = []
    for command in ("train", "evaluate", "predict", "adopt", "ablate", "report", "merge", "slurm"):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        found += [(command, name, kind) for name, kind in re.findall(r"(--[a-z-]+)\s+<(int|float)\b", text)]
    return found


NUMBER_OPTIONS = _number_options()


def test_the_help_names_the_number_options():
    assert {("train", "--epochs", "int"), ("train", "--lr", "float"), ("ablate", "--seeds", "int"),
            ("ablate", "--cpus-per-task", "float"), ("slurm", "--max-array-size", "int")} <= set(NUMBER_OPTIONS)


@pytest.mark.parametrize("command, option, kind", NUMBER_OPTIONS)
def test_every_number_option_reads_plain_digits_only(command, option, kind):
    """The rule of the list options and table cells (config.PLAIN_INT, PLAIN_NUMBER): Python and
    pydantic also read '1_0' as 10 and other scripts' digits as theirs; no option takes them."""
    words = "takes a whole number" if kind == "int" else "takes a number"
    for bad in ("1_0", "\u0661", "\uff15") + (("0.00_1", "1e3_0") if kind == "float" else ("1e3", "0x10", "nan")):
        check_error(invoke(command, option, bad), 2, f"{option} {words} (got {bad!r})")
    if kind == "int":  # 10**330 lockstep cells were divided into 0.0 s each (a traceback)
        check_error(invoke(command, option, "1" + "0" * 330), 2, f"{option} takes whole numbers of at most 30 digits (got one of 331)")
        check_error(invoke(command, option, "+00" + "1" * 31), 2, "at most 30 digits (got one of 31)")  # sign and zeros are no digits
    else:  # --lr 1e-400 had said "(got 0.0)", a number nobody typed
        for bad, read in (("1e-400", "0"), ("-0.00000000000000000000001e-310", "-0"), ("1e400", "inf")):
            check_error(invoke(command, option, bad), 2, f"{option} takes numbers a float can hold (a float holds "
                                                         f"sizes from about 5e-324 to 1.8e308; {bad} would read as {read})")
        for held in ("0", "0e999", "5e-324"):  # a zero, and the smallest denormal: read as they say
            assert "a float can hold" not in invoke(command, option, held).output


def test_a_file_name_prints_on_one_line_whatever_it_holds(tmp_path, trained):
    """Every result and note is one line (terminal._say): an image named with an escape sequence and
    a line break printed them raw (the terminal turned red, the name broke in two)."""
    name = tmp_path / "dig\x1b[31mRED\n2.png"
    digit = Image.new("L", (28, 28))
    digit.paste(255, (10, 4, 16, 24))  # a stroke: a "1"
    digit.save(name, format="PNG")
    result = invoke("predict", trained[0], name)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and f"{tmp_path}/dig\\x1b[31mRED\\n2.png:" in result.stdout.splitlines()
