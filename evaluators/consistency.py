"""Frame-to-frame consistency from per-frame features: VBench's subject/background formula and drift."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from evaluators.registry import Evaluator, Record, register


def vbench_consistency_terms(features: torch.Tensor) -> np.ndarray:
    """c_i = (max(0, cos(e_{i-1}, e_i)) + max(0, cos(e_0, e_i))) / 2 for i >= 1; features (T, E) unit vectors.

    The per-frame term of VBench's subject_consistency and background_consistency.
    """
    previous = (features[1:] * features[:-1]).sum(-1).clamp(min=0)
    first = (features[1:] * features[:1]).sum(-1).clamp(min=0)
    return ((previous + first) / 2).numpy()


def drift(features: torch.Tensor) -> dict:
    """Cosine to the previous and to the first frame, their mean / minimum, and the slope of cos-to-first
    over time (per frame): negative slope = appearance drifting away, the error accumulation of AR models."""
    previous = (features[1:] * features[:-1]).sum(-1).numpy()
    first = (features[1:] * features[:1]).sum(-1).numpy()
    slope = stats.linregress(np.arange(1, len(features)), first).slope if len(first) >= 2 else float("nan")
    return {"cos_prev_mean": float(previous.mean()), "cos_prev_min": float(previous.min()),
            "cos_first_mean": float(first.mean()), "cos_first_min": float(first.min()), "drift_slope": float(slope)}


class _VBenchConsistency(Evaluator):
    """Per video mean c_i; aggregate weighted by frame pair (VBench's single-process aggregate)."""

    version = "2"   # 2: float32 resize as VBench's load_video hands it over; DINO's square-image rule

    def features(self, frames) -> torch.Tensor:
        raise NotImplementedError

    def evaluate_video(self, video) -> Record:
        terms = vbench_consistency_terms(self.features(video.frames))
        score = float(terms.sum() / len(terms)) if len(terms) else float("nan")
        return Record(video.source, self.name, score, self.backbone, video.num_frames,
                      {"video_sim": float(terms.sum()), "cnt_per_video": len(terms)})

    def aggregate(self, records) -> float:
        pairs = sum(r.extra["cnt_per_video"] for r in records)
        return sum(r.extra["video_sim"] for r in records) / pairs if pairs else float("nan")


@register
class BackgroundConsistency(_VBenchConsistency):
    """VBench background_consistency: CLIP image features of all frames."""

    name = "background_consistency"
    score_range = (-1.0, 1.0)   # cosines
    backbones = ("clip",)
    faithful_backbone = "clip:ViT-B-32-quickgelu@"   # OpenAI's weights: QuickGELU (plain ViT-B-32 is GELU)

    def features(self, frames) -> torch.Tensor:
        return self.clip.encode_frames(frames)


@register
class SubjectConsistency(_VBenchConsistency):
    """VBench subject_consistency: DINO ViT-B/16 CLS features of all frames (DINO's checkpoint, DINO's position
    interpolation)."""

    name = "subject_consistency"
    score_range = (-1.0, 1.0)   # cosines
    backbones = ("dino",)
    faithful_backbone = "dino:dino_vitb16@"

    def features(self, frames) -> torch.Tensor:
        return self.dino.encode_frames(frames)


@register
class FrameConsistency(Evaluator):
    """Per-video mean cosine to the previous frame; extras: minimum, cosine to the first frame, drift slope."""

    name = "frame_consistency"
    score_range = (-1.0, 1.0)   # cosines
    version = "2"   # 2: CLIP frames resized on float32 (VBench's clip_transform path)
    backbones = ("clip",)
    group = "clip"

    def evaluate_video(self, video) -> Record:
        if video.num_frames < 2:
            return Record(video.source, self.name, float("nan"), self.backbone, video.num_frames)
        stats_ = drift(self.clip.encode_frames(video.frames))
        return Record(video.source, self.name, stats_["cos_prev_mean"], self.backbone, video.num_frames, stats_)
