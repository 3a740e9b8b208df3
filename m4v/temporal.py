"""Temporal branch of the MM-DiM block (spec §1.5): frames attend along time, at the lowest pyramid grid.

Readings of the paper's text (M4VConfig.temporal_variant; docs/paper-readings.md counts each one's FLOPs):
  tiles            TileQueryTemporalBranch: the current frame's tiles query the pooled history tokens (k D -> D,
                   v D -> E, no output projection); only the current frame receives. Fits Table 4; the default
                   of new configs.
  tiles-out        the same with v D -> D and an output projection D -> E.
  tiles-self       the tiles also attend to the tiles (k, v on the current frame too).
  tiles-shared-kv  the tiles query all tokens through one shared k = v projection (D -> D), output D -> E.
  paper            TemporalBranch: every token (history and tiles) queries, block-causal, all receive.
  pooled           PooledTemporalBranch: the first implementation (9,000-step models).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from m4v.config import M4VConfig


def lowest_grid(frame_sizes: list, frame_levels: list) -> tuple[int, int]:
    """(h0, w0): the token grid of the lowest pyramid level, from the current frame's size and level."""
    (cur_h, cur_w), level = frame_sizes[-1], frame_levels[-1]
    step = 2**level
    if cur_h % step or cur_w % step:
        raise ValueError(f"temporal branch: current frame grid {cur_h}x{cur_w} at pyramid level {level} is not "
                         f"divisible by {step}")
    return cur_h // step, cur_w // step


def branch_width(cfg: M4VConfig) -> int:
    """Width of the branch output: the main branch's (d_inner without Mamba out_proj, else D)."""
    return cfg.hidden_size if cfg.mamba_out_proj else cfg.d_inner


class TemporalBranch(nn.Module):
    """The paper's temporal branch: one token per history frame, the current frame as tiles, causal attention.

    History frames are average-pooled to the lowest pyramid grid h0 x w0 (the pyramid's own 2x2 mean
    downsampling) and folded to one token of S = h0 w0 positions each; the current frame is cut into
    (H / h0) x (W / w0) tiles of that grid, one token each (space-to-depth on h0 x w0 blocks). Per-position q, k, v
    (D -> D); logits are dot products of the flattened (S x D) vectors / sqrt(S D); causal along time (a history
    token sees itself and older frames, the current tiles see every history token and each other); per-position
    output linear (D -> E, zero-initialised, so a converted checkpoint starts unchanged). Every token's output
    goes back to its positions: tiles to their blocks, history tokens nearest-upsampled to their frame's grid.
    Cost O(T^2) in the number of tokens, independent of the tokens per frame beyond the projections.
    """

    covers_history = True

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D = cfg.hidden_size
        self.to_q, self.to_k, self.to_v = (nn.Linear(D, D, bias=False) for _ in range(3))
        self.to_out = nn.Linear(D, branch_width(cfg), bias=False)

    def zero_init(self) -> None:
        nn.init.zeros_(self.to_out.weight)

    @staticmethod
    def tokens(video: Tensor, frame_sizes: list, grid: tuple[int, int]) -> Tensor:
        """video (B, Lv, D) -> (B, T, S, D): pooled history tokens, then the current frame's tiles."""
        B, _, D = video.shape
        h0, w0 = grid
        frames = torch.split(video, [h * w for h, w in frame_sizes], dim=1)
        history = [F.adaptive_avg_pool2d(f.transpose(1, 2).reshape(B, D, h, w), grid).flatten(2).transpose(1, 2)
                   for f, (h, w) in zip(frames[:-1], frame_sizes[:-1])]                       # [(B, S, D)]
        cur_h, cur_w = frame_sizes[-1]
        tiles = frames[-1].reshape(B, cur_h // h0, h0, cur_w // w0, w0, D).permute(0, 1, 3, 2, 4, 5)
        tiles = tiles.reshape(B, -1, h0 * w0, D)                                              # (B, K, S, D)
        return torch.cat([torch.stack(history, dim=1), tiles], dim=1) if history else tiles

    @staticmethod
    def untokens(out: Tensor, frame_sizes: list, grid: tuple[int, int]) -> Tensor:
        """(B, T, S, E) -> (B, Lv, E): tiles back to their blocks, history tokens upsampled to their grids."""
        B, _, _, E = out.shape
        h0, w0 = grid
        n_hist = len(frame_sizes) - 1
        pieces = []
        for f, (h, w) in enumerate(frame_sizes[:-1]):
            grid_out = out[:, f].transpose(1, 2).reshape(B, E, h0, w0)
            pieces.append(F.interpolate(grid_out, size=(h, w), mode="nearest").flatten(2).transpose(1, 2))
        cur_h, cur_w = frame_sizes[-1]
        tiles = out[:, n_hist:].reshape(B, cur_h // h0, cur_w // w0, h0, w0, E).permute(0, 1, 3, 2, 4, 5)
        pieces.append(tiles.reshape(B, cur_h * cur_w, E))
        return torch.cat(pieces, dim=1)

    def forward(self, video: Tensor, frame_sizes: list, frame_levels: list) -> Tensor:
        """video (B, Lv, D), frames oldest -> current -> (B, Lv, E), an output for every video token."""
        grid = lowest_grid(frame_sizes, frame_levels)
        tokens = self.tokens(video, frame_sizes, grid)                          # (B, T, S, D)
        B, T, S, D = tokens.shape
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)      # (B, T, S, D) each
        # matmuls rather than einsum: fvcore's einsum count is approximate, its matmul count exact.
        logits = q.flatten(2) @ k.flatten(2).transpose(1, 2) / math.sqrt(S * D)  # (B, T, T)
        time = torch.tensor([min(t, len(frame_sizes) - 1) for t in range(T)], device=video.device)
        allowed = time[:, None] >= time[None, :]                                # (T, T) block-causal
        weights = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        mixed = (weights @ v.flatten(2)).reshape(B, T, S, D)                    # (B, T, S, D)
        return self.untokens(self.to_out(mixed), frame_sizes, grid)            # (B, Lv, E)


class TileQueryTemporalBranch(nn.Module):
    """Current-frame tiles query the pooled history (and, per reading, the tiles); output to the current frame.

    Tokens as TemporalBranch (history average-pooled to the lowest pyramid grid, current frame cut into tiles of
    that grid). Per-position projections without bias: q (D -> D) on the tiles only; k, v on the key tokens, the
    pooled history (`keys="history"`) or history and tiles (`keys="all"`: the tiles share one time step, so they
    see each other). v goes straight to the main branch's width E, or to D followed by an output projection
    D -> E (`out_proj`); `shared_kv` uses one D -> D projection for k and v (then an output projection). The
    layer that produces E is zero-initialised. No history and `keys="history"`: nothing to attend, output 0.
    """

    covers_history = False

    def __init__(self, cfg: M4VConfig, keys: str = "history", out_proj: bool = False, shared_kv: bool = False):
        super().__init__()
        D, E = cfg.hidden_size, branch_width(cfg)
        self.keys, self.shared_kv = keys, shared_kv
        self.to_q = nn.Linear(D, D, bias=False)
        self.to_k = nn.Linear(D, D, bias=False)
        self.to_v = None if shared_kv else nn.Linear(D, D if out_proj or shared_kv else E, bias=False)
        self.to_out = nn.Linear(D, E, bias=False) if out_proj or shared_kv else None

    def zero_init(self) -> None:
        nn.init.zeros_((self.to_out or self.to_v).weight)

    def forward(self, video: Tensor, frame_sizes: list, frame_levels: list) -> Tensor:
        """video (B, Lv, D), frames oldest -> current -> (B, h w, E), the current frame's positions only."""
        grid = lowest_grid(frame_sizes, frame_levels)
        tokens = TemporalBranch.tokens(video, frame_sizes, grid)               # (B, T, S, D)
        n_hist = len(frame_sizes) - 1
        B, T, S, D = tokens.shape
        source = tokens[:, :n_hist] if self.keys == "history" else tokens      # (B, Tk, S, D)
        if source.shape[1] == 0:
            cur_h, cur_w = frame_sizes[-1]
            width = (self.to_out or self.to_v).out_features
            return video.new_zeros(B, cur_h * cur_w, width)
        q = self.to_q(tokens[:, n_hist:])                                        # (B, K, S, D)
        k = self.to_k(source)                                                    # (B, Tk, S, D)
        v = k if self.shared_kv else self.to_v(source)                          # (B, Tk, S, D or E)
        logits = q.flatten(2) @ k.flatten(2).transpose(1, 2) / math.sqrt(S * D)  # (B, K, Tk)
        mixed = (logits.softmax(dim=-1) @ v.flatten(2)).reshape(B, T - n_hist, S, v.shape[-1])
        if self.to_out is not None:
            mixed = self.to_out(mixed)                                           # (B, K, S, E)
        return TemporalBranch.untokens(mixed, frame_sizes[-1:], grid)            # (B, h w, E)


class PooledTemporalBranch(nn.Module):
    """The first implementation (temporal_variant "pooled"), kept unchanged for the shipped tiny models.

    Every frame of the stage sequence (history and current) is average-pooled to the smallest grid present and
    read as one token; the current frame's token queries all frame tokens; q, k (D -> D) and v (D -> E)
    per position, no output projection; the result is upsampled (nearest) to the current frame's grid, history
    positions receive nothing. v is zero-initialised.
    """

    covers_history = False

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D = cfg.hidden_size
        self.to_q, self.to_k = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.to_v = nn.Linear(D, branch_width(cfg), bias=False)

    def zero_init(self) -> None:
        nn.init.zeros_(self.to_v.weight)

    def forward(self, video: Tensor, frame_sizes: list, frame_levels: list | None = None) -> Tensor:
        """video (B, Lv, D), frames in temporal order with token grids frame_sizes -> current frame (B, h w, E)."""
        B, _, D = video.shape
        h0, w0 = min(h for h, _ in frame_sizes), min(w for _, w in frame_sizes)
        frames = torch.split(video, [h * w for h, w in frame_sizes], dim=1)
        tokens = torch.stack([F.adaptive_avg_pool2d(f.transpose(1, 2).reshape(B, D, h, w), (h0, w0))
                              for f, (h, w) in zip(frames, frame_sizes)], dim=1)  # (B, T, D, h0, w0)
        tokens = tokens.flatten(3).transpose(2, 3)                              # (B, T, S0, D)
        q = self.to_q(tokens[:, -1])                                            # (B, S0, D) current frame
        k, v = self.to_k(tokens), self.to_v(tokens)                             # (B, T, S0, D), (B, T, S0, E)
        logits = (k.flatten(2) @ q.flatten(1)[..., None]).squeeze(-1) / math.sqrt(h0 * w0 * D)  # (B, T)
        E = v.shape[-1]
        mixed = (logits.softmax(dim=-1)[:, None] @ v.flatten(2)).reshape(B, h0 * w0, E)       # (B, S0, E)
        cur_h, cur_w = frame_sizes[-1]
        grid = F.interpolate(mixed.transpose(1, 2).reshape(B, E, h0, w0), size=(cur_h, cur_w), mode="nearest")
        return grid.flatten(2).transpose(1, 2)                                  # (B, cur_h cur_w, E)


TILE_READINGS = {
    "tiles": dict(keys="history"),
    "tiles-out": dict(keys="history", out_proj=True),
    "tiles-self": dict(keys="all"),
    "tiles-shared-kv": dict(keys="all", shared_kv=True),
}


def build_temporal_branch(cfg: M4VConfig) -> nn.Module:
    """The configured variant."""
    if cfg.temporal_variant in TILE_READINGS:
        return TileQueryTemporalBranch(cfg, **TILE_READINGS[cfg.temporal_variant])
    return TemporalBranch(cfg) if cfg.temporal_variant == "paper" else PooledTemporalBranch(cfg)
