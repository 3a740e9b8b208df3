"""Shared layers: conditioning embeddings, adaLN modulation, 3D RoPE, joint attention, feed-forward."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def timestep_embedding(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of timesteps in [0, 1000] (DiT / diffusers Timesteps, flip_sin_to_cos)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]                                   # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)              # (B, dim)


class ConditionEmbedding(nn.Module):
    """temb = MLP(timestep embedding) + MLP(pooled CLIP text) (CombinedTimestepTextProjEmbeddings)."""

    def __init__(self, hidden: int, pooled_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.timestep_mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.pooled_mlp = nn.Sequential(nn.Linear(pooled_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, timestep: Tensor, pooled: Tensor) -> Tensor:
        t_emb = self.timestep_mlp(timestep_embedding(timestep, self.freq_dim).to(pooled.dtype))  # (B, D)
        return t_emb + self.pooled_mlp(pooled)                                                     # (B, D)


class AdaLNModulation(nn.Module):
    """SiLU -> Linear(D, n*D): n modulation vectors (shift, scale, gate, ...) from the conditioning."""

    def __init__(self, hidden: int, n: int):
        super().__init__()
        self.n = n
        self.linear = nn.Linear(hidden, n * hidden)

    def forward(self, temb: Tensor) -> tuple[Tensor, ...]:
        return self.linear(F.silu(temb)).unsqueeze(1).chunk(self.n, dim=-1)    # n x (B, 1, D)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def layer_norm(x: Tensor) -> Tensor:
    """LayerNorm without affine parameters, eps 1e-6 (the adaLN blocks' norm)."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class RMSNorm(nn.Module):
    """RMSNorm over the last dim with a learned weight (q/k norm of FLUX attention)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)


class FeedForward(nn.Module):
    """Linear(D, 4D) -> tanh-GELU -> Linear(4D, D)."""

    def __init__(self, hidden: int, mlp_hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, mlp_hidden), nn.Linear(mlp_hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


# ----------------------------------------------------------------------------------------------------------
# 3D RoPE (FLUX convention: interleaved pairs, axes (t, h, w)).
# ----------------------------------------------------------------------------------------------------------
def rope_angles(ids: Tensor, axes: tuple, theta: float) -> Tensor:
    """ids (L, 3) float positions -> rotation angles (L, head_dim / 2), axes concatenated."""
    parts = []
    for axis, dim in enumerate(axes):
        omega = theta ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=ids.device) / dim)  # (dim/2,)
        parts.append(ids[:, axis, None].float() * omega[None])
    return torch.cat(parts, dim=-1)


def apply_rope(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate adjacent pairs (2k, 2k+1) of x (B, H, L, hd) by angles (L, hd/2)."""
    x2 = x.float().reshape(*x.shape[:-1], -1, 2)                              # (B, H, L, hd/2, 2)
    cos, sin = torch.cos(angles), torch.sin(angles)                           # (L, hd/2)
    out = torch.stack([x2[..., 0] * cos - x2[..., 1] * sin, x2[..., 0] * sin + x2[..., 1] * cos], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax attention; q, k, v (B, H, L, hd); mask (B, 1, L, L) bool (True = may attend) or None."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class QKV(nn.Module):
    """q, k, v projections with per-head RMS q/k norm; returns (B, H, L, hd) tensors."""

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(hidden, hidden) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(hidden // num_heads), RMSNorm(hidden // num_heads)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, L, _ = x.shape

        def heads(t):
            return t.view(B, L, self.num_heads, -1).transpose(1, 2)           # (B, H, L, hd)

        return (self.norm_q(heads(self.to_q(x))), self.norm_k(heads(self.to_k(x))), heads(self.to_v(x)))


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, hd) -> (B, L, H * hd)."""
    B, H, L, hd = x.shape
    return x.transpose(1, 2).reshape(B, L, H * hd)
