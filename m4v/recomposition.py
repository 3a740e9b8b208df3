"""MM-token re-composition (spec §1.4, Fig. 2c) and its inverse: the token layout an MM-DiM layer scans.

Forward:  [Z ; x_0 ... x_i]  ->  [Z_l, r_0, zz(x_0), r_1, zz(x_1), ..., r_i, zz(x_i), Z_r]
  Z_l  text with its padding moved to the left, so the real text ends right before the video (every video
       token is read after clean text; the scan state stays 0 over the leading pads);
  Z_r  the original right-padded text after the video (text tokens absorb the video);
  r_f  the register of frame f's pyramid level, before every frame;
  zz   frame f's tokens in the layer's zigzag order.
Inverse: drop registers, undo the zigzag, and sum the two text copies token by token (Z' = Z_l' + Z_r').
Pads are zero vectors and marked invalid; the Mamba mixer masks them (m4v/mamba.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from m4v.zigzag import inverse_permutation, zigzag_path


@dataclass(frozen=True)
class RecompositionPlan:
    """Index bookkeeping to invert one re-composition."""

    n_text: int
    seq_len: int
    text_recomposition: bool
    text_mask: Tensor        # (B, Lt) bool
    left_order: Tensor       # (B, Lt): Z_l[:, j] = text[:, left_order[:, j]]
    video_positions: Tensor  # (Lv,): sequence position of raster video token i


def sequence_length(n_text: int, frame_sizes, registers: bool, text_recomposition: bool) -> int:
    """Length of the re-composed sequence."""
    n_video = sum(h * w for h, w in frame_sizes)
    return (2 if text_recomposition else 1) * n_text + n_video + (len(frame_sizes) if registers else 0)


def _video_indices(frame_sizes, path_index, prefix: int, registers: bool):
    """(gather index of the scanned video tokens (Lv,), sequence position of each raster token (Lv,))."""
    gather, positions = [], []
    start, pos = 0, int(prefix)  # a python int: under JIT tracing sizes are 0-dim tensors and += would mutate it
    for h, w in frame_sizes:
        n = h * w
        pos += 1 if registers else 0
        perm = zigzag_path(h, w, path_index) if path_index is not None else torch.arange(n)
        gather.append(start + perm)
        positions.append(pos + inverse_permutation(perm))
        start, pos = start + n, pos + n
    return torch.cat(gather), torch.cat(positions)


def recompose(text: Tensor, text_mask: Tensor, video: Tensor, frame_sizes, frame_levels,
              registers: Tensor | None, path_index: int | None, text_recomposition: bool):
    """text (B, Lt, D), text_mask (B, Lt), video (B, Lv, D) -> (seq (B, S, D), valid (B, S), plan)."""
    B, n_text, D = text.shape
    if sum(h * w for h, w in frame_sizes) != video.shape[1] or len(frame_levels) != len(frame_sizes):
        raise ValueError(f"recompose: frame_sizes {list(frame_sizes)} / levels {list(frame_levels)} do not match "
                         f"{video.shape[1]} video tokens")
    mask = text_mask.bool()
    text = text * mask[..., None].to(text.dtype)                                 # pads are zero vectors
    # Stable sort on the mask puts pads first and keeps the real tokens in order: the left-padded copy.
    left_order = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices  # (B, Lt)
    prefix = n_text  # Z_l (or the single copy Z) always leads
    gather, positions = _video_indices(frame_sizes, path_index, prefix, registers is not None)
    scanned = video[:, gather.to(video.device)]                                 # (B, Lv, D) zigzagged frames

    pieces, valid = [], []
    if text_recomposition:
        pieces.append(torch.gather(text, 1, left_order[..., None].expand(-1, -1, D)))  # Z_l (B, Lt, D)
        valid.append(torch.gather(mask, 1, left_order))
    else:
        pieces.append(text)
        valid.append(mask)
    start = 0
    for (h, w), level in zip(frame_sizes, frame_levels):
        if registers is not None:
            pieces.append(registers[level].to(video.dtype).expand(B, 1, D))     # r_f (B, 1, D)
            valid.append(mask.new_ones(B, 1))
        pieces.append(scanned[:, start:start + h * w])
        valid.append(mask.new_ones(B, h * w))
        start += h * w
    if text_recomposition:
        pieces.append(text)                                                      # Z_r (B, Lt, D)
        valid.append(mask)
    seq = torch.cat(pieces, dim=1)                                               # (B, S, D)
    plan = RecompositionPlan(n_text, seq.shape[1], text_recomposition, mask, left_order,
                             positions.to(video.device))
    return seq, torch.cat(valid, dim=1), plan


def invert(seq_out: Tensor, plan: RecompositionPlan) -> tuple[Tensor, Tensor]:
    """seq_out (B, S, E) -> (text_out (B, Lt, E), video_out (B, Lv, E)); text pads come out as zeros."""
    n_text, E = plan.n_text, seq_out.shape[-1]
    video_out = seq_out[:, plan.video_positions]                                # (B, Lv, E) raster order
    text_out = seq_out[:, :n_text]                                               # (B, Lt, E)
    if plan.text_recomposition:
        back = torch.argsort(plan.left_order, dim=1)                             # undo the left shift
        text_out = torch.gather(text_out, 1, back[..., None].expand(-1, -1, E)) + seq_out[:, plan.seq_len - n_text:]
    return text_out * plan.text_mask[..., None].to(seq_out.dtype), video_out
