"""m4v-tiny-reward: reward learning on top of the trained m4v-tiny (spec §2).

Per step: a flow-matching sample at the final (full-resolution) stage of a random AR position; the one-step
clean estimate of the current frame is decoded by the frozen VAE together with its (clean) history, and the
decoded frames of that latent frame are scored by the tiny CLIP (text alignment) and the fidelity reward
model (HPSv2 stand-in), equal weights. Loss = L_FM + L_reward with L_reward = -(r_clip + r_fidelity); the
gradient runs through the decoder into the transformer. The spec leaves steps, LR and the FM term open; its
recommended defaults are used (final stage only, FM kept, mean over the decoded frames, small LR). No caption
dropout here: the reward scores the caption, so an unconditional sample would be pushed toward it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from m4v.fidelity import combined_reward, load_reward_models
from m4v.recipes import BaseRecipe, step_generator, weights_path
from m4v.recipes.denoiser import FrozenWorldEncoders, training_latents
from m4v.scheduler import PyramidSchedule
from m4v.training import flow_matching_loss, one_step_clean_estimate
from m4v.transformer import M4VTransformer

BASE_MODEL = "m4v-tiny"
FINAL_STAGE = 2


def decode_current_frame(vae, history_latents: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Decode [clean history ; estimate] and keep the pixel frames of the last latent frame:
    (B, C, u, h, w) + (B, C, h, w) -> (B, 3, 1 or 8, H, W); differentiable in `current`."""
    video = vae.decode_normalized(torch.cat([history_latents, current[:, :, None]], dim=2))
    return video[:, :, -1:] if history_latents.shape[2] == 0 else video[:, :, -8:]


class Recipe(BaseRecipe):
    default_steps = 300

    def __init__(self, name, seed=0, weights_root=None, batch: int = 4, lr: float = 1e-4, dataset_size: int = 4096,
                 reward_weight: float = 1.0, data: str | None = None):
        extra = {} if data is None else {"data": str(Path(data).resolve())}
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, dataset_size=dataset_size,
                         reward_weight=reward_weight, **extra)
        self.clips = None   # the user's videos (`--data`), read now: an empty captions file is refused at once
        if data is not None:
            from m4v.captioned_videos import read_captions

            self.clips = read_captions(data)
        self.base_dir = weights_path(BASE_MODEL, weights_root)
        self.model = M4VTransformer.from_pretrained(self.base_dir)
        self.encoders = FrozenWorldEncoders(weights_root)
        self.clip, self.fidelity = load_reward_models(weights_root)
        self.schedule = PyramidSchedule()
        self.dataset = None
        self.modules = {"model": self.model}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-4)

    def config(self) -> dict:
        return {**self.options, "base_model": str(self.base_dir), "model": self.model.cfg.to_dict()}

    def step(self, i: int) -> dict:
        if self.dataset is None:
            # The base model's latent cache when the run directories sit side by side (same seed and size).
            self.dataset = self.rank_zero_first(lambda: training_latents(
                self.encoders, self.seed, self.options["dataset_size"], self.out.parent, self.clips, self.rank > 0))
        generator = step_generator(self.seed, i)
        latents, text, captions = self.dataset.batch(generator, self.options["batch"])   # (B, C, T, h, w)
        self.model.train()
        self.set_lr(i)
        rows = self.my_rows(len(latents)) or slice(None)   # this rank's rows of the batch (torchrun)
        with self.autocast():
            sample = flow_matching_loss(self.model, latents, text, self.schedule, generator, stage=FINAL_STAGE,
                                        rows=self.my_rows(len(latents)))
            clean = one_step_clean_estimate(sample, self.schedule)                        # (b, C, h, w)
            frames = decode_current_frame(self.encoders.vae, latents[rows, :, :sample.unit], clean)
            reward = combined_reward(frames, captions[rows], self.clip, self.fidelity).mean()
        loss = sample.loss + self.options["reward_weight"] * -reward
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item(), "fm_loss": sample.loss.item(), "reward": reward.item(), "unit": sample.unit}

    def save(self, out) -> None:
        self.model.save_pretrained(out)
