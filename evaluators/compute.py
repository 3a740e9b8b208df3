"""Compute that produced a video: FLOPs of its generation (two counters), seconds, peak memory.

Reads video.aux["generation"] written by the runner (benchmarks/compute/measured_generation.py); external videos
have none and are not scored on this dimension.
"""

from __future__ import annotations

import math

from evaluators.registry import Declined, Evaluator, Record, register

REL_TOLERANCE = 0.01  # fvcore and FlopCounterMode must agree within 1%


@register
class Compute(Evaluator):
    """Score = the generation's transformer TFLOPs (FlopCounterMode); extras: fvcore's count, mixer TFLOPs."""

    name = "compute"
    score_range = (0.0, math.inf)   # TFLOPs per video
    version = "1"
    needs = ("generation",)
    backbone = "flop-counters"
    higher_is_better = False
    group = "compute"

    def evaluate_video(self, video) -> Record:
        g = video.aux["generation"]
        if g.get("flops") is None:   # a generator that cannot be counted (a command): the reason, never a number
            raise Declined(g.get("flops_declined") or "the generator's FLOPs were not counted")
        # fvcore cross-checks the shipped models' count; an adapter has FlopCounterMode's alone
        if g.get("flops_fvcore") is not None and abs(g["flops_fvcore"] - g["flops"]) > REL_TOLERANCE * g["flops"]:
            raise ValueError(f"{video.source}: FLOP counters disagree ({g['flops']} vs fvcore {g['flops_fvcore']})")
        # Seconds and peak memory stay in the generation record (generation.csv): they are measurements that
        # differ run to run, and a score row must be reproducible bit for bit.
        return Record(video.source, self.name, g["flops"] / 1e12, self.backbone, video.num_frames,
                      {"tflops_fvcore": g["flops_fvcore"] / 1e12 if g.get("flops_fvcore") is not None else None,
                       "mixer_tflops": g["mixer_flops"] / 1e12 if g.get("mixer_flops") is not None else None})
