"""Pyramidal flow-matching training step with temporal autoregression (PyramidFlow's recipe, spec §3).

Per sample: an autoregressive position (latent frame) and a pyramid stage are drawn; the earlier frames form
the compressed history at their levels, corrupted with noise sigma_c ~ U(0, corrupt_ratio); the current frame
gets the stage's training pair (m4v/scheduler.py); the loss is the MSE between predicted and target velocity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from m4v.pipeline import TextCondition
from m4v.pyramid import history_levels
from m4v.scheduler import PyramidSchedule, pyramid_latents, stage_noise

CORRUPT_RATIO = 1 / 3  # PyramidFlow's history corruption


@dataclass
class TrainingSample:
    """What one loss evaluation used (for logging and tests)."""

    unit: int
    stage: int
    loss: torch.Tensor
    noisy: torch.Tensor | None = None        # x at the sampled point of the stage's flow (B, C, h, w)
    prediction: torch.Tensor | None = None   # predicted velocity there
    ratio: torch.Tensor | None = None        # (B,) position in the stage's flow: 1 = start, 0 = end
    noise: torch.Tensor | None = None        # the stage-resolution noise of the current frame
    target: torch.Tensor | None = None       # the velocity the prediction is regressed on
    history: list | None = None              # the (corrupted) history frames it was conditioned on


def flow_matching_loss(model, latents: torch.Tensor, text: TextCondition, schedule: PyramidSchedule,
                       generator: torch.Generator, unit: int | None = None, stage: int | None = None) -> TrainingSample:
    """latents (B, C, T, H, W), normalised; one AR position and stage for the whole batch. Random draws come from
    the (CPU) generator and move to the latents' device, so a run's random stream is the same on any device."""
    B, _, T, _, _ = latents.shape
    draw = lambda sample: sample.to(latents.device)  # noqa: E731
    n_stages = schedule.n_stages
    unit = int(torch.randint(T, (1,), generator=generator)) if unit is None else unit
    stage = int(torch.randint(n_stages, (1,), generator=generator)) if stage is None else stage
    frames = [pyramid_latents(latents[:, :, t], n_stages) for t in range(unit + 1)]  # per frame, lowest first
    levels = history_levels(unit, stage)
    history = []
    for f, level in enumerate(levels):
        clean = frames[f][level]
        sigma = draw(torch.rand(B, 1, 1, 1, generator=generator)) * CORRUPT_RATIO
        history.append(sigma * draw(torch.randn(clean.shape, generator=generator)) + (1 - sigma) * clean)
    current = frames[unit]
    noise = stage_noise(draw(torch.randn(current[-1].shape, generator=generator)), n_stages - 1 - stage)
    ratio = draw(torch.rand(B, generator=generator))
    x, target, timestep = schedule.training_pair(stage, current[stage], current[stage - 1] if stage else None,
                                                 noise, ratio)
    prediction = model(history + [x], levels + [stage], text.tokens, text.mask, text.pooled, timestep.float())
    return TrainingSample(unit, stage, F.mse_loss(prediction.float(), target.float()), x, prediction, ratio, noise,
                          target, history)


def one_step_clean_estimate(sample: TrainingSample, schedule: PyramidSchedule) -> torch.Tensor:
    """x_1 of the current frame from one Euler jump to the stage's end (spec §2, Eq. 5 in code conventions):
    end = x_r - r v, then clean = (end - sigma_e noise) / (1 - sigma_e)."""
    r = sample.ratio.view(-1, 1, 1, 1)
    end = sample.noisy - r * sample.prediction
    sigma_end = schedule.end_sigmas[sample.stage]
    return (end - sigma_end * sample.noise) / (1 - sigma_end)


def make_optimizer(model, lr: float = 5e-5, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.95), PyramidFlow's training defaults."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)


def train_step(model, optimizer, latents, text, schedule, generator, clip: float = 1.0) -> TrainingSample:
    """One optimisation step with gradient clipping (1.0)."""
    model.train()
    sample = flow_matching_loss(model, latents, text, schedule, generator)
    optimizer.zero_grad(set_to_none=True)
    sample.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return sample
