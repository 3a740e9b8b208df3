"""VBench temporal_flickering (weight-free, exact): 1 - mean absolute change between consecutive frames."""

from __future__ import annotations

import numpy as np

from evaluators.registry import Evaluator, Record, register


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
    """Per video (255 - mean MAE) / 255; aggregate = mean over videos (VBench)."""

    name = "temporal_flickering"
    version = "1"
    backbone = "none"
    faithful_backbone = "none"

    def evaluate_video(self, video) -> Record:
        return Record(video.source, self.name, temporal_flickering_score(video.frames), self.backbone,
                      video.num_frames)
