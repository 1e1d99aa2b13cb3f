import gzip
import shutil

import numpy as np
import pytest
import torch

from dropcli.config import TrainConfig
from dropcli.data import BUNDLE, FILES, Split, load_dataset, prepare_bundled_mnist, read_idx
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


def fake_mnist_dir(folder, gz=True, n_train=60_000, n_test=100):
    rng = np.random.default_rng(0)
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
