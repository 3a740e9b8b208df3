"""Temporal branch of the MM-DiM block (spec §1.5): the current frame attends along time to its history."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from m4v.config import M4VConfig


class TemporalBranch(nn.Module):
    """Lightweight temporal attention on frames pooled to the lowest pyramid grid.

    Every frame of the stage sequence (history and current) is average-pooled to the lowest grid h0 x w0 and
    read as one token of h0*w0 positions ("spatial reshape"). The current frame's token queries all frame
    tokens (causal: only frames up to the current one exist in the sequence); logits are dot products of the
    flattened (positions x width) vectors / sqrt(h0 w0 D). Per-position projections: q (current frame only),
    k (D -> D) and v (D -> E, the main branch's width) for every frame. The result is upsampled (nearest) to
    the current frame's grid; the caller adds it to the main branch there (history positions receive nothing).
    v is zero-initialised, so a converted attention checkpoint starts unchanged.

    Design choices the paper leaves open (spec §1.5, §6.9): pooling operator, projection widths, which tokens
    query. This one costs 2.66 TFLOPs over the 16 layers at 768p / 241 frames (paper: 2.88).
    """

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D = cfg.hidden_size
        E = D if cfg.mamba_out_proj else cfg.d_inner
        self.to_q, self.to_k = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.to_v = nn.Linear(D, E, bias=False)

    def zero_init(self) -> None:
        nn.init.zeros_(self.to_v.weight)

    def forward(self, video: Tensor, frame_sizes: list) -> Tensor:
        """video (B, Lv, D), frames in temporal order with token grids frame_sizes -> current frame (B, h w, E)."""
        B, _, D = video.shape
        h0, w0 = min(h for h, _ in frame_sizes), min(w for _, w in frame_sizes)
        frames = torch.split(video, [h * w for h, w in frame_sizes], dim=1)
        tokens = torch.stack([F.adaptive_avg_pool2d(f.transpose(1, 2).reshape(B, D, h, w), (h0, w0))
                              for f, (h, w) in zip(frames, frame_sizes)], dim=1)  # (B, T, D, h0, w0)
        tokens = tokens.flatten(3).transpose(2, 3)                              # (B, T, S0, D)
        q = self.to_q(tokens[:, -1])                                            # (B, S0, D) current frame
        k, v = self.to_k(tokens), self.to_v(tokens)                             # (B, T, S0, D), (B, T, S0, E)
        # matmuls rather than einsum: fvcore's einsum count is approximate, its matmul count exact.
        logits = (k.flatten(2) @ q.flatten(1)[..., None]).squeeze(-1) / math.sqrt(h0 * w0 * D)  # (B, T)
        E = v.shape[-1]
        mixed = (logits.softmax(dim=-1)[:, None] @ v.flatten(2)).reshape(B, h0 * w0, E)       # (B, S0, E)
        cur_h, cur_w = frame_sizes[-1]
        grid = F.interpolate(mixed.transpose(1, 2).reshape(B, E, h0, w0), size=(cur_h, cur_w), mode="nearest")
        return grid.flatten(2).transpose(1, 2)                                  # (B, cur_h cur_w, E)
