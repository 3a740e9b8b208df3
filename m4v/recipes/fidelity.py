"""reward-tiny: the frame-fidelity reward model (m4v/fidelity.py) trained on clean vs degraded world frames, or on
frames of the user's captioned videos (`train --data CAPTIONS`) against their degraded copies: the degradations
(blur, noise, colour shift, ghosting, blending, smear, resampling) apply to any frame, the captions are not used."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from m4v.fidelity import FidelityReward, degrade
from m4v.recipes import BaseRecipe, step_generator
from m4v.recipes.clip import FrameSource, data_option

# TRL RewardTrainer's center_rewards_coefficient: pulls r(clean) + r(degraded) to 0, so scores stay near the
# origin (clean > 0 > degraded) and sigmoid(r) in combined_reward neither saturates nor drifts.
CENTER_COEFFICIENT = 0.01


class Recipe(BaseRecipe):
    """HPS-style pairwise preference: -log sigmoid(r(clean) - r(degraded)), one degraded copy per frame."""

    name = "reward-tiny"
    default_steps = 600

    def __init__(self, name: str = "reward-tiny", seed: int = 0, weights_root=None, batch: int = 32, lr: float = 1e-3,
                 data: str | None = None, **options):
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, **data_option(data), **options)
        self.batch = batch
        self.source = FrameSource(data)
        torch.manual_seed(seed)
        self.model = FidelityReward()
        self.modules = {"reward": self.model}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.01)

    def step(self, i: int) -> dict:
        # Offset the data seed so this model never sees the clip-tiny run's frames in the same order.
        clean, _ = self.source.batch(self.seed + 7_919, i, self.batch, self.rank)   # (B, 3, H, W)
        degraded = degrade(clean, step_generator(self.seed, i))                    # (B, 3, H, W)
        rows = self.my_rows(self.batch) or slice(None)   # this rank's pairs (torchrun): the loss is a mean over pairs
        clean, degraded = clean[rows], degraded[rows]
        self.model.train()
        scores = self.model(torch.cat([clean, degraded])).view(2, -1)              # (2, B): clean, degraded
        margin = scores[0] - scores[1]
        preference = -F.logsigmoid(margin).mean()
        loss = preference + CENTER_COEFFICIENT * scores.sum(0).pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(self.model)
        self.optimizer.step()
        return {"loss": loss.item(), "preference_loss": preference.item(),
                "pair_accuracy": (margin > 0).float().mean().item(), "clean_score": scores[0].mean().item(),
                "degraded_score": scores[1].mean().item()}

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)

    def config(self) -> dict:
        return {"data": "world_frames vs degrade()", **self.options, "channels": list(self.model.channels),
                "center_coefficient": CENTER_COEFFICIENT}
