import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropcli.config import TrainConfig
from dropcli.data import BUNDLE, FILES, Split, load_dataset, prepare_bundled_mnist, read_bytes, read_idx
from dropcli.errors import DropcliError


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_bundled_mnist_is_real_and_split_like_the_tutorial(mnist):
    assert len(mnist.train_full) == 60_000 and len(mnist.test) == 10_000
    assert mnist.train_full.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test.y[0].item() == 7
    assert mnist.train_full.x.shape == (60_000, 784) and mnist.train_full.x.dtype == torch.float32
    assert 0.0 == mnist.train_full.x.min() and mnist.train_full.x.max() == 1.0
    train, val = mnist.splits(TrainConfig())
    assert len(train) == 55_000 and len(val) == 5_000
    assert torch.equal(val.x, mnist.train_full.x[:5_000]) and torch.equal(train.x[0], mnist.train_full.x[5_000])
    train, val = mnist.splits(TrainConfig(validation_size=0, train_size=1_000, subset="first"))
    assert len(train) == 1_000 and val is None
    train, val = mnist.splits(TrainConfig(train_size=2_000, subset="first"))
    assert len(train) == 2_000 and torch.equal(train.y, mnist.train_full.y[5_000:7_000])


def test_random_subsets_differ_between_seeds_and_repeat_for_a_seed(mnist):
    from dropcli.data import subset_indices

    a, b, c = (subset_indices(TrainConfig(train_size=1_000, seed=s), 55_000) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a) == 1_000 == len(a.unique()) and a.min() >= 0 and a.max() < 55_000
    assert torch.equal(a, a.sort().values)  # a set: the batch order is the batch stream's job
    assert subset_indices(TrainConfig(train_size=1_000, subset="first"), 55_000) is None
    assert subset_indices(TrainConfig(), 55_000) is None  # all of the training part
    train, _ = mnist.splits(TrainConfig(train_size=1_000, seed=1))
    assert torch.equal(train.y, mnist.train_full.y[5_000:][a])
    counts = torch.bincount(train.y, minlength=10)
    assert counts.min() > 60  # a random draw has every class, unlike a sorted file would


def test_a_data_set_too_small_for_the_split_is_refused(mnist):
    from dropcli.data import Dataset

    small = Dataset("mnist", Split(mnist.train_full.x[:3000], mnist.train_full.y[:3000]), mnist.test, "a small copy")
    with pytest.raises(DropcliError, match=r"holds 3,000 training images, fewer than --validation-size 5,000 plus"):
        small.splits(TrainConfig())
    with pytest.raises(DropcliError, match="use --train-size 2,000 or less"):
        small.splits(TrainConfig(validation_size=1000, train_size=2500))


def corrupt_copy(tmp_path, name, how):
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    f = bundle / name
    data = bytearray(f.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    f.write_bytes(bytes(data))
    return bundle


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_checksum_failure_names_the_file(tmp_path, how):
    bundle = corrupt_copy(tmp_path, "t10k-labels-idx1-ubyte.gz", how)
    with pytest.raises(DropcliError, match=r"t10k-labels-idx1-ubyte.gz fails its SHA-256 check.*reinstall"):
        prepare_bundled_mnist(tmp_path / "cache", bundle=bundle)


def test_cache_is_verified_once_and_repaired_if_damaged(tmp_path):
    root = prepare_bundled_mnist(tmp_path / "cache")
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == sorted(FILES)
    (raw / FILES[3]).write_bytes(b"garbage")  # a damaged cache file is rebuilt from the bundle
    prepare_bundled_mnist(root)
    assert read_idx(raw / FILES[3]).shape == (10_000,)


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_mnist_dir(folder, gz=True, n_train=60_000, n_test=100, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
              rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test)]
    for name, a in zip(FILES, arrays):
        write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


def test_user_data_dir_four_files_directly(tmp_path):
    arrays = fake_mnist_dir(tmp_path / "mine", gz=True)
    d = load_dataset("mnist", str(tmp_path / "mine"))
    assert len(d.train_full) == 60_000 and len(d.test) == 100
    assert d.test.y.tolist() == arrays[3].tolist()
    assert torch.allclose(d.test.x[0], torch.tensor(arrays[2][0].reshape(784) / 255, dtype=torch.float32))


def test_user_data_dir_torchvision_layout(tmp_path):
    fake_mnist_dir(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False, n_test=50)
    d = load_dataset("fashion-mnist", str(tmp_path / "tv"))
    assert len(d.test) == 50 and d.name == "fashion-mnist"


def test_truncated_user_file_is_refused(tmp_path):
    fake_mnist_dir(tmp_path / "t", gz=False, n_test=10)
    f = tmp_path / "t" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(DropcliError, match="t10k-images-idx3-ubyte is truncated"):
        load_dataset("mnist", str(tmp_path / "t"))


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DropcliError, match="does not hold the four MNIST IDX files"):
        load_dataset("mnist", str(tmp_path))


def test_absent_dataset_offline_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tvm

    monkeypatch.setenv("DROPCLI_DATA_DIR", str(tmp_path))

    def offline(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvm.MNIST, "download", offline)  # as on a machine without network
    with pytest.raises(DropcliError, match=r"KMNIST is not on this machine.*put its four IDX files in .*KMNIST/raw"):
        load_dataset("kmnist")


def test_the_bundled_mnist_loads_as_torchvision_reads_it_without_importing_torchvision(mnist):
    import subprocess
    import sys

    from torchvision.datasets import MNIST

    from dropcli.data import prepare_bundled_mnist

    root = prepare_bundled_mnist()
    for split, theirs in ((mnist.train_full, MNIST(root, train=True)), (mnist.test, MNIST(root, train=False))):
        assert torch.equal(split.x, theirs.data.reshape(-1, 784).float().div_(255))
        assert torch.equal(split.y, theirs.targets) and split.y.dtype == torch.int64
    # torchvision's import alone takes about 3 s: every command that loads the bundled MNIST skips it
    code = "import sys; from dropcli.data import load_dataset; load_dataset(); print('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_a_dataset_already_in_the_cache_is_read_by_its_files_and_not_downloaded(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tvm

    from dropcli.data import data_identity

    arrays = fake_mnist_dir(tmp_path / "FashionMNIST" / "raw", gz=False, n_test=30)
    monkeypatch.setenv("DROPCLI_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(tvm.MNIST, "download", lambda self: pytest.fail("downloaded a data set already on disk"))
    d = load_dataset("fashion-mnist")
    assert d.test.y.tolist() == arrays[3].tolist() and len(d.train_full) == 60_000
    assert d.identity == data_identity("fashion-mnist") and d.source == str(tmp_path / "FashionMNIST")


# Data known by its content: the SHA-256 of its files, sizes read from the files

def test_the_bundled_mnist_is_known_by_its_shipped_sums(mnist):
    from dropcli.data import MNIST_SHA256, data_identity, describe, read_sums

    identity = data_identity("mnist")
    sums = read_sums(BUNDLE / "SHA256SUMS.uncompressed")
    assert identity == {"name": "mnist", "sha256": MNIST_SHA256, "train_images": 60_000, "test_images": 10_000,
                        "files": {name: sums[name] for name in FILES}}
    assert mnist.identity == identity
    assert describe(identity) == f"MNIST (sha256 {MNIST_SHA256[:12]})"


def test_a_copy_of_mnist_gzipped_or_not_is_mnist(tmp_path):
    from dropcli.data import MNIST_SHA256, data_identity, describe

    (tmp_path / "gz").mkdir()
    (tmp_path / "raw").mkdir()
    for name in FILES:
        shutil.copy(BUNDLE / f"{name}.gz", tmp_path / "gz")
        with gzip.open(BUNDLE / f"{name}.gz") as fin, open(tmp_path / "raw" / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    for folder in ("gz", "raw"):
        d = load_dataset("mnist", str(tmp_path / folder))
        assert d.identity == data_identity("mnist", tmp_path / folder) == data_identity("mnist")
        assert describe(d.identity, d.source) == f"MNIST (sha256 {MNIST_SHA256[:12]})"


idx_sets = st.tuples(st.integers(1, 40), st.integers(1, 20), st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None)
@given(sizes=idx_sets, which=st.integers(0, 3), where=st.floats(0, 1, exclude_max=True), gz=st.booleans())
def test_a_data_set_is_known_by_every_byte_of_its_files(sizes, which, where, gz):
    """Any byte changed in any file (a label edited, a pixel) changes the identity, and names the file."""
    import tempfile

    from dropcli.data import data_identity

    n_train, n_test, seed = sizes
    with tempfile.TemporaryDirectory() as tmp:
        fake_mnist_dir(Path(tmp) / "a", gz=gz, n_train=n_train, n_test=n_test, seed=seed)
        fake_mnist_dir(Path(tmp) / "b", gz=not gz, n_train=n_train, n_test=n_test, seed=seed)
        a, b = data_identity("mnist", Path(tmp) / "a"), data_identity("mnist", Path(tmp) / "b")
        assert a == b and (a["train_images"], a["test_images"]) == (n_train, n_test)
        f = next((Path(tmp) / "b").glob(FILES[which] + "*"))
        data = bytearray(read_bytes(f))
        header = 4 + 4 * data[3]
        data[header + int(where * (len(data) - header))] ^= 0x01  # a pixel or a label
        write_raw(Path(tmp) / "c", {f.name.removesuffix(".gz"): bytes(data)}, Path(tmp) / "b")
        c = data_identity("mnist", Path(tmp) / "c")
        assert c["sha256"] != a["sha256"]
        assert [n for n in FILES if c["files"][n] != a["files"][n]] == [FILES[which]]
        assert load_dataset("mnist", str(Path(tmp) / "c")).identity == c  # loading hashes the bytes it reads


def write_raw(folder, changed: dict, source):
    """A copy of the four files of `source`, decompressed, with `changed` {name: bytes} replacing some."""
    folder.mkdir()
    for name in FILES:
        src = next(source.glob(name + "*"))
        (folder / name).write_bytes(changed.get(name, read_bytes(src)))


def tall(n: int) -> Split:
    """n images that take no memory (one row, repeated)."""
    return Split(torch.zeros(1, 784).expand(n, 784), torch.zeros(n, dtype=torch.int64))


@settings(max_examples=60, deadline=None)
@given(have=st.sampled_from([59_999, 60_000, 60_001, 70_000, 1_000]), v=st.integers(0, 71_000),
       size=st.none() | st.integers(1, 71_000))
def test_a_training_file_of_any_size_is_used_as_asked_or_refused(have, v, size):
    """Never silently cut: without --train-size, a file that is not MNIST's 60,000 is refused."""
    from dropcli.data import Dataset

    try:
        config = TrainConfig(data_dir="/data", validation_size=v, train_size=size, batch_size=1)
    except ValueError:
        return  # refused before any data is read
    data = Dataset("mnist", tall(have), tall(10), "generated")
    try:
        train, val = data.splits(config)
    except DropcliError as e:
        assert size is None and have != 60_000 and f"--train-size {have - v:,}" in str(e) or have < v + config.n_train
        return
    assert len(train) == config.n_train and len(val or []) == v
    if size is None:
        assert have == 60_000 and len(train) == have - v  # "all" means all


def test_seventy_thousand_training_images_are_refused_without_train_size(tmp_path):
    from dropcli.data import Dataset

    big = Dataset("mnist", tall(70_000), tall(10), "/data")
    with pytest.raises(DropcliError, match=r"holds 70,000 training images, not MNIST's 60,000; give --train-size 65,000"):
        big.splits(TrainConfig(data_dir="/data"))
    train, val = big.splits(TrainConfig(data_dir="/data", train_size=65_000))
    assert len(train) == 65_000 and len(val) == 5_000


# A run's data is found and checked by its hash before it is scored

def honest_and_doctored(tmp_path):
    """A small MNIST-format folder, and a copy whose test labels were edited."""
    fake_mnist_dir(tmp_path / "honest", gz=False, n_train=20, n_test=50)
    labels = bytearray((tmp_path / "honest" / FILES[3]).read_bytes())
    labels[8:] = bytes(50)  # every test label made 0 (after the 8-byte header)
    write_raw(tmp_path / "doctored", {FILES[3]: bytes(labels)}, tmp_path / "honest")
    return tmp_path / "honest", tmp_path / "doctored"


def small_run_config(data_dir) -> TrainConfig:
    return TrainConfig(hidden=(8,), data_dir=str(data_dir), train_size=10, batch_size=5, validation_size=0)


def test_a_run_is_scored_on_its_own_data_only_when_the_hash_matches(tmp_path):
    from dropcli.data import data_for_run, data_identity

    honest, doctored = honest_and_doctored(tmp_path)
    recorded = data_identity("mnist", honest)
    data, note = data_for_run(small_run_config(honest), recorded, None, "cpu")
    assert data.identity == recorded and note is None
    with pytest.raises(DropcliError, match=r"does not hold the data this run was trained on: sha256 \w{12} found, "
                                           r"\w{12} recorded \(t10k-labels-idx1-ubyte differ\); give --data-dir DIR"):
        data_for_run(small_run_config(doctored), recorded, None, "cpu")
    with pytest.raises(DropcliError, match=r"records no SHA-256 of it, so its test set cannot be checked; give --data-dir"):
        data_for_run(small_run_config(doctored), None, None, "cpu")
    with pytest.raises(DropcliError, match=r"is not on this machine; give --data-dir DIR"):
        data_for_run(small_run_config(tmp_path / "gone"), recorded, None, "cpu")
    data, note = data_for_run(small_run_config(honest), recorded, str(doctored), "cpu")  # named by the user: used
    assert data.identity["sha256"] != recorded["sha256"] and "as --data-dir asks" in note


def test_the_bundled_mnist_is_checked_too(tmp_path):
    from dropcli.data import data_for_run, data_identity

    fake_mnist_dir(tmp_path / "other", gz=False, n_train=20, n_test=50)
    with pytest.raises(DropcliError, match=r"the bundled MNIST does not hold the data this run was trained on"):
        data_for_run(TrainConfig(), data_identity("mnist", tmp_path / "other"), None, "cpu")


@settings(max_examples=30, deadline=None)
@given(field=st.sampled_from(["sha256", "files"]), digest=st.text("0123456789abcdef", min_size=64, max_size=64),
       which=st.sampled_from(FILES))
def test_any_other_recorded_hash_is_refused(tmp_path_factory, field, digest, which):
    from dropcli.data import data_for_run, data_identity

    folder = tmp_path_factory.getbasetemp() / "any-other-hash"
    if not folder.exists():
        fake_mnist_dir(folder, gz=False, n_train=20, n_test=50)
    real = data_identity("mnist", folder)
    recorded = ({**real, "sha256": digest} if field == "sha256"
                else {**real, "files": {**real["files"], which: digest}, "sha256": digest})
    if recorded["sha256"] == real["sha256"]:
        return
    with pytest.raises(DropcliError, match="does not hold the data this run was trained on"):
        data_for_run(small_run_config(folder), recorded, None, "cpu")


@pytest.mark.parametrize("where", ["", "raw"])
def test_a_cached_data_set_is_looked_for_only_where_it_is_downloaded(tmp_path, monkeypatch, where):
    import torchvision.datasets.mnist as tvm

    fake_mnist_dir(tmp_path / where, gz=False, n_test=30)  # MNIST-format files beside the cache's folders
    monkeypatch.setenv("DROPCLI_DATA_DIR", str(tmp_path))

    def offline(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvm.MNIST, "download", offline)
    from dropcli.data import data_identity

    for load in (load_dataset, data_identity):  # the data set's identity, which a study's plan records first, too
        with pytest.raises(DropcliError, match=r"Fashion-MNIST is not on this machine and could not be downloaded "
                                               r"\(OSError\); put its four IDX files in .*FashionMNIST/raw"):
            load("fashion-mnist")
