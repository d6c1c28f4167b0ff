"""Device choice: CPU here, CUDA only when torch sees it, a clear error otherwise."""
import pytest
import torch

from s2i_lib.device import amp_enabled, cpu_count, select_device


def test_auto_is_cpu_without_gpu_and_uses_the_available_cores():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the CPU path is tested on machines without one")
    torch.set_num_threads(1)
    assert select_device("auto").type == "cpu"
    assert torch.get_num_threads() == cpu_count() >= 1
    assert amp_enabled(torch.device("cpu"), True) is False


def test_asking_for_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda" and torch.backends.cudnn.benchmark
        return
    with pytest.raises(RuntimeError, match="torch sees no CUDA GPU"):
        select_device("cuda")
