"""Run a generation and measure what it cost: FLOPs (FlopCounterMode, cross-checked by fvcore), seconds,
peak memory. The result travels with the video as aux["generation"] (evaluators/compute.py reads it)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.measure import measure
from m4v.ops import fvcore_flops
from m4v.pipeline import GenerationConfig, TextCondition, generate_latents


class _OneCall(torch.nn.Module):
    """One transformer call with a fixed frame layout, as a module fvcore can trace."""

    def __init__(self, model, levels):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, tokens, mask, pooled, timestep, *frames):
        return self.model(list(frames), self.levels, tokens, mask, pooled, timestep)


def fvcore_generation_flops(model, text: TextCondition, stats) -> int:
    """Sum over the generation's calls of fvcore's count of one call with that call's layout."""
    per_layout: dict = {}
    for sizes, levels in zip(stats.sequence_sizes, stats.sequence_levels):
        key = (tuple(sizes), tuple(levels))
        per_layout[key] = per_layout.get(key, 0) + 1
    total = 0
    repeat = stats.batch // text.tokens.shape[0]
    for (sizes, levels), calls in per_layout.items():
        frames = [torch.zeros(stats.batch, model.cfg.latent_channels, h, w) for h, w in sizes]
        inputs = (text.tokens.repeat(repeat, 1, 1), text.mask.repeat(repeat, 1), text.pooled.repeat(repeat, 1),
                  torch.full((stats.batch,), 500.0), *frames)
        total += calls * fvcore_flops(_OneCall(model, list(levels)), inputs).total
    return total


def run_generation(model, text: TextCondition, config: GenerationConfig) -> tuple[torch.Tensor, dict]:
    """-> latents and {flops, flops_fvcore, seconds, seconds_per_frame, peak_mb, forwards}."""
    def run():
        with FlopCounterMode(display=False) as counter:
            latents, stats = generate_latents(model, text, config)
        # The denoiser's calls only (the schedule's block-noise matmuls are not the model's compute).
        model_flops = sum(counter.get_flop_counts().get(type(model).__name__, {}).values())
        return latents, stats, model_flops

    (latents, stats, flops), m = measure(run)
    if (config.guidance_scale == 1.0) != (config.video_guidance_scale == 1.0):
        raise ValueError("the fvcore cross-check needs CFG on for every frame or for none")
    fv = fvcore_generation_flops(model, text, stats)
    return latents, {"flops": flops, "flops_fvcore": fv, "seconds": m.seconds,
                     "seconds_per_frame": m.seconds / config.latent_frames, "peak_mb": m.peak_extra_mb,
                     "forwards": stats.forwards}
