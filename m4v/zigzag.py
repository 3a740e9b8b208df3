"""Zigzag scan paths (ZigMa's 8 boustrophedon orders), generalised to rectangular H x W token grids."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# ZigMa's order: 4 start corners x {row-wise snake "lr", column-wise snake "tb"}.
ZIGZAG_PATHS = (("tl", "lr"), ("tl", "tb"), ("tr", "lr"), ("tr", "tb"),
                ("bl", "lr"), ("bl", "tb"), ("br", "lr"), ("br", "tb"))


def path_for_layer(layer_index: int, n_paths: int = len(ZIGZAG_PATHS)) -> int:
    """Layer l scans along path l mod n_paths (ZigMa; the paper does not say more)."""
    if not 1 <= n_paths <= len(ZIGZAG_PATHS):
        raise ValueError(f"n_paths must be in 1..{len(ZIGZAG_PATHS)}, got {n_paths}")
    return layer_index % n_paths


@functools.lru_cache(maxsize=256)
def _path(height: int, width: int, index: int) -> tuple:
    corner, direction = ZIGZAG_PATHS[index]
    rows = list(range(height)) if corner[0] == "t" else list(range(height - 1, -1, -1))
    cols = list(range(width)) if corner[1] == "l" else list(range(width - 1, -1, -1))
    order = []
    if direction == "lr":  # along rows, reversing direction every row
        for i, r in enumerate(rows):
            order += [r * width + c for c in (cols if i % 2 == 0 else cols[::-1])]
    else:  # along columns
        for i, c in enumerate(cols):
            order += [r * width + c for r in (rows if i % 2 == 0 else rows[::-1])]
    return tuple(order)


def zigzag_path(height: int, width: int, index: int) -> Tensor:
    """perm (H*W,) long: perm[k] = raster index (row * W + col) of the k-th token visited. A new tensor."""
    if height < 1 or width < 1:
        raise ValueError(f"zigzag_path: grid must be at least 1x1, got {height}x{width}")
    if not 0 <= index < len(ZIGZAG_PATHS):
        raise ValueError(f"zigzag_path: index must be in 0..{len(ZIGZAG_PATHS) - 1}, got {index}")
    return torch.tensor(_path(height, width, index), dtype=torch.long)


def inverse_permutation(perm: Tensor) -> Tensor:
    """inv with inv[perm[i]] = i."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv
