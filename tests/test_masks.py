"""Dropout masks: Bernoulli(keep) per unit and step, fresh every step, one stream per cell."""

import numpy as np
import pytest
import torch

from dropcli.masks import HashMasks, NumpyMasks, splitmix64

CPU = torch.device("cpu")
KEEPS = [0.3, 0.5, 0.8, 1.0]


def sources(keeps, seeds, width=512, batch=200):
    rows = [[k] * width for k in keeps]
    return {"numpy": NumpyMasks(rows, batch, seeds),
            "hash": HashMasks(rows, list(range(784, 784 + width)), 784 + width, batch, CPU, seeds)}


@pytest.mark.parametrize("kind", ["numpy", "hash"])
def test_kept_fraction_is_keep_and_steps_are_independent(kind):
    src = sources(KEEPS, [1, 2, 3, 4])[kind]
    draws = torch.stack([src.draw().clone() for _ in range(30)]).float()  # (steps, K, B, width)
    for k, keep in enumerate(KEEPS):
        kept = draws[:, k]
        assert abs(kept.mean().item() - keep) < 0.005, (kind, keep)
        per_unit = kept.mean(dim=(0, 1))  # every unit is kept at the same rate
        assert (per_unit - keep).abs().max() < 0.1
        both = (kept[1:] * kept[:-1]).mean().item()  # fresh draws: P(kept twice running) = keep^2
        assert abs(both - keep * keep) < 0.006, (kind, keep, both)
    assert not torch.equal(draws[0, 0], draws[1, 0])


@pytest.mark.parametrize("kind", ["numpy", "hash"])
def test_a_cells_masks_do_not_depend_on_its_neighbours(kind):
    alone = sources([0.5], [7])[kind]
    grouped = sources([0.9, 0.5, 0.3], [1, 7, 2])[kind]
    for _ in range(3):
        assert torch.equal(alone.draw()[0], grouped.draw()[1])


def test_hash_units_depend_on_their_place_in_the_network_not_the_group():
    """A hidden layer's masks are the same whether or not the group also drops inputs."""
    hidden_only = HashMasks([[0.5] * 64], list(range(784, 848)), 848, 10, CPU, [3])
    with_input = HashMasks([[0.8] * 784 + [0.5] * 64], list(range(848)), 848, 10, CPU, [3])
    assert torch.equal(hidden_only.draw()[0], with_input.draw()[0][:, 784:])


def test_splitmix64_matches_the_reference():
    def reference(z):
        m = (1 << 64) - 1
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & m
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & m
        return z ^ (z >> 31)

    values = [0, 1, 12345, 2**63 - 1, 2**63 + 17, 2**64 - 1]
    signed = [v - 2**64 if v >= 2**63 else v for v in values]
    got = splitmix64(torch.tensor(signed, dtype=torch.int64)).tolist()
    assert [g % 2**64 for g in got] == [reference(v) for v in values]


def test_uint32_draws_are_uniform():
    src = sources([0.5], [5], width=1024, batch=100)["hash"]
    x = (src.base + src.counter * src.stride) * -7046029254386353131 + src.keys
    u = ((splitmix64(x) >> 32) & 0xFFFFFFFF).flatten().double() / 2**32
    hist = np.histogram(u.numpy(), bins=16, range=(0, 1))[0]
    expected = u.numel() / 16
    assert ((hist - expected) ** 2 / expected).sum() < 40  # chi-square, 15 dof: p ~ 0.0005
