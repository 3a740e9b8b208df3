"""clip-tiny: contrastive training of the tiny CLIP (m4v/tiny_clip.py) on single world frames and their captions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from m4v.recipes import BaseRecipe
from m4v.tiny_clip import TINY_CLIP_CONFIG, TINY_CLIP_NAME, build_tiny_clip, normalize_images, save_tiny_clip
from m4v.world.captions import KINDS, caption, sample_scene
from m4v.world.dataset import TRAIN_FRAMES, TRAIN_SIZE, to_model_video
from m4v.world.scene import render_frame

MAX_LOGIT_SCALE = math.log(100)   # open_clip's training clamp on the learned temperature


def world_frames(seed: int, step: int, batch: int, n_frames: int = TRAIN_FRAMES,
                 size: int = TRAIN_SIZE) -> tuple[torch.Tensor, list[str]]:
    """(B, 3, H, W) frames in [-1, 1] and captions of batch `step`: one random frame of each random clip.

    Only the chosen frame is rendered (a whole clip costs n_frames renders); clips span the training length so
    moving objects appear anywhere along their paths, as in generated videos.
    """
    rng = np.random.default_rng([seed, step])
    frames, captions = [], []
    for _ in range(batch):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        scene = sample_scene(kind, rng, n_frames, size)
        frames.append(render_frame(scene, int(rng.integers(n_frames))))
        captions.append(caption(scene, kind))
    return to_model_video(np.stack(frames)[:, None])[:, :, 0], captions      # (B, 3, H, W)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                     captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE on unit features; identical captions in the batch share the target mass (soft targets),
    so two frames captioned "a star" are not pushed apart."""
    logits = logit_scale * image_features @ text_features.T                      # (B, B) image x text
    index = {c: k for k, c in enumerate(dict.fromkeys(captions))}
    ids = torch.tensor([index[c] for c in captions], device=logits.device)
    same = (ids[:, None] == ids[None, :]).float()                                # (B, B), symmetric
    targets = same / same.sum(-1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def batch_top1(image_features: torch.Tensor, text_features: torch.Tensor, captions: list[str]) -> float:
    """Fraction of images whose most similar caption in the batch is their own (or an identical one)."""
    top1 = (image_features @ text_features.T).argmax(-1)
    return sum(captions[j] == c for j, c in zip(top1.tolist(), captions)) / len(captions)


class Recipe(BaseRecipe):
    """Tiny CLIP from scratch: AdamW, cosine decay after a short warm-up, batch 64 frames."""
    data_parallel = False   # under torchrun: the contrastive loss compares every image with every caption of the batch

    name = "clip-tiny"
    default_steps = 1000

    def __init__(self, name: str = "clip-tiny", seed: int = 0, weights_root=None, batch: int = 64, lr: float = 1e-3,
                 warmup: int = 50, weight_decay: float = 0.05, schedule_steps: int | None = None, **options):
        # The cosine schedule's length is a recipe option, not the run's --steps, so a resumed or extended run
        # sees the same learning rates at every step.
        schedule_steps = schedule_steps or self.default_steps
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, warmup=warmup, weight_decay=weight_decay,
                         schedule_steps=schedule_steps, **options)
        self.batch, self.lr, self.warmup, self.schedule_steps = batch, lr, warmup, schedule_steps
        self.model = build_tiny_clip(seed)
        self.tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)
        self.modules = {"clip": self.model}
        # Decay matrices only: not gains, biases, norms, the temperature (open_clip's rule) nor position tables.
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "positional" not in n]
        rest = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "positional" not in n)]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                            {"params": rest, "weight_decay": 0.0}], lr=lr)

    def learning_rate(self, i: int) -> float:
        if i < self.warmup:
            return self.lr * (i + 1) / self.warmup
        progress = min(1.0, (i - self.warmup) / max(1, self.schedule_steps - self.warmup))
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    def step(self, i: int) -> dict:
        images, captions = world_frames(self.seed, i, self.batch)
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(i)
        image_features = self.model.encode_image(normalize_images(self.model, images), normalize=True)    # (B, E)
        text_features = self.model.encode_text(self.tokenizer(captions), normalize=True)                  # (B, E)
        loss = contrastive_loss(image_features, text_features, self.model.logit_scale.exp(), captions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return {"loss": loss.item(), "batch_top1": batch_top1(image_features, text_features, captions),
                "logit_scale": self.model.logit_scale.exp().item(), "lr": self.learning_rate(i)}

    def save(self, out: Path) -> None:
        save_tiny_clip(self.model, out)

    def config(self) -> dict:
        return {**self.options, "architecture": TINY_CLIP_CONFIG, "data": "world_frames: one frame per clip"}

