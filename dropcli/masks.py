"""Dropout masks: fresh, independent Bernoulli(keep) draws for every unit of every cell at every step.

Each cell draws from its own stream, seeded by its own seed, so a cell's masks never depend on
the cells trained beside it. A unit is kept when a uniform 32-bit integer u satisfies
u <= round(keep * 2**32) - 1: probability keep to within 2**-32 (finer than torch.rand's 24-bit
floats; config.check_keep refuses keep probabilities below 2**-32).

- CPU: one numpy SFC64 generator per cell (random_raw gives two draws per 64-bit word; about
  3x cheaper than torch.rand on the 2-core CPU here).
- CUDA: a counter-based hash (the splitmix64 finalizer) of (cell key, step, row, unit number):
  one kernel serves all cells, needs no generator state on the host, and can be captured in a
  CUDA graph. FusedHashDropout computes the hash, ReLU, mask and 1/keep scaling of a layer in
  one jiterator kernel (a private torch API, compiled at first use by NVRTC); HashMasks is the
  same draw as torch ops, the reference the tests check on the CPU and the fallback where
  jiterator is missing or `fused=False` asks for it.

Whatever the source, a layer's dropout is `apply(a, l, relu)`: kept units scaled by 1/keep,
dropped ones zero, ReLU first for the hidden layers; `new_step()` starts a step's fresh draws.
"""

from __future__ import annotations

import numpy as np
import torch

from dropcli.config import Stream, stream_seed


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
        self.gens = [np.random.SFC64(stream_seed(s, Stream.MASKS)) for s in seeds]
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
        self.keys = torch.tensor([_signed(stream_seed(s, Stream.MASKS)) for s in seeds], dtype=torch.int64,
                                 device=device).view(-1, 1, 1)
        rows = torch.arange(batch, dtype=torch.int64, device=device).view(1, -1, 1)
        ids = torch.tensor(unit_ids, dtype=torch.int64, device=device).view(1, 1, -1)
        self.base = rows * units + ids  # (1, B, width)
        self.stride = batch * units
        self.thresh = torch.from_numpy(thresholds(keeps).astype(np.int64)).to(device)[:, None, :]
        self.counter = torch.zeros((), dtype=torch.int64, device=device)  # the step, on the device

    def uniform(self) -> torch.Tensor:
        """This step's (K, B, width) uniform 32-bit draws, as int64; draw() compares and steps on."""
        x = (self.base + self.counter * self.stride) * GOLDEN + self.keys
        return _shr(splitmix64(x), 32)

    def draw(self) -> torch.Tensor:
        """This step's (K, B, width) boolean keep masks (uniform() <= threshold); steps the counter on."""
        u = self.uniform()
        self.counter += 1
        return u <= self.thresh


# One element of a layer's fused dropout. All inputs are int32 (jiterator gives every input one
# dtype): z and inv are float32 bit patterns, thresh a uint32 one; the result is float32 bits.
# The hash is HashMasks' arithmetic in uint64 (where int64 wraps alike), so the masks are the same.
FUSED_SOURCE = """
template <typename T> T NAME(T z, T base, T step, T key_lo, T key_hi, T thresh, T inv) {
  unsigned long long x = (unsigned long long)(unsigned int)step * STRIDEull + (unsigned long long)(unsigned int)base;
  x = x * 0x9E3779B97F4A7C15ull + (((unsigned long long)(unsigned int)key_hi << 32) | (unsigned int)key_lo);
  x = x ^ (x >> 30);
  x = x * 0xBF58476D1CE4E5B9ull;
  x = x ^ (x >> 27);
  x = x * 0x94D049BB133111EBull;
  x = x ^ (x >> 31);
  float v = __int_as_float(z);
  if (RELU && v < 0.0f) v = 0.0f;
  return (unsigned int)(x >> 32) <= (unsigned int)thresh ? __float_as_int(v * __int_as_float(inv)) : 0;
}
"""


def fused_source(stride: int, relu: bool) -> tuple[str, str]:
    """(kernel name, CUDA source) for one stride (batch x units), with ReLU or without."""
    name = f"dropcli_dropout_{'relu' if relu else 'linear'}_{stride}"
    code = FUSED_SOURCE.replace("NAME", name).replace("STRIDE", str(stride)).replace("RELU", str(int(relu)))
    return name, code


class DrawnDropout:
    """Applies a source's (K, B, width) bool mask, drawn once per step, layer by layer. From numpy
    masks it first builds, in one numpy pass, a float mask holding 0 or 1/keep, so that each layer
    takes one multiplication (bool masks cost a conversion and a second pass in torch)."""

    def __init__(self, source, segments: list[tuple[int, int] | None], inv_keep: list[torch.Tensor]):
        self.source, self.segments, self.inv_keep = source, segments, inv_keep
        self.name = "numpy masks" if isinstance(source, NumpyMasks) else "hash masks"
        self.counter = getattr(source, "counter", None)
        self.mask: torch.Tensor | None = None
        self.scaled = None
        if getattr(source, "mask_np", None) is not None:
            K, B, width = source.mask_np.shape
            self.scale = np.zeros((K, 1, width), dtype=np.float32)  # the column's 1/keep, per cell
            for l, seg in enumerate(segments):
                if seg is not None:
                    self.scale[:, 0, seg[0] : seg[1]] = inv_keep[l].cpu().numpy().reshape(K, 1)
            self.scaled_np = np.empty((K, B, width), dtype=np.float32)
            self.scaled = torch.from_numpy(self.scaled_np)

    def new_step(self) -> None:
        """Draw the masks of the next training step (and their 1/keep-scaled copy on the CPU)."""
        self.mask = self.source.draw()
        if self.scaled is not None:
            np.multiply(self.source.mask_np, self.scale, out=self.scaled_np)

    def apply(self, a: torch.Tensor, l: int, relu: bool) -> torch.Tensor:
        """Layer l's dropout on activations a (K, B, width_l) in place: ReLU first if relu, then mask x 1/keep."""
        c0, c1 = self.segments[l]
        a = a.relu_() if relu else a
        if self.scaled is not None:
            return a.mul_(self.scaled[:, :, c0:c1])
        return a.mul_(self.mask[:, :, c0:c1]).mul_(self.inv_keep[l])


class FusedHashDropout:
    """CUDA: HashMasks' draws applied in one kernel per layer (ReLU, mask, 1/keep), reading and
    writing each activation once instead of some twenty passes over an int64 mask of every unit.
    Its inputs are the HashMasks' own keys, unit numbers and thresholds, cut to int32 bit patterns."""

    def __init__(self, masks: HashMasks, segments: list[tuple[int, int] | None], inv_keep: list[torch.Tensor]):
        from torch.cuda import jiterator

        if masks.stride >= 2**31:
            raise ValueError("batch x units too large for int32 unit numbers")
        self.name = "fused hash kernel"
        i32 = torch.int32  # int64 -> int32 keeps the low 32 bits
        self.key_lo, self.key_hi = masks.keys.to(i32), (masks.keys >> 32).to(i32)
        layers = [(l, s) for l, s in enumerate(segments) if s is not None]
        self.base = {l: masks.base[:, :, s[0] : s[1]].to(i32) for l, s in layers}
        self.thresh = {l: masks.thresh[:, :, s[0] : s[1]].to(i32) for l, s in layers}
        self.inv_bits = [t.to(masks.keys.device, torch.float32).contiguous().view(torch.int32) for t in inv_keep]
        self.counter = torch.full((), -1, dtype=torch.int32, device=masks.keys.device)  # this step's number
        self.kernels = {relu: jiterator._create_jit_fn(fused_source(masks.stride, relu)[1]) for relu in (False, True)}

    def new_step(self) -> None:
        """Advance to the next training step's draws (the kernel hashes the step number)."""
        self.counter += 1

    def apply(self, a: torch.Tensor, l: int, relu: bool) -> torch.Tensor:
        """Layer l's ReLU (if relu), mask and 1/keep in one CUDA kernel; returns a new (K, B, width_l) tensor."""
        out = self.kernels[relu](a.view(torch.int32), self.base[l], self.counter, self.key_lo, self.key_hi,
                                 self.thresh[l], self.inv_bits[l])
        return out.view(torch.float32)


def make_dropout(keeps: list[list[float]], unit_ids: list[int], units: int, batch: int, device: torch.device,
                 seeds: list[int], segments: list[tuple[int, int] | None], inv_keep: list[torch.Tensor],
                 fused: bool = True):
    """The layer-by-layer dropout for the device: numpy streams on the CPU; on CUDA the fused hash
    kernel, or (fused=False, or where jiterator fails) the same hash as torch ops."""
    if device.type == "cpu":
        return DrawnDropout(NumpyMasks(keeps, batch, seeds), segments, inv_keep)
    hashed = HashMasks(keeps, unit_ids, units, batch, device, seeds)
    if device.type == "cuda" and fused:
        try:
            kernel = FusedHashDropout(hashed, segments, inv_keep)
            for l, seg in enumerate(segments):  # compile both kernels now, outside any CUDA-graph capture
                if seg is not None:
                    probe = torch.zeros(len(keeps), batch, seg[1] - seg[0], device=device)
                    kernel.apply(probe, l, relu=l > 0)
            return kernel
        except (RuntimeError, AssertionError, ImportError, ValueError):
            pass
    return DrawnDropout(hashed, segments, inv_keep)
