"""Where, when and with which code a result was made: recorded with every run and study row.

    >>> code_version()          # the commit when run from a checkout, else the package version
    '0.1.0+g83dd6c4a1b2c'
    >>> cpu_model()
    'AMD EPYC, 2 cores, AVX512'

Also checks that MKL runs in its reproducible mode (see dropcli/__init__.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import subprocess
import warnings
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
