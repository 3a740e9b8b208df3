"""Transformer blocks: MM-DiT dual-stream block and the single-stream block with a switchable mixer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from m4v import recomposition
from m4v.config import M4VConfig
from m4v.layers import (
    QKV,
    AdaLNModulation,
    FeedForward,
    apply_rope,
    attention,
    layer_norm,
    merge_heads,
    modulate,
    rope_angles,
)
from m4v.mamba import MambaMixer
from m4v.temporal import build_temporal_branch
from m4v.zigzag import path_for_layer


@dataclass
class StageLayout:
    """What every block needs to know about one packed pyramid-stage sequence [text ; frames]."""

    text_mask: Tensor            # (B, Lt) bool, True = real T5 token
    frame_sizes: list            # [(h, w)] token grid per frame, oldest -> current
    frame_levels: list           # pyramid level per frame (0 = lowest resolution)
    rope: Tensor | None          # (Lt + Lv, head_dim / 2) rotation angles
    attn_mask: Tensor | None     # (B, 1, L, L) bool, text padding + temporal causality


def history_positions(n: int, current: int, rule: str, device) -> Tensor:
    """RoPE positions (n,) of a frame axis of n tokens on the current frame's axis of `current` tokens.

    "interpolate": PyramidFlow's `_prepare_image_ids`, F.interpolate(arange(current), n, mode="linear")
    (align_corners=False: a 2x coarser token sits at the mean of the two it covers, 0.5, 2.5, ...);
    "linspace": the first implementation, linspace(0, current - 1, n) (0 for a single token)."""
    if n == current:
        return torch.arange(current, dtype=torch.float32, device=device)
    if rule == "interpolate":
        grid = torch.arange(current, dtype=torch.float32, device=device)[None, None]
        return F.interpolate(grid, size=n, mode="linear").reshape(n)
    return torch.linspace(0, current - 1, n, device=device) if n > 1 else torch.zeros(1, device=device)


def build_stage_layout(cfg: M4VConfig, frame_sizes: list, frame_levels: list, text_mask: Tensor) -> StageLayout:
    """RoPE ids (t, h, w) and the attention mask for one packed sequence [text ; frames]."""
    device, n_text = text_mask.device, text_mask.shape[1]
    cur_h, cur_w = frame_sizes[-1]
    ids = [torch.zeros(n_text, 3, device=device)]                              # text ids are 0 (FLUX)
    times = [torch.zeros(n_text, device=device)]
    for f, (h, w) in enumerate(frame_sizes):
        # Lower-resolution history frames sit at fractional positions of the current grid (PyramidFlow).
        hh, ww = (history_positions(n, cur_n, cfg.history_rope, device) for n, cur_n in ((h, cur_h), (w, cur_w)))
        grid = torch.stack(torch.meshgrid(hh, ww, indexing="ij"), dim=-1).reshape(-1, 2)  # (h w, 2)
        ids.append(torch.cat([torch.full((h * w, 1), float(f), device=device), grid], dim=-1))
        times.append(torch.full((h * w,), float(f), device=device))
    rope = rope_angles(torch.cat(ids), cfg.rope_axes, cfg.rope_theta)          # (L, hd/2)
    time = torch.cat(times)                                                     # (L,)
    n_video = time.shape[0] - n_text
    key_valid = torch.cat([text_mask, text_mask.new_ones(text_mask.shape[0], n_video)], dim=1)  # (B, L)
    causal = time[:, None] >= time[None, :]                                     # (L, L): temporal causality
    attn_mask = (causal[None] & key_valid[:, None, :])[:, None]                # (B, 1, L, L)
    return StageLayout(text_mask, list(frame_sizes), list(frame_levels), rope, attn_mask)


class JointAttention(nn.Module):
    """MM-DiT joint attention over [text ; video]: per-stream q/k/v and output projections, one softmax."""

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D = cfg.hidden_size
        self.qkv_video, self.qkv_text = QKV(D, cfg.num_heads), QKV(D, cfg.num_heads)
        self.out_video, self.out_text = nn.Linear(D, D), nn.Linear(D, D)

    def forward(self, video: Tensor, text: Tensor, layout: StageLayout) -> tuple[Tensor, Tensor]:
        qv, kv, vv = self.qkv_video(video)                                         # (B, H, Lv, hd)
        qt, kt, vt = self.qkv_text(text)                                           # (B, H, Lt, hd)
        q, k, v = (torch.cat(pair, dim=2) for pair in ((qt, qv), (kt, kv), (vt, vv)))  # (B, H, L, hd)
        if layout.rope is not None:
            q, k = apply_rope(q, layout.rope), apply_rope(k, layout.rope)
        out = merge_heads(attention(q, k, v, layout.attn_mask))                    # (B, L, D)
        n_text = text.shape[1]
        return self.out_video(out[:, n_text:]), self.out_text(out[:, :n_text])


class DualStreamBlock(nn.Module):
    """MM-DiT block: joint attention over [text ; video], separate weights per stream, adaLN-Zero."""

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D = cfg.hidden_size
        self.mod_video, self.mod_text = AdaLNModulation(D, 6), AdaLNModulation(D, 6)
        self.attn = JointAttention(cfg)
        self.ff_video, self.ff_text = FeedForward(D, cfg.mlp_hidden), FeedForward(D, cfg.mlp_hidden)

    def forward(self, video: Tensor, text: Tensor, temb: Tensor, layout: StageLayout) -> tuple[Tensor, Tensor]:
        """video (B, Lv, D), text (B, Lt, D) -> updated (video, text)."""
        v_shift, v_scale, v_gate, v_shift2, v_scale2, v_gate2 = self.mod_video(temb)
        t_shift, t_scale, t_gate, t_shift2, t_scale2, t_gate2 = self.mod_text(temb)
        attn_video, attn_text = self.attn(modulate(layer_norm(video), v_shift, v_scale),
                                          modulate(layer_norm(text), t_shift, t_scale), layout)
        video = video + v_gate * attn_video
        text = text + t_gate * attn_text
        video = video + v_gate2 * self.ff_video(modulate(layer_norm(video), v_shift2, v_scale2))
        text = text + t_gate2 * self.ff_text(modulate(layer_norm(text), t_shift2, t_scale2))
        return video, text


class AttentionMixer(nn.Module):
    """FLUX single-block attention (no output projection: proj_out is shared with the MLP path)."""

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        self.qkv = QKV(cfg.hidden_size, cfg.num_heads)
        self.out_dim = cfg.hidden_size

    def forward(self, h: Tensor, layout: StageLayout) -> Tensor:
        q, k, v = self.qkv(h)                                                   # (B, H, L, hd)
        if layout.rope is not None:
            q, k = apply_rope(q, layout.rope), apply_rope(k, layout.rope)
        return merge_heads(attention(q, k, v, layout.attn_mask))               # (B, L, D)


class MMDiMMixer(nn.Module):
    """MM-DiM main branch: re-composition -> Mamba -> inverse re-composition [+ temporal branch]."""

    def __init__(self, cfg: M4VConfig, layer_index: int):
        super().__init__()
        self.cfg = cfg
        self.path_index = path_for_layer(layer_index, cfg.n_zigzag_paths) if cfg.zigzag else None
        self.mamba = MambaMixer(cfg)
        self.temporal = build_temporal_branch(cfg) if cfg.temporal_branch else None
        self.out_dim = self.mamba.out_dim

    def forward(self, h: Tensor, layout: StageLayout, registers: Tensor | None) -> Tensor:
        n_text = layout.text_mask.shape[1]
        text, video = h[:, :n_text], h[:, n_text:]                              # (B, Lt, D), (B, Lv, D)
        seq, valid, plan = recomposition.recompose(
            text, layout.text_mask, video, layout.frame_sizes, layout.frame_levels, registers,
            self.path_index, self.cfg.text_recomposition)                       # (B, S, D), (B, S)
        text_out, video_out = recomposition.invert(self.mamba(seq, valid), plan)  # (B, Lt, E), (B, Lv, E)
        if self.temporal is not None and self.temporal.covers_history:
            video_out = video_out + self.temporal(video, layout.frame_sizes, layout.frame_levels)  # (B, Lv, E)
        elif self.temporal is not None:  # tiles / pooled readings: added at the current frame's positions only
            cur_h, cur_w = layout.frame_sizes[-1]
            n_hist = video_out.shape[1] - cur_h * cur_w
            video_out[:, n_hist:] += self.temporal(video, layout.frame_sizes, layout.frame_levels)  # (B, h w, E)
        return torch.cat([text_out, video_out], dim=1)                          # (B, L, E)


class SingleStreamBlock(nn.Module):
    """FLUX single block with a switchable mixer: x + gate * proj_out([mixer(h) ; GELU(fc(h))])."""

    def __init__(self, cfg: M4VConfig, layer_index: int):
        super().__init__()
        D = cfg.hidden_size
        self.modulation = AdaLNModulation(D, 3)
        self.attn = AttentionMixer(cfg) if cfg.uses_attention_mixer else None
        self.mmdim = MMDiMMixer(cfg, layer_index) if cfg.uses_mamba else None
        self.mlp_in = nn.Linear(D, cfg.mlp_hidden)
        mixer_dim = sum(m.out_dim for m in (self.attn, self.mmdim) if m is not None)
        self.proj_out = nn.Linear(mixer_dim + cfg.mlp_hidden, D)

    def mix(self, h: Tensor, layout: StageLayout, registers: Tensor | None) -> Tensor:
        """The token mixer alone: h (B, L, D) -> (B, L, mixer_dim), attention and/or MM-DiM side by side."""
        branches = []
        if self.attn is not None:
            branches.append(self.attn(h, layout))                               # (B, L, D)
        if self.mmdim is not None:
            branches.append(self.mmdim(h, layout, registers))                   # (B, L, E)
        return torch.cat(branches, dim=-1) if len(branches) > 1 else branches[0]

    def forward(self, x: Tensor, temb: Tensor, layout: StageLayout, registers: Tensor | None) -> Tensor:
        """x (B, L, D) = [text ; video] -> same shape."""
        shift, scale, gate = self.modulation(temb)                              # (B, 1, D) each
        h = modulate(layer_norm(x), shift, scale)                               # (B, L, D)
        mlp = nn.functional.gelu(self.mlp_in(h), approximate="tanh")            # (B, L, 4D)
        return x + gate * self.proj_out(torch.cat([self.mix(h, layout, registers), mlp], dim=-1))
