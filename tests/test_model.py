import pytest
import torch

from dropcli.config import TrainConfig
from dropcli.engine import Stack
from dropcli.model import DropoutMLP, forward, init_params, param_count


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


def test_evaluation_uses_no_dropout_whatever_the_keep_probability():
    """Weight scaling, as the tutorial tests with keep_prob 1.0: the library's evaluation of the same
    weights gives the same logits and accuracy whatever keep probability the config trained with."""
    from dropcli.data import Split
    from dropcli.evaluation import evaluate, probabilities

    params = init_params((784, 64, 64, 10), "tutorial", 1)
    x, y = torch.rand(300, 784, generator=torch.Generator().manual_seed(0)), torch.arange(300) % 10
    results = [evaluate(params, TrainConfig(hidden=(64, 64), keep_prob=(k,), input_keep_prob=k), Split(x, y))
               for k in (0.3, 0.7, 1.0)]
    assert len({(r.accuracy, r.loss) for r in results}) == 1
    torch.testing.assert_close(probabilities(params, x)[0], torch.softmax(forward(params, x), 1), rtol=0, atol=0)


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
    ones = torch.ones(5, 784, device=device)  # evaluation has no dropout: every cell's logits are its plain forward
    for k in range(len(keeps)):
        plain = forward([(W[k], b[k, 0]) for W, b in stack.params()], ones.clone())
        torch.testing.assert_close(stack.logits(ones, 5)[k], plain, rtol=1e-5, atol=1e-5)


def test_the_engine_trains_like_the_torch_nn_reference():
    """Without dropout, the stacked engine's hand-written backward and flat Adam follow DropoutMLP
    trained by autograd and torch.optim.Adam, step for step; with dropout on, they share the forward."""
    c = TrainConfig(hidden=(64, 32), keep_prob=(1.0,), batch_size=20)
    params = init_params(c.sizes, c.init, 11)
    model = DropoutMLP(c.sizes, c.keep_prob).load_params(params)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    stack = Stack([c], [params], torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        x, y = torch.rand(20, 784, generator=g), torch.randint(0, 10, (20,), generator=g)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mine, _ = stack.step(x.clone().unsqueeze(0), y.unsqueeze(0))
        assert mine.item() == pytest.approx(loss.item(), rel=1e-5)
    for (W, b), (W_ref, b_ref) in zip(stack.cell_params(0), model.params()):
        torch.testing.assert_close(W, W_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-5)
    x = torch.rand(7, 784, generator=g)
    with_dropout = DropoutMLP(c.sizes, (0.5, 0.5)).load_params(model.params()).eval()
    torch.testing.assert_close(with_dropout(x), forward(model.params(), x.clone()), rtol=1e-5, atol=1e-6)


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
