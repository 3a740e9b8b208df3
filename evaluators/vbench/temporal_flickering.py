"""VBench temporal_flickering: 1 - mean absolute change between consecutive frames, on the videos VBench's
static filter keeps (the score itself is weight-free and exact; the filter's flow is RAFT or the DIS stand-in)."""

from __future__ import annotations

import numpy as np

from evaluators.registry import Declined, Evaluator, Record, register
from evaluators.vbench.flow import flow_source
from evaluators.vbench.static_filter import MAX_PER_PROMPT, is_static


def temporal_flickering_score(frames: np.ndarray) -> float:
    """(255 - mean_i MAE(f_i, f_{i+1})) / 255 over all pixels and channels, op for op as VBench's cal_score:
    float32 MAEs, their float32 mean taken to a Python float, then float64 arithmetic."""
    if len(frames) < 2:
        return float("nan")  # VBench: np.mean of no pairs is nan
    maes = np.array([np.mean(np.abs(frames[i].astype(np.float32) - frames[i + 1].astype(np.float32)))
                     for i in range(len(frames) - 1)])
    return (255.0 - np.mean(maes).item()) / 255.0


@register
class TemporalFlickering(Evaluator):
    """Per video (255 - mean MAE) / 255 on static videos; aggregate = mean over videos (VBench).

    Videos the static filter drops are declined with the reason; so are static videos past the 5th of a suite
    prompt (VBench's filter keeps 5 per prompt, in file-name order). `dropped` counts both."""

    name = "temporal_flickering"
    version = "2"
    optional_backbones = ("raft",)
    faithful_backbone = "static-filter:raft:raft_large@"   # the filter's flow is RAFT-things, as VBench's

    def __init__(self, raft=None):
        super().__init__(raft=raft)
        self.flow = flow_source(raft)
        self.backbone = f"static-filter:{self.flow.label}"
        self.kept_per_prompt: dict[str, int] = {}
        self.dropped = 0

    def evaluate_video(self, video) -> Record:
        if not is_static(video.frames, self.flow.magnitude):
            self.dropped += 1
            raise Declined(f"{video.source}: not static (VBench's static filter drops it before temporal_flickering)")
        if (video.aux or {}).get("dimension") is not None:   # a suite prompt: VBench keeps 5 static videos of it
            kept = self.kept_per_prompt.get(video.prompt, 0)
            if kept >= MAX_PER_PROMPT:
                self.dropped += 1
                raise Declined(f"{video.source}: static, but VBench's filter keeps only the first {MAX_PER_PROMPT} "
                               f"of prompt {video.prompt!r}")
            self.kept_per_prompt[video.prompt] = kept + 1
        return Record(video.source, self.name, temporal_flickering_score(video.frames), self.backbone,
                      video.num_frames, {"static_filter_dropped_so_far": self.dropped})
