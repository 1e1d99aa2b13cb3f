import pytest
import torch

from dropcli.config import TrainConfig
from dropcli.engine import Stack
from dropcli.model import DropoutMLP, init_params, param_count


def test_tutorial_shapes_and_parameter_count():
    sizes = TrainConfig().sizes
    assert sizes == (784, 512, 512, 512, 512, 10)
    params = init_params(sizes, "tutorial", 777)
    assert [tuple(W.shape) for W, _ in params] == [(784, 512), (512, 512), (512, 512), (512, 512), (512, 10)]
    assert param_count(sizes) == 784 * 512 + 512 + 3 * (512 * 512 + 512) + 512 * 10 + 10 == 1_195_018
    model = DropoutMLP(sizes, (0.7,) * 4).load_params(params)
    assert sum(p.numel() for p in model.parameters()) == 1_195_018
    assert model(torch.rand(3, 784)).shape == (3, 10)


def test_keep_one_means_no_dropout_layer():
    with_dropout = DropoutMLP((784, 32, 32, 10), (0.5, 1.0))
    names = [type(m).__name__ for m in with_dropout.net]
    assert names == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert with_dropout.net[2].p == 0.5  # PyTorch's p is the drop rate, 1 - keep


def test_eval_output_does_not_depend_on_keep_probability():
    params = init_params((784, 64, 64, 10), "tutorial", 1)
    x = torch.rand(8, 784)
    outs = [DropoutMLP((784, 64, 64, 10), (k, k)).load_params(params).eval()(x) for k in (0.3, 0.7, 1.0)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
def test_training_masks_drop_one_minus_keep_and_scale_kept_units(device):
    """The fast engine: per cell, the zero fraction of hidden units is 1 - keep; kept units are x / keep."""
    keeps = [0.3, 0.5, 0.9, 1.0]
    configs = [TrainConfig(hidden=(256, 256), keep_prob=(k,), seed=10 + i, batch_size=200) for i, k in enumerate(keeps)]
    params = [init_params(c.sizes, "kaiming", c.seed) for c in configs]
    stack = Stack(configs, params, torch.device(device))
    zeros = torch.zeros(len(keeps), device=device)
    for _ in range(20):
        stack.masks.new_step()
        a = torch.ones(len(keeps), 200, 256, device=device)  # a constant-one activation becomes 0 or 1/keep
        out = stack._dropout(a, 1, relu=True)
        zeros += (out == 0).float().mean(dim=(1, 2))
        for i, k in enumerate(keeps):
            scaled = torch.tensor(1.0 / k, dtype=torch.float32).item()
            assert set(torch.unique(out[i]).tolist()) <= {0.0, scaled}
    frac = zeros / 20
    for k, f in zip(keeps, frac.tolist()):
        assert abs(f - (1 - k)) < 0.01, (k, f)
    negative = stack._dropout(-torch.ones(len(keeps), 200, 256, device=device), 1, relu=True)
    assert not negative.any()  # ReLU comes first
    assert torch.equal(stack.logits(torch.ones(3, 784, device=device), 3), stack.logits(torch.ones(3, 784, device=device), 3))  # no dropout outside training


def test_reference_module_dropout_statistics():
    model = DropoutMLP((784, 1000, 10), (0.6,)).train()
    h = torch.rand(400, 1000) + 0.1  # positive, so every zero comes from dropout
    d = model.net[2](h)
    kept = d != 0
    assert abs((~kept).float().mean().item() - 0.4) < 0.01
    assert torch.allclose(d[kept], h[kept] / 0.6)


def test_init_statistics():
    W, b = init_params((784, 512, 10), "tutorial", 777)[0]
    assert abs(W.mean()) < 0.002 and W.abs().max() <= 0.2 + 1e-6  # truncated at two stddev
    assert 0.085 < W.std() < 0.092  # stddev 0.1 truncated at 2 sigma -> 0.088
    assert abs(b.mean()) < 0.15 and 0.85 < b.std() < 1.15  # normal(0, 1) biases
    W, b = init_params((784, 512, 10), "xavier", 777)[0]
    bound = (6 / (784 + 512)) ** 0.5
    assert W.abs().max() <= bound and W.abs().max() > 0.99 * bound
    W, b = init_params((784, 512, 10), "kaiming", 777)[0]
    assert abs(W.std() - (2 / 784) ** 0.5) < 0.002 and torch.all(b == 0)


def test_init_depends_only_on_seed():
    a = init_params((784, 64, 10), "tutorial", 5)
    b = init_params((784, 64, 10), "tutorial", 5)
    c = init_params((784, 64, 10), "tutorial", 6)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])


def test_evaluate_confusion_counts_each_pair_and_per_class_from_it():
    from dropcli.data import Split
    from dropcli.report import per_class_frame
    from dropcli.train import evaluate

    c = TrainConfig(hidden=(16,), keep_prob=(1.0,))
    params = init_params(c.sizes, c.init, 3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(500, 784, generator=g), torch.randint(0, 9, (500,), generator=g)  # class 9 absent
    r = evaluate(params, c, Split(x, y))
    brute = [[int(((r.labels == t) & (r.predictions == p)).sum()) for p in range(10)] for t in range(10)]
    assert r.confusion == brute and sum(map(sum, brute)) == 500
    assert r.per_class[9] != r.per_class[9]  # NaN: no image of class 9
    assert r.per_class[:9] == pytest.approx([brute[t][t] / sum(brute[t]) for t in range(9)])
    frame = per_class_frame(r)
    assert list(frame.columns[:4]) == ["class", "images", "correct", "accuracy"]
    assert frame["images"].tolist() == [sum(row) for row in brute] and frame["accuracy"].isna().tolist() == [False] * 9 + [True]
    assert frame.loc[4, "predicted_7"] == brute[4][7]
