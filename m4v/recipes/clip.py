"""clip-tiny: contrastive training of the tiny CLIP (m4v/tiny_clip.py) on single world frames and their captions, or
on frames of the user's captioned videos (`train --data CAPTIONS`).

Under torchrun every rank encodes its rows of the batch and the features are gathered (open_clip's
`gather_features`, as its ClipLoss gathers them), so every rank computes the whole batch's contrastive loss, its
own rows keeping their gradient: the ranks' gradients *sum* to one process's. The image tower's BatchNorm layers
normalise by the global batch's statistics (m4v/cross_rank_batchnorm.py), as in one process.
"""

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


class FrameSource:
    """A recipe's frames and captions: the world's (`world_frames`), or the user's clips' (`data`, decoded on the
    first batch; under torchrun rank 0 alone reports what it decoded)."""

    def __init__(self, data: str | None):
        self.clips, self.frames = None, None
        if data is not None:   # read now: an empty or malformed captions file is refused before any work
            from m4v.captioned_videos import read_captions

            self.clips = read_captions(data)

    def batch(self, seed: int, step: int, batch: int, rank: int = 0) -> tuple[torch.Tensor, list[str]]:
        """(B, 3, H, W) frames in [-1, 1] and their captions of batch `step`, the same on every rank."""
        if self.clips is None:
            return world_frames(seed, step, batch)
        if self.frames is None:
            from m4v.captioned_videos import CaptionedFrames

            self.frames = CaptionedFrames(self.clips, TRAIN_FRAMES, TRAIN_SIZE, quiet=rank > 0)
        return self.frames.batch(seed, step, batch)


def data_option(data: str | None) -> dict:
    """The `data` option as recorded (an absolute path), absent for the world."""
    return {} if data is None else {"data": str(Path(data).resolve())}


def gather_rows(recipe: BaseRecipe, image_features: torch.Tensor, text_features: torch.Tensor):
    """This rank's rows' features -> the whole batch's (B, E) each, this rank's rows keeping their gradient (one
    process: as given). The loss on them is the whole batch's; its gradient reaches only this rank's rows."""
    if recipe.world_size == 1:
        return image_features, text_features
    from open_clip.loss import gather_features

    return gather_features(image_features, text_features, local_loss=False, gather_with_grad=False,
                           rank=recipe.rank, world_size=recipe.world_size)


def sum_row_gradients(recipe: BaseRecipe, module: torch.nn.Module, shared: tuple = ()) -> None:
    """After backward of the whole batch's loss on gathered features: every parameter's gradient is this rank's
    rows' share, except `shared` ones (used outside the rows, e.g. the temperature: whole on every rank), so the
    shares are summed across ranks (x world size, then the ranks' average) and the shared ones left whole."""
    if recipe.world_size == 1:
        return
    keep = {id(p) for p in shared}
    for p in module.parameters():
        if p.grad is not None and id(p) not in keep:
            p.grad.mul_(recipe.world_size)
    recipe.sync_gradients(module)


class Recipe(BaseRecipe):
    """Tiny CLIP from scratch: AdamW, cosine decay after a short warm-up, batch 64 frames."""

    name = "clip-tiny"
    default_steps = 1000

    def __init__(self, name: str = "clip-tiny", seed: int = 0, weights_root=None, batch: int = 64, lr: float = 1e-3,
                 warmup: int = 50, weight_decay: float = 0.05, schedule_steps: int | None = None,
                 data: str | None = None, **options):
        # The cosine schedule's length is a recipe option, not the run's --steps, so a resumed or extended run
        # sees the same learning rates at every step.
        schedule_steps = schedule_steps or self.default_steps
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, warmup=warmup, weight_decay=weight_decay,
                         schedule_steps=schedule_steps, **data_option(data), **options)
        self.source = FrameSource(data)
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
        images, captions = self.source.batch(self.seed, i, self.batch, self.rank)
        rows = self.my_rows(len(captions)) or slice(None)   # this rank's rows of the batch (torchrun)
        if self.world_size > 1:   # the ResNet image tower's BatchNorm: the global batch's statistics (once)
            from m4v.cross_rank_batchnorm import convert

            convert(self.model)
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(i)
        image_features = self.model.encode_image(normalize_images(self.model, images[rows]), normalize=True)
        text_features = self.model.encode_text(self.tokenizer(captions[rows]), normalize=True)   # (rows, E) each
        image_features, text_features = gather_rows(self, image_features, text_features)        # (B, E) each
        loss = contrastive_loss(image_features, text_features, self.model.logit_scale.exp(), captions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sum_row_gradients(self, self.model, shared=(self.model.logit_scale,))
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return {"loss": loss.item(), "batch_top1": batch_top1(image_features, text_features, captions),
                "logit_scale": self.model.logit_scale.exp().item(), "lr": self.learning_rate(i)}

    def save(self, out: Path) -> None:
        save_tiny_clip(self.model, out)

    def config(self) -> dict:
        return {"data": "world_frames: one frame per clip", **self.options, "architecture": TINY_CLIP_CONFIG}

