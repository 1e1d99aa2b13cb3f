"""Evaluation: weight scaling, per-class counts and Monte-Carlo dropout against hand-computed answers."""

import numpy as np
import pytest
import torch
from conftest import small_config

from dropcli.config import EVAL_CHUNK
from dropcli.data import Split
from dropcli.evaluation import chunked_forward, evaluate, mc_curve, mc_generator, probabilities, random_dropout
from dropcli.model import init_params


@pytest.fixture
def setup(tiny_data):
    c = small_config(keep_prob=(0.5, 0.8), input_keep_prob=0.9, seed=3)
    return c, init_params(c.sizes, c.init, c.seed), tiny_data.test


def by_hand(params, x, keep, gen, passes):
    """Monte-Carlo dropout written out in numpy: the same uniform draws, layer by layer, chunk by chunk."""
    probs = np.zeros((len(x), 10))
    for _ in range(passes):
        outs = []
        for i in range(0, len(x), EVAL_CHUNK):
            a = x[i : i + EVAL_CHUNK].numpy().astype(np.float64)
            for l, (W, b) in enumerate(params):
                if l > 0:
                    a = np.maximum(a, 0)
                if keep[l] < 1:
                    u = torch.rand(a.shape, generator=gen).numpy()
                    a = a * (u < keep[l]) / keep[l]
                a = a @ W.numpy().astype(np.float64) + b.numpy()
            outs.append(a)
        z = np.concatenate(outs)
        e = np.exp(z - z.max(1, keepdims=True))
        probs += e / e.sum(1, keepdims=True)
    return probs / passes


def test_mc_dropout_accuracy_against_a_hand_computed_answer(setup):
    c, params, test = setup
    r = evaluate(params, c, test, mc_samples=7)
    expected = by_hand(params, test.x, (c.input_keep_prob, *c.keep_prob), mc_generator(c.seed, test.x.device), 7)
    assert r.mc_accuracy == pytest.approx((expected.argmax(1) == test.y.numpy()).mean(), abs=1.5 / len(test))
    mean, std = probabilities(params, test.x, c, 7, seed=c.seed)
    assert np.abs(mean.numpy() - expected).max() < 1e-5
    assert (std >= 0).all() and std.max() > 0


def test_the_mc_curve_at_one_sample_is_a_single_dropout_pass(setup):
    c, params, test = setup
    rows = mc_curve(params, c, test, samples=(1, 3), repeats=2)
    assert [(r["repeat"], r["samples"]) for r in rows] == [(0, 1), (0, 3), (1, 1), (1, 3)]
    single = chunked_forward(params, test.x, random_dropout(c, mc_generator(c.seed, test.x.device, 0)))
    assert rows[0]["accuracy"] == (single.argmax(1) == test.y).double().mean().item()
    three, _ = probabilities(params, test.x, c, 3, seed=c.seed)  # repeat 0 is evaluate's stream
    assert rows[1]["accuracy"] == (three.argmax(1) == test.y).double().mean().item()
    assert rows[0]["accuracy"] != rows[2]["accuracy"] or rows[1]["accuracy"] != rows[3]["accuracy"]  # repeats differ


def test_weight_scaling_and_per_class_counts(setup):
    c, params, test = setup
    r = evaluate(params, c, test)
    logits = test.x @ params[0][0] + params[0][1]
    for W, b in params[1:]:
        logits = logits.relu() @ W + b
    pred = logits.argmax(1)
    assert r.accuracy == pytest.approx((pred == test.y).double().mean().item(), abs=1.5 / len(test))
    confusion = np.array(r.confusion)
    assert confusion.sum() == len(test) and np.trace(confusion) == round(r.accuracy * len(test))
    for k in range(10):
        n = (test.y == k).sum().item()
        assert r.per_class[k] == pytest.approx(((r.predictions == k) & (r.labels == k)).sum().item() / n)


def test_a_class_missing_from_the_split_has_no_accuracy(setup):
    c, params, test = setup
    keep = test.y != 3
    r = evaluate(params, c, Split(test.x[keep], test.y[keep]))
    assert np.isnan(r.per_class[3]) and not np.isnan(r.per_class[2])
    assert torch.equal(torch.tensor(r.confusion).sum(1)[3], torch.tensor(0))
