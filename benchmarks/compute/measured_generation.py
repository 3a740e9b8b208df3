"""Generate videos and measure what they cost: transformer and mixer FLOPs (FlopCounterMode on the real calls,
cross-checked by fvcore), seconds, peak memory. Each video's share travels with it as aux["generation"]
(evaluators/compute.py reads it), so `compute` is one more evaluator in the registry.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.compute.flops import mixer_module_names, sum_module_flops
from benchmarks.compute.measure import measure
from benchmarks.core.errors import GenerationFailed
from m4v.ops import fvcore_flops
from m4v.sampling import GenerationConfig, TextCondition, generate_latents
from m4v.world.dataset import to_uint8_frames

_LAYOUT_MEMO: dict = {}  # (model config, layout, CFG batch, text shape) -> FLOPs of one call: counting is slow


class _OneCall(torch.nn.Module):
    """One transformer call with a fixed frame layout, as a module fvcore can trace."""

    def __init__(self, model, levels):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, tokens, mask, pooled, timestep, *frames):
        return self.model(list(frames), self.levels, tokens, mask, pooled, timestep)


def _layout_calls(stats) -> dict:
    """{(frame sizes, levels): number of calls} of a generation."""
    per_layout: dict = {}
    for sizes, levels in zip(stats.sequence_sizes, stats.sequence_levels):
        key = (tuple(sizes), tuple(levels))
        per_layout[key] = per_layout.get(key, 0) + 1
    return per_layout


def layout_flops(model, text: TextCondition, per_prompt: int, sizes, levels) -> dict:
    """FLOPs of one transformer call with this frame layout, per prompt ({torch, mixer, fvcore}); `per_prompt`
    is 2 with CFG. Shapes alone fix the count (attention is counted dense, the scan by its shape) and every
    counted op is linear in the batch, so one prompt's call stands for all and zeros stand in for the data."""
    # FLOPs depend on the architecture and shapes, not the weights: models of one config share the count.
    key = (repr(model.cfg), sizes, levels, per_prompt, tuple(text.tokens.shape[1:]))
    if key not in _LAYOUT_MEMO:
        frames = [torch.zeros(per_prompt, model.cfg.latent_channels, h, w) for h, w in sizes]
        inputs = (text.tokens[:1].repeat(per_prompt, 1, 1), text.mask[:1].repeat(per_prompt, 1),
                  text.pooled[:1].repeat(per_prompt, 1), torch.full((per_prompt,), 500.0), *frames)
        call = _OneCall(model, list(levels))
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            call(*inputs)
        by_module = {k.removeprefix("_OneCall.model."): sum(v.values()) for k, v in counter.get_flop_counts().items()}
        _LAYOUT_MEMO[key] = {"torch": by_module.get("Global", 0),
                             "mixer": sum_module_flops(by_module, mixer_module_names(model.cfg)),
                             "fvcore": fvcore_flops(call, inputs).total}
    return _LAYOUT_MEMO[key]


def generation_flops(model, text: TextCondition, stats) -> dict:
    """{flops, mixer_flops, flops_fvcore} of a generation: each call layout counted once per prompt by both
    counters (FlopCounterMode, fvcore), times its calls and prompts. The generation itself runs uncounted, so
    its seconds carry no counter overhead."""
    prompts = text.tokens.shape[0]
    total = {"flops": 0, "mixer_flops": 0, "flops_fvcore": 0}
    for (sizes, levels), calls in _layout_calls(stats).items():
        one = layout_flops(model, text, stats.batch // prompts, sizes, levels)
        total["flops"] += calls * prompts * one["torch"]
        total["mixer_flops"] += calls * prompts * one["mixer"]
        total["flops_fvcore"] += calls * prompts * one["fvcore"]
    return total


def run_generation(model, text: TextCondition, config: GenerationConfig) -> tuple[torch.Tensor, dict]:
    """-> latents and {flops, mixer_flops, flops_fvcore, seconds, seconds_per_frame, peak_mb, forwards} of the
    whole batch (seconds and memory of the sampling alone)."""
    if (config.guidance_scale == 1.0) != (config.video_guidance_scale == 1.0):
        raise ValueError("the FLOP count needs CFG on for every frame or for none")
    device = next(model.parameters()).device.type   # CUDA is synchronised around the timed call
    (latents, stats), m = measure(lambda: generate_latents(model, text, config), device)
    return latents, {**generation_flops(model, text, stats), "seconds": m.seconds,
                     "seconds_per_frame": m.seconds / config.latent_frames, "peak_mb": m.peak_extra_mb,
                     "forwards": stats.forwards}


@torch.no_grad()
def generate_measured(pipe, prompts: list[str], frames: int, height: int, width: int, seed: int, steps,
                      guidance: float) -> tuple[list, list[dict]]:
    """One batch through a TextToVideo: -> (uint8 (T, H, W, 3) videos, each video's generation record: the
    batch's FLOPs and seconds divided evenly; seconds cover text encoding, sampling and decoding)."""
    config = pipe.config(frames, height, width, seed, steps, guidance)
    device = next(pipe.model.parameters()).device.type
    (text, encode) = measure(lambda: pipe.text.encode(prompts), device)
    latents, cost = run_generation(pipe.model, text, config)                  # (B, C, T, h, w)
    video, decode = measure(lambda: pipe.vae.decode_normalized(latents), device)   # (B, 3, 1 + 8k, H, W)
    n = len(prompts)
    seconds = encode.seconds + cost["seconds"] + decode.seconds
    record = {"flops": cost["flops"] / n, "mixer_flops": cost["mixer_flops"] / n,
              "flops_fvcore": cost["flops_fvcore"] / n, "seconds": seconds / n,
              "seconds_per_frame": cost["seconds_per_frame"] / n,
              "peak_mb": max(encode.peak_extra_mb, cost["peak_mb"], decode.peak_extra_mb),
              "forwards": cost["forwards"], "batch": n}
    # a diverged model (or an overflowing guidance) gives NaN / inf: that video fails, it is never scored as black
    finite = [bool(torch.isfinite(lat).all()) and bool(torch.isfinite(v).all()) for lat, v in zip(latents, video)]
    videos = [to_uint8_frames(v)[:frames] if ok else GenerationFailed(
        "non-finite latents or frames (NaN or inf) during generation: no score is computed on them")
        for v, ok in zip(video, finite)]
    return videos, [dict(record) if ok else None for ok in finite]
