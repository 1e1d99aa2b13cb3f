"""Devices and precisions: a device this machine lacks is a usage error; tf32 restores the setting."""

import pytest
import torch

from dropcli.device import check_precision, matmul_precision, resolve_device
from dropcli.errors import UsageError


def test_auto_and_cpu_give_devices_that_compute():
    for name in ("cpu", "auto"):
        device = resolve_device(name)
        assert (torch.ones(3, device=device) * 2).sum().item() == 6.0
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name, fragment", [("tpu", "unknown device 'tpu'"), ("cuda:x", "unknown device"),
                                            ("meta", "unsupported device 'meta'")])
def test_unknown_devices_are_usage_errors(name, fragment):
    with pytest.raises(UsageError, match=fragment):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_cuda_and_tf32_on_cpu_are_usage_errors():
    with pytest.raises(UsageError, match="no CUDA GPU is available here; use --device cpu"):
        resolve_device("cuda:0")
    with pytest.raises(UsageError, match="use --precision float32"):
        check_precision("tf32", torch.device("cpu"))


def test_tf32_is_set_inside_and_restored_after():
    before = torch.get_float32_matmul_precision()
    with matmul_precision("tf32"):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    with matmul_precision("float32"):
        assert torch.get_float32_matmul_precision() == before
