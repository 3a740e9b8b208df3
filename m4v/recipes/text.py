"""text-tiny: the tiny T5 + CLIP text encoders over the world's vocabulary (built, not trained: the denoiser
learns to read their fixed random features, as M4V reads frozen T5 / CLIP ones)."""

from __future__ import annotations

from m4v.recipes import BaseRecipe
from m4v.text import build_tiny_text_encoders
from m4v.world.dataset import world_vocabulary

TEXT_LEN = 16  # tokens; the longest world caption has 11 with </s>


class Recipe(BaseRecipe):
    default_steps = 0

    def __init__(self, name, seed=0, weights_root=None, batch=None, lr=None):
        super().__init__(name, seed, weights_root, max_length=TEXT_LEN)

    def save(self, out) -> None:
        build_tiny_text_encoders(out, world_vocabulary(), max_length=TEXT_LEN, seed=self.seed)
