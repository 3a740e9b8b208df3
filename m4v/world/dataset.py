"""Training data from the world: random scenes of every prompt kind, rendered, with their captions.

Batch `step` of a run with seed `seed` depends on (seed, step) only, so a resumed run sees the same data as
an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from m4v.world.captions import KINDS, caption, sample_scene
from m4v.world.scene import Scene, render

TRAIN_FRAMES = 17   # 1 + 8k pixel frames: 3 latent frames through the 8x causal VAE
TRAIN_SIZE = 64


def sample_clip(rng: np.random.Generator, n_frames: int = TRAIN_FRAMES, size: int = TRAIN_SIZE,
                kinds=KINDS) -> tuple[np.ndarray, str, Scene]:
    """One (T, H, W, 3) uint8 video, its caption and its scene; the kind is drawn uniformly."""
    kind = kinds[int(rng.integers(len(kinds)))]
    scene = sample_scene(kind, rng, n_frames, size)
    return render(scene), caption(scene, kind), scene


def to_model_video(frames: np.ndarray) -> torch.Tensor:
    """(..., T, H, W, 3) uint8 -> (..., 3, T, H, W) float in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1
    return video.movedim(-1, -4)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 (clamped)."""
    return ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(0, -1).numpy()


def world_batch(seed: int, step: int, batch: int, n_frames: int = TRAIN_FRAMES, size: int = TRAIN_SIZE,
                kinds=KINDS) -> tuple[torch.Tensor, list[str], list[Scene]]:
    """(B, 3, T, H, W) videos in [-1, 1], captions and scenes of batch `step` (kinds drawn uniformly from
    `kinds`; repeat a kind to weight it)."""
    rng = np.random.default_rng([seed, step])
    clips = [sample_clip(rng, n_frames, size, kinds) for _ in range(batch)]
    return to_model_video(np.stack([c[0] for c in clips])), [c[1] for c in clips], [c[2] for c in clips]


def world_vocabulary() -> list[str]:
    """Every word the caption grammar can produce (for word-level tokenizers)."""
    rng = np.random.default_rng(0)
    words = set()
    for _ in range(400):
        for kind in KINDS:
            words.update(caption(sample_scene(kind, rng), kind).replace(",", " ,").split())
    return sorted(words)
