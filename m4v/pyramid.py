"""Pyramid stages and history compression (spec §1.1): which resolution every frame of a stage has."""

from __future__ import annotations

VAE_SPATIAL, VAE_TEMPORAL = 8, 8     # causal 3D VAE compression (spec §1.1)
N_LEVELS = 3                         # pyramid stages [1, 2, 4]: level 0 = 1/4 side, 2 = full


def size_multiple(patch_size: int = 1) -> int:
    """Pixel sizes a model with this patch can honour are multiples of this: VAE 8 x pyramid 2^(levels-1) x patch."""
    return VAE_SPATIAL * 2 ** (N_LEVELS - 1) * patch_size


def latent_frames(video_frames: int) -> int:
    """Pixel frames -> latent frames (the first frame is encoded alone): 57 -> 8, 121 -> 16, 241 -> 31."""
    if video_frames < 1 or (video_frames - 1) % VAE_TEMPORAL:
        raise ValueError(f"video_frames must be 1 + 8k, got {video_frames}")
    return 1 + (video_frames - 1) // VAE_TEMPORAL


def latent_size(height: int, width: int, level: int = N_LEVELS - 1) -> tuple[int, int]:
    """Latent (h, w) of a frame at pyramid `level` for a height x width video."""
    if height % VAE_SPATIAL or width % VAE_SPATIAL:
        raise ValueError(f"height and width must be multiples of {VAE_SPATIAL}, got {height}x{width}")
    down = 2 ** (N_LEVELS - 1 - level)
    return height // VAE_SPATIAL // down, width // VAE_SPATIAL // down


def history_levels(n_history: int, current_level: int) -> list[int]:
    """Compressed history, oldest -> newest: the most recent frame at the current level, one level lower per
    step back, clamped at the lowest (PyramidFlow inference; c^i of the paper's Eq. 4)."""
    return [max(current_level - (n_history - 1 - i), 0) for i in range(n_history)]


def stage_frames(height: int, width: int, frame_index: int, level: int) -> tuple[list, list]:
    """Latent (h, w) and level of every frame in the sequence that generates latent frame `frame_index`
    (0-based) at pyramid `level`: its frame_index history frames, then the current frame."""
    levels = history_levels(frame_index, level) + [level]
    return [latent_size(height, width, lv) for lv in levels], levels
