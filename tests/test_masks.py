"""Dropout masks: Bernoulli(keep) per unit and step, fresh every step, one stream per cell."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dropcli.masks import DrawnDropout, FusedHashDropout, HashMasks, NumpyMasks, fused_source, splitmix64

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
    u = src.uniform().flatten().double() / 2**32
    hist = np.histogram(u.numpy(), bins=16, range=(0, 1))[0]
    expected = u.numel() / 16
    assert ((hist - expected) ** 2 / expected).sum() < 40  # chi-square, 15 dof: p ~ 0.0005


HARNESS = """
#include <cstring>
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
CODE
extern "C" void run(const int* z, const int* base, int step, const int* lo, const int* hi, const int* thresh,
                    const int* inv, int* out, int K, int B, int W) {
  for (int k = 0; k < K; k++)
    for (int b = 0; b < B; b++)
      for (int w = 0; w < W; w++)
        out[(k * B + b) * W + w] = NAME<int>(z[(k * B + b) * W + w], base[b * W + w], step, lo[k], hi[k],
                                             thresh[k * W + w], inv[k]);
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("relu", [True, False])
def test_fused_cuda_kernel_source_applies_the_hash_masks(tmp_path, relu):
    """The fused CUDA kernel's element function, compiled here as C++ (CI has no GPU), gives
    HashMasks' draws applied as the torch ops apply them, bit for bit."""
    K, B, units, width = 3, 8, 784 + 64, 64
    keeps = [[k] * width for k in (0.3, 0.5, 0.9)]
    ids, seeds = list(range(784, 848)), [1, 7, 2**40 + 5]
    segments = [None, (0, width)]
    inv = [torch.ones(K, 1, 1), torch.tensor([1 / 0.3, 1 / 0.5, 1 / 0.9]).view(K, 1, 1)]
    fused = FusedHashDropout(HashMasks(keeps, ids, units, B, CPU, seeds), segments, inv)
    name, code = fused_source(B * units, relu)
    src = tmp_path / "k.cpp"
    src.write_text(HARNESS.replace("CODE", code).replace("NAME", name))
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(tmp_path / "k.so"), str(src)], check=True)
    lib = ctypes.CDLL(str(tmp_path / "k.so"))
    ref = DrawnDropout(HashMasks(keeps, ids, units, B, CPU, seeds), segments, inv)
    ptr = lambda t: t.contiguous().numpy().ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    for step in range(3):
        z = torch.randn(K, B, width)
        ref.new_step()
        expected = ref.apply(z.clone(), 1, relu)
        out = torch.empty(K, B, width, dtype=torch.int32)
        args = [z.view(torch.int32), fused.base[1], None, fused.key_lo, fused.key_hi, fused.thresh[1], fused.inv_bits[1], out]
        keep = [a.contiguous() if a is not None else None for a in args]
        lib.run(*[ptr(a) if a is not None else ctypes.c_int(step) for a in keep], K, B, width)
        assert torch.equal(out.view(torch.float32), expected), step
    assert 0 < (expected == 0).float().mean() < 1
