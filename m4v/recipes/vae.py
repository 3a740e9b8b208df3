"""vae-tiny: the causal 3D VAE at tiny size, trained to reconstruct world videos.

Two phases, as video VAEs usually are trained (images first, then video). 1 (steps < `image_steps`): single
frames, which through the causal VAE are exact 2D convolutions (CausalConv3d.forward_image), so a step sees
~10x more scenes than on 9-frame clips; object-weighted L1 + MSE of a reparameterised sample, a small KL
(weight `kl`) that keeps the latents near unit scale, and an L1 on spatial gradients (weight `edge`; without
it shapes blur into blobs). 2: causal inflation (each conv's weight onto its current-frame tap; image
training updates every tap alike, so without it each conv averages its time window and motion is lost), then
9-frame clips, moving scenes a `dynamic` share of the time, with an L1 on the frame-to-frame change (weight
`motion`), on a fresh warm-up + cosine LR at `video_lr_scale` x the base (the full LR undid phase 1's shapes).
At the end the latent statistics (first frame / later frames) are measured on fresh world videos and stored
as the VAE's normalisation, as PyramidFlow's constants were for its VAE.

`data` (`train --data CAPTIONS`): the user's clips instead of the world, decoded once (m4v/captioned_videos.py) at
17 frames of 64x64 and 8 fps; phase 1 draws single frames of them, phase 2 `frames`-long windows, the statistics
are measured on them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from m4v.recipes import BaseRecipe, step_generator
from m4v.vae import CausalVideoVAE, VAEConfig
from m4v.world.captions import KINDS
from m4v.world.dataset import TRAIN_FRAMES, TRAIN_SIZE, to_model_video, world_batch

OBJECT_WEIGHT = 10.0
STAT_BATCHES, STAT_SEED = 8, 10_000  # batches (of fresh videos) measured for the latent normalisation


def video_kinds(dynamic: float) -> tuple:
    """The world's kinds, "dynamic" (moving scenes) weighted to a `dynamic` share of the draws."""
    others = tuple(k for k in KINDS if k != "dynamic")
    return others + ("dynamic",) * round(len(others) * dynamic / (1 - dynamic))


def object_weight(video: Tensor, weight: float = OBJECT_WEIGHT) -> Tensor:
    """(B, 1, T, H, W) loss weights: `weight` on pixels unlike the frame's background (its corner colour),
    1 elsewhere. Objects cover ~5% of a frame; unweighted, the VAE learns the background first and the
    shapes only after thousands of steps."""
    corner = video[..., :1, :1]                                                  # (B, 3, T, 1, 1)
    differs = (video - corner).abs().amax(dim=1, keepdim=True) > 0.05
    return 1 + (weight - 1) * differs.float()


def weighted_l1(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    """Mean of weight * |a - b|."""
    return (weight * (a - b).abs()).mean()


def edge_loss(recon: Tensor, video: Tensor, weight: Tensor) -> Tensor:
    """L1 between the horizontal and vertical pixel differences (sharp shape outlines; L1/MSE alone blur)."""
    dx = lambda v: v.diff(dim=-1)  # noqa: E731
    dy = lambda v: v.diff(dim=-2)  # noqa: E731
    return (weighted_l1(dx(recon), dx(video), torch.maximum(weight[..., 1:], weight[..., :-1]))
            + weighted_l1(dy(recon), dy(video), torch.maximum(weight[..., 1:, :], weight[..., :-1, :])))


def motion_loss(recon: Tensor, video: Tensor, weight: Tensor) -> Tensor:
    """L1 between the frame-to-frame changes of reconstruction and video."""
    return weighted_l1(recon.diff(dim=2), video.diff(dim=2), torch.maximum(weight[:, :, 1:], weight[:, :, :-1]))


class Recipe(BaseRecipe):
    default_steps = 7600

    def __init__(self, name, seed=0, weights_root=None, image_batch: int = 16, batch: int = 4, lr: float = 1e-3,
                 kl: float = 1e-4, frames: int = 9, motion: float = 2.0, edge: float = 1.0, dynamic: float = 0.75,
                 video_lr_scale: float = 0.25, image_steps: int = 7000, device: str = "cpu",
                 data: str | None = None):
        from pathlib import Path

        extra = {} if data is None else {"data": str(Path(data).resolve())}
        super().__init__(name, seed, weights_root, image_batch=image_batch, batch=batch, lr=lr, kl=kl,
                         frames=frames, motion=motion, edge=edge, dynamic=dynamic, video_lr_scale=video_lr_scale,
                         image_steps=image_steps, **extra)
        self.clips, self.pixels = None, None   # the user's clips (read now: an empty file is refused at once)
        if data is not None:
            from m4v.captioned_videos import read_captions

            if not 1 <= frames <= TRAIN_FRAMES:
                raise ValueError(f"--option frames: at most the {TRAIN_FRAMES} frames decoded per clip, got {frames}")
            self.clips = read_captions(data)
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.vae = CausalVideoVAE(VAEConfig.tiny()).to(self.device)
        self.modules = {"vae": self.vae}
        self.optimizer = torch.optim.AdamW(self.vae.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)

    def clip_batch(self, seed: int, step: int, batch: int, n_frames: int) -> Tensor:
        """(B, 3, n_frames, H, W) windows of the user's clips (decoded once), drawn by (seed, step) alone."""
        if self.pixels is None:
            from m4v.captioned_videos import decoded_clips

            quiet = self.rank > 0   # under torchrun rank 0 alone says what it decoded
            self.pixels = decoded_clips(self.clips, TRAIN_FRAMES, TRAIN_SIZE, log=(lambda m: None) if quiet else None,
                                        progress=not quiet)                              # (N, 17, 64, 64, 3)
        rng = np.random.default_rng([seed, step])
        index = rng.integers(len(self.pixels), size=batch)
        start = rng.integers(TRAIN_FRAMES - n_frames + 1, size=batch)
        return to_model_video(np.stack([self.pixels[k, s:s + n_frames] for k, s in zip(index, start)]))

    def videos(self, seed: int, step: int, batch: int, n_frames: int, kinds=None) -> Tensor:
        """The world's batch, or the user's clips' (`data`)."""
        if self.clips is not None:
            return self.clip_batch(seed, step, batch, n_frames)
        return world_batch(seed, step, batch, n_frames=n_frames, **({"kinds": kinds} if kinds else {}))[0]

    def step(self, i: int) -> dict:
        o = self.options
        images = i < o["image_steps"]
        if images:
            video = self.videos(self.seed, i, o["image_batch"], 1)                          # (B, 3, 1, H, W)
            self.set_lr(i, total=o["image_steps"])
        else:
            if i == o["image_steps"]:
                self.start_video_phase()
            video = self.videos(self.seed, i, o["batch"], o["frames"], kinds=video_kinds(o["dynamic"]))
            self.set_lr(i - o["image_steps"], total=self.total_steps - o["image_steps"], scale=o["video_lr_scale"])
        rows = self.my_rows(len(video)) or slice(None)   # this rank's rows of the batch (torchrun)
        whole = len(video)
        video = video[rows].to(self.device)
        self.vae.train()
        with self.autocast():
            mean, logvar = self.vae.encode(video)
            # drawn for the whole batch, as one process draws it, then the rank's rows
            noise = torch.randn((whole, *mean.shape[1:]), generator=step_generator(self.seed, i))[rows]
            recon = self.vae.decode(mean + noise.to(self.device) * torch.exp(0.5 * logvar))
        recon, mean, logvar = recon.float(), mean.float(), logvar.float()
        weight = object_weight(video)
        rec = (weight * ((recon - video).abs() + (recon - video).pow(2))).mean()
        edge = edge_loss(recon, video, weight)
        motion = torch.zeros(()) if images else motion_loss(recon, video, weight)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + o["edge"] * edge + o["motion"] * motion.to(rec) + o["kl"] * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(self.vae)
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item(), "recon": rec.item(), "edge": edge.item(), "motion": motion.item(),
                "kl": kl.item()}

    def start_video_phase(self) -> None:
        """Inflate the image-trained convs to causal video convs and restart Adam (its moments are per tap)."""
        self.vae.inflate_from_image()
        self.optimizer.state.clear()

    @torch.no_grad()
    def latent_statistics(self) -> dict:
        """Shift and scale that give the first latent frame and the later ones zero mean and unit std."""
        self.vae.eval()
        firsts, rests = [], []
        for b in range(STAT_BATCHES):
            video = self.videos(STAT_SEED + self.seed, b, self.options["batch"], TRAIN_FRAMES)
            mean, _ = self.vae.encode(video.to(self.device))
            firsts.append(mean[:, :, :1].flatten().cpu())
            rests.append(mean[:, :, 1:].flatten().cpu())
        first, rest = torch.cat(firsts), torch.cat(rests)
        return {"image_shift": first.mean().item(), "image_scale": 1 / first.std().item(),
                "video_shift": rest.mean().item(), "video_scale": 1 / rest.std().item()}

    def save(self, out) -> None:
        self.vae.cfg = replace(self.vae.cfg, **self.latent_statistics())
        self.vae.cpu().save_pretrained(out)
        self.vae.to(self.device)
