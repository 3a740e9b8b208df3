"""Compute for any generator, by the harness's timing rule (benchmarks/compute/measure.py): one untimed warm-up call per
model and process first, then each work item's calls timed together (CUDA synchronised) with their peak memory;
seconds per video are the item's seconds / its videos, and summary.csv takes the median over items with its
interval. FLOPs: FlopCounterMode around one real call, the warm-up (one video: the suite's first prompt with its
seed, so every rank and every resumed run counts the same call), for any generator that runs torch; a generator
that counts itself (the shipped denoisers: per layout, mixer split) or cannot be counted (a command) says so in
its capabilities, and the `compute` row is declined with the reason.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.compute.measure import measure
from benchmarks.core.errors import GenerationFailed
from benchmarks.generators.base import Generator, finite_or_none, is_interruption, user_failure

NOT_TORCH = "FlopCounterMode counted no torch operation in one call (a generator outside torch cannot be counted)"


def count_flops(call) -> tuple[object, int]:
    """call() under FlopCounterMode (no autograd): -> (its result, total FLOPs; 2 per multiply-add)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        result = call()
    return result, int(counter.get_total_flops())


def warm_up(generator: Generator, prompt: str, seed: int, sampling) -> dict:
    """The untimed first call (one video), counted where the generator can be: -> {flops (per video) or None,
    flops_declined (the reason, or ""), warm_up_seconds}."""
    capabilities = generator.capabilities

    def call():
        return generator.generate([prompt], [seed], sampling)

    if capabilities.compute == "counted":
        (generation, flops), m = measure(lambda: count_flops(call), capabilities.device)
    else:
        with torch.no_grad():
            generation, m = measure(call, capabilities.device)
        flops = None
    problem = next((v for v in generation.videos if isinstance(v, Exception)), None)
    if problem is not None:
        raise GenerationFailed(f"warm-up call: {problem}")
    declined = capabilities.compute_reason if capabilities.compute == "declined" else ""
    if flops == 0:
        flops, declined = None, NOT_TORCH
    return {"flops": flops, "flops_declined": declined, "warm_up_seconds": m.seconds}


def measured_generate(generator: Generator, prompts: list[str], seeds: list[int], sampling, cost: dict):
    """The videos of one work item, in calls of at most `max_batch` prompts, timed together: -> (videos, a
    generation record per video). A call that raises fails its videos (GenerationFailed), not the item."""
    step = generator.capabilities.max_batch or len(prompts)

    def calls():
        videos = []
        for start in range(0, len(prompts), step):
            try:
                videos += list(generator.generate(prompts[start:start + step], seeds[start:start + step],
                                                  sampling).videos)
            except BaseException as exc:  # noqa: BLE001 - the generator's bug (sys.exit too) fails its videos
                if is_interruption(exc):
                    raise
                videos += [GenerationFailed(user_failure(exc))] * len(prompts[start:start + step])
        return videos

    with torch.no_grad():
        videos, m = measure(calls, generator.capabilities.device)
    if len(videos) != len(prompts):
        raise GenerationFailed(f"{generator.name}: {len(videos)} videos for {len(prompts)} prompts")
    n = len(prompts)
    record = {"flops": cost["flops"], "mixer_flops": None, "flops_fvcore": None, "seconds": m.seconds / n,
              "seconds_per_frame": None, "peak_mb": finite_or_none(m.peak_extra_mb)
              if generator.capabilities.measures_memory else None, "forwards": None, "batch": n,
              "flops_counter": "FlopCounterMode, one call" if cost["flops"] is not None else None,
              "flops_declined": cost["flops_declined"]}
    return videos, [dict(record) for _ in prompts]
