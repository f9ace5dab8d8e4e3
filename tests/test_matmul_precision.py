import pytest
import torch

from continual_lora.matmul_precision import tf32_matmuls


@pytest.mark.parametrize("before", [False, True])
def test_tf32_matmuls_sets_the_flag_inside_and_puts_it_back_after_an_error(before):
    torch.backends.cuda.matmul.allow_tf32 = before
    try:
        with pytest.raises(RuntimeError), tf32_matmuls(not before):
            assert torch.backends.cuda.matmul.allow_tf32 is (not before)
            raise RuntimeError("a job that fails")
        assert torch.backends.cuda.matmul.allow_tf32 is before
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
