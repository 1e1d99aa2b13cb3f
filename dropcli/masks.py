"""Dropout masks: fresh, independent Bernoulli(keep) draws for every unit of every cell at every step.

Each cell draws from its own stream, seeded by its own seed, so a cell's masks never depend on
the cells trained beside it. A unit is kept when a uniform 32-bit integer u satisfies
u <= round(keep * 2**32) - 1: probability keep to within 2**-32 (finer than torch.rand's 24-bit
floats; keep probabilities below 2**-32 act as 2**-32).

- CPU: one numpy SFC64 generator per cell (random_raw gives two draws per 64-bit word; about
  3x cheaper than torch.rand on the 2-core CPU here).
- CUDA: a counter-based hash (the splitmix64 finalizer) of (cell key, step, row, unit number):
  one set of elementwise kernels serves all cells, needs no generator state on the host, and
  can be captured in a CUDA graph. Tests check its statistics on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from dropcli.model import stream_seed


def thresholds(keeps: list[list[float]]) -> np.ndarray:
    """(K, width) uint64: T - 1 with T = round(keep * 2^32), clipped to [1, 2^32]."""
    keep = np.asarray(keeps, dtype=np.float64)
    return np.clip(np.round(keep * 2.0**32), 1, 2.0**32).astype(np.uint64) - 1


class NumpyMasks:
    """CPU masks from per-cell SFC64 streams."""

    def __init__(self, keeps: list[list[float]], batch: int, seeds: list[int]):
        self.K, self.B, self.width = len(keeps), batch, len(keeps[0])
        keep = np.asarray(keeps)
        self.active = [np.flatnonzero(row < 1.0) for row in keep]  # units each cell draws for
        self.contiguous = [len(a) == self.width for a in self.active]
        self.gens = [np.random.SFC64(stream_seed(s, 2)) for s in seeds]
        self.thresh = thresholds(keeps).astype(np.uint32)[:, None, :]  # (K, 1, width)
        self.mask_np = np.ones((self.K, batch, self.width), dtype=bool)
        self.mask = torch.from_numpy(self.mask_np)
        self.counter = None

    def draw(self) -> torch.Tensor:
        """(K, B, width) bool, True = kept; the buffer is reused by the next draw."""
        for k, gen in enumerate(self.gens):
            act, n = self.active[k], len(self.active[k])
            if n == 0:
                continue  # this cell keeps every unit; its mask stays all True
            count = self.B * n
            raw = gen.random_raw((count + 1) // 2).view(np.uint32)[:count].reshape(self.B, n)
            if self.contiguous[k]:
                np.less_equal(raw, self.thresh[k], out=self.mask_np[k])
            else:
                self.mask_np[k][:, act] = raw <= self.thresh[k][:, act]
        return self.mask


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


GOLDEN, MIX1, MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer on int64 tensors (multiplication wraps modulo 2^64)."""
    x = x ^ _shr(x, 30)
    x = x * MIX1
    x = x ^ _shr(x, 27)
    x = x * MIX2
    return x ^ _shr(x, 31)


class HashMasks:
    """Counter-based masks: u = top 32 bits of splitmix64(counter * golden + cell key), where
    counter = (step * B + row) * units + unit number in the full layout of the network."""

    def __init__(self, keeps: list[list[float]], unit_ids: list[int], units: int, batch: int,
                 device: torch.device, seeds: list[int]):
        self.K, self.B = len(keeps), batch
        self.keys = torch.tensor([_signed(stream_seed(s, 2)) for s in seeds], dtype=torch.int64,
                                 device=device).view(-1, 1, 1)
        rows = torch.arange(batch, dtype=torch.int64, device=device).view(1, -1, 1)
        ids = torch.tensor(unit_ids, dtype=torch.int64, device=device).view(1, 1, -1)
        self.base = rows * units + ids  # (1, B, width)
        self.stride = batch * units
        self.thresh = torch.from_numpy(thresholds(keeps).astype(np.int64)).to(device)[:, None, :]
        self.counter = torch.zeros((), dtype=torch.int64, device=device)  # the step, on the device

    def draw(self) -> torch.Tensor:
        x = (self.base + self.counter * self.stride) * GOLDEN + self.keys  # (K, B, width)
        u = _shr(splitmix64(x), 32)
        self.counter += 1
        return u <= self.thresh


def mask_source(keeps: list[list[float]], unit_ids: list[int], units: int, batch: int, device: torch.device,
                seeds: list[int]):
    if device.type == "cpu":
        return NumpyMasks(keeps, batch, seeds)
    return HashMasks(keeps, unit_ids, units, batch, device, seeds)
