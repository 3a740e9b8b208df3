"""m4v-wan-tiny-reward: reward learning on the whole video latent for the Wan family (spec §1.7 and §2).

For M4V*(Wan2.1) the paper computes "flow-matching and reward losses on the whole video latent": no pyramid stage,
no current frame. Per step: one whole-latent flow-matching draw (m4v/recipes/wan.flow_matching_sample, the Wan
recipes' objective); the same forward's one-step clean estimate x0 = x_sigma - sigma v of the whole latent is
decoded by the frozen vae-tiny and every decoded frame is scored by the pyramidal recipe's rewards (tiny CLIP text
alignment + the HPSv2 stand-in, equal weights, m4v/fidelity.combined_reward; mean over frames). Loss = L_FM -
reward_weight * reward; the gradient runs through the decoder into the transformer, the VAE and reward models stay
frozen. Open points read as in m4v/recipes/reward_learning.py (L_FM kept, mean over decoded frames, small LR, no
caption dropout); the reward's sigma is the FM draw's (one forward serves both terms). The start is a Wan
transformer directory (`--init-from`, default the shipped m4v-wan-tiny) with vae-tiny's latent and text-tiny's
features; its architecture (attention or MM-DiM) is kept. `--data CAPTIONS`: the user's clips (as wan-tiny's);
under torchrun each rank computes and scores its rows of the whole batch's draw, the rewards' mean is the batch's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from m4v.fidelity import combined_reward, load_reward_models
from m4v.recipes import BaseRecipe, step_generator, weights_path
from m4v.recipes.denoiser import FrozenWorldEncoders, training_latents
from m4v.recipes.wan import flow_matching_sample
from m4v.wan_text_to_video import load_wan, wan_text

BASE_MODEL = "m4v-wan-tiny"


class Recipe(BaseRecipe):
    default_steps = 300

    def __init__(self, name, seed=0, weights_root=None, init_from: str | None = None, batch: int = 4,
                 lr: float = 1e-4, dataset_size: int = 4096, reward_weight: float = 1.0, data: str | None = None):
        base_dir = weights_path(str(init_from or BASE_MODEL), weights_root)
        super().__init__(name, seed, weights_root, init_from=str(base_dir.resolve()), batch=batch, lr=lr,
                         dataset_size=dataset_size, reward_weight=reward_weight,
                         **({} if data is None else {"data": str(Path(data).resolve())}))
        self.clips = None   # the user's videos (`--data`), read now: an empty captions file is refused at once
        if data is not None:
            from m4v.captioned_videos import read_captions

            self.clips = read_captions(data)
        self.model = load_wan(base_dir).requires_grad_(True)
        self.encoders = FrozenWorldEncoders(weights_root)
        cfg, latent = self.model.cfg, self.encoders.vae.cfg.latent_channels
        text_dim = self.encoders.text.encode([""]).tokens.shape[-1]
        if (cfg.in_channels, cfg.out_channels, cfg.text_dim) != (latent, latent, text_dim):
            raise ValueError(f"--init-from {base_dir}: a Wan transformer of {cfg.in_channels} latent channels and "
                             f"{cfg.text_dim}-wide text; vae-tiny's latent has {latent}, text-tiny's features "
                             f"{text_dim}")
        self.clip, self.fidelity = load_reward_models(weights_root)
        self.dataset = None
        self.modules = {"model": self.model}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-4)

    def config(self) -> dict:
        return {**self.options, "model": self.model.cfg.to_dict()}

    def step(self, i: int) -> dict:
        if self.dataset is None:   # the Wan recipes' latent cache when the run directories sit side by side
            self.dataset = self.rank_zero_first(lambda: training_latents(
                self.encoders, self.seed, self.options["dataset_size"], self.out.parent, self.clips, self.rank > 0))
        generator = step_generator(self.seed, i)
        latents, text, captions = self.dataset.batch(generator, self.options["batch"])   # (B, C, F, h, w)
        self.model.train()
        self.set_lr(i)
        rows = self.my_rows(len(latents))   # this rank's rows of the batch (torchrun); None: all
        with self.autocast():
            sample = flow_matching_sample(self.model, latents, wan_text(text), generator, rows=rows)
            video = self.encoders.vae.decode_normalized(sample.clean_estimate())         # (b, 3, T, H, W)
            reward = combined_reward(video, captions[rows or slice(None)], self.clip, self.fidelity).mean()
        loss = sample.loss - self.options["reward_weight"] * reward
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item(), "fm_loss": sample.loss.item(), "reward": reward.item(),
                "sigma": sample.sigma.mean().item()}

    def save(self, out) -> None:
        self.model.save_pretrained(out)
