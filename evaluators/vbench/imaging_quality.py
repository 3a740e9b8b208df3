"""VBench imaging_quality: a no-reference image-quality model on every frame; per video the mean score in
0-100 units, aggregate = mean over videos / 100 (VBench, MUSIQ-SPAQ through pyiqa).

Neither pyiqa nor MUSIQ's weights are available offline, so the default model is the shipped fidelity model
(m4v/fidelity.py: trained to rank clean world renders above blurred, noisy, ghosted, resampled ones — the
degradations MUSIQ penalises), scored as 100 * sigmoid(score) on frames resized to its 64x64 training size.
Rows carry backbone "fidelity:..." and are never reported as VBench scores (substitute).
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.backbone_loading import load_state_file
from evaluators.registry import Evaluator, Record, register

INPUT_SIZE = 64  # the fidelity model's training resolution


class FidelityBackbone:
    """The fidelity model (m4v.fidelity.FidelityReward): the weights file the spec names, config.json beside it."""

    def __init__(self, spec, device: str = "cpu", batch_size: int = 64):
        from pathlib import Path

        from m4v.fidelity import FidelityReward

        self.spec, self.device, self.batch_size = spec, device, batch_size
        weights = Path(spec.weights)
        config = weights.parent / "config.json"        # the architecture beside the weights (save_pretrained)
        if not config.is_file():
            raise FileNotFoundError(f"--backbone {spec.kind}={spec.model}:{weights}: no config.json beside it")
        model = FidelityReward(**json.loads(config.read_text()))
        model.load_state_dict(load_state_file(weights))   # exactly the file the spec names (and its label shows)
        self.model = model.to(device).eval()

    @torch.no_grad()
    def score_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T,) quality in [0, 100]."""
        out = []
        for start in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.batch_size])).permute(0, 3, 1, 2)
            x = x.float().to(self.device) / 127.5 - 1                                    # (b, 3, H, W) in [-1, 1]
            if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
                x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True,
                                  align_corners=False)
            out.append(100 * torch.sigmoid(self.model(x)))
        return torch.cat(out).cpu()


@register
class ImagingQuality(Evaluator):
    """Per video: mean frame quality (0-100); aggregate: mean over videos / 100."""

    name = "imaging_quality"
    score_range = (0.0, 100.0)   # 100 sigmoid per frame
    version = "1"
    backbones = ("fidelity",)

    def evaluate_video(self, video) -> Record:
        per_frame = self.fidelity.score_frames(video.frames)
        return Record(video.source, self.name, float(per_frame.mean()), self.backbone, video.num_frames,
                      {"per_frame": per_frame.tolist()})

    def aggregate(self, records) -> float:
        return float(np.mean([r.score for r in records])) / 100 if records else float("nan")
