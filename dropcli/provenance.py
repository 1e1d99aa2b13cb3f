"""Where, when and with which code a result was made: recorded with every run and study row.

    >>> code_version()          # the commit when run from a checkout, else the package version
    '0.1.0+g83dd6c4a1b2c'
    >>> cpu_model()
    'AMD EPYC, 2 cores, AVX512'

Also checks that MKL runs in its reproducible mode (see dropcli/__init__.py), and sets the CPU's
flush-to-zero mode in every thread torch computes on (flush_denormals).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import platform
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from dropcli import __version__

MKL_CBWR_AUTO_STRICT = 0x10002  # MKL_CBWR_AUTO | MKL_CBWR_STRICT (mkl_service.h)


def utc_now() -> str:
    """ISO 8601 in UTC to the second, the one timestamp format of every file dropcli writes."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`0.1.0+g<commit>` from a git checkout (`.dirty` when tracked files differ from it), else
    the installed version: enough to find the code that produced a number."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()

        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "dropcli")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """'<model name>, <N> cores, <vector ISA torch uses>', e.g. 'AMD EPYC, 2 cores, AVX512'."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [name, f"{os.cpu_count()} cores"]
    try:
        import torch

        parts.append(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError):
        pass
    if "amx_tile" in _cpu_flags():
        parts.append("AMX")
    return ", ".join(parts)


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def device_description(device) -> str:
    """'cpu', or 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def versions() -> dict:
    """The versions that made a result: dropcli (with its commit), torch, numpy, Python."""
    import numpy
    import torch

    return {"dropcli": code_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _mkl_cbwr():
    """(get, set) of the MKL linked into torch, or None where torch has no MKL."""
    import ctypes

    import torch

    lib_dir = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        try:
            lib = ctypes.CDLL(str(lib_dir / name))
            get, set_ = lib.mkl_serv_cbwr_get, lib.mkl_serv_cbwr_set
        except (OSError, AttributeError):
            continue
        get.argtypes, get.restype, set_.argtypes, set_.restype = [ctypes.c_int], ctypes.c_int, [ctypes.c_int], ctypes.c_int
        return get, set_
    return None


@functools.lru_cache(maxsize=1)
def mkl_reproducible() -> bool | None:
    """True when torch's MKL runs in AUTO,STRICT mode (set now if MKL has not started yet);
    False, with a warning naming the fix, when MKL already runs in another mode; None without MKL."""
    calls = _mkl_cbwr()
    if calls is None:
        return None
    get, set_ = calls
    if get(-1) == MKL_CBWR_AUTO_STRICT or set_(MKL_CBWR_AUTO_STRICT) == 0:
        return True
    warnings.warn("MKL started before dropcli could make it reproducible, so lockstep cells may differ in the "
                  "last bits from single runs; set MKL_CBWR=AUTO,STRICT in the environment, or import dropcli "
                  "before running torch matmuls", RuntimeWarning, stacklevel=2)
    return False


FLUSH_PROBE_ELEMENTS = 1 << 16  # per thread: above torch's grain size (32,768), so every thread takes a part
_flushing = threading.local()  # .depth: how many flushing() blocks this thread is in


def flush_denormals() -> bool | None:
    """Start torch's threads in the CPU's flush-to-zero mode (FTZ and DAZ: a denormal float result
    or input counts as 0; torch.set_flush_denormal). The mode belongs to a thread, which takes its
    creator's only as it starts, so every dropcli command calls this before torch computes
    (device.resolve_device; workers.py as a worker starts). This thread keeps IEEE arithmetic
    afterwards (Python's and numpy's floats here), and flushes only inside flushing().

    Returns True when every thread torch uses flushes; False, with a warning naming the fix, when
    torch's threads had started before; None where the CPU has no such mode. Idempotent; costs a
    few ms. The check sees only the threads torch uses now: after torch.set_num_threads(1), an
    older thread that keeps denormals would be missed, and used again once the count goes back up.

    Why: Adam's first moment of a weight whose gradient stays 0 (a dead unit's) decays into the
    denormals and stays there (0.9 x 4 x 2**-149 rounds back to 4 x 2**-149), and denormal
    arithmetic takes the CPU's slow path: 6% of the tutorial network's moments after 15 epochs,
    which make a step 1.5x slower (benchmarks/denormals.py, benchmarks/RESULTS.md). Flushed, those
    moments are 0. GPUs are not affected: this sets the CPU's mode only."""
    with flushing() as flushed:
        return flushed


def _flushes_here(smallest_normal: float = 2.0**-1022) -> bool:
    """Whether this thread flushes now: Python's float multiply runs on the same SSE unit, so half of
    float64's smallest normal comes out 0 under flush-to-zero."""
    return smallest_normal * 0.5 == 0.0


def _outside_dropcli() -> int:
    """The stacklevel of the first caller outside this module and contextlib (a warning names it)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and Path(frame.f_code.co_filename).name in ("provenance.py", "contextlib.py"):
        frame, level = frame.f_back, level + 1
    return level


@contextlib.contextmanager
def flushing() -> Iterator[bool | None]:
    """Inside, this thread flushes denormals too (it computes a part of every parallel torch
    operation); leaving the outermost block gives it back the mode it had. Yields what
    flush_denormals returns: whether every thread torch uses flushes (False with its warning, once
    per outermost block), None where the CPU has no such mode. train.train_group, groups.step_seconds
    and evaluation's functions compute in it. The mode belongs to the thread, not to the block: a
    generator suspended inside leaves its caller flushing, and as a decorator it does not cover a
    generator function's body. libgomp gives each thread that starts parallel work a pool of its own,
    so only the pool of a thread that called flush_denormals first is started in the mode."""
    import torch

    depth = getattr(_flushing, "depth", 0)
    before = _flushes_here() if depth == 0 else True
    try:
        _flushing.depth = depth + 1
        if not torch.set_flush_denormal(True):
            yield None
            return
        if depth:
            yield _flushing.every  # the outermost block probed the threads
            return
        n = torch.get_num_threads()
        tiny = torch.full((n * FLUSH_PROBE_ELEMENTS,), 2.0**-120).mul_(2.0**-10)  # 2**-130 is a denormal
        square = torch.full((512, 512), 2.0**-70)
        _flushing.every = not (tiny.any() or torch.mm(square, square).any())  # elementwise work, MKL's matmul threads
        if not _flushing.every:
            warnings.warn("torch's threads started before dropcli set flush-to-zero, so some keep denormals: steps "
                          "may be slower and results may differ in the last bits from other runs; call "
                          "dropcli.provenance.flush_denormals() before torch computes anything", RuntimeWarning,
                          stacklevel=_outside_dropcli())
        yield _flushing.every
    finally:
        _flushing.depth = depth
        if depth == 0:
            torch.set_flush_denormal(before)
