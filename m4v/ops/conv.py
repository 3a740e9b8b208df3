"""Causal depthwise conv1d (Mamba's short convolution): causal-conv1d's CUDA kernel or F.conv1d."""

from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import Tensor


@functools.cache
def _causal_conv1d_fn():
    """causal-conv1d's fused kernel, or None when its CUDA extension cannot be imported."""
    try:
        from causal_conv1d import causal_conv1d_fn

        return causal_conv1d_fn
    except Exception:  # ImportError, or an ABI mismatch surfacing as OSError/RuntimeError
        return None


def causal_conv1d_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                            activation: str | None = None) -> Tensor:
    """out_t = sum_k weight[:, k] * x_{t - K + 1 + k} (zero history), then optional SiLU; x: (B, D, L)."""
    dim, width = weight.shape
    length = x.shape[-1]
    if x.device.type == "meta":
        # fvcore's JIT trace of conv fails on meta tensors (torch's meta conv shape check); the same
        # multiply-adds as a matmul over sliding windows trace fine and count identically in both counters.
        windows = F.pad(x, (width - 1, 0)).unfold(2, width, 1)              # (B, D, L, K)
        out = (windows @ weight[:, :, None]).squeeze(-1)                   # (B, D, L)
        out = out if bias is None else out + bias[:, None]
    else:
        # Symmetric padding then keep the first L outputs: causal, and no padded copy of x.
        out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=dim)[..., :length]  # (B, D, L)
    return F.silu(out) if activation in ("silu", "swish") else out


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """Depthwise causal conv over L: x (B, D, L), weight (D, K), bias (D,); activation None or "silu"."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d: activation must be None or 'silu', got {activation!r}")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"causal_conv1d: need x (B, D, L) and weight (D, K), got {tuple(x.shape)} and "
                         f"{tuple(weight.shape)}")
    fused = _causal_conv1d_fn()
    if fused is not None and x.is_cuda:
        return fused(x, weight, bias, activation=activation)
    return causal_conv1d_reference(x, weight, bias, activation)
