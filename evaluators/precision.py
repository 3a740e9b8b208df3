"""Reduced precision for the evaluators' backbones, opt-in: `fp32` (the default, VBench's numbers on CPU) or
`bf16`, which runs the backbones under torch.autocast: bfloat16 on a CPU with native bf16 kernels, float16 on CUDA
(VBench runs OpenAI CLIP in fp16 on a GPU). Scores change by rounding; `m4v-bench bench-eval --precision bf16`
measures by how much on its videos, and whether any binary decision flips.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype `precision` means on `device` (None: no autocast); a CPU without native bf16 is refused
    (emulated bf16 is slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision == "fp32":
        return None
    if device.startswith("cuda"):
        return torch.float16
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ValueError("precision bf16: this CPU has no native bf16 kernels (AVX512-BF16 / AMX); use fp32")
    return torch.bfloat16


def backbone_precision(precision: str, device: str = "cpu"):
    """A context manager under which backbone forward passes run at `precision` (fp32: changes nothing)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def describe(precision: str, device: str) -> str:
    """What `precision` runs as on `device`, for result tables."""
    dtype = autocast_dtype(precision, device)
    return "fp32" if dtype is None else f"autocast {str(dtype).removeprefix('torch.')} ({device})"
