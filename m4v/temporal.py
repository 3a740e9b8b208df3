"""Temporal branch of the MM-DiM block (spec §1.5): causal attention along time over frame tokens."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from m4v.config import M4VConfig


class TemporalBranch(nn.Module):
    """History frames pooled to the lowest pyramid grid and the current frame cut into tiles of that grid
    become one token each ("spatial reshape"); causal attention along time, logits = dot products of the
    flattened (positions x width) vectors / sqrt(size); per-position q, k, v, out linears; out zero-init so a
    converted checkpoint starts unchanged. Output is added to the main branch at every visual position.
    """

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D, E = cfg.hidden_size, (cfg.hidden_size if cfg.mamba_out_proj else cfg.d_inner)
        self.to_q, self.to_k, self.to_v = (nn.Linear(D, D, bias=False) for _ in range(3))
        self.to_out = nn.Linear(D, E, bias=False)

    def zero_init(self) -> None:
        nn.init.zeros_(self.to_out.weight)

    def forward(self, video: Tensor, frame_sizes: list) -> Tensor:
        """video (B, Lv, D) with frames in order, frame_sizes [(h, w)] -> (B, Lv, E)."""
        B, _, D = video.shape
        h0 = min(h for h, _ in frame_sizes)
        w0 = min(w for _, w in frame_sizes)
        frames = list(torch.split(video, [h * w for h, w in frame_sizes], dim=1))
        cur_h, cur_w = frame_sizes[-1]
        if cur_h % h0 or cur_w % w0:
            raise ValueError(f"temporal branch: current grid {cur_h}x{cur_w} is not tiled by the lowest "
                             f"grid {h0}x{w0}")
        # History frames -> one (h0 w0) token each, by average pooling.
        hist = [F.adaptive_avg_pool2d(f.transpose(1, 2).reshape(B, D, h, w), (h0, w0)).flatten(2).transpose(1, 2)
                for f, (h, w) in zip(frames[:-1], frame_sizes[:-1])]            # T-1 x (B, h0 w0, D)
        # Current frame -> (cur_h / h0)(cur_w / w0) tiles of h0 x w0 tokens.
        th, tw = cur_h // h0, cur_w // w0
        tiles = frames[-1].reshape(B, th, h0, tw, w0, D).permute(0, 1, 3, 2, 4, 5).reshape(B, th * tw, h0 * w0, D)
        tokens = torch.cat([torch.stack(hist, 1), tiles], 1) if hist else tiles  # (B, T', S0, D)
        n_hist = len(hist)
        time = torch.cat([torch.arange(n_hist, device=video.device),
                          torch.full((th * tw,), n_hist, device=video.device)])   # (T',)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)      # (B, T', S0, D)
        logits = torch.einsum("bisd,bjsd->bij", q, k) / math.sqrt(h0 * w0 * D)  # (B, T', T')
        logits = logits.masked_fill(time[:, None] < time[None, :], float("-inf"))
        mixed = torch.einsum("bij,bjsd->bisd", logits.softmax(-1), v)          # (B, T', S0, D)
        out = self.to_out(mixed)                                                # (B, T', S0, E)
        E = out.shape[-1]
        # Back to the token layout: history tokens upsampled to their own grids, tiles put back in place.
        pieces = []
        for i, (h, w) in enumerate(frame_sizes[:-1]):
            grid = out[:, i].transpose(1, 2).reshape(B, E, h0, w0)
            pieces.append(F.interpolate(grid, size=(h, w), mode="nearest").flatten(2).transpose(1, 2))
        cur = out[:, n_hist:].reshape(B, th, tw, h0, w0, E).permute(0, 1, 3, 2, 4, 5).reshape(B, cur_h * cur_w, E)
        return torch.cat([*pieces, cur], dim=1)                                 # (B, Lv, E)
