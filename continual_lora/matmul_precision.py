"""TF32 for float32 matrix products on NVIDIA GPUs (Ampere and later).

PyTorch computes float32 matrix products in full float32 by default and float32
convolutions in TF32 (cuDNN's default), and so does the paper's code: its training
script has diffusers' ``--allow_tf32`` flag but its runs do not pass it. TF32 keeps
float32's range and storage but rounds the products' inputs to 10 significant bits:
faster, and not the paper's numbers. ``training.allow_tf32`` and
``evaluation.allow_tf32`` opt in (measured on an H200: benchmarks/README.md). On a
CPU the flag changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Float32 matrix products in TF32 (``enabled``) or in float32 inside the block."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
