"""Pyramidal flow-matching training step with temporal autoregression (PyramidFlow's recipe, spec §3).

Per batch: an autoregressive position (latent frame) and a pyramid stage are drawn; the earlier frames form
the compressed history at their levels, corrupted with noise sigma_c ~ U(0, corrupt_ratio); the current frame
gets the stage's training pair (m4v/scheduler.py); the loss is the MSE between predicted and target velocity.

History noise (`history_noise`): "shared" draws one sigma_c per sample for all its history frames (PyramidFlow's
`last_cond_noisy_sigma`); "per_frame" one per frame and sample (the first implementation, which trained the
shipped tiny models). `sampler="all_stages"` (flow_matching_loss_all_stages) trains the three stages in every
batch with their autoregressive positions balanced as PyramidFlow's `sample_stage_length`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from m4v.pyramid import history_levels
from m4v.sampling import TextCondition
from m4v.scheduler import PyramidSchedule, pyramid_latents, stage_noise

CORRUPT_RATIO = 1 / 3  # PyramidFlow's history corruption
HISTORY_NOISE = ("per_frame", "shared")


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


def corrupt_history(clean: list, generator: torch.Generator, device, corrupt_ratio: float = CORRUPT_RATIO,
                    history_noise: str = "per_frame") -> list:
    """sigma_c * noise + (1 - sigma_c) * frame for every history frame, sigma_c ~ U(0, corrupt_ratio) per
    sample, shared by its frames ("shared", PyramidFlow) or drawn per frame ("per_frame")."""
    if history_noise not in HISTORY_NOISE:
        raise ValueError(f"history_noise must be one of {HISTORY_NOISE}, got {history_noise!r}")
    if not clean:
        return []
    B = clean[0].shape[0]
    draw = lambda sample: sample.to(device)  # noqa: E731
    shared = draw(torch.rand(B, 1, 1, 1, generator=generator)) * corrupt_ratio if history_noise == "shared" else None
    out = []
    for frame in clean:
        sigma = shared if shared is not None else draw(torch.rand(B, 1, 1, 1, generator=generator)) * corrupt_ratio
        out.append(sigma * draw(torch.randn(frame.shape, generator=generator)) + (1 - sigma) * frame)
    return out


def flow_matching_loss(model, latents: torch.Tensor, text: TextCondition, schedule: PyramidSchedule,
                       generator: torch.Generator, unit: int | None = None, stage: int | None = None,
                       corrupt_ratio: float = CORRUPT_RATIO, history_noise: str = "per_frame",
                       rows: slice | None = None) -> TrainingSample:
    """latents (B, C, T, H, W), normalised; one AR position and stage for the whole batch. Random draws come from
    the (CPU) generator and move to the latents' device, so a run's random stream is the same on any device.
    `rows`: this data-parallel rank's rows of the (global) batch: every draw is made for the whole batch, as one
    process makes it, and only the model's forward and the loss run on the rank's rows (the sample holds them)."""
    B, _, T, _, _ = latents.shape
    draw = lambda sample: sample.to(latents.device)  # noqa: E731
    n_stages = schedule.n_stages
    unit = int(torch.randint(T, (1,), generator=generator)) if unit is None else unit
    stage = int(torch.randint(n_stages, (1,), generator=generator)) if stage is None else stage
    frames = [pyramid_latents(latents[:, :, t], n_stages) for t in range(unit + 1)]  # per frame, lowest first
    levels = history_levels(unit, stage)
    history = corrupt_history([frames[f][level] for f, level in enumerate(levels)], generator, latents.device,
                              corrupt_ratio, history_noise)
    current = frames[unit]
    noise = stage_noise(draw(torch.randn(current[-1].shape, generator=generator)), n_stages - 1 - stage)
    ratio = draw(torch.rand(B, generator=generator))
    x, target, timestep = schedule.training_pair(stage, current[stage], current[stage - 1] if stage else None,
                                                 noise, ratio)
    if rows is not None:   # (B, ...) -> (b, ...): the rank's rows
        history, x, target, timestep, ratio, noise = ([h[rows] for h in history], x[rows], target[rows],
                                                      timestep[rows], ratio[rows], noise[rows])
        text = TextCondition(text.tokens[rows], text.mask[rows], text.pooled[rows])
    prediction = model(history + [x], levels + [stage], text.tokens, text.mask, text.pooled, timestep.float())
    return TrainingSample(unit, stage, F.mse_loss(prediction.float(), target.float()), x, prediction, ratio, noise,
                          target, history)


def balanced_units(n_units: int, generator: torch.Generator, n_stages: int = 3) -> list[int]:
    """AR position (0-based) per stage, lowest first, balanced as PyramidFlow's `sample_stage_length`: the
    full-resolution stage's unit count u ~ U{1..T}, the lower stages' T + 1 - u, so the three sequences of a
    batch together stay near a constant length. (PyramidFlow walks u over the ranks of a video_sync_group and
    the steps; one process draws it.)"""
    high = int(torch.randint(n_units, (1,), generator=generator)) + 1        # unit count of the last stage
    low = n_units + 1 - high
    return [low - 1] * (n_stages - 1) + [high - 1]


def flow_matching_loss_all_stages(model, latents: torch.Tensor, text: TextCondition, schedule: PyramidSchedule,
                                  generator: torch.Generator, corrupt_ratio: float = CORRUPT_RATIO,
                                  history_noise: str = "shared") -> tuple[torch.Tensor, list[TrainingSample]]:
    """PyramidFlow's batch layout: the batch split into one column per stage (sizes differ by at most one),
    each at its balanced AR position; -> (mean per-sample loss over the whole batch, the stages' samples)."""
    n_stages = schedule.n_stages
    if latents.shape[0] < n_stages:
        raise ValueError(f"the all-stages sampler needs a batch of at least {n_stages}, got {latents.shape[0]}")
    units = balanced_units(latents.shape[2], generator, n_stages)
    columns = torch.arange(latents.shape[0]).tensor_split(n_stages)
    samples, total = [], 0.0
    for stage, (unit, index) in enumerate(zip(units, columns)):
        column_text = TextCondition(text.tokens[index], text.mask[index], text.pooled[index])
        sample = flow_matching_loss(model, latents[index], column_text, schedule, generator, unit=unit, stage=stage,
                                    corrupt_ratio=corrupt_ratio, history_noise=history_noise)
        samples.append(sample)
        total = total + sample.loss * len(index)                            # MSE is a per-sample mean: weight
    return total / latents.shape[0], samples


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
