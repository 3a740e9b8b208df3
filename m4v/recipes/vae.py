"""vae-tiny: the causal 3D VAE at tiny size, trained to reconstruct world videos.

Two phases. 1 (steps < MOTION_START): object-weighted L1 + MSE reconstruction of a reparameterised sample plus
a small KL (weight `kl`) that keeps the latents near unit scale, cosine LR over the phase. Phase 1 alone
leaves a decoder that repeats the first frame (a moving shape is a few percent of the pixels), so 2 adds an
L1 term on the frame-to-frame change and draws moving scenes half the time, at a constant half LR. At the
end the latent statistics (first frame / later frames) are measured on fresh world videos and stored as the
VAE's normalisation, as PyramidFlow's constants were for its VAE.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from m4v.recipes import BaseRecipe, step_generator
from m4v.vae import CausalVideoVAE, VAEConfig
from m4v.world.captions import KINDS
from m4v.world.dataset import world_batch

OBJECT_WEIGHT = 10.0
MOTION_START = 2000   # first step of phase 2
# Phase 2: moving scenes (1 in 8 of the world's kinds) half the time.
MOTION_KINDS = KINDS + ("dynamic",) * (len(KINDS) - 1)
STAT_BATCHES, STAT_SEED = 8, 10_000  # batches (of fresh videos) measured for the latent normalisation


def object_weight(video: torch.Tensor, weight: float = OBJECT_WEIGHT) -> torch.Tensor:
    """(B, 1, T, H, W) loss weights: `weight` on pixels unlike the frame's background (its corner colour),
    1 elsewhere. Objects cover ~5% of a frame; unweighted, the VAE learns the background first and the
    shapes only after thousands of steps."""
    corner = video[..., :1, :1]                                                  # (B, 3, T, 1, 1)
    differs = (video - corner).abs().amax(dim=1, keepdim=True) > 0.05
    return 1 + (weight - 1) * differs.float()


class Recipe(BaseRecipe):
    default_steps = 3000

    def __init__(self, name, seed=0, weights_root=None, batch: int = 8, lr: float = 5e-4, kl: float = 1e-4,
                 frames: int = 9, motion: float = 1.0):
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, kl=kl, frames=frames, motion=motion)
        torch.manual_seed(seed)
        self.vae = CausalVideoVAE(VAEConfig.tiny())
        self.modules = {"vae": self.vae}
        self.optimizer = torch.optim.AdamW(self.vae.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)

    def step(self, i: int) -> dict:
        o = self.options
        motion_phase = i >= MOTION_START
        kinds = MOTION_KINDS if motion_phase else KINDS
        video, _, _ = world_batch(self.seed, i, o["batch"], n_frames=o["frames"], kinds=kinds)  # (B, 3, T, H, W)
        self.vae.train()
        if motion_phase:
            for group in self.optimizer.param_groups:
                group["lr"] = o["lr"] / 2
        else:
            self.set_lr(i, total=MOTION_START)
        mean, logvar = self.vae.encode(video)
        noise = torch.randn(mean.shape, generator=step_generator(self.seed, i))
        recon = self.vae.decode(mean + noise * torch.exp(0.5 * logvar))
        weight = object_weight(video)
        rec = (weight * ((recon - video).abs() + (recon - video).pow(2))).mean()
        if motion_phase:
            change = (recon.diff(dim=2) - video.diff(dim=2)).abs()
            rec = rec + o["motion"] * (torch.maximum(weight[:, :, 1:], weight[:, :, :-1]) * change).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + o["kl"] * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item(), "recon": rec.item(), "kl": kl.item()}

    @torch.no_grad()
    def latent_statistics(self) -> dict:
        """Shift and scale that give the first latent frame and the later ones zero mean and unit std."""
        self.vae.eval()
        firsts, rests = [], []
        for b in range(STAT_BATCHES):
            video, _, _ = world_batch(STAT_SEED + self.seed, b, self.options["batch"], n_frames=17)
            mean, _ = self.vae.encode(video)
            firsts.append(mean[:, :, :1].flatten())
            rests.append(mean[:, :, 1:].flatten())
        first, rest = torch.cat(firsts), torch.cat(rests)
        return {"image_shift": first.mean().item(), "image_scale": 1 / first.std().item(),
                "video_shift": rest.mean().item(), "video_scale": 1 / rest.std().item()}

    def save(self, out) -> None:
        self.vae.cfg = replace(self.vae.cfg, **self.latent_statistics())
        self.vae.save_pretrained(out)
