"""Which device runs the work, and at which matmul precision.

    $ dropcli train --device cuda:1 --precision tf32
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from dropcli.errors import UsageError
from dropcli.provenance import flush_denormals


def parse_device(name: str) -> torch.device | None:
    """A --device value as written, without asking the hardware: None for 'auto', else the
    torch.device; UsageError for anything but auto, cpu, cuda, cuda:N or mps (a login node that
    writes job scripts has no GPU, yet can check the spelling)."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; a device that does not exist here is a usage error. Every
    command computes on the device this returns, so it first sets the CPU's flush-to-zero mode
    (provenance.flush_denormals), before torch starts its threads."""
    flush_denormals()
    device = parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple's MPS is not available here; use --device cpu")
    return device


def free_bytes(device: torch.device) -> int:
    """Bytes free for a new allocation on `device`: the GPU's free memory (torch.cuda.mem_get_info),
    else the system's available memory (psutil, on Linux, macOS and Windows alike)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return int(psutil.virtual_memory().available)


def check_precision(precision: str, device: torch.device) -> None:
    """Raise UsageError for a precision the device cannot run (tf32 needs CUDA tensor cores)."""
    if precision == "tf32" and device.type != "cuda":
        raise UsageError(f"--precision tf32 runs on CUDA tensor cores, not on {device.type}; use --precision float32")


@contextmanager
def matmul_precision(precision: str):
    """tf32: CUDA matmuls on tensor cores (10-bit mantissa inputs, float32 sums) while inside."""
    if precision != "tf32":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU. For honest timings."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
