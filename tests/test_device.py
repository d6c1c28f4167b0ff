"""Device choice: CPU here, CUDA only when torch sees it, a clear error otherwise; the precision
policy: bf16 only where the hardware has bf16 units, and only in the parts measured to gain."""
import pytest
import torch

from s2i_lib import device as dev
from s2i_lib.device import (AUTO_BF16_PARTS, PARTS, Precision, cpu_count, cpu_has_bf16_units, precision,
                            select_device, set_precision)

AMX_CPUINFO = """processor	: 0
model name	: Intel(R) Xeon(R) Processor
flags		: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AVX512BF16_ONLY = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
EPYC_CPUINFO = """processor	: 0
model name	: AMD EPYC 7B12
flags		: fpu vme sse sse2 avx avx2 fma bmi2
"""


def test_auto_is_cpu_without_gpu_and_uses_the_available_cores():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the CPU path is tested on machines without one")
    torch.set_num_threads(1)
    assert select_device("auto").type == "cpu"
    assert torch.get_num_threads() == cpu_count() >= 1


def test_asking_for_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda" and torch.backends.cudnn.benchmark
        return
    with pytest.raises(RuntimeError, match="torch sees no CUDA GPU"):
        select_device("cuda")


def test_bf16_units_are_detected_from_the_cpu_flags():
    assert cpu_has_bf16_units(AMX_CPUINFO) is True
    assert cpu_has_bf16_units(AVX512BF16_ONLY) is True
    assert cpu_has_bf16_units(EPYC_CPUINFO) is False
    assert cpu_has_bf16_units("") is False


@pytest.mark.parametrize("has_units", [True, False])
def test_auto_uses_bf16_only_with_units_and_only_in_the_measured_parts(monkeypatch, has_units):
    monkeypatch.setattr(dev, "cpu_has_bf16_units", lambda cpuinfo=None: has_units)
    before = precision()
    try:
        p = set_precision("auto", torch.device("cpu"))
        assert precision() is p
        for part in PARTS:
            assert p.uses_bf16(part) == (has_units and part in AUTO_BF16_PARTS), part
            on = p.uses_bf16(part)
            assert p.memory_format(part) == (torch.channels_last if on else torch.contiguous_format)
            with p.autocast(part):
                y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
            assert y.dtype == (torch.bfloat16 if on else torch.float32)
    finally:
        dev._precision = before


def test_fp32_and_bf16_settings_are_obeyed_on_any_cpu(monkeypatch):
    monkeypatch.setattr(dev, "cpu_has_bf16_units", lambda cpuinfo=None: False)
    assert not any(Precision("fp32", "cpu", fast=True).uses_bf16(p) for p in PARTS)
    assert all(Precision("bf16", "cpu", fast=False).uses_bf16(p) for p in PARTS)
    with pytest.raises(ValueError, match="precision 'fp16'"):
        Precision("fp16")
    with pytest.raises(ValueError, match="unknown part 'decoder'"):
        Precision().uses_bf16("decoder")


def test_the_library_default_is_fp32_until_a_step_chooses():
    assert not any(Precision().uses_bf16(p) for p in PARTS)
